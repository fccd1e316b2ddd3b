"""The workloads the benchmark scripts share: sizes, warm-up, the read log."""

from __future__ import annotations

import random
from collections.abc import Sequence

from backends import Backend
from domain import Deposited, Opened, SplitTransferred, Transferred
from playthrough import Engine, Event

WARM_ACCOUNTS = 100  # the single-event phases cycle over these (all in memory)
BATCH = 1000
READ_ACCOUNTS = 300
READ_DEPOSITS = 4
READ_TRANSFERS = 600
READ_SEED = 10


def warm(engine: Engine, accounts: int) -> None:
    """Put ``accounts`` accounts in the log and in memory, so timed fires load nothing."""
    for n in range(accounts):
        engine.fire(Deposited(account_id=n, amount=1_000))
    engine.commit()


def read_workload(*, split: bool) -> tuple[list[Event], dict[int, tuple[int, int]]]:
    """The events of the read log, and each account's expected (balance, movements)."""
    rng = random.Random(READ_SEED)
    events: list[Event] = [Opened(account_id=n) for n in range(READ_ACCOUNTS)]
    for _ in range(READ_DEPOSITS):
        events += [
            Deposited(account_id=n, amount=rng.randint(1, 100)) for n in range(READ_ACCOUNTS)
        ]
    cls = SplitTransferred if split else Transferred
    for _ in range(READ_TRANSFERS):
        a, b = rng.sample(range(READ_ACCOUNTS), 2)
        events.append(cls(source_id=a, target_id=b, amount=rng.randint(1, 10)))
    expected = {n: [0, 0] for n in range(READ_ACCOUNTS)}
    for e in events:
        if isinstance(e, Deposited):
            expected[e.account_id][0] += e.amount
            expected[e.account_id][1] += 1
        elif isinstance(e, Transferred | SplitTransferred):
            expected[e.source_id][0] -= e.amount
            expected[e.target_id][0] += e.amount
            expected[e.source_id][1] += 1
            expected[e.target_id][1] += 1
    return events, {n: (b, m) for n, (b, m) in expected.items()}


def build_read_log(be: Backend, place: str, events: Sequence[Event]) -> None:
    """One event per commit (setup, untimed: SQLite builds with synchronous=normal)."""
    with be.engine(place, building=True) as engine:
        for event in events:
            engine.fire(event)
            engine.commit()
