"""A bank: accounts, deposits, and transfers that touch two accounts and a ledger."""

from __future__ import annotations

import attrs

from playthrough import Engine, Event, SingletonState, State, state_id
from playthrough.errors import EventRejected


@attrs.define
class Account(State, type_name="bank.Account"):
    owner: str = ""
    balance: int = 0


@attrs.define
class Ledger(SingletonState, type_name="bank.Ledger"):
    transfers: int = 0
    deposited: int = 0
    flagged: list[int] = attrs.field(factory=list)


@attrs.define
class AccountOpened(Event, type_name="bank.AccountOpened"):
    account_id: int = state_id(Account)
    owner: str = ""

    def validate(self, account: Account) -> None:
        if account.owner:
            raise EventRejected(f"account {self.account_id} is already open")

    def apply(self, account: Account) -> None:
        account.owner = self.owner


@attrs.define
class Deposited(Event, type_name="bank.Deposited"):
    account_id: int = state_id(Account)
    amount: int = 0

    def validate(self, account: Account) -> None:
        if self.amount <= 0:
            raise EventRejected("a deposit must be positive")

    # Two single-state hooks: a deposit touches the account and the ledger but
    # couples neither to the other, so loading an account never drags the ledger in.
    def apply_account(self, account: Account) -> None:
        account.balance += self.amount

    def apply_ledger(self, ledger: Ledger) -> None:
        ledger.deposited += self.amount


@attrs.define
class Transferred(Event, type_name="bank.Transferred"):
    source_id: int = state_id(Account)
    target_id: int = state_id(Account)
    amount: int = 0

    def validate(self, source: Account) -> None:
        if self.amount <= 0:
            raise EventRejected("a transfer must be positive")
        if source.balance < self.amount:
            raise EventRejected(
                f"insufficient funds: account {self.source_id} has {source.balance}, "
                f"needs {self.amount}"
            )

    def apply(self, source: Account, target: Account, ledger: Ledger) -> None:
        source.balance -= self.amount
        target.balance += self.amount
        ledger.transfers += 1

    def handle(self, engine: Engine) -> None:
        # Side effects go here: runs once, after the commit, never on replay.
        # A large transfer fires a follow-up event, committed right after this
        # one and carrying its id as ``caused_by``.
        if self.amount >= LARGE_TRANSFER:
            engine.fire(TransferFlagged(transfer=self.id or 0))


@attrs.define
class TransferFlagged(Event, type_name="bank.TransferFlagged"):
    transfer: int = 0

    def apply(self, ledger: Ledger) -> None:
        ledger.flagged.append(self.transfer)


LARGE_TRANSFER = 1_000


def story(engine: Engine) -> list[Event]:
    """Fire a short banking story and commit it; returns the committed events."""
    engine.fire(AccountOpened(account_id=1, owner="ada"))
    engine.fire(AccountOpened(account_id=2, owner="grace"))
    engine.fire(Deposited(account_id=1, amount=2_500))
    engine.fire(Transferred(source_id=1, target_id=2, amount=300))
    engine.fire(Transferred(source_id=1, target_id=2, amount=1_200))
    return engine.commit()
