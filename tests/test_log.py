"""Reading the log: engine.log.events/event/causes/effects, metadata and correlation.

Every test runs on SQLite and on PostgreSQL (the ``engine`` fixture).
"""

from __future__ import annotations

import tracemalloc
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest

from playthrough import Engine, Event
from playthrough._model import key_of
from playthrough.errors import NotFoundError, UnknownTypeError

from .read_domain import Billed, Changed, Customer, Moved, Ordered, Shipped, own_sessions


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest) -> Iterator[Engine]:
    if request.param == "sqlite":
        e = Engine.open("sqlite://")
    else:
        url = own_sessions(request.getfixturevalue("pg_url"))
        e = Engine.open(url, schema=request.getfixturevalue("pg_schema"))
    try:
        yield e
    finally:
        e.close()


def _history(engine: Engine) -> None:
    engine.fire(Changed(customer_id=1, owner="ada", balance=10))  # 1
    engine.fire(Changed(customer_id=2, owner="bob", balance=5))  # 2
    engine.commit()
    engine.fire(Moved(source_id=1, target_id=2, amount=3))  # 3
    engine.fire(Ordered(customer_id=2, amount=1))  # 4 -> 5 Billed -> 6 Shipped, 7 Changed
    engine.commit()
    engine.fire(Changed(customer_id=3, owner="cy"))  # 8
    engine.commit()


def test_events_filters(engine: Engine) -> None:
    _history(engine)

    def ids(events: Iterable[Event]) -> list[int | None]:
        return [e.id for e in events]

    assert ids(engine.log.events()) == [1, 2, 3, 4, 5, 6, 7, 8]
    assert ids(engine.log.events(after=5)) == [6, 7, 8]
    assert ids(engine.log.events(limit=3)) == [1, 2, 3]
    assert ids(engine.log.events(after=2, limit=2)) == [3, 4]
    assert ids(engine.log.events(types=[Changed])) == [1, 2, 7, 8]
    assert ids(engine.log.events(types=[Moved, "r.Shipped"])) == [3, 6]
    assert ids(engine.log.events(state=(Customer, 1))) == [1, 3]
    assert ids(engine.log.events(state=(Customer, 2), types=[Changed])) == [2, 7]
    assert ids(engine.log.events(state=(Customer, 2), after=3)) == [4, 5, 6, 7]
    assert ids(engine.log.events(caused_by=5)) == [6, 7]
    assert ids(engine.log.events(caused_by=4)) == [5]
    assert ids(engine.log.events(types=[])) == []
    assert ids(engine.log.events(state=(Customer, 99))) == []
    with pytest.raises(UnknownTypeError, match="nope"):
        list(engine.log.events(types=["nope"]))
    with pytest.raises(TypeError, match="types="):
        list(engine.log.events(types=[Customer]))  # type: ignore[list-item]


def test_events_are_decoded_with_their_record(engine: Engine) -> None:
    _history(engine)
    e = engine.log.event(3)
    assert isinstance(e, Moved) and (e.source_id, e.target_id, e.amount) == (1, 2, 3)
    assert e.id == 3 and e.caused_by is None and e.fired_at is not None
    assert e.touched == (key_of(Customer, 1), key_of(Customer, 2))
    assert engine.log.event(6).caused_by == 5
    with pytest.raises(NotFoundError, match="no event at position 9"):
        engine.log.event(9)
    with pytest.raises(NotFoundError):
        engine.log.event(0)


def test_causes_and_effects(engine: Engine) -> None:
    _history(engine)
    assert [(type(e), e.id) for e in engine.log.causes(6)] == [(Ordered, 4), (Billed, 5)]
    assert engine.log.causes(4) == []
    assert [(type(e), e.id) for e in engine.log.effects(4)] == [
        (Billed, 5),
        (Shipped, 6),
        (Changed, 7),
    ]
    assert [e.id for e in engine.log.effects(5)] == [6, 7]
    assert engine.log.effects(8) == []
    with pytest.raises(NotFoundError):
        engine.log.effects(100)


