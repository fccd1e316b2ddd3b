"""Stores created with an older schema upgrade on open (both backends)."""

from __future__ import annotations

import sqlite3
from datetime import timedelta
from pathlib import Path

import pytest

from playthrough import Engine
from playthrough._stores import SQLiteStore
from playthrough._stores import sqlite as sqlite_module
from playthrough._stores._base import SCHEMA_VERSION
from playthrough.errors import SchemaVersionError

from .sched_domain import Order, PaymentTimedOut, Ping

V1_EVENT = (1, "sched.OrderPlaced", '{"order_id":1}', None, "2030-01-01T12:00:00+00:00")


def _v1_sqlite(path: Path) -> None:
    """A store exactly as schema version 1 left it, with one event."""
    conn = sqlite3.connect(path)
    conn.executescript(sqlite_module._SCHEMA)
    conn.execute("INSERT INTO pt_meta VALUES ('schema_version', '1')")
    conn.execute("INSERT INTO pt_events VALUES (?, ?, ?, ?, ?)", V1_EVENT)
    conn.execute("INSERT INTO pt_links VALUES ('sched.Order', '1', 1, 0)")
    conn.execute("INSERT INTO pt_heads VALUES ('sched.Order', '1', 1)")
    conn.commit()
    conn.close()


def _check_upgraded(engine: Engine) -> None:
    with engine.store.reader() as reader:
        assert reader.meta("schema_version") == str(SCHEMA_VERSION)
    assert engine.load(Order, 1).placed  # the old log reads as before
    schedule_id = engine.scheduler.schedule(Ping(counter_id=1), after=timedelta(minutes=5))
    assert engine.scheduler.scheduled(schedule_id).status == "pending"
    engine.fire(PaymentTimedOut(order_id=1))  # completes the order: a pt_completed row
    engine.commit()
    completion = engine.states.completion(Order, 1)
    assert completion is not None and completion.position == 2


def test_a_version_1_sqlite_store_upgrades_on_open(tmp_path: Path) -> None:
    path = tmp_path / "v1.db"
    _v1_sqlite(path)
    _check_upgraded(Engine(SQLiteStore(str(path))))
    # Reopening an upgraded store runs no step twice.
    again = SQLiteStore(str(path))
    with again.reader() as reader:
        assert reader.meta("schema_version") == str(SCHEMA_VERSION)
        assert len(reader.schedules()) == 1
    again.close()


def test_a_newer_sqlite_store_is_still_refused(tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    SQLiteStore(str(path)).close()
    conn = sqlite3.connect(path)
    conn.execute(f"UPDATE pt_meta SET value = '{SCHEMA_VERSION + 1}' WHERE key = 'schema_version'")
    conn.commit()
    conn.close()
    with pytest.raises(SchemaVersionError, match="newer playthrough"):
        SQLiteStore(str(path))


def test_a_version_1_postgres_store_upgrades_on_open(pg_url: str, pg_schema: str) -> None:
    import psycopg

    from playthrough._stores import postgres as pg

    quoted = f'"{pg_schema}"'
    with psycopg.connect(pg_url, autocommit=True) as conn:
        for statement in pg._SCHEMA:
            conn.execute(statement.replace("{s}", quoted).encode())
        conn.execute(f"INSERT INTO {quoted}.pt_meta VALUES ('schema_version', '1')".encode())
        conn.execute(
            f"INSERT INTO {quoted}.pt_events VALUES (%s, %s, %s, %s, %s)".encode(), V1_EVENT
        )
        conn.execute(f"INSERT INTO {quoted}.pt_links VALUES ('sched.Order', '1', 1, 0)".encode())
        conn.execute(f"INSERT INTO {quoted}.pt_heads VALUES ('sched.Order', '1', 1)".encode())
    engine = Engine.open(f"{pg_url}?schema={pg_schema}")
    try:
        _check_upgraded(engine)
    finally:
        engine.close()
