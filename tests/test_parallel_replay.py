"""replay(workers=N): the coupling components replayed in N processes write exactly the
rows one process writes (snapshots, heads values, the replay's position), and loads and
verify agree afterwards."""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar

import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from playthrough import Engine, Event, State, state_id
from playthrough._replay import REPLAY_META
from playthrough._stores import Store
from playthrough.errors import ConfigurationError, PlaythroughError

from .domain import Bump, Copy, Feed, Node, Spread, Swap, Tick

NODES = 8

events = st.one_of(
    st.builds(Bump, node_id=st.integers(0, NODES - 1), amount=st.integers(1, 9)),
    st.builds(Copy, src_id=st.integers(0, NODES - 1), dst_id=st.integers(0, NODES - 1)),
    st.builds(Swap, a_id=st.integers(0, NODES - 1), b_id=st.integers(0, NODES - 1)),
    st.builds(Feed, node_id=st.integers(0, NODES - 1)),
    st.builds(Tick, node_id=st.integers(0, NODES - 1)),
    st.builds(
        Spread, node_ids=st.lists(st.integers(0, NODES - 1), min_size=1, max_size=3, unique=True)
    ),
)
# Mostly events that couple two nodes at most: several components, not one through the hub.
logs = st.lists(st.one_of(events, events.filter(lambda e: not isinstance(e, Feed))), max_size=40)


def stored_rows(store: Store) -> tuple[list[Any], list[Any], str | None]:
    """Every snapshot and heads value (all columns), every heads row, the replay's position."""
    with store.reader() as reader:
        records = list(reader.iter_snapshots())
        linked = [link.key for link in reader.links_between(0, reader.head())]
        keys = sorted({r.key for r in records} | set(linked))
        heads = sorted((k, tuple(row)) for k, row in reader.heads(keys).items())
        return sorted(tuple(r) for r in records), heads, reader.meta(REPLAY_META)


def fill(engine: Engine, log: list[Event]) -> None:
    """The log, a few events per commit (refused ones dropped)."""
    for i, event in enumerate(log):
        engine.fire_if_valid(event)
        if i % 3 == 2:
            engine.commit()
    engine.commit()


def replayed(engine: Engine, **options: Any) -> tuple[list[Any], list[Any], str | None]:
    engine.admin.replay(**options)
    return stored_rows(engine.store)


@contextmanager
def sqlite_engine() -> Iterator[Engine]:
    with tempfile.TemporaryDirectory(prefix="pt-parallel-") as tmp:
        with Engine.open(f"sqlite:///{Path(tmp) / 's.db'}") as engine:
            yield engine


def check_same(engine: Engine, log: list[Event], every: int, chunk: int, workers: int) -> None:
    fill(engine, log)
    one = replayed(engine, snapshot_every=every, chunk_size=chunk, resume=False)
    many = replayed(engine, snapshot_every=every, chunk_size=chunk, resume=False, workers=workers)
    assert many == one
    for k in range(NODES):  # loads from the rows written agree with one process's
        assert engine.load(Node, k) == Engine(engine.store).load(Node, k)


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(log=logs, every=st.integers(1, 7), chunk=st.integers(1, 6), workers=st.integers(2, 3))
def test_parallel_replay_writes_the_rows_one_process_writes_sqlite(
    log: list[Event], every: int, chunk: int, workers: int
) -> None:
    with sqlite_engine() as engine:
        check_same(engine, log, every, chunk, workers)


@settings(
    max_examples=10,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(log=logs, every=st.integers(1, 7), chunk=st.integers(1, 6), workers=st.integers(2, 3))
def test_parallel_replay_writes_the_rows_one_process_writes_postgres(
    pg_store_factory: Callable[[], Store], log: list[Event], every: int, chunk: int, workers: int
) -> None:
    engine = Engine(pg_store_factory())
    check_same(engine, log, every, chunk, workers)


def test_parallel_replay_passes_verify_and_reports_like_one_process(any_url: str) -> None:
    with Engine.open(any_url) as engine:
        log: list[Event] = []
        for i in range(60):  # four components of two nodes, and the hub ticked alone
            log.append(Copy(src_id=i % 4, dst_id=4 + i % 4) if i % 3 else Tick(node_id=i % 8))
        fill(engine, log)
        one = engine.admin.replay(snapshot_every=7, chunk_size=5)
        rows = stored_rows(engine.store)
        many = engine.admin.replay(snapshot_every=7, chunk_size=5, workers=2)
        assert stored_rows(engine.store) == rows
        assert (many.played, many.snapshot_sets, many.position) == (
            one.played,
            one.snapshot_sets,
            one.position,
        )
        report = engine.admin.verify(subprocess_replay=False)
        assert report.ok and report.complete, report.to_text()


def test_parallel_replay_refuses_an_in_memory_store() -> None:
    with Engine.open("sqlite://") as engine:
        engine.fire(Bump(node_id=1))
        engine.commit()
        with pytest.raises(ConfigurationError, match="in-memory"):
            engine.admin.replay(workers=2)
        with pytest.raises(ConfigurationError, match="workers must be at least 1"):
            engine.admin.replay(workers=0)


def test_parallel_replay_refuses_replay_handle_events_in_the_log(
    isolated_registry: None, tmp_path: Path
) -> None:
    seen: list[int] = []

    @attrs.define
    class Noted(Event, type_name="t.parallel.Noted"):
        replay_handle: ClassVar[bool] = True
        node_id: int = state_id(Node)

        def apply(self, node: Node) -> None:
            node.value += 1

        def handle(self) -> None:
            seen.append(1)

    with Engine.open(f"sqlite:///{tmp_path / 's.db'}") as engine:
        engine.fire(Noted(node_id=1))
        engine.commit()
        with pytest.raises(ConfigurationError, match=r"t\.parallel\.Noted.*workers=1"):
            engine.admin.replay(workers=2)
        engine.admin.replay()  # one process runs them, in log order
    assert seen == [1, 1]


def test_a_failing_part_raises_its_error_and_the_replay_resumes(
    isolated_registry: None, tmp_path: Path
) -> None:
    @attrs.define
    class Tally(State, type_name="t.parallel.Tally"):
        n: int = 0

    @attrs.define
    class Count(Event, type_name="t.parallel.Count"):
        tally_id: int = state_id(Tally)

        def apply(self, tally: Tally) -> None:
            if FAIL and self.tally_id == 3:
                raise ValueError("tally 3 refuses")
            tally.n += 1

    FAIL = False
    with Engine.open(f"sqlite:///{tmp_path / 's.db'}") as engine:
        for i in range(20):
            engine.fire(Count(tally_id=i % 5))
        engine.commit()
        rows = replayed(engine, snapshot_every=4)
        FAIL = True
        with pytest.raises((ValueError, PlaythroughError), match="tally 3 refuses"):
            engine.admin.replay(snapshot_every=4, workers=2, resume=False)
        FAIL = False
        engine.admin.replay(snapshot_every=4, workers=2)  # resumes from where it started
        assert stored_rows(engine.store) == rows
        assert engine.load(Tally, 3).n == 4