def test_metadata_blocks_nest_and_fire_wins(engine: Engine) -> None:
    with engine.metadata(user="ada", request="r-1"):
        engine.fire(Changed(customer_id=1, balance=1))
        with engine.metadata(request="r-2"):
            engine.fire(Changed(customer_id=1, balance=2), metadata={"extra": [1, 2]})
    engine.fire(Changed(customer_id=1, balance=3))
    engine.fire(Changed(customer_id=1, balance=4), metadata={"user": "bob", "n": None})
    committed = engine.commit()
    assert committed[0].metadata == {"user": "ada", "request": "r-1"}
    stored = [e.metadata for e in engine.log.events()]
    assert stored == [
        {"user": "ada", "request": "r-1"},
        {"user": "ada", "request": "r-2", "extra": [1, 2]},
        {},
        {"user": "bob", "n": None},
    ]


def test_bad_metadata_is_refused_before_anything_is_queued(engine: Engine) -> None:
    with pytest.raises(TypeError, match="metadata must be JSON"):
        engine.fire(Changed(customer_id=1, balance=1), metadata={"when": object()})
    with pytest.raises(TypeError, match="keys must be strings"):
        engine.fire(Changed(customer_id=1, balance=1), metadata={1: "x"})  # type: ignore[dict-item]
    with pytest.raises(TypeError, match="must be a dict"):
        engine.fire(Changed(customer_id=1, balance=1), metadata=[("a", 1)])  # type: ignore[arg-type]
    assert engine.pending == ()
    assert engine.load(Customer, 1).balance == 0


def test_handlers_inherit_the_correlation_of_their_cause(engine: Engine) -> None:
    _history(engine)
    order = engine.log.event(4)
    assert order.correlation is not None
    chain = list(engine.log.events(correlation=order.correlation))
    assert [e.id for e in chain] == [4, 5, 6, 7]
    roots = {engine.log.event(p).correlation for p in (1, 2, 3, 8)}
    assert len(roots) == 4 and order.correlation not in roots  # every root starts its own
    with engine.metadata(correlation="req-17", user="ada"):
        engine.fire(Changed(customer_id=1, balance=1))
        engine.fire(Ordered(customer_id=1, amount=1))
    engine.commit()
    tx = list(engine.log.events(correlation="req-17"))
    assert [type(e) for e in tx] == [Changed, Ordered, Billed, Shipped, Changed]
    assert tx[0].metadata == {"user": "ada"}


def test_events_stream_in_pages_with_bounded_memory(engine: Engine) -> None:
    for start in range(0, 3000, 500):
        for i in range(start, start + 500):
            engine.fire(Changed(customer_id=i % 50, balance=i, note="x" * 200))
        engine.commit()
    engine.repository.clear()
    seen = 0
    tracemalloc.start()
    try:
        stream = engine.log.events(page_size=100)
        for event in stream:
            seen += 1
            assert event.id == seen
            if seen == 200:
                tracemalloc.reset_peak()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert seen == 3000
    # Holding 2800 decoded events with 200-char notes would take well over 1 MB.
    assert peak < 1_000_000, peak


def test_events_end_at_the_head_when_iteration_started(engine: Engine) -> None:
    _history(engine)
    stream = engine.log.events()
    first = next(stream)
    engine.fire(Changed(customer_id=9, balance=1))
    engine.commit()  # the stream holds no transaction: committing while iterating works
    assert [first.id, *(e.id for e in stream)] == [1, 2, 3, 4, 5, 6, 7, 8]
    assert [e.id for e in engine.log.events(after=8)] == [9]


def test_archived_events_are_refused_not_skipped(tmp_path: Path) -> None:
    from playthrough import Projection
    from playthrough.errors import ArchivedRangeError

    class Counter(Projection):
        name = "counter"

        def on_Changed(self, event: Event, tx: object) -> None: ...

    with Engine.open(f"sqlite:///{tmp_path / 'a.db'}") as engine:
        _history(engine)
        engine.admin.archive(before=4, to=str(tmp_path / "old.jsonl"))
        with pytest.raises(ArchivedRangeError):
            list(engine.log.events())
        with pytest.raises(ArchivedRangeError):
            engine.log.event(2)
        with pytest.raises(ArchivedRangeError, match="'counter' is at position 0"):
            engine.followers.run(Counter(), until_idle=True)
        cut = max(p for p in range(1, 9) if _archived(engine, p))
        assert [e.id for e in engine.log.events(after=cut)] == list(range(cut + 1, 9))


def _archived(engine: Engine, position: int) -> bool:
    from playthrough.errors import ArchivedRangeError

    try:
        engine.log.event(position)
    except ArchivedRangeError:
        return True
    return False
