"""pytest-benchmark cases for the SQLite store through the engine.

Run explicitly (they are not part of the test suite, and assert no timings)::

    .venv/bin/python -m pytest benchmarks/test_bench_sqlite.py --benchmark-only

File cases use a database in pytest's tmp dir with the default durable
settings (WAL, synchronous=FULL); the ``memory`` cases use ``sqlite://`` for
reference.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from domain import Account, Deposited, Transferred, file_url
from playthrough import Engine

ACCOUNTS = 100
BATCH = 1000
LOAD_STATES = 1000
LOAD_EVENTS_PER_STATE = 5

EngineFactory = Callable[[], Engine]


@pytest.fixture(params=["file", "memory"])
def store_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def open_engine(tmp_path: Path) -> Iterator[Callable[[str], Engine]]:
    """Opens engines on a file (default settings) or in memory; closes them afterwards."""
    opened: list[Engine] = []

    def make(kind: str) -> Engine:
        url = file_url(tmp_path / "bench.db") if kind == "file" else "sqlite://"
        engine = Engine.open(url)
        opened.append(engine)
        return engine

    yield make
    for engine in opened:
        engine.close()


def _warm(engine: Engine, accounts: int) -> None:
    """Put ``accounts`` accounts in the log and in memory, so the timed fires load nothing."""
    for n in range(accounts):
        engine.fire(Deposited(account_id=n, amount=1_000))
    engine.commit()


def test_fire_commit_one_state(
    benchmark: Any, open_engine: Callable[[str], Engine], store_kind: str
) -> None:
    engine = open_engine(store_kind)
    _warm(engine, ACCOUNTS)
    ids = itertools.cycle(range(ACCOUNTS))

    def run() -> None:
        engine.fire(Deposited(account_id=next(ids), amount=1))
        engine.commit()

    benchmark(run)


def test_fire_commit_two_states(
    benchmark: Any, open_engine: Callable[[str], Engine], store_kind: str
) -> None:
    engine = open_engine(store_kind)
    _warm(engine, ACCOUNTS)
    ids = itertools.cycle(range(ACCOUNTS))

    def run() -> None:
        n = next(ids)
        engine.fire(Transferred(source_id=n, target_id=(n + 1) % ACCOUNTS, amount=1))
        engine.commit()

    benchmark(run)


def test_commit_1000_events(
    benchmark: Any, open_engine: Callable[[str], Engine], store_kind: str
) -> None:
    engine = open_engine(store_kind)
    _warm(engine, BATCH)

    def run() -> None:
        for n in range(BATCH):
            engine.fire(Deposited(account_id=n, amount=1))
        engine.commit()

    benchmark.extra_info["events_per_round"] = BATCH
    benchmark.pedantic(run, rounds=20, warmup_rounds=1)


def _load_log(engine: Engine) -> None:
    """LOAD_STATES accounts, each touched by about LOAD_EVENTS_PER_STATE events."""
    for _ in range(LOAD_EVENTS_PER_STATE - 1):
        for n in range(LOAD_STATES):
            engine.fire(Deposited(account_id=n, amount=10))
        engine.commit()
    for n in range(LOAD_STATES):
        engine.fire(Transferred(source_id=n, target_id=(n + 1) % LOAD_STATES, amount=1))
    engine.commit()


def test_load_many_1000(
    benchmark: Any, open_engine: Callable[[str], Engine], store_kind: str
) -> None:
    writer = open_engine(store_kind)
    _load_log(writer)
    ids = list(range(LOAD_STATES))

    def fresh() -> tuple[tuple[Engine], dict[str, Any]]:
        if store_kind == "memory":  # one connection only: drop the states it holds instead
            writer.refresh()
            return (writer,), {}
        return (open_engine(store_kind),), {}

    def run(engine: Engine) -> None:
        states = engine.load_many(Account, ids)
        assert len(states) == LOAD_STATES

    benchmark.extra_info["states_per_round"] = LOAD_STATES
    benchmark.pedantic(run, setup=fresh, rounds=15, warmup_rounds=1)
