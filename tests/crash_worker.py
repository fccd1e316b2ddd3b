"""A writer for the crash tests: commits transfers and writes down what commit() said.

Run as ``python -m tests.crash_worker URL SIDE_FILE``; ``python -m
tests.crash_worker handlers|scheduler URL`` runs a handler runner or a
scheduler instead, pass after pass until killed (see ``worker``). Every commit moves money
between five accounts in three transfers (so the total never changes). Before
each commit it writes ``try``, and after, one of ``ok ID FIRST LAST`` (commit()
returned), ``unknown ID`` (CommitOutcomeUnknown) or ``failed ID`` (a StoreError
that says nothing was written); each line is flushed and fsynced before the
next commit, so the side file is what an application would have acknowledged.
"""

from __future__ import annotations

import os
import random
import sys
import uuid

import attrs

from playthrough import Engine, Event, State, state_id
from playthrough.errors import CommitOutcomeUnknown, StoreError

ACCOUNTS = 5
OPENING = 1_000
PER_COMMIT = 3


@attrs.define
class Purse(State, type_name="t.crash.Purse"):
    balance: int = 0


@attrs.define
class Opened(Event, type_name="t.crash.Opened"):
    purse_id: int = state_id(Purse)

    def apply(self, purse: Purse) -> None:
        purse.balance += OPENING


@attrs.define
class Moved(Event, type_name="t.crash.Moved"):
    source_id: int = state_id(Purse)
    target_id: int = state_id(Purse)
    amount: int = 0

    def apply(self, source: Purse, target: Purse) -> None:
        source.balance -= self.amount
        target.balance += self.amount


def _note(side: int, line: str) -> None:
    os.write(side, (line + "\n").encode())
    os.fsync(side)


def main(url: str, side_path: str) -> None:
    side = os.open(side_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    rng = random.Random(os.getpid())
    with Engine.open(url) as engine:
        if engine.head() == 0:
            for n in range(ACCOUNTS):
                engine.fire(Opened(purse_id=n))
            engine.commit()
        while True:
            engine.refresh()  # another round's writer may have committed since
            try:
                for _ in range(PER_COMMIT):
                    a, b = rng.sample(range(ACCOUNTS), 2)
                    engine.fire(Moved(source_id=a, target_id=b, amount=rng.randint(1, 50)))
            except StoreError:
                continue  # a load failed (its connection was terminated): nothing to commit
            _note(side, "try")
            try:
                committed = engine.commit()
            except CommitOutcomeUnknown as exc:
                _note(side, f"unknown {exc.commit_id}")
                continue
            except StoreError:
                _note(side, f"failed {engine.last_commit_id}")
                continue
            _note(side, f"ok {engine.last_commit_id} {committed[0].id} {committed[-1].id}")


# ---------------------------------------------------------------- handler runners, schedulers


@attrs.define
class Order(State, type_name="t.crash.Order"):
    placed: bool = False


@attrs.define
class Invoice(State, type_name="t.crash.Invoice"):
    order_id: int = 0


@attrs.define
class Invoiced(Event, type_name="t.crash.Invoiced"):
    invoice_id: str = state_id(Invoice)  # a new invoice each time: only the check stops a second
    order_id: int = 0

    def apply(self, invoice: Invoice) -> None:
        invoice.order_id = self.order_id


@attrs.define
class Placed(Event, type_name="t.crash.Placed"):
    order_id: int = state_id(Order)

    def apply(self, order: Order) -> None:
        order.placed = True

    def handle(self, engine: Engine) -> None:
        if os.environ.get("PT_CRASH_SETUP"):
            raise RuntimeError("setup: the handler stays pending for the runners")
        engine.fire(Invoiced(invoice_id=uuid.uuid4().hex, order_id=self.order_id))


@attrs.define
class Ticked(Event, type_name="t.crash.Ticked"):
    purse_id: int = state_id(Purse)
    n: int = 0

    def apply(self, purse: Purse) -> None:
        purse.balance += 1


def worker(mode: str, url: str) -> None:
    """A handler runner or a scheduler: small passes, back to back, until killed."""
    from playthrough._handlers import serve as serve_handlers
    from playthrough._scheduling import serve as serve_schedule

    with Engine.open(url) as engine:
        if mode == "handlers":
            serve_handlers(engine, interval=0.01, limit=3, echo=lambda _: None)
        else:
            serve_schedule(engine, interval=0.01, limit=2, echo=lambda _: None)


if __name__ == "__main__":
    if sys.argv[1] in ("handlers", "scheduler"):
        worker(sys.argv[1], sys.argv[2])
    else:
        main(sys.argv[1], sys.argv[2])
