"""Stores written with schema version 1 upgrade on open to the read side's version 4."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import psycopg
import pytest

from playthrough import Engine
from playthrough._stores import sqlite as sqlite_store
from playthrough._stores._base import SCHEMA_VERSION
from playthrough.examples.bank import Account, Deposited

from .read_domain import own_sessions

# A version-1 log: account 1 opened by ada, then 40 deposited.
_EVENTS = [
    (1, "bank.AccountOpened", '{"account_id":1,"owner":"ada"}', None, "2026-01-01T00:00:00+00:00"),
    (2, "bank.Deposited", '{"account_id":1,"amount":40}', None, "2026-01-01T00:00:01+00:00"),
]
_LINKS = [("bank.Account", "1", 1, 0), ("bank.Account", "1", 2, 0), ("bank.Ledger", "", 2, 0)]
_HEADS = [("bank.Account", "1", 2), ("bank.Ledger", "", 2)]


def _check_upgraded(engine: Engine) -> None:
    assert SCHEMA_VERSION >= 4  # later steps (lifecycle tables) come after the read side's
    with engine.store.reader() as r:
        assert r.meta("schema_version") == str(SCHEMA_VERSION)
    [opened, _] = engine.log.events()
    assert opened.metadata == {} and opened.correlation is None
    assert engine.states.count(Account, balance=40) == 1
    [account] = engine.states.find(Account, owner="ada")
    assert account.balance == 40
    more = engine.fire(Deposited(account_id=1, amount=2))
    engine.commit()
    assert more.correlation is not None
    assert engine.states.count(Account, balance=42) == 1


def test_sqlite_version_1_store_upgrades(tmp_path: Path) -> None:
    path = tmp_path / "v1.db"
    conn = sqlite3.connect(path)
    conn.executescript(sqlite_store._SCHEMA)  # the version-1 tables
    conn.execute("INSERT INTO pt_meta VALUES ('schema_version', '1')")
    conn.executemany("INSERT INTO pt_events VALUES (?, ?, ?, ?, ?)", _EVENTS)
    conn.executemany("INSERT INTO pt_links VALUES (?, ?, ?, ?)", _LINKS)
    conn.executemany("INSERT INTO pt_heads VALUES (?, ?, ?)", _HEADS)
    conn.execute("INSERT INTO sqlite_sequence VALUES ('pt_events', 2)")
    conn.commit()
    conn.close()
    with Engine.open(f"sqlite:///{path}") as engine:
        _check_upgraded(engine)
    conn = sqlite3.connect(path)
    columns = {r[1] for r in conn.execute("PRAGMA table_info(pt_heads)")}
    conn.close()
    assert {"value", "value_position"} <= columns
    with Engine.open(f"sqlite:///{path}") as again:  # opening an upgraded store changes nothing
        assert again.states.count(Account) == 1


@pytest.mark.postgres
def test_postgres_version_1_schema_upgrades(pg_url: str, pg_schema: str) -> None:
    from playthrough._stores import postgres as pg_store

    quoted = f'"{pg_schema}"'
    with psycopg.connect(pg_url, autocommit=True) as conn:
        for statement in pg_store._SCHEMA:
            conn.execute(statement.replace("{s}", quoted))
        conn.execute(f"INSERT INTO {quoted}.pt_meta VALUES ('schema_version', '1')")
        with conn.cursor() as cur:
            cur.executemany(f"INSERT INTO {quoted}.pt_events VALUES (%s, %s, %s, %s, %s)", _EVENTS)
            cur.executemany(f"INSERT INTO {quoted}.pt_links VALUES (%s, %s, %s, %s)", _LINKS)
            cur.executemany(f"INSERT INTO {quoted}.pt_heads VALUES (%s, %s, %s)", _HEADS)
    with Engine.open(own_sessions(pg_url), schema=pg_schema) as engine:
        _check_upgraded(engine)
    with Engine.open(own_sessions(pg_url), schema=pg_schema) as again:
        assert again.states.count(Account) == 1
