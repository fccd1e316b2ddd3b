"""``playthrough.asdict`` (a state as JSON) and ``engine.load_or_fail`` (404 for unknown ids)."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from decimal import Decimal

import attrs
import pytest

import playthrough
from playthrough import FORGOTTEN, Engine, Event, Personal, SingletonState, State, state_id
from playthrough.errors import NotFoundError, PlaythroughError


@attrs.define
class DictAddress:
    city: str = ""
    lines: list[str] = attrs.Factory(list)


@attrs.define
class DictCustomer(State, type_name="t.asdict.Customer"):
    name: str = ""
    address: DictAddress = attrs.Factory(DictAddress)
    since: datetime | None = None
    credit: Decimal = Decimal(0)
    tags: dict[str, int] = attrs.Factory(dict)


@attrs.define
class DictCard(State, type_name="t.asdict.Card"):
    holder: str = ""


@attrs.define
class DictCounter(SingletonState, type_name="t.asdict.Counter"):
    n: int = 0


@attrs.define
class DictJoined(Event, type_name="t.asdict.Joined"):
    customer_id: int = state_id(DictCustomer)
    name: str = ""
    city: str = ""

    def apply(self, customer: DictCustomer, counter: DictCounter) -> None:
        customer.name = self.name
        customer.address = DictAddress(city=self.city, lines=["1 Main St"])
        customer.since = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
        customer.credit = Decimal("12.50")
        customer.tags = {"vip": 1}
        counter.n += 1


@attrs.define
class DictCardIssued(Event, type_name="t.asdict.CardIssued"):
    card_id: uuid.UUID = state_id(DictCard)
    customer: int = 0
    holder: Personal[str] = ""
    data_subject = "customer"

    def apply(self, card: DictCard) -> None:
        card.holder = self.holder


def test_a_state_is_a_json_able_dict_of_what_the_store_holds_with_its_id(any_url: str) -> None:
    with Engine.open(any_url) as engine:
        joined = engine.fire(DictJoined(customer_id=3, name="Ada", city="Oslo"))
        engine.commit()
        customer = engine.load(DictCustomer, 3)
        data = playthrough.asdict(customer)
        assert data == {
            "id": 3,
            "name": "Ada",
            "address": {"city": "Oslo", "lines": ["1 Main St"]},
            "since": "2026-01-02T03:04:05+00:00",
            "credit": "12.50",
            "tags": {"vip": 1},
        }
        assert json.loads(json.dumps(data)) == data
        assert playthrough.asdict(engine.load(DictCounter)) == {"id": None, "n": 1}
        event = playthrough.asdict(joined)
        assert event == {"id": 1, "customer_id": 3, "name": "Ada", "city": "Oslo"}
    with Engine.open(any_url) as fresh:  # a cold load gives the same dict
        assert playthrough.asdict(fresh.load(DictCustomer, 3)) == data


def test_personal_values_are_what_the_state_holds_clear_then_forgotten() -> None:
    pytest.importorskip("cryptography")
    card = uuid.UUID(int=5)
    with Engine.open("sqlite://") as engine:
        engine.fire(DictCardIssued(card_id=card, customer=9, holder="Ada Lovelace"))
        engine.commit()
        assert playthrough.asdict(engine.load(DictCard, card)) == {
            "id": str(card),
            "holder": "Ada Lovelace",
        }
        engine.admin.forget(9)
        assert playthrough.asdict(engine.load(DictCard, card))["holder"] == FORGOTTEN


def test_asdict_refuses_anything_else() -> None:
    with pytest.raises(TypeError, match=r"asdict\(\) takes a State or an Event, not DictAddress"):
        playthrough.asdict(DictAddress())  # type: ignore[arg-type]


def test_load_or_fail_refuses_a_state_no_event_touched(any_url: str) -> None:
    with Engine.open(any_url) as engine:
        with pytest.raises(NotFoundError, match="no DictCustomer with id 3: no event ever touched"):
            engine.load_or_fail(DictCustomer, 3)
        with pytest.raises(NotFoundError, match="no DictCounter"):
            engine.load_or_fail(DictCounter)
        engine.fire(DictJoined(customer_id=3, name="Ada"))
        assert engine.load_or_fail(DictCustomer, 3).name == "Ada"  # pending counts
        engine.commit()
    with Engine.open(any_url) as fresh:
        assert fresh.load_or_fail(DictCustomer, 3).name == "Ada"
        assert fresh.load_or_fail(DictCounter).n == 1
        with pytest.raises(NotFoundError):
            fresh.load_or_fail(DictCustomer, 4)
    assert issubclass(NotFoundError, PlaythroughError) and issubclass(NotFoundError, LookupError)
