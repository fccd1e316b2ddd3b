"""A payment timeout: the domain the scheduling tests (and their worker processes) use."""

from __future__ import annotations

from datetime import datetime, timedelta

import attrs

from playthrough import Engine, Event, State, now, state_id

TIMEOUT = timedelta(minutes=15)


@attrs.define
class Order(State, type_name="sched.Order"):
    complete_when = "closed"
    placed: bool = False
    paid: bool = False
    timed_out_at: datetime | None = None
    timeout_id: str = ""
    closed: bool = False


@attrs.define
class OrderPlaced(Event, type_name="sched.OrderPlaced"):
    order_id: int = state_id(Order)

    def apply(self, order: Order) -> None:
        order.placed = True

    def handle(self, engine: Engine) -> None:
        schedule_id = engine.scheduler.schedule(
            PaymentTimedOut(order_id=self.order_id), after=TIMEOUT
        )
        engine.fire(TimeoutScheduled(order_id=self.order_id, schedule_id=schedule_id))


@attrs.define
class TimeoutScheduled(Event, type_name="sched.TimeoutScheduled"):
    order_id: int = state_id(Order)
    schedule_id: str = ""

    def apply(self, order: Order) -> None:
        order.timeout_id = self.schedule_id


@attrs.define
class PaymentReceived(Event, type_name="sched.PaymentReceived"):
    order_id: int = state_id(Order)

    def apply(self, order: Order) -> None:
        order.paid = True
        order.closed = True

    def handle(self, engine: Engine, order: Order) -> None:
        engine.scheduler.cancel(order.timeout_id)


@attrs.define
class PaymentTimedOut(Event, type_name="sched.PaymentTimedOut"):
    order_id: int = state_id(Order)

    def apply(self, order: Order) -> None:
        order.timed_out_at = now()  # the due time, on every playthrough
        order.closed = True


@attrs.define
class Counter(State, type_name="sched.Counter"):
    hits: int = 0
    seen: list[int] = attrs.field(factory=list)


@attrs.define
class Ping(Event, type_name="sched.Ping"):
    counter_id: int = state_id(Counter)
    n: int = 0

    def apply(self, counter: Counter) -> None:
        counter.hits += 1
        counter.seen.append(self.n)


@attrs.define
class Broken(Event, type_name="sched.Broken"):
    counter_id: int = state_id(Counter)

    def apply(self, counter: Counter) -> None:
        raise RuntimeError("this hook always fails")
