"""A read model: the balance of every owner of the bank example, kept in a table by a follower.

``OwnerBalances`` follows the log and keeps two tables in the store's own
database: ``account_owner`` (which owner holds each account) and
``owner_balance`` (the sum of their accounts). Each batch of events and the
follower's position commit in one transaction, so the tables are exactly the
log's up to that position, whatever crashes or restarts.
"""

from __future__ import annotations

from playthrough import FollowerTransaction, Projection

from .bank import AccountOpened, Deposited, Transferred


class OwnerBalances(Projection):
    name = "balances"

    def setup(self, tx: FollowerTransaction) -> None:
        tx.execute(
            "CREATE TABLE IF NOT EXISTS account_owner "
            "(account_id BIGINT PRIMARY KEY, owner TEXT NOT NULL)"
        )
        tx.execute(
            "CREATE TABLE IF NOT EXISTS owner_balance "
            "(owner TEXT PRIMARY KEY, balance BIGINT NOT NULL)"
        )

    def reset(self, tx: FollowerTransaction) -> None:
        tx.execute("DELETE FROM account_owner")
        tx.execute("DELETE FROM owner_balance")

    def _add(self, tx: FollowerTransaction, account_id: int, amount: int) -> None:
        tx.execute(
            "UPDATE owner_balance SET balance = balance + ? "
            "WHERE owner = (SELECT owner FROM account_owner WHERE account_id = ?)",
            (amount, account_id),
        )

    def on_AccountOpened(self, event: AccountOpened, tx: FollowerTransaction) -> None:
        tx.execute("INSERT INTO account_owner VALUES (?, ?)", (event.account_id, event.owner))
        tx.execute(
            "INSERT INTO owner_balance VALUES (?, 0) ON CONFLICT (owner) DO NOTHING", (event.owner,)
        )

    def on_Deposited(self, event: Deposited, tx: FollowerTransaction) -> None:
        self._add(tx, event.account_id, event.amount)

    def on_Transferred(self, event: Transferred, tx: FollowerTransaction) -> None:
        self._add(tx, event.source_id, -event.amount)
        self._add(tx, event.target_id, event.amount)


def balances(tx_or_rows: FollowerTransaction) -> dict[str, int]:
    """The read model as a dict (owner -> balance)."""
    rows = tx_or_rows.execute("SELECT owner, balance FROM owner_balance")
    return {str(o): int(b) for o, b in rows}  # type: ignore[call-overload]
