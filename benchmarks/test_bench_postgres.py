"""pytest-benchmark cases for the PostgreSQL store through the engine.

Run explicitly (they are not part of the test suite, and assert no timings)::

    .venv/bin/python -m pytest benchmarks/test_bench_postgres.py --benchmark-only

The server is PLAYTHROUGH_PG_URL (default postgresql://root@127.0.0.1:5432/test);
without one answering, every case skips. Each case works in a schema of its
own, dropped afterwards.
"""

from __future__ import annotations

import itertools
import os
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from domain import Account, Deposited, Transferred
from playthrough import Engine

PG_URL = os.environ.get("PLAYTHROUGH_PG_URL", "postgresql://root@127.0.0.1:5432/test")
ACCOUNTS = 100
BATCH = 1000
LOAD_STATES = 1000
LOAD_EVENTS_PER_STATE = 5


@pytest.fixture(scope="module")
def pg_url() -> str:
    try:
        import psycopg

        psycopg.connect(PG_URL, connect_timeout=3).close()
    except Exception as exc:  # noqa: BLE001 - any failure means "no server here"
        pytest.skip(f"no PostgreSQL server answers at {PG_URL}: {exc}")
    return PG_URL


@pytest.fixture
def open_engine(pg_url: str) -> Iterator[Callable[[], Engine]]:
    """Opens engines on one fresh schema; closes them and drops the schema afterwards."""
    import psycopg

    schema = f"pt_bench_{uuid.uuid4().hex[:12]}"
    opened: list[Engine] = []

    def make() -> Engine:
        engine = Engine.open(pg_url, schema=schema)
        opened.append(engine)
        return engine

    yield make
    for engine in opened:
        engine.close()
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def _warm(engine: Engine, accounts: int) -> None:
    """Put ``accounts`` accounts in the log and in memory, so the timed fires load nothing."""
    for n in range(accounts):
        engine.fire(Deposited(account_id=n, amount=1_000))
    engine.commit()


def test_fire_commit_one_state(benchmark: Any, open_engine: Callable[[], Engine]) -> None:
    engine = open_engine()
    _warm(engine, ACCOUNTS)
    ids = itertools.cycle(range(ACCOUNTS))

    def run() -> None:
        engine.fire(Deposited(account_id=next(ids), amount=1))
        engine.commit()

    benchmark(run)


def test_fire_commit_two_states(benchmark: Any, open_engine: Callable[[], Engine]) -> None:
    engine = open_engine()
    _warm(engine, ACCOUNTS)
    ids = itertools.cycle(range(ACCOUNTS))

    def run() -> None:
        n = next(ids)
        engine.fire(Transferred(source_id=n, target_id=(n + 1) % ACCOUNTS, amount=1))
        engine.commit()

    benchmark(run)


def test_commit_1000_events(benchmark: Any, open_engine: Callable[[], Engine]) -> None:
    engine = open_engine()
    _warm(engine, BATCH)

    def run() -> None:
        for n in range(BATCH):
            engine.fire(Deposited(account_id=n, amount=1))
        engine.commit()

    benchmark.extra_info["events_per_round"] = BATCH
    benchmark.pedantic(run, rounds=20, warmup_rounds=1)


def test_load_many_1000(benchmark: Any, open_engine: Callable[[], Engine]) -> None:
    writer = open_engine()
    for _ in range(LOAD_EVENTS_PER_STATE - 1):
        for n in range(LOAD_STATES):
            writer.fire(Deposited(account_id=n, amount=10))
        writer.commit()
    for n in range(LOAD_STATES):
        writer.fire(Transferred(source_id=n, target_id=(n + 1) % LOAD_STATES, amount=1))
    writer.commit()
    ids = list(range(LOAD_STATES))

    def fresh() -> tuple[tuple[Engine], dict[str, Any]]:
        return (open_engine(),), {}

    def run(engine: Engine) -> None:
        states = engine.load_many(Account, ids)
        assert len(states) == LOAD_STATES

    benchmark.extra_info["states_per_round"] = LOAD_STATES
    benchmark.pedantic(run, setup=fresh, rounds=15, warmup_rounds=1)
