"""A small shop for the pictures, history and inspector tests.

Order ids are strings that look like ``o2`` and ``o10`` (natural order) and
also ``13`` (a string that looks like an int); customers have int ids; placing
an order couples the order with its customer (one apply hook takes both);
the singleton ``Shop`` is touched by every placement (a hot spot); a
customer's name is personal.
"""

from __future__ import annotations

import attrs

from playthrough import Engine, Event, Personal, SingletonState, State, state_id


@attrs.define
class Customer(State, type_name="see.Customer"):
    name: Personal[str] = ""  # a copy of personal data: the inspector masks it too
    orders: int = 0
    spent: int = 0


@attrs.define
class Order(State, type_name="see.Order"):
    customer: int = 0
    total: int = 0
    status: str = "new"


@attrs.define
class Shop(SingletonState, type_name="see.Shop"):
    orders: int = 0


@attrs.define
class Joined(Event, type_name="see.Joined"):
    data_subject = "customer_id"
    customer_id: int = state_id(Customer)
    name: Personal[str] = ""

    def apply(self, customer: Customer) -> None:
        customer.name = self.name


@attrs.define
class Placed(Event, type_name="see.Placed"):
    order_id: str = state_id(Order)
    customer_id: int = state_id(Customer)
    total: int = 0

    def apply(self, order: Order, customer: Customer) -> None:
        order.customer = self.customer_id
        order.total = self.total
        customer.orders += 1
        customer.spent += self.total

    def apply_shop(self, shop: Shop) -> None:
        shop.orders += 1


@attrs.define
class Shipped(Event, type_name="see.Shipped"):
    order_id: str = state_id(Order)

    def apply(self, order: Order) -> None:
        order.status = "shipped"


@attrs.define
class Followed(Event, type_name="see.Followed"):
    """Fired by a shipment's handler: a caused event."""

    order_id: str = state_id(Order)

    def apply(self, order: Order) -> None:
        order.status = "followed up"


@attrs.define
class ShippedWithFollowUp(Event, type_name="see.ShippedWithFollowUp"):
    order_id: str = state_id(Order)

    def apply(self, order: Order) -> None:
        order.status = "shipped"

    def handle(self, engine: Engine) -> None:
        engine.fire(Followed(order_id=self.order_id))


def story(engine: Engine) -> None:
    """1 Joined(1, Ada), 2 Placed(o2, 1, 30), 3 Placed(o10, 1, 12), 4 Shipped(o2),
    5 Placed(13, 1, 5), 6 ShippedWithFollowUp(o10) -> 7 Followed(o10) caused by 6."""
    engine.fire(Joined(customer_id=1, name="Ada"))
    engine.commit()
    with engine.metadata(user="bo"):
        engine.fire(Placed(order_id="o2", customer_id=1, total=30))
        engine.commit()
    engine.fire(Placed(order_id="o10", customer_id=1, total=12))
    engine.commit()
    engine.fire(Shipped(order_id="o2"))
    engine.commit()
    engine.fire(Placed(order_id="13", customer_id=1, total=5))
    engine.commit()
    engine.fire(ShippedWithFollowUp(order_id="o10"))
    engine.commit()


@attrs.define
class Audited(Event, type_name="see.Audited"):
    """A scheduled event whose hook fails: its schedule row ends ``failed``."""

    order_id: str = state_id(Order)

    def apply(self, order: Order) -> None:
        raise RuntimeError("the auditor is out")
