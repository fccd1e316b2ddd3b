"""A shop: customers, orders, coupons and tags, written to replay deterministically.

The twin of :mod:`playthrough.examples.shop_flawed`, which has the same story
and two classic replay bugs. Here ``apply`` takes the time from
:func:`playthrough.now` (when the event was first fired), draws coupons from
:func:`playthrough.event_random` (seeded by the event) and never lets the
iteration order of a set leak into a state, so ``playthrough verify`` passes.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

import attrs

from playthrough import Engine, Event, State, event_random, now, state_id
from playthrough.errors import EventRejected


@attrs.define
class Customer(State, type_name="shop.Customer"):
    name: str = ""
    orders_placed: int = 0
    spent: Decimal = Decimal(0)


@attrs.define
class Order(State, type_name="shop.Order"):
    customer: int = 0
    lines: list[str] = attrs.field(factory=list)
    total: Decimal = Decimal(0)
    placed_at: datetime | None = None
    coupon: str = ""
    shipped: bool = False
    tags: list[str] = attrs.field(factory=list)


@attrs.define
class CustomerRegistered(Event, type_name="shop.CustomerRegistered"):
    customer_id: int = state_id(Customer)
    name: str = ""

    def apply(self, customer: Customer) -> None:
        customer.name = self.name


@attrs.define
class OrderOpened(Event, type_name="shop.OrderOpened"):
    order_id: int = state_id(Order)
    customer: int = 0

    def apply(self, order: Order) -> None:
        order.customer = self.customer


@attrs.define
class ItemAdded(Event, type_name="shop.ItemAdded"):
    order_id: int = state_id(Order)
    sku: str = ""
    price: Decimal = Decimal(0)

    def validate(self, order: Order) -> None:
        if order.placed_at is not None:
            raise EventRejected(f"order {self.order_id} was already placed")

    def apply(self, order: Order) -> None:
        order.lines.append(self.sku)
        order.total += self.price


@attrs.define
class OrderPlaced(Event, type_name="shop.OrderPlaced"):
    order_id: int = state_id(Order)
    customer_id: int = state_id(Customer)

    def validate(self, order: Order) -> None:
        if not order.lines:
            raise EventRejected(f"order {self.order_id} is empty")
        if order.placed_at is not None:
            raise EventRejected(f"order {self.order_id} was already placed")

    def apply(self, order: Order, customer: Customer) -> None:
        order.placed_at = now()  # when the event was first fired, on every replay
        order.coupon = f"C{event_random().randrange(10**6):06d}"
        customer.orders_placed += 1
        customer.spent += order.total


@attrs.define
class OrderShipped(Event, type_name="shop.OrderShipped"):
    order_id: int = state_id(Order)

    def apply(self, order: Order) -> None:
        order.shipped = True


@attrs.define
class OrderTagged(Event, type_name="shop.OrderTagged"):
    order_id: int = state_id(Order)
    tags: list[str] = attrs.field(factory=list)

    def apply(self, order: Order) -> None:
        order.tags = sorted(set(order.tags) | set(self.tags))  # a stable order


TAGS = ["gift", "fragile", "express", "bulk", "eco", "vip", "promo", "retail", "b2b", "intl"]


def story(engine: Engine) -> list[Event]:
    """Two customers, two orders placed, one shipped; returns the committed events."""
    engine.fire(CustomerRegistered(customer_id=1, name="ada"))
    engine.fire(CustomerRegistered(customer_id=2, name="grace"))
    engine.fire(OrderOpened(order_id=10, customer=1))
    engine.fire(ItemAdded(order_id=10, sku="book", price=Decimal("12.50")))
    engine.fire(ItemAdded(order_id=10, sku="pen", price=Decimal("1.20")))
    engine.fire(OrderOpened(order_id=11, customer=2))
    engine.fire(ItemAdded(order_id=11, sku="lamp", price=Decimal("30.00")))
    engine.fire(OrderPlaced(order_id=10, customer_id=1))
    engine.fire(OrderShipped(order_id=10))
    engine.fire(ItemAdded(order_id=11, sku="bulb", price=Decimal("3.10")))
    engine.fire(OrderPlaced(order_id=11, customer_id=2))
    return engine.commit()


def tagging_story(engine: Engine) -> list[Event]:
    """Orders tagged with sets of labels; returns the committed events."""
    engine.fire(OrderOpened(order_id=20, customer=1))
    engine.fire(OrderTagged(order_id=20, tags=TAGS[:6]))
    engine.fire(OrderTagged(order_id=20, tags=TAGS[4:]))
    engine.fire(OrderOpened(order_id=21, customer=2))
    engine.fire(OrderTagged(order_id=21, tags=TAGS[::-1]))
    return engine.commit()
