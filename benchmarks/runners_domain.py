"""The domain of ``double_commits.py``: an order whose handler issues one invoice.

With ``RUNNERS_SETUP=1`` in the environment the handler fails, so the setup
commits leave every order's handler pending for the runners to complete.
"""

from __future__ import annotations

import os
import uuid

import attrs

from playthrough import Engine, Event, State, state_id


@attrs.define
class Order(State, type_name="bench.runners.Order"):
    placed: bool = False


@attrs.define
class Invoice(State, type_name="bench.runners.Invoice"):
    order_id: int = 0


@attrs.define
class InvoiceIssued(Event, type_name="bench.runners.InvoiceIssued"):
    invoice_id: str = state_id(Invoice)
    order_id: int = 0

    def apply(self, invoice: Invoice) -> None:
        invoice.order_id = self.order_id


@attrs.define
class OrderPlaced(Event, type_name="bench.runners.OrderPlaced"):
    order_id: int = state_id(Order)

    def apply(self, order: Order) -> None:
        order.placed = True

    def handle(self, engine: Engine) -> None:
        if os.environ.get("RUNNERS_SETUP"):
            raise RuntimeError("setup: leave the handler pending")
        engine.fire(InvoiceIssued(invoice_id=uuid.uuid4().hex, order_id=self.order_id))
