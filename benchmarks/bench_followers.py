"""A follower (``engine.followers.run``) against a bare loop doing the same reads,
handler calls and writes.

Usage::

    .venv/bin/python benchmarks/bench_followers.py [--backend sqlite|postgres|all]
        [--events N] [--reps R] [--url URL]
    .venv/bin/python benchmarks/bench_followers.py --build FILE --events N
    .venv/bin/python benchmarks/bench_followers.py --follow-once FILE [--batched]

A store holds N events (default 20,000) on 1,000 accounts: 70% deposits
(``Deposited``) and 30% transfers (``Transferred``), fired 1,000 per commit.
A projection keeps a balance per account in a table of the same database: a
deposit is one upsert, a transfer two. Interleaved (see harness.py), ``reps``
times each, from position 0 with an empty table:

- ours: ``engine.followers.run(projection, until_idle=True)``, batches of 500: per batch
  the store's follower transaction (lock, stored position, the events, the new
  position), each event decoded and handed to ``on_<Type>(event, tx)``, whose
  upserts go through ``tx.execute``;
- bare: the same loop by hand on the driver: per batch one write transaction
  that reads the stored position, selects the next 500 events, ``json.loads``
  each and calls the same upsert function with the driver's connection, then
  writes the position;

and the same twice more with a batched projection (``batched = True``: a
handler gets each run of consecutive events of its type, and writes them with
one ``tx.executemany``) against the bare loop cutting each page into the same
runs and calling the same ``executemany`` on the driver.

The goal is ours/bare at least 0.5 on both stores (the library's overhead per
event). ``--build`` and ``--follow-once`` split the two for callgrind, as in
bench_replay.py: instructions per event = (Ir(big) - Ir(small)) / (difference
in events).
"""

from __future__ import annotations

import argparse
import json
import random
import sqlite3
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from backends import Backend, PostgresBackend, backend
from domain import Deposited, Transferred, file_url
from harness import Result, Timer, Timing, markdown_table, measure
from playthrough import Engine, FollowerTransaction, Projection

ACCOUNTS = 1_000
BATCH = 500
TABLE = "bench_balances"
UPSERT = (
    f"INSERT INTO {TABLE} (account, balance) VALUES (?, ?) ON CONFLICT (account) "
    f"DO UPDATE SET balance = {TABLE}.balance + excluded.balance"
)
CREATE = f"CREATE TABLE IF NOT EXISTS {TABLE} (account BIGINT PRIMARY KEY, balance BIGINT)"

Execute = Callable[[str, tuple[Any, ...]], object]


def credit(execute: Execute, account: int, amount: int) -> None:
    """The handler's one write, the same for ours and bare."""
    execute(UPSERT, (account, amount))


def build(engine: Engine, events: int) -> None:
    rng = random.Random(23)
    for start in range(0, events, 1_000):
        for _ in range(min(1_000, events - start)):
            if rng.random() < 0.7:
                engine.fire(
                    Deposited(account_id=rng.randrange(ACCOUNTS), amount=rng.randrange(100))
                )
            else:
                a, b = rng.sample(range(ACCOUNTS), 2)
                engine.fire(Transferred(source_id=a, target_id=b, amount=1 + rng.randrange(9)))
        engine.commit()
        engine.repository.clear()


class Balances(Projection):
    name = "bench_balances"
    batch_size = BATCH

    def setup(self, tx: FollowerTransaction) -> None:
        tx.execute(CREATE)

    def reset(self, tx: FollowerTransaction) -> None:
        tx.execute(f"DELETE FROM {TABLE}")

    def on_Deposited(self, event: Deposited, tx: FollowerTransaction) -> None:
        credit(tx.execute, event.account_id, event.amount)

    def on_Transferred(self, event: Transferred, tx: FollowerTransaction) -> None:
        credit(tx.execute, event.source_id, -event.amount)
        credit(tx.execute, event.target_id, event.amount)


