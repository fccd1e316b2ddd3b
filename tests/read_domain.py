"""A domain for the read side: nested values, lists, dicts, optional fields, chains of causes."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

import attrs

from playthrough import Engine, Event, State, state_id


@attrs.define
class Address:
    city: str = ""
    zip: str | None = None


@attrs.define
class Customer(State, type_name="r.Customer"):
    owner: str = ""
    balance: int = 0
    score: float = 0.0
    active: bool = False
    note: str | None = None
    tags: list[str] = attrs.field(factory=list)
    address: Address = attrs.field(factory=Address)
    flags: dict[str, int] = attrs.field(factory=dict)
    since: datetime | None = None
    limit: Decimal = Decimal("0")


@attrs.define
class Changed(Event, type_name="r.Changed"):
    """Sets some fields of one customer (None: leave as is)."""

    customer_id: int = state_id(Customer)
    owner: str | None = None
    balance: int | None = None
    score: float | None = None
    active: bool | None = None
    note: str | None = None
    clear_note: bool = False
    tags: list[str] | None = None
    city: str | None = None
    zip: str | None = None
    flags: dict[str, int] | None = None

    def apply(self, customer: Customer) -> None:
        for name in ("owner", "balance", "score", "active", "tags", "flags"):
            value = getattr(self, name)
            if value is not None:
                setattr(customer, name, value)
        if self.note is not None:
            customer.note = self.note
        if self.clear_note:
            customer.note = None
        if self.city is not None:
            customer.address.city = self.city
        if self.zip is not None:
            customer.address.zip = self.zip


@attrs.define
class Moved(Event, type_name="r.Moved"):
    source_id: int = state_id(Customer)
    target_id: int = state_id(Customer)
    amount: int = 0

    def apply(self, source: Customer, target: Customer) -> None:
        source.balance -= self.amount
        target.balance += self.amount


@attrs.define
class Ordered(Event, type_name="r.Ordered"):
    """A root event whose handle fires a chain: Ordered -> Billed -> Shipped."""

    customer_id: int = state_id(Customer)
    amount: int = 0

    def apply(self, customer: Customer) -> None:
        customer.balance -= self.amount

    def handle(self, engine: Engine) -> None:
        engine.fire(Billed(customer_id=self.customer_id, amount=self.amount))


@attrs.define
class Billed(Event, type_name="r.Billed"):
    customer_id: int = state_id(Customer)
    amount: int = 0

    def apply(self, customer: Customer) -> None:
        customer.score += 1

    def handle(self, engine: Engine) -> None:
        engine.fire(Shipped(customer_id=self.customer_id))
        engine.fire(Changed(customer_id=self.customer_id, note="billed"))


@attrs.define
class Shipped(Event, type_name="r.Shipped"):
    customer_id: int = state_id(Customer)

    def apply(self, customer: Customer) -> None:
        customer.tags = [*customer.tags, "shipped"]


def own_sessions(url: str) -> str:
    """The server URL with an application name of these tests' own.

    Other test suites on the same server end sessions named ``playthrough``
    (crash tests); naming ours keeps them out of that.
    """
    return url + ("&" if "?" in url else "?") + "application_name=pt-read-side-tests"
