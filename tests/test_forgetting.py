"""Forgetting a person: personal fields are encrypted per data subject; deleting the key
erases them everywhere while every other value stays exact."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from playthrough import (
    FORGOTTEN,
    DefinitionError,
    Engine,
    Event,
    Personal,
    State,
    event_random,
    state_id,
)
from playthrough._serialization import encode_state
from playthrough._stores import SQLiteStore
from playthrough.testing import stored_events


@attrs.define
class Customer(State, type_name="gdpr.Customer"):
    name: str = ""
    email: str = ""
    orders: int = 0
    spent: int = 0
    luck: int = 0
    names_seen: list[str] = attrs.field(factory=list)


@attrs.define
class Registered(Event, type_name="gdpr.Registered"):
    data_subject = "customer_id"
    customer_id: int = state_id(Customer)
    name: Personal[str] = ""
    email: str = attrs.field(default="", metadata={"personal": True})

    def apply(self, customer: Customer) -> None:
        customer.name = self.name
        customer.email = self.email
        customer.names_seen.append(self.name)
        customer.luck = event_random().randint(0, 1000)


@attrs.define
class Ordered(Event, type_name="gdpr.Ordered"):
    data_subject = "customer_id"
    customer_id: int = state_id(Customer)
    amount: int = 0
    note: Personal[str] = ""

    def apply(self, customer: Customer) -> None:
        customer.orders += 1
        customer.spent += self.amount + event_random().randint(0, 3)


def _engine(tmp_path: Path) -> Engine:
    return Engine(SQLiteStore(str(tmp_path / "gdpr.db")))


def test_personal_fields_are_stored_encrypted_and_read_back_in_clear(tmp_path: Path) -> None:
    engine = _engine(tmp_path)
    engine.fire(Registered(customer_id=1, name="Ada Lovelace", email="ada@example.org"))
    engine.commit()
    raw = sqlite3.connect(tmp_path / "gdpr.db").execute("SELECT data FROM pt_events").fetchone()[0]
    assert "Ada" not in raw and "ada@" not in raw and "$pt_personal" in raw
    fresh = Engine(engine.store)
    assert fresh.load(Customer, 1).name == "Ada Lovelace"
    [event] = stored_events(engine.store)
    assert isinstance(event, Registered) and event.email == "ada@example.org"


def test_forgetting_erases_personal_fields_everywhere_and_keeps_the_rest(tmp_path: Path) -> None:
    engine = _engine(tmp_path)
    engine.fire(Registered(customer_id=1, name="Ada", email="ada@example.org"))
    engine.fire(Registered(customer_id=2, name="Grace", email="grace@example.org"))
    engine.fire(Ordered(customer_id=1, amount=30, note="leave at the door"))
    engine.commit()
    engine.snapshot()
    before = engine.load(Customer, 1)
    assert engine.forget(1) is True
    assert engine.forget(1) is False  # nothing left to forget
    after = engine.load(Customer, 1)
    assert (after.name, after.email, after.names_seen) == (FORGOTTEN, FORGOTTEN, [FORGOTTEN])
    assert (after.orders, after.spent, after.luck) == (before.orders, before.spent, before.luck)
    assert engine.load(Customer, 2).name == "Grace"  # another person is untouched
    assert engine.load(Customer, 1, at=1).name == FORGOTTEN  # time travel
    events = stored_events(engine.store)  # an export of the log
    assert [getattr(e, "name", None) for e in events[:2]] == [FORGOTTEN, "Grace"]
    assert isinstance(events[2], Ordered) and events[2].note == FORGOTTEN
    assert events[2].amount == 30
    engine.replay()
    assert encode_state(engine.load(Customer, 1)) == encode_state(after)
    report = engine.verify()
    assert report.ok, report.to_text()


def test_the_subject_field_is_required_and_cannot_be_personal() -> None:
    with pytest.raises(DefinitionError, match="no data_subject"):

        @attrs.define
        class NoSubject(Event, type_name="gdpr.NoSubject"):
            customer_id: int = state_id(Customer)
            name: Personal[str] = ""

            def apply(self, customer: Customer) -> None:
                customer.name = self.name

    with pytest.raises(DefinitionError, match="cannot be personal"):

        @attrs.define
        class SelfSubject(Event, type_name="gdpr.SelfSubject"):
            data_subject = "email"
            customer_id: int = state_id(Customer)
            email: Personal[str] = ""

            def apply(self, customer: Customer) -> None:
                customer.email = self.email


# --------------------------------------------------------------------------- the property

OPS = st.lists(
    st.one_of(
        st.builds(
            lambda c, n: Registered(customer_id=c, name=n, email=n + "@x"),
            st.integers(0, 2),
            st.text(max_size=5),
        ),
        st.builds(
            lambda c, a, n: Ordered(customer_id=c, amount=a, note=n),
            st.integers(0, 2),
            st.integers(0, 50),
            st.text(max_size=5),
        ),
    ),
    max_size=15,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    events=OPS,
    snapshot_after=st.integers(0, 15),
    forgotten=st.sets(st.integers(0, 2)),
)
def test_forgetting_never_changes_non_personal_fields(
    events: list[Event], snapshot_after: int, forgotten: set[int]
) -> None:
    engine = Engine(SQLiteStore())
    for n, event in enumerate(events):
        engine.fire(event)
        engine.commit()
        if n == snapshot_after:
            engine.snapshot()
    before = {c: engine.load(Customer, c) for c in range(3)}
    for c in forgotten:
        engine.forget(c)
    fresh = Engine(engine.store)
    for c in range(3):
        after = fresh.load(Customer, c)
        want = before[c]
        assert (after.orders, after.spent, after.luck) == (want.orders, want.spent, want.luck)
        if c in forgotten:
            assert {after.name, after.email} <= {FORGOTTEN, ""}
            assert after.names_seen == [FORGOTTEN] * len(want.names_seen)
        else:
            assert encode_state(after) == encode_state(want)


def test_forgetting_on_postgres(pg_url: str, pg_schema: str) -> None:
    engine = Engine.open(f"{pg_url}?schema={pg_schema}")
    try:
        engine.fire(Registered(customer_id=1, name="Ada", email="ada@example.org"))
        engine.fire(Ordered(customer_id=1, amount=5, note="n"))
        engine.commit()
        engine.snapshot()
        assert Engine(engine.store).load(Customer, 1).name == "Ada"
        before = engine.load(Customer, 1)
        assert engine.forget(1)
        after = Engine(engine.store).load(Customer, 1)
        assert (after.name, after.email) == (FORGOTTEN, FORGOTTEN)
        assert (after.orders, after.spent, after.luck) == (before.orders, before.spent, before.luck)
        assert engine.verify().ok
    finally:
        engine.close()


def test_scheduled_events_keep_personal_fields_sealed_until_due(tmp_path: Path) -> None:
    from datetime import UTC, datetime, timedelta

    from playthrough.testing import ManualClock

    clock = ManualClock(datetime(2030, 1, 1, tzinfo=UTC))
    engine = Engine(SQLiteStore(str(tmp_path / "s.db")), clock=clock)
    engine.schedule(Registered(customer_id=1, name="Ada", email="a@x"), after=timedelta(hours=1))
    engine.schedule(Registered(customer_id=2, name="Bob", email="b@x"), after=timedelta(hours=1))
    raw = sqlite3.connect(tmp_path / "s.db").execute("SELECT data FROM pt_schedule").fetchall()
    assert raw and not any("Ada" in d or "Bob" in d for (d,) in raw)
    assert engine.forget(2)  # forgotten before the event is due
    clock.advance(hours=2)
    assert [r.status for r in engine.run_due()] == ["fired", "fired"]
    assert engine.load(Customer, 1).name == "Ada"
    assert engine.load(Customer, 2).name == FORGOTTEN


def test_forgetting_keeps_an_archives_base_snapshots(tmp_path: Path) -> None:
    engine = _engine(tmp_path)
    engine.fire(Registered(customer_id=1, name="Ada", email="a@x"))
    engine.fire(Ordered(customer_id=1, amount=5, note="n"))
    engine.fire(Ordered(customer_id=1, amount=7, note="m"))
    engine.commit()
    before = engine.load(Customer, 1)
    engine.archive(before=3, to=tmp_path / "old.jsonl.gz")
    assert engine.forget(1)
    after = Engine(engine.store).load(Customer, 1)  # from the kept base snapshot at the cut
    assert (after.orders, after.spent, after.luck) == (before.orders, before.spent, before.luck)
    with engine.store.reader() as reader:
        [kept] = reader.events_after(2, 10)  # the hot log after the cut
    assert FORGOTTEN in kept.data and '"amount":7' in kept.data
