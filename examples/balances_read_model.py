"""A read model kept by a follower while other processes write: balances per owner.

Three writer processes deposit and transfer between six accounts of three
owners; this process runs the ``OwnerBalances`` follower
(``playthrough.examples.balances``) until the writers are done and it has
caught up, then compares its table with the states themselves.
"""

from __future__ import annotations

import multiprocessing
import random
import sqlite3
import tempfile
import time
from pathlib import Path

from playthrough import Engine
from playthrough.errors import ConcurrencyError
from playthrough.examples.balances import OwnerBalances
from playthrough.examples.bank import Account, AccountOpened, Deposited, Transferred

OWNERS = ["ada", "grace", "alan"]


def writer(url: str, seed: int, commits: int) -> None:
    rng = random.Random(seed)
    with Engine.open(url) as engine:
        done = 0
        while done < commits:
            a, b = rng.sample(range(6), 2)
            try:
                if rng.random() < 0.5:
                    engine.fire(Deposited(account_id=a, amount=rng.randint(1, 100)))
                else:
                    engine.fire(Transferred(source_id=a, target_id=b, amount=rng.randint(1, 20)))
                engine.commit()
                done += 1
            except ConcurrencyError:
                engine.refresh()  # another writer moved the account: reload and retry


def main() -> None:
    path = Path(tempfile.mkdtemp()) / "bank.db"
    url = f"sqlite:///{path}"
    with Engine.open(url) as engine:
        for n in range(6):
            engine.fire(AccountOpened(account_id=n, owner=OWNERS[n % 3]))
            engine.fire(Deposited(account_id=n, amount=1_000))
        engine.commit()

    ctx = multiprocessing.get_context("spawn")
    writers = [ctx.Process(target=writer, args=(url, seed, 50)) for seed in range(3)]
    for w in writers:
        w.start()
    with Engine.open(url) as engine:
        while any(w.is_alive() for w in writers):
            report = engine.followers.run(OwnerBalances(), until_idle=True, batch_size=20)
            if report.processed:
                print(f"follower at #{report.position}, {report.processed} events this round")
            time.sleep(0.05)  # a real follower: engine.followers.run(projection, poll_interval=...)
        for w in writers:
            w.join()
        engine.followers.run(
            OwnerBalances(), until_idle=True
        )  # what committed after the last round
        [status] = engine.followers()
        print(f"caught up: position {status.position}, lag {status.lag}")

        truth: dict[str, int] = {}
        for account in engine.states.find(Account):
            truth[account.owner] = truth.get(account.owner, 0) + account.balance
        conn = sqlite3.connect(path)  # the read model is a plain table in the same file
        model = dict(conn.execute("SELECT owner, balance FROM owner_balance").fetchall())
        conn.close()
        print("read model:", dict(sorted(model.items())))
        assert model == truth, (model, truth)
        print("equal to the states' own balances")


if __name__ == "__main__":
    main()
