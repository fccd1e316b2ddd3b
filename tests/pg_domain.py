"""A small bank for the PostgreSQL tests, importable by spawned worker processes.

Every class has an explicit ``pgstress.*`` type name: the type registry is
global, and a type name belongs to one class only.

- ``Opened`` touches one account (puts money in);
- ``Transfer`` touches two accounts, coupled by one ``apply`` hook;
- ``Audited`` couples an account with the ``Auditor`` singleton, so loading an
  account pulls in the auditor, and through it every account audited since.

``transfer_worker`` is the body of one stress-test process.
"""

from __future__ import annotations

import random

import attrs

from playthrough import Engine, Event, SingletonState, State, state_id
from playthrough.errors import ConcurrencyError


@attrs.define
class Account(State, type_name="pgstress.Account"):
    balance: int = 0
    movements: int = 0


@attrs.define
class Auditor(SingletonState, type_name="pgstress.Auditor"):
    audits: int = 0
    seen_total: int = 0


@attrs.define
class Opened(Event, type_name="pgstress.Opened"):
    account_id: int = state_id(Account)
    amount: int = 0

    def apply(self, account: Account) -> None:
        account.balance += self.amount
        account.movements += 1


@attrs.define
class Transfer(Event, type_name="pgstress.Transfer"):
    source_id: int = state_id(Account)
    target_id: int = state_id(Account)
    amount: int = 0

    def apply(self, source: Account, target: Account) -> None:
        source.balance -= self.amount
        source.movements += 1
        target.balance += self.amount
        target.movements += 1


@attrs.define
class Audited(Event, type_name="pgstress.Audited"):
    account_id: int = state_id(Account)

    def apply(self, account: Account, auditor: Auditor) -> None:
        auditor.audits += 1
        auditor.seen_total += account.balance
        account.movements += 1


def transfer_worker(
    url: str, schema: str, worker: int, transfers: int, accounts: int
) -> tuple[int, list[tuple[int, int, int, int]], int]:
    """Commit ``transfers`` transfers among ``accounts`` shared accounts, retrying conflicts.

    Returns (worker, [(position, source, target, amount)] committed, conflicts).
    """
    rng = random.Random(worker)
    committed: list[tuple[int, int, int, int]] = []
    conflicts = 0
    engine = Engine.open(url, schema=schema)
    try:
        for _ in range(transfers):
            source, target = rng.sample(range(accounts), 2)
            amount = rng.randint(1, 50)
            while True:
                engine.fire(Transfer(source_id=source, target_id=target, amount=amount))
                try:
                    [event] = engine.commit()
                except ConcurrencyError:
                    conflicts += 1
                    engine.refresh()
                    continue
                assert event.id is not None
                committed.append((event.id, source, target, amount))
                break
    finally:
        engine.close()
    return worker, committed, conflicts
