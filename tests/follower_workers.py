"""Processes for the follower tests (spawned: importable at module level)."""

from __future__ import annotations

import os
import random
from typing import Any

from playthrough import Engine, FollowerTransaction
from playthrough.errors import ConcurrencyError
from playthrough.examples.balances import OwnerBalances
from playthrough.examples.bank import AccountOpened, Deposited, Transferred

OWNERS = ["ada", "bob", "cy"]
ACCOUNTS = 6
OPENING = 1_000_000


def open_engine(url: str, schema: str | None) -> Engine:
    return Engine.open(url, schema=schema) if schema else Engine.open(url)


class AuditedBalances(OwnerBalances):
    """The example read model plus a table of every event it processed (a primary key on it)."""

    def setup(self, tx: FollowerTransaction) -> None:
        super().setup(tx)
        tx.execute(
            "CREATE TABLE IF NOT EXISTS seen (position BIGINT PRIMARY KEY, worker BIGINT NOT NULL)"
        )

    def reset(self, tx: FollowerTransaction) -> None:
        super().reset(tx)
        tx.execute("DELETE FROM seen")

    def _seen(self, event: Any, tx: FollowerTransaction) -> None:
        tx.execute("INSERT INTO seen VALUES (?, ?)", (event.id, os.getpid()))

    def on_AccountOpened(self, event: AccountOpened, tx: FollowerTransaction) -> None:
        super().on_AccountOpened(event, tx)
        self._seen(event, tx)

    def on_Deposited(self, event: Deposited, tx: FollowerTransaction) -> None:
        super().on_Deposited(event, tx)
        self._seen(event, tx)

    def on_Transferred(self, event: Transferred, tx: FollowerTransaction) -> None:
        super().on_Transferred(event, tx)
        self._seen(event, tx)


def setup_bank(engine: Engine) -> None:
    for n in range(ACCOUNTS):
        engine.fire(AccountOpened(account_id=n, owner=OWNERS[n % len(OWNERS)]))
        engine.fire(Deposited(account_id=n, amount=OPENING))
    engine.commit()


def write_worker(url: str, schema: str | None, seed: int, commits: int) -> int:
    """Commit ``commits`` events (deposits and transfers), retrying conflicts; returns conflicts."""
    rng = random.Random(seed)
    conflicts = 0
    with open_engine(url, schema) as engine:
        done = 0
        while done < commits:
            a, b = rng.sample(range(ACCOUNTS), 2)
            try:
                if rng.random() < 0.5:
                    engine.fire(Deposited(account_id=a, amount=rng.randint(1, 50)))
                else:
                    engine.fire(Transferred(source_id=a, target_id=b, amount=rng.randint(1, 50)))
                engine.commit()
                done += 1
            except ConcurrencyError:
                conflicts += 1
                engine.refresh()
    return conflicts


def follow_worker(url: str, schema: str | None, final_head: int, batch_size: int) -> int:
    """Run the audited follower until it has processed the whole log of ``final_head`` events."""
    with open_engine(url, schema) as engine:

        def done() -> bool:
            return any(
                f.name == "balances" and f.position >= final_head for f in engine.followers()
            )

        report = engine.followers.run(
            AuditedBalances(), poll_interval=0.01, batch_size=batch_size, stop=done
        )
        return report.processed


def crash_worker(url: str, schema: str | None, crash_at: int) -> None:
    """Run the follower and die (no cleanup, no rollback by Python) at event ``crash_at``."""

    class Crashing(AuditedBalances):
        def on_Deposited(self, event: Deposited, tx: FollowerTransaction) -> None:
            super().on_Deposited(event, tx)
            if event.id == crash_at:
                os._exit(3)

    with open_engine(url, schema) as engine:
        engine.followers.run(Crashing(), until_idle=True, batch_size=1000)
