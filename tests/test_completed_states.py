"""Completed states: refused by fire, recorded at commit, evicted, still loadable.

The property: for random histories with completions, reopenings and snapshots
anywhere, every load (fresh engine, time travel) equals the reference replay,
an event is refused exactly when it touches a state complete in the reference,
and the store's completion rows agree with the reference.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import attrs
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from playthrough import Completion, Engine, Event, SingletonState, State, state_id
from playthrough._model import key_of
from playthrough._serialization import encode_state
from playthrough._stores import SQLiteStore
from playthrough.errors import DefinitionError, EventRejected, StateCompleted
from playthrough.testing import ManualClock, reference_states, stored_events


@attrs.define
class Order(State, type_name="lc.Order"):
    complete_when = "closed"
    items: int = 0
    closed: bool = False
    reopened: int = 0


@attrs.define
class Tab(State, type_name="lc.Tab"):
    total: int = 0
    limit: int = 3

    def is_complete(self) -> bool:
        return self.total >= self.limit


@attrs.define
class Books(SingletonState, type_name="lc.Books"):
    moves: int = 0


@attrs.define
class ItemAdded(Event, type_name="lc.ItemAdded"):
    order_id: int = state_id(Order)
    n: int = 1

    def apply(self, order: Order) -> None:
        order.items += self.n


@attrs.define
class OrderClosed(Event, type_name="lc.OrderClosed"):
    order_id: int = state_id(Order)

    def apply(self, order: Order) -> None:
        order.closed = True


@attrs.define
class OrderReopened(Event, type_name="lc.OrderReopened"):
    touches_completed = True
    order_id: int = state_id(Order)

    def apply(self, order: Order) -> None:
        order.closed = False
        order.reopened += 1


@attrs.define
class ItemMoved(Event, type_name="lc.ItemMoved"):
    """Couples two orders and the books: a completed one drags the others into a plan."""

    source_id: int = state_id(Order)
    target_id: int = state_id(Order)

    def apply(self, source: Order, target: Order, books: Books) -> None:
        source.items -= 1
        target.items += 1
        books.moves += 1


@attrs.define
class Charged(Event, type_name="lc.Charged"):
    tab_id: int = state_id(Tab)
    amount: int = 1

    def apply(self, tab: Tab) -> None:
        tab.total += self.amount


@pytest.fixture
def engine() -> Engine:
    return Engine(SQLiteStore())


def test_an_event_touching_a_completed_state_is_refused_naming_who_completed_it(
    engine: Engine,
) -> None:
    engine.fire(ItemAdded(order_id=1))
    closed = engine.fire(OrderClosed(order_id=1))
    with pytest.raises(StateCompleted, match=r"by the pending lc\.OrderClosed") as pending:
        engine.fire(ItemAdded(order_id=1))
    assert pending.value.completed_by is None
    engine.commit()
    assert closed.id is not None
    with pytest.raises(StateCompleted) as caught:
        engine.fire(ItemAdded(order_id=1, n=5))
    err = caught.value
    assert isinstance(err, EventRejected)
    assert (err.state, err.event_type) == (key_of(Order, 1), "lc.ItemAdded")
    assert (err.completed_by, err.completed_by_type) == (closed.id, "lc.OrderClosed")
    assert f"completed by lc.OrderClosed at position {closed.id}" in str(err)
    assert engine.pending == ()
    assert engine.load(Order, 1) == Order(items=1, closed=True)
    assert engine.states.completion(Order, 1) == Completion(
        key_of(Order, 1), closed.id, "lc.OrderClosed"
    )
    assert engine.states.completion(Order, 2) is None


def test_a_completed_state_is_evicted_and_refused_without_being_rehydrated(
    engine: Engine,
) -> None:
    engine.fire(OrderClosed(order_id=1))
    engine.fire(ItemAdded(order_id=2))
    engine.commit()
    assert key_of(Order, 1) not in engine.repository  # evicted after the commit
    assert key_of(Order, 2) in engine.repository  # an open one stays
    before = engine.store.statements
    with pytest.raises(StateCompleted):
        engine.fire(ItemAdded(order_id=1))
    assert engine.store.statements - before == 1  # one completion lookup, no load
    assert key_of(Order, 1) not in engine.repository
    # It still loads and time-travels.
    assert engine.load(Order, 1).closed
    assert engine.load(Order, 1, at=1) == Order(closed=True)


def test_the_event_that_completes_is_told_apart_from_later_ones(engine: Engine) -> None:
    """A coupled event completing nothing leaves the completion row alone."""
    engine.fire(ItemAdded(order_id=1, n=2))
    engine.fire(OrderClosed(order_id=2))
    engine.commit()
    with pytest.raises(StateCompleted, match=r"lc\.Order\(2\)"):
        engine.fire(ItemMoved(source_id=1, target_id=2))
    assert engine.load(Order, 1) == Order(items=2)  # nothing changed
    assert engine.load(Books).moves == 0


def test_a_class_allowed_to_touch_completed_states_reopens_one(engine: Engine) -> None:
    engine.fire(OrderClosed(order_id=1))
    engine.commit()
    engine.fire(OrderReopened(order_id=1))
    engine.fire(ItemAdded(order_id=1))
    engine.commit()
    assert engine.states.completion(Order, 1) is None
    assert engine.load(Order, 1) == Order(items=1, closed=False, reopened=1)
    closing = engine.fire(OrderClosed(order_id=1))
    engine.commit()
    found = engine.states.completion(Order, 1)
    assert found is not None and found.position == closing.id


def test_completion_by_a_method(engine: Engine) -> None:
    engine.fire(Charged(tab_id=1, amount=2))
    engine.commit()
    engine.fire(Charged(tab_id=1, amount=1))
    engine.commit()
    with pytest.raises(StateCompleted, match=r"lc\.Tab\(1\)"):
        engine.fire(Charged(tab_id=1))
    assert engine.load(Tab, 1).total == 3


def test_a_rejected_commit_records_no_completion(tmp_path: object) -> None:
    store_path = f"{tmp_path}/c.db"
    a = Engine(SQLiteStore(store_path))
    b = Engine(SQLiteStore(store_path))
    a.fire(ItemAdded(order_id=1))
    a.commit()
    b.load(Order, 1)
    a.fire(ItemAdded(order_id=1))
    a.commit()
    b.fire(OrderClosed(order_id=1))
    with pytest.raises(Exception, match="changed by another writer"):
        b.commit()
    assert b.states.completion(Order, 1) is None
    b.fire(OrderClosed(order_id=1))  # reloaded: fine now
    b.commit()
    assert a.states.completion(Order, 1) is not None


def test_complete_when_must_name_a_field() -> None:
    with pytest.raises(DefinitionError, match="'done', which is not a field"):

        @attrs.define
        class Bad(State, type_name="lc.Bad"):
            complete_when = "done"
            closed: bool = False


def test_completion_is_refused_from_the_store_for_a_state_never_loaded(tmp_path: object) -> None:
    url = f"sqlite:///{tmp_path}/d.db"
    with Engine.open(url) as first:
        first.fire(OrderClosed(order_id=7))
    with Engine.open(url) as second:
        with pytest.raises(StateCompleted, match=r"completed by lc\.OrderClosed at position 1"):
            second.fire(ItemAdded(order_id=7))


# --------------------------------------------------------------------------- the property

ORDERS = st.integers(0, 2)
OPS = st.one_of(
    st.builds(lambda o, n: ("fire", ItemAdded(order_id=o, n=n)), ORDERS, st.integers(1, 3)),
    st.builds(lambda o: ("fire", OrderClosed(order_id=o)), ORDERS),
    st.builds(lambda o: ("fire", OrderReopened(order_id=o)), ORDERS),
    st.builds(lambda a, b: ("fire", ItemMoved(source_id=a, target_id=b)), ORDERS, ORDERS),
    st.just(("commit", None)),
    st.builds(lambda o, f: ("snapshot", (o, f)), ORDERS, st.floats(0, 1)),
)


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(ops=st.lists(OPS, max_size=30), reader_ops=st.lists(st.floats(0, 1), max_size=4))
# Random runs find a lost reopening only sometimes (seed-dependent): pin the shortest case.
@example(
    ops=[("fire", OrderClosed(order_id=0)), ("fire", OrderReopened(order_id=0))], reader_ops=[]
)
def test_reconstitution_with_completed_states_equals_a_full_replay(
    ops: list[tuple[str, object]], reader_ops: list[float]
) -> None:
    store = SQLiteStore()
    engine = Engine(store)
    committed: list[Event] = []
    for kind, arg in ops:
        if kind == "fire":
            assert isinstance(arg, Event)
            # The reference: the states as committed plus this engine's pending events.
            model = reference_states([*committed, *_numbered(engine.pending, len(committed))])
            touched = [k for k in (key_of(Order, getattr(arg, n)) for n in _ids(arg))]
            complete = [k for k in touched if k in model and model[k].is_complete()]
            if complete and not type(arg).touches_completed:
                with pytest.raises(StateCompleted):
                    engine.fire(arg)
            else:
                engine.fire(arg)
        elif kind == "commit":
            committed.extend(engine.commit())
        else:
            committed.extend(engine.commit())
            assert isinstance(arg, tuple)
            order, fraction = arg
            engine.admin.snapshot([(Order, order)], at=int(fraction * engine.head()))
    committed.extend(engine.commit())
    head = engine.head()
    reference = reference_states(committed)
    fresh = Engine(store)
    for order in range(3):
        key = key_of(Order, order)
        want = reference.get(key)
        got = fresh.load(Order, order)
        assert encode_state(got) == encode_state(want if want is not None else Order())
        # the completion row: present iff complete, naming the event that last completed it
        row = fresh.states.completion(Order, order)
        if want is not None and want.is_complete():
            assert row is not None
            assert row.position == _last_completion(committed, order)
        else:
            assert row is None
        for fraction in reader_ops:
            at = int(fraction * head)
            past = reference_states(committed, upto=at).get(key)
            assert encode_state(fresh.load(Order, order, at=at)) == encode_state(
                past if past is not None else Order()
            )


def _ids(event: Event) -> list[str]:
    return [n for n in ("order_id", "source_id", "target_id") if hasattr(event, n)]


def _numbered(pending: tuple[Event, ...], base: int) -> list[Event]:
    """Pending events as the reference takes them: copies with positions after the log."""
    from playthrough._slots import set_position

    out = []
    for n, e in enumerate(pending, base + 1):
        copy = attrs.evolve(e)  # type: ignore[misc]
        set_position(copy, n)
        object.__setattr__(copy, "_pt_fired_at", e.fired_at)
        out.append(copy)
    return out


def _last_completion(committed: list[Event], order: int) -> int:
    """Position of the last event after which the order went from open to completed."""
    key = key_of(Order, order)
    last = -1
    was = False
    for event in committed:
        assert event.id is not None
        state = reference_states(committed, upto=event.id).get(key)
        now = state is not None and state.is_complete()
        if now and not was:
            last = event.id
        was = now
    return last


# --------------------------------------------------------------------------- with scheduled events

SCHEDULED_OPS = st.one_of(
    OPS,
    st.builds(lambda o, m: ("schedule", (OrderClosed(order_id=o), m)), ORDERS, st.integers(1, 9)),
    st.builds(
        lambda o, n, m: ("schedule", (ItemAdded(order_id=o, n=n), m)),
        ORDERS,
        st.integers(1, 3),
        st.integers(1, 9),
    ),
    st.builds(lambda m: ("tick", m), st.integers(1, 9)),
)


@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(ops=st.lists(SCHEDULED_OPS, max_size=25))
def test_reconstitution_with_scheduled_events_equals_a_full_replay(
    ops: list[tuple[str, object]],
) -> None:
    """Scheduled events fire at their due time (once), are refused on completed states,
    and the log they leave reconstitutes like the reference, with snapshots anywhere."""
    store = SQLiteStore()
    clock = ManualClock(datetime(2030, 1, 1, tzinfo=UTC))
    engine = Engine(store, clock=clock)
    due: dict[str, datetime] = {}
    for kind, arg in ops:
        if kind == "fire":
            assert isinstance(arg, Event)
            try:
                engine.fire(arg)
            except StateCompleted:
                pass
        elif kind == "commit":
            engine.commit()
        elif kind == "snapshot":
            engine.commit()
            assert isinstance(arg, tuple)
            order, fraction = arg
            engine.admin.snapshot([(Order, order)], at=int(fraction * engine.head()))
        elif kind == "schedule":
            assert isinstance(arg, tuple)
            event, minutes = arg
            due[engine.scheduler.schedule(event, after=timedelta(minutes=minutes))] = (
                clock.now() + timedelta(minutes=minutes)
            )
        else:
            engine.commit()
            assert isinstance(arg, int)
            clock.advance(minutes=arg)
            engine.scheduler.run_due()
    engine.commit()
    log = stored_events(store)
    by_position = {e.id: e for e in log}
    for schedule_id, when in due.items():
        row = engine.scheduler.scheduled(schedule_id)
        if when > clock.now():
            assert row.status == "pending"
            continue
        assert row.status in ("fired", "rejected"), row
        if row.status == "fired":
            event = by_position[row.position]
            assert (type(event)._pt_type_name, event.fired_at) == (row.event_type, when)
        else:  # refused: the order was complete just before its turn
            assert "StateCompleted" in (row.error or "")
    fired = [
        engine.scheduler.scheduled(r).position
        for r in due
        if engine.scheduler.scheduled(r).status == "fired"
    ]
    assert len(fired) == len(set(fired))  # one event per fired row
    reference = reference_states(log)
    fresh = Engine(store)
    for order in range(3):
        want = reference.get(key_of(Order, order))
        got = fresh.load(Order, order)
        assert encode_state(got) == encode_state(want if want is not None else Order())
        for at in range(0, engine.head() + 1, 3):
            past = reference_states(log, upto=at).get(key_of(Order, order))
            assert encode_state(fresh.load(Order, order, at=at)) == encode_state(
                past if past is not None else Order()
            )


def test_completed_states_on_postgres(pg_url: str, pg_schema: str) -> None:
    url = f"{pg_url}?schema={pg_schema}"
    with Engine.open(url) as first:
        first.fire(ItemAdded(order_id=1))
        closing = first.fire(OrderClosed(order_id=1))
    with Engine.open(url) as second:
        before = second.store.statements
        with pytest.raises(StateCompleted) as caught:
            second.fire(ItemAdded(order_id=1))
        assert second.store.statements - before == 1  # refused from the table, not loaded
        assert caught.value.completed_by == closing.id
        second.fire(OrderReopened(order_id=1))
        second.fire(ItemAdded(order_id=1))
    with Engine.open(url) as third:
        assert third.states.completion(Order, 1) is None
        assert third.load(Order, 1) == Order(items=2, closed=False, reopened=1)


def test_verify_checks_the_completion_index_against_the_log(tmp_path: object) -> None:
    import sqlite3

    path = f"{tmp_path}/v.db"
    engine = Engine(SQLiteStore(path))
    engine.fire(OrderClosed(order_id=1))
    engine.fire(ItemAdded(order_id=2))
    engine.commit()
    report = engine.admin.verify()
    assert report.ok, report.to_text()
    conn = sqlite3.connect(path)
    conn.execute("DELETE FROM pt_completed")
    conn.execute("INSERT INTO pt_completed VALUES ('lc.Order', '2', 2, 'lc.ItemAdded')")
    conn.commit()
    conn.close()
    report = engine.admin.verify()
    assert not report.ok
    assert any("lc.Order(1) is complete as the log replays it" in e for e in report.errors)
    assert any("records lc.Order(2) completed by lc.ItemAdded" in e for e in report.errors)


def test_find_and_info_show_completion(engine: Engine) -> None:
    from playthrough.errors import QueryError

    for order in range(4):
        engine.fire(ItemAdded(order_id=order, n=order))
    closing = engine.fire(OrderClosed(order_id=1))
    engine.fire(OrderClosed(order_id=3))
    engine.commit()
    fresh = Engine(engine.store)
    assert sorted(o.items for o in fresh.states.find(Order, completed=False)) == [0, 2]
    assert [o.id for o in fresh.states.find(Order, completed=True, order_by="items")] == [1, 3]
    assert [o.id for o in fresh.states.find(Order, completed=True, order_by="items", limit=1)] == [
        1
    ]
    assert [o.id for o in fresh.states.find(Order, completed=False, items__gt=0)] == [2]
    info = fresh.states.info(Order, 1)
    assert closing.id is not None
    assert info.completed == Completion(key_of(Order, 1), closing.id, "lc.OrderClosed")
    assert f"completed by lc.OrderClosed at #{closing.id}" in str(info)
    assert fresh.states.info(Order, 0).completed is None
    with pytest.raises(QueryError, match="declares no completion"):
        list(fresh.states.find(Books, completed=True))