class BatchedBalances(Balances):
    """The same read model, batched: a list per run of one type, written with executemany."""

    name = "bench_balances_batched"
    batched = True

    def on_Deposited(self, events: list[Deposited], tx: FollowerTransaction) -> None:  # type: ignore[override]
        tx.executemany(UPSERT, [(e.account_id, e.amount) for e in events])

    def on_Transferred(self, events: list[Transferred], tx: FollowerTransaction) -> None:  # type: ignore[override]
        tx.executemany(
            UPSERT, transfer_rows([(e.source_id, e.target_id, e.amount) for e in events])
        )


def transfer_rows(transfers: list[tuple[int, int, int]]) -> list[tuple[int, int]]:
    return [row for s, t, a in transfers for row in ((s, -a), (t, a))]


ExecuteMany = Callable[[str, list[tuple[int, int]]], object]


def handle_run(executemany: ExecuteMany, kind: str, run: list[dict[str, Any]]) -> None:
    """The bare side of the batched handlers: one executemany per run of one type."""
    if kind == "bench.Deposited":
        executemany(UPSERT, [(d["account_id"], d["amount"]) for d in run])
    else:
        executemany(
            UPSERT, transfer_rows([(d["source_id"], d["target_id"], d["amount"]) for d in run])
        )


def handle_page(executemany: ExecuteMany, rows: list[tuple[int, str, str]]) -> None:
    """A page in runs of one type, each decoded and handed over at once."""
    kind: str | None = None
    run: list[dict[str, Any]] = []
    for _, k, data in rows:
        if k != kind:
            if run:
                assert kind is not None
                handle_run(executemany, kind, run)
            kind, run = k, []
        run.append(json.loads(data))
    if run:
        assert kind is not None
        handle_run(executemany, kind, run)


def handle(execute: Execute, kind: str, data: dict[str, Any]) -> None:
    """The bare side's dispatch: what the two handlers do, on the decoded dict."""
    if kind == "bench.Deposited":
        credit(execute, data["account_id"], data["amount"])
    else:
        credit(execute, data["source_id"], -data["amount"])
        credit(execute, data["target_id"], data["amount"])


BARE_POSITION = "CREATE TABLE IF NOT EXISTS bench_bare_position (name TEXT PRIMARY KEY, pos BIGINT)"


Bare = tuple[Callable[[], int], Callable[[], None]]  # the loop, and how to close its connection


def bare_sqlite(path: str, batched: bool) -> Bare:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute(BARE_POSITION)

    def run() -> int:
        conn.execute(f"DELETE FROM {TABLE}")
        conn.execute("INSERT OR REPLACE INTO bench_bare_position VALUES ('bare', 0)")
        done = 0
        while True:
            conn.execute("BEGIN IMMEDIATE")
            (position,) = conn.execute(
                "SELECT pos FROM bench_bare_position WHERE name = 'bare'"
            ).fetchone()
            rows = conn.execute(
                "SELECT position, type, data FROM pt_events WHERE position > ? "
                "ORDER BY position LIMIT ?",
                (position, BATCH),
            ).fetchall()
            if batched:
                handle_page(conn.executemany, rows)
            else:
                for _, kind, data in rows:
                    handle(conn.execute, kind, json.loads(data))
            if rows:
                conn.execute(
                    "UPDATE bench_bare_position SET pos = ? WHERE name = 'bare'", (rows[-1][0],)
                )
            conn.execute("COMMIT")
            done += len(rows)
            if len(rows) < BATCH:
                return done

    return run, conn.close


