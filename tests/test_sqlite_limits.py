"""SQLite under its limits and under contention.

- statements are chunked by the connection's bound-variable limit (builds
  before 3.32 default to 999; a load touching ~1,100 states exceeded it);
- a write that cannot get the lock is a StoreError, never a raw sqlite3 error.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import attrs
import pytest

from playthrough import Engine, Event, State, state_id
from playthrough.errors import StoreError


@attrs.define
class Cell(State, type_name="t.limits.Cell"):
    value: int = 0


@attrs.define
class Spread(Event, type_name="t.limits.Spread"):
    cell_ids: list[int] = state_id(Cell, many=True)

    def apply(self, cells: list[Cell]) -> None:
        for cell in cells:
            cell.value += 1


def test_a_load_of_1100_states_under_the_old_999_variable_limit(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'wide.db'}"
    ids = list(range(1_100))
    with Engine.open(url) as engine:
        engine.fire(Spread(cell_ids=ids))
        engine.fire(Spread(cell_ids=ids[::2]))
        engine.commit()
    with Engine.open(url) as engine:
        conn = engine.store._conn  # type: ignore[attr-defined]
        conn.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 999)
        cells = engine.load_many(Cell, ids)
        assert [c.value for c in cells[:4]] == [2, 1, 2, 1]
        engine.admin.snapshot()
        engine.refresh()
        assert sum(c.value for c in engine.load_many(Cell, ids)) == 1_650


def test_a_locked_database_is_a_store_error(tmp_path: Path) -> None:
    path = tmp_path / "locked.db"
    url = f"sqlite:///{path}"
    with Engine.open(url) as first:
        first.fire(Spread(cell_ids=[1]))
        first.commit()
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another process holds the write lock
    try:
        with Engine.open(url, busy_timeout=0.05) as engine:
            engine.load(Cell, 1)
            engine.fire(Spread(cell_ids=[1]))
            with pytest.raises(StoreError, match="nothing was written"):
                engine.commit()
            with pytest.raises(StoreError, match="cannot start a write transaction"):
                engine.admin.snapshot([(Cell, 1)])
            with pytest.raises(StoreError, match="cannot start a write transaction"):
                engine.admin.drop_snapshots()
    finally:
        holder.execute("ROLLBACK")
        holder.close()
