"""pytest-benchmark cases through the engine, parametrised by backend.

Run explicitly (they are not part of the test suite, and assert no timings)::

    .venv/bin/python -m pytest benchmarks/test_bench.py --benchmark-only

The PostgreSQL cases use PLAYTHROUGH_PG_URL (default
postgresql://root@127.0.0.1:5432/test) and skip, with the reason, when no server
answers. Each case works in a fresh place of its own (a database file, or a
schema), removed afterwards.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from backends import Backend, backend
from domain import Account, Deposited, SplitTransferred, Transferred
from playthrough import Engine
from workloads import BATCH, READ_ACCOUNTS, WARM_ACCOUNTS, build_read_log, read_workload, warm


@pytest.fixture(params=["sqlite", "postgres"])
def bench_backend(request: pytest.FixtureRequest) -> Iterator[Backend]:
    be = backend(str(request.param))
    reason = be.unavailable()
    if reason is not None:
        be.close()
        pytest.skip(reason)
    yield be
    be.close()


@pytest.fixture
def open_engine(bench_backend: Backend) -> Iterator[Callable[[], Engine]]:
    """Opens engines on one fresh place; closes them and removes the place afterwards."""
    opened: list[Engine] = []
    with bench_backend.place() as place:

        def make() -> Engine:
            engine = bench_backend.engine(place)
            opened.append(engine)
            return engine

        yield make
        for engine in opened:
            engine.close()


def test_fire_commit_one_state(benchmark: Any, open_engine: Callable[[], Engine]) -> None:
    engine = open_engine()
    warm(engine, WARM_ACCOUNTS)
    ids = itertools.cycle(range(WARM_ACCOUNTS))

    def run() -> None:
        engine.fire(Deposited(account_id=next(ids), amount=1))
        engine.commit()

    benchmark(run)


@pytest.mark.parametrize("split", [False, True], ids=["coupled", "split"])
def test_fire_commit_two_states(
    benchmark: Any, open_engine: Callable[[], Engine], split: bool
) -> None:
    engine = open_engine()
    warm(engine, WARM_ACCOUNTS)
    ids = itertools.cycle(range(WARM_ACCOUNTS))
    cls = SplitTransferred if split else Transferred

    def run() -> None:
        n = next(ids)
        engine.fire(cls(source_id=n, target_id=(n + 1) % WARM_ACCOUNTS, amount=1))
        engine.commit()

    benchmark(run)


def test_commit_1000_events(benchmark: Any, open_engine: Callable[[], Engine]) -> None:
    engine = open_engine()
    warm(engine, BATCH)

    def run() -> None:
        for n in range(BATCH):
            engine.fire(Deposited(account_id=n, amount=1))
        engine.commit()

    benchmark.extra_info["events_per_round"] = BATCH
    benchmark.pedantic(run, rounds=10, warmup_rounds=1)


@pytest.mark.parametrize("split", [False, True], ids=["coupled", "split"])
@pytest.mark.parametrize("each", [True, False], ids=["one-by-one", "load_many"])
def test_load_read_log(benchmark: Any, bench_backend: Backend, split: bool, each: bool) -> None:
    """The read log; every round loads every account in a fresh engine."""
    ids = list(range(READ_ACCOUNTS))
    with bench_backend.place() as place:
        build_read_log(bench_backend, place, read_workload(split=split)[0])
        opened: list[Engine] = []

        def fresh() -> tuple[tuple[Engine], dict[str, Any]]:
            opened.append(bench_backend.engine(place))
            return (opened[-1],), {}

        def run(engine: Engine) -> None:
            if each:
                states = [engine.load(Account, i) for i in ids]
            else:
                states = engine.load_many(Account, ids)
            assert len(states) == READ_ACCOUNTS

        benchmark.extra_info["states_per_round"] = READ_ACCOUNTS
        try:
            # one by one in the coupled domain takes seconds per round: fewer rounds
            benchmark.pedantic(run, setup=fresh, rounds=1 if each else 3, warmup_rounds=0)
        finally:
            for engine in opened:
                engine.close()
