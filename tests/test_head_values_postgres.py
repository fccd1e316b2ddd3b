"""Heads values on PostgreSQL: schema upgrade, one round trip per load, threads sharing a store."""

from __future__ import annotations

import threading

import psycopg
import pytest

import playthrough
from playthrough import Engine
from playthrough._model import key_of
from playthrough._stores import SnapshotRecord
from playthrough._stores._base import SCHEMA_VERSION
from playthrough._stores.postgres import PostgresStore
from playthrough.errors import ConcurrencyError
from playthrough.testing import reference_states, stored_events

from .pg_domain import Account, Opened, Transfer


def _url(pg_url: str, schema: str) -> str:
    return f"{pg_url}?schema={schema}"


def test_a_version_1_schema_is_upgraded_on_open(pg_url: str, pg_schema: str) -> None:
    with Engine.open(pg_url, schema=pg_schema, head_values=False) as writer:
        for n in range(4):
            writer.fire(Opened(account_id=n, amount=10))
        writer.fire(Transfer(source_id=0, target_id=1, amount=3))
        writer.commit()
    with psycopg.connect(pg_url, autocommit=True) as conn:  # what version 1 wrote
        # what schema version 4 added
        conn.execute(f'DROP TABLE "{pg_schema}".pt_commits')
        conn.execute(f'DROP TABLE "{pg_schema}".pt_pending_handlers')
        conn.execute(f'ALTER TABLE "{pg_schema}".pt_events DROP COLUMN event_key')
        for table, column in [
            ("pt_heads", "value"),
            ("pt_heads", "value_position"),
            # schema version 3 (schema evolution)
            ("pt_heads", "value_version"),
            ("pt_heads", "value_fingerprint"),
            ("pt_events", "version"),
            ("pt_snapshots", "version"),
            ("pt_snapshots", "fingerprint"),
            # schema version 4 (the read side)
            ("pt_events", "metadata"),
            ("pt_events", "correlation"),
        ]:
            conn.execute(f'ALTER TABLE "{pg_schema}".{table} DROP COLUMN {column}')
        conn.execute(f'DROP TABLE "{pg_schema}".pt_followers')
        # what schema version 9 added (forgetting); step 10 then adds a column to it
        conn.execute(f'DROP TABLE "{pg_schema}".pt_forgotten')
        conn.execute(f'DROP TABLE "{pg_schema}".pt_archived_personal')
        conn.execute(f'DROP INDEX IF EXISTS "{pg_schema}".pt_events_by_cause')
        conn.execute(f"UPDATE \"{pg_schema}\".pt_meta SET value = '1' WHERE key = 'schema_version'")
    store = PostgresStore(pg_url, schema=pg_schema)
    try:
        with store.reader() as r:
            assert r.meta("schema_version") == str(SCHEMA_VERSION)
        assert all(row.value is None for row in store.heads([]).values())
        with Engine(store) as engine:  # plays, then writes the values back
            assert [a.balance for a in engine.load_many(Account, range(4))] == [7, 13, 10, 10]
        before = store.statements
        with Engine(store) as engine:
            assert engine.load(Account, 1).balance == 13
        assert store.statements - before == 1
    finally:
        store.close()


def test_threads_share_one_postgres_store(pg_url: str, pg_schema: str) -> None:
    store = playthrough.connect(_url(pg_url, pg_schema), max_size=4)
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            for _ in range(15):
                while True:
                    try:
                        with store.engine() as engine:
                            engine.fire(Opened(account_id=n, amount=1))
                            engine.fire(Transfer(source_id=n, target_id=(n + 1) % 4, amount=1))
                        break
                    except ConcurrencyError:
                        continue  # a neighbour moved the target: a new request retries
                with store.engine() as engine:
                    engine.load(Account, n)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        assert not errors, errors
        truth = reference_states(stored_events(store.store))
        with store.engine() as engine:
            for n, account in enumerate(engine.load_many(Account, range(4))):
                assert account.balance == 15  # 15 opened, 15 sent, 15 received
                assert account == truth[key_of(Account, n)]
                assert account.last_event_id == truth[key_of(Account, n)].last_event_id
            assert engine.admin.verify(subprocess_replay=False).ok
    finally:
        store.close()


@pytest.mark.parametrize("values", [True, False])
def test_a_load_many_of_current_values_is_one_statement(
    pg_url: str, pg_schema: str, values: bool
) -> None:
    with Engine.open(pg_url, schema=pg_schema, head_values=values) as writer:
        for n in range(300):
            writer.fire(Opened(account_id=n, amount=n))
        writer.commit()
    with Engine.open(pg_url, schema=pg_schema) as warm:
        warm.load(Account, 0)  # without values: one plan plays and writes back this one
    with Engine.open(pg_url, schema=pg_schema) as reader:
        before = reader.store.statements
        loaded = reader.load_many(Account, range(300))
        used = reader.store.statements - before
    assert [a.balance for a in loaded] == list(range(300))
    # With values one statement; without, every state but account 0 still plans.
    assert used == 1 if values else used > 1


def test_a_write_back_skips_a_row_a_writer_holds(pg_url: str, pg_schema: str) -> None:
    """A load's write-back never waits for (nor deadlocks with) a commit holding the row."""
    store = PostgresStore(pg_url, schema=pg_schema)
    try:
        with Engine(store, head_values=False) as writer:
            writer.fire(Opened(account_id=1, amount=5))
        record = SnapshotRecord(key_of(Account, 1), 1, 1, '{"balance":5,"movements":1}')
        with psycopg.connect(pg_url) as holder:  # a transaction holding the heads row
            holder.execute(
                f'SELECT * FROM "{pg_schema}".pt_heads WHERE state_id = %s FOR UPDATE', ("1",)
            )
            done: list[int] = []
            worker = threading.Thread(target=lambda: done.append(store.write_values([record])))
            worker.start()
            worker.join(timeout=60)  # a liveness guard: SKIP LOCKED returns at once
            assert not worker.is_alive(), "write_values waited for a locked row"
            assert done == [0]  # skipped, not written
            holder.rollback()
        assert store.write_values([record]) == 1
        assert store.heads([key_of(Account, 1)])[key_of(Account, 1)].fresh
    finally:
        store.close()
