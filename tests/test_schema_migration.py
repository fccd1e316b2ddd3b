"""Stores created with an older schema upgrade on open, in SQLite and PostgreSQL.

A version-1 store (the schema before commit ids) is built by hand with the
version-1 statements, holding one event; opening it runs the migration steps,
keeps the event, and the new features (commit ids, keys, pending handlers) work.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import psycopg
import pytest

from playthrough import Engine
from playthrough._stores import _base
from playthrough._stores import postgres as pg_module
from playthrough._stores import sqlite as sqlite_module
from playthrough.errors import StoreError

from .test_commit_outcome import Counted, Tally

OLD_EVENT = ("t.outcome.Counted", '{"by":4,"tally_id":1}', None, "2026-01-01T00:00:00+00:00")


def _old_sqlite(path: Path) -> None:
    conn = sqlite3.connect(path)
    conn.executescript(sqlite_module._SCHEMA)
    conn.execute("INSERT INTO pt_meta VALUES ('schema_version', '1')")
    conn.execute("INSERT INTO pt_events VALUES (1, ?, ?, ?, ?)", OLD_EVENT)
    conn.execute("INSERT INTO pt_links VALUES ('t.outcome.Tally', '1', 1, 0)")
    conn.execute("INSERT INTO pt_heads VALUES ('t.outcome.Tally', '1', 1)")
    conn.commit()
    conn.close()


def _check_upgraded(url: str) -> None:
    with Engine.open(url) as engine:
        with engine.store.reader() as reader:
            assert reader.meta("schema_version") == str(_base.SCHEMA_VERSION)
        assert engine.load(Tally, 1).count == 4  # the old event survived
        engine.fire(Counted(tally_id=1), key="after-upgrade")
        [event] = engine.commit()
        assert event.id == 2 and engine.was_committed(engine.last_commit_id or "")
    with Engine.open(url) as again:  # reopening an upgraded store changes nothing
        assert again.load(Tally, 1).count == 5


def test_sqlite_version_1_store_upgrades_on_open(tmp_path: Path) -> None:
    _old_sqlite(tmp_path / "old.db")
    _check_upgraded(f"sqlite:///{tmp_path / 'old.db'}")


@pytest.mark.postgres
def test_postgres_version_1_schema_upgrades_on_open(pg_url: str, pg_schema: str) -> None:
    quoted = f'"{pg_schema}"'
    with psycopg.connect(pg_url, autocommit=True) as conn:
        for statement in pg_module._SCHEMA:
            conn.execute(statement.replace("{s}", quoted))
        conn.execute(f"INSERT INTO {quoted}.pt_meta VALUES ('schema_version', '1')")
        conn.execute(f"INSERT INTO {quoted}.pt_events VALUES (1, %s, %s, %s, %s)", OLD_EVENT)
        conn.execute(f"INSERT INTO {quoted}.pt_links VALUES ('t.outcome.Tally', '1', 1, 0)")
        conn.execute(f"INSERT INTO {quoted}.pt_heads VALUES ('t.outcome.Tally', '1', 1)")
    _check_upgraded(f"{pg_url}?schema={pg_schema}")


def test_a_schema_version_that_is_not_a_number_is_a_store_error(tmp_path: Path) -> None:
    _old_sqlite(tmp_path / "bad.db")
    conn = sqlite3.connect(tmp_path / "bad.db")
    conn.execute("UPDATE pt_meta SET value = 'two' WHERE key = 'schema_version'")
    conn.commit()
    conn.close()
    with pytest.raises(StoreError, match=r"schema_version is 'two', not a version number"):
        Engine.open(f"sqlite:///{tmp_path / 'bad.db'}")