def bare_postgres(url: str, schema: str, batched: bool) -> Bare:
    import psycopg

    conn = psycopg.connect(url, autocommit=True)
    conn.execute(f'SET search_path TO "{schema}"')
    conn.execute(BARE_POSITION)

    def execute(sql: str, params: tuple[Any, ...]) -> object:
        return conn.execute(sql.replace("?", "%s"), params)

    def executemany(sql: str, params: list[tuple[int, int]]) -> object:
        with conn.cursor() as cur:
            cur.executemany(sql.replace("?", "%s"), params)
        return None

    def run() -> int:
        conn.execute(f"DELETE FROM {TABLE}")
        conn.execute(
            "INSERT INTO bench_bare_position VALUES ('bare', 0) "
            "ON CONFLICT (name) DO UPDATE SET pos = 0"
        )
        done = 0
        while True:
            with conn.transaction():
                row = conn.execute(
                    "SELECT pos FROM bench_bare_position WHERE name = 'bare' FOR UPDATE"
                ).fetchone()
                assert row is not None
                rows = conn.execute(
                    "SELECT position, type, data FROM pt_events WHERE position > %s "
                    "ORDER BY position LIMIT %s",
                    (row[0], BATCH),
                ).fetchall()
                if batched:
                    handle_page(executemany, rows)
                else:
                    for _, kind, data in rows:
                        handle(execute, kind, json.loads(data))
                if rows:
                    conn.execute(
                        "UPDATE bench_bare_position SET pos = %s WHERE name = 'bare'",
                        (rows[-1][0],),
                    )
            done += len(rows)
            if len(rows) < BATCH:
                return done

    return run, conn.close


def follow(engine: Engine, projection: Projection) -> int:
    engine.followers.reset(projection)
    return engine.followers.run(projection, until_idle=True).processed


def run(b: Backend, events: int, reps: int) -> list[Result]:
    with b.place() as place:
        with b.engine(place, building=True) as engine:
            build(engine, events)
        return [compare(b, place, events, reps, batched) for batched in (False, True)]


def compare(b: Backend, place: str, events: int, reps: int, batched: bool) -> Result:
    """Ours against bare on the store at ``place``, per event or batched."""
    bare, close = (
        bare_postgres(b.url, place, batched)
        if isinstance(b, PostgresBackend)
        else bare_sqlite(place, batched)
    )
    engine = b.engine(place)
    projection = BatchedBalances if batched else Balances

    def ours() -> Timing:
        engine.followers.reset(projection())
        timer = Timer()
        processed = engine.followers.run(projection(), until_idle=True).processed
        timing = timer.done(processed)
        assert processed == events
        return timing

    def floor() -> Timing:
        timer = Timer()
        done = bare()
        timing = timer.done(done)
        assert done == events
        return timing

    name = (
        f"follower, batched: executemany per run of one type, {events:,} events"
        if batched
        else f"follower, an upsert per write, {events:,} events"
    )
    try:
        return measure(name, "events/s", ours, floor, reps)
    finally:
        engine.close()
        close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["sqlite", "postgres", "all"], default="sqlite")
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--url", default=None)
    parser.add_argument("--build", metavar="FILE", help="only build a SQLite store of --events")
    parser.add_argument("--follow-once", metavar="FILE", help="only run the follower there once")
    parser.add_argument("--batched", action="store_true", help="--follow-once: the batched one")
    args = parser.parse_args()
    if args.build:
        with Engine.open(file_url(Path(args.build), synchronous="off")) as engine:
            build(engine, args.events)
        return
    if args.follow_once:
        with Engine.open(file_url(Path(args.follow_once), synchronous="off")) as engine:
            projection = BatchedBalances() if args.batched else Balances()
            print(f"followed {follow(engine, projection):,} events")
        return
    names = ["sqlite", "postgres"] if args.backend == "all" else [args.backend]
    for name in names:
        b = backend(name, url=args.url)
        reason = b.unavailable()
        if reason is not None:
            print(f"\n### {name}: skipped ({reason})")
            continue
        try:
            print(f"\n### {b.describe()}, {args.reps} repetitions\n")
            print(markdown_table(run(b, args.events, args.reps), goal=0.5))
            sys.stdout.flush()
        finally:
            b.close()


if __name__ == "__main__":
    main()
