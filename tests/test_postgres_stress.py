"""Several OS processes commit transfers among shared accounts while a follower tails the log.

What it proves, on a real server with real concurrency:

- optimistic concurrency holds across processes: money is conserved, and every
  balance equals a replay of the transfers that the log holds;
- every committed event is in the log exactly once, under the position its
  writer was told, and positions are strictly increasing (here: 1, 2, 3, …);
- commit order is what readers see: a follower that repeatedly asks for
  ``events_after(last)`` gets every event exactly once, in order, and never
  sees a gap (an event with a smaller position committing after a larger one
  would show up as one, or be missed).
"""

from __future__ import annotations

import multiprocessing
import time

import pytest

from playthrough import Engine
from playthrough._stores.postgres import PostgresStore

from .pg_domain import Account, Opened, Transfer, transfer_worker

WORKERS = 4
TRANSFERS = 60
ACCOUNTS = 4
OPENING = 1_000
DEADLINE = 60.0  # seconds for the whole run; a hang fails instead of blocking the suite

pytestmark = pytest.mark.postgres


def test_processes_transfer_while_a_follower_tails_the_log(pg_url: str, pg_schema: str) -> None:
    with Engine.open(pg_url, schema=pg_schema) as setup:
        for n in range(ACCOUNTS):
            setup.fire(Opened(account_id=n, amount=OPENING))
        opened: list[int] = [e.id for e in setup.commit() if e.id is not None]

    follower = PostgresStore(pg_url, schema=pg_schema)
    seen: list[int] = []
    seen_types: dict[int, str] = {}
    reads = 0

    def follow() -> None:
        nonlocal reads
        with follower.reader() as r:
            page = r.events_after(seen[-1] if seen else 0, 50)
        reads += 1
        for e in page:
            expected_next = (seen[-1] if seen else 0) + 1
            assert e.position == expected_next, (
                f"follower saw position {e.position} right after {expected_next - 1}: "
                "a gap that a later commit could fill"
            )
            seen.append(e.position)
            seen_types[e.position] = e.type

    ctx = multiprocessing.get_context("spawn")
    deadline = time.monotonic() + DEADLINE
    with ctx.Pool(WORKERS) as pool:
        result = pool.starmap_async(
            transfer_worker,
            [(pg_url, pg_schema, w, TRANSFERS, ACCOUNTS) for w in range(WORKERS)],
        )
        while not result.ready():
            assert time.monotonic() < deadline, "the workers did not finish in time"
            follow()
        outcomes = result.get(timeout=max(1.0, deadline - time.monotonic()))
    follow()
    while True:  # drain what committed after the last read of the loop
        before = len(seen)
        follow()
        if len(seen) == before:
            break

    committed: dict[int, tuple[int, int, int]] = {}
    conflicts = 0
    for _, rows, worker_conflicts in outcomes:
        assert len(rows) == TRANSFERS
        conflicts += worker_conflicts
        for position, source, target, amount in rows:
            assert position not in committed, f"position {position} given to two commits"
            committed[position] = (source, target, amount)

    with follower.reader() as r:
        log = r.events_after(0, 100_000)
        head = r.head()
    follower.close()

    positions = [e.position for e in log]
    assert positions == list(range(1, head + 1)), "positions are not strictly increasing 1..head"
    assert len(log) == ACCOUNTS + WORKERS * TRANSFERS
    assert sorted([*opened, *committed]) == positions, "a committed event is missing or extra"
    assert seen == positions, "the follower did not see every event exactly once, in order"
    assert all(seen_types[p] == "pgstress.Transfer" for p in committed)

    # The stored transfers are exactly the ones the writers committed, at their positions.
    with Engine.open(pg_url, schema=pg_schema) as check:
        from playthrough._serialization import decode_event

        balances = dict.fromkeys(range(ACCOUNTS), OPENING)
        for stored in log[ACCOUNTS:]:
            event = decode_event(stored)
            assert isinstance(event, Transfer)
            assert committed[stored.position] == (event.source_id, event.target_id, event.amount)
            balances[event.source_id] -= event.amount
            balances[event.target_id] += event.amount
        loaded = check.load_many(Account, range(ACCOUNTS))
    assert sum(a.balance for a in loaded) == ACCOUNTS * OPENING, "money was created or lost"
    assert {a.id: a.balance for a in loaded} == balances
    assert all(a.movements == 1 + sum(a.id in c[:2] for c in committed.values()) for a in loaded)
    assert reads > 1  # the follower really ran while the writers did
    print(f"{WORKERS} writers, {conflicts} conflicts retried, follower read {reads} times")
