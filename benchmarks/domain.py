"""The benchmark domain: accounts, a singleton hub, and three kinds of events.

Every class has an explicit ``bench.*`` type name: the type registry is global,
so these never collide with the names tests or examples register.

- ``Deposited`` touches one state (an Account);
- ``Opened`` touches one Account (the read workload opens accounts with it);
- ``Transferred`` touches two Accounts, coupled by one ``apply`` hook (the
  README's bank);
- ``SplitTransferred`` is the same transfer with one hook per account
  (``apply_source``, ``apply_target``), so the two accounts are not coupled and
  loading one never needs the other;
- ``HubCredited`` couples an Account with the ``Hub`` singleton, so loading an
  account pulls in the hub as of each such event, and through the hub every
  other account credited since the hub's snapshot (the reconstitution benchmarks
  use it to make plans that span several states).

Helpers for the scripts (temporary database files, URLs) live here too.
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from pathlib import Path

import attrs

from playthrough import Event, SingletonState, State, state_id
from playthrough.errors import EventRejected


@attrs.define
class Account(State, type_name="bench.Account"):
    balance: int = 0
    movements: int = 0


@attrs.define
class Hub(SingletonState, type_name="bench.Hub"):
    credits: int = 0
    total: int = 0


@attrs.define
class Opened(Event, type_name="bench.Opened"):
    account_id: int = state_id(Account)

    def apply(self, account: Account) -> None:
        account.movements = 0


@attrs.define
class Deposited(Event, type_name="bench.Deposited"):
    account_id: int = state_id(Account)
    amount: int = 0

    def apply(self, account: Account) -> None:
        account.balance += self.amount
        account.movements += 1


@attrs.define
class Transferred(Event, type_name="bench.Transferred"):
    source_id: int = state_id(Account)
    target_id: int = state_id(Account)
    amount: int = 0

    def validate(self, source: Account) -> None:
        if self.amount <= 0:
            raise EventRejected("a transfer moves a positive amount")

    def apply(self, source: Account, target: Account) -> None:
        source.balance -= self.amount
        source.movements += 1
        target.balance += self.amount
        target.movements += 1


@attrs.define
class SplitTransferred(Event, type_name="bench.SplitTransferred"):
    source_id: int = state_id(Account)
    target_id: int = state_id(Account)
    amount: int = 0

    def apply_source(self, source: Account) -> None:
        source.balance -= self.amount
        source.movements += 1

    def apply_target(self, target: Account) -> None:
        target.balance += self.amount
        target.movements += 1


@attrs.define
class HubCredited(Event, type_name="bench.HubCredited"):
    account_id: int = state_id(Account)
    amount: int = 0

    def apply(self, account: Account, hub: Hub) -> None:
        account.balance += self.amount
        account.movements += 1
        hub.credits += 1
        hub.total += self.amount


# --------------------------------------------------------------------------- event mixes


def random_event(rng: random.Random, accounts: int, *, avoid: int | None = None) -> Event:
    """One event of the usual mix: 50% one-state, 25% two-state, 25% hub-coupled.

    ``avoid`` keeps one account out of the events drawn (the tail of a
    reconstitution log touches its target only where the script says so).
    """

    def pick() -> int:
        while True:
            n = rng.randrange(accounts)
            if n != avoid:
                return n

    roll = rng.random()
    amount = rng.randint(1, 100)
    if roll < 0.5:
        return Deposited(account_id=pick(), amount=amount)
    if roll < 0.75:
        a = pick()
        b = pick()
        while b == a:
            b = pick()
        return Transferred(source_id=a, target_id=b, amount=amount)
    return HubCredited(account_id=pick(), amount=amount)


# --------------------------------------------------------------------------- files


def db_files(path: Path) -> Iterator[Path]:
    """The database file and its WAL companions."""
    yield path
    yield path.with_name(path.name + "-wal")
    yield path.with_name(path.name + "-shm")


def remove_db(path: Path) -> None:
    for f in db_files(path):
        try:
            os.remove(f)
        except FileNotFoundError:
            pass


def file_url(path: Path, *, synchronous: str | None = None) -> str:
    """A ``sqlite:///`` URL for an absolute path (default durable settings unless told)."""
    url = f"sqlite:///{path.resolve()}"
    return url if synchronous is None else f"{url}?synchronous={synchronous}"
