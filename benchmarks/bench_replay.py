"""Full replay (``engine.admin.replay()``) against a bare loop reading and folding the same events.

Usage::

    .venv/bin/python benchmarks/bench_replay.py [--backend sqlite|postgres|all]
        [--events N] [--reps R] [--url URL]
    .venv/bin/python benchmarks/bench_replay.py --build FILE --events N
    .venv/bin/python benchmarks/bench_replay.py --replay-once FILE
    .venv/bin/python benchmarks/bench_replay.py --bare-once FILE

A store holds N events (default 60,000) on 1,000 accounts: 70% deposits
(``Deposited``, one state) and 30% transfers (``Transferred``, two states
coupled by one ``apply``), fired through the engine 1,000 events per commit.
Then, interleaved (see harness.py), ``reps`` times each:

- ours: ``engine.admin.replay()`` in a fresh engine: every snapshot dropped, the
  whole log played from blank in pages of 2,000 with its links, a snapshot set
  (and the heads values) written every 10,000 events;
- bare: the same events read in pages of 2,000 by position (``SELECT position,
  type, data``), ``json.loads`` of each and the same fold in a dict of
  balances, one read transaction per page, nothing written.

The issue's goal is ours/bare at least 0.3. The bare floor writes nothing, so
the ratio charges ours with its snapshot sets too.

``--build`` and ``--replay-once`` split the two for counting instructions, which
unlike wall time repeat on a shared machine: build two stores of different
sizes, count each replay with callgrind, and divide the difference by the
difference in events::

    .venv/bin/python benchmarks/bench_replay.py --build /tmp/r10.db --events 10000
    .venv/bin/python benchmarks/bench_replay.py --build /tmp/r30.db --events 30000
    valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.r10 \\
        .venv/bin/python benchmarks/bench_replay.py --replay-once /tmp/r10.db
    (the same for r30; instructions per event = (Ir(r30) - Ir(r10)) / 20000;
    --bare-once counts the bare loop the same way)
"""

from __future__ import annotations

import argparse
import json
import random
import sqlite3
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from backends import Backend, PostgresBackend, backend
from domain import Deposited, Transferred, file_url
from harness import Result, Timer, Timing, markdown_table, measure
from playthrough import Engine

ACCOUNTS = 1_000
PAGE = 2_000


def build(engine: Engine, events: int, cluster: int = ACCOUNTS) -> None:
    """Deposits and transfers; a transfer stays within a cluster of ``cluster`` accounts
    (by default all of them: one coupling component; smaller: ACCOUNTS / cluster)."""
    rng = random.Random(21)
    for start in range(0, events, 1_000):
        for _ in range(min(1_000, events - start)):
            if rng.random() < 0.7:
                engine.fire(
                    Deposited(account_id=rng.randrange(ACCOUNTS), amount=rng.randrange(100))
                )
            else:
                base = rng.randrange(ACCOUNTS // cluster) * cluster
                a, b = rng.sample(range(base, base + cluster), 2)
                engine.fire(Transferred(source_id=a, target_id=b, amount=1 + rng.randrange(9)))
        engine.commit()
        engine.repository.clear()


def fold(balances: dict[int, int], kind: str, data: dict[str, Any]) -> None:
    """What the ``apply`` hooks do, on plain dicts."""
    if kind == "bench.Deposited":
        balances[data["account_id"]] = balances.get(data["account_id"], 0) + data["amount"]
    else:
        amount = data["amount"]
        balances[data["source_id"]] = balances.get(data["source_id"], 0) - amount
        balances[data["target_id"]] = balances.get(data["target_id"], 0) + amount


Page = Callable[[int], list[tuple[int, str, str]]]


def bare_pages(page: Page) -> Iterator[list[tuple[int, str, str]]]:
    position = 0
    while True:
        rows = page(position)
        if not rows:
            return
        yield rows
        position = rows[-1][0]


def bare_sqlite(path: str) -> Callable[[], int]:
    def run() -> int:
        conn = sqlite3.connect(path, isolation_level=None)
        balances: dict[int, int] = {}

        def page(after: int) -> list[tuple[int, str, str]]:
            conn.execute("BEGIN")
            rows = conn.execute(
                "SELECT position, type, data FROM pt_events WHERE position > ? "
                "ORDER BY position LIMIT ?",
                (after, PAGE),
            ).fetchall()
            conn.execute("COMMIT")
            return rows

        played = 0
        for rows in bare_pages(page):
            for _, kind, data in rows:
                fold(balances, kind, json.loads(data))
            played += len(rows)
        conn.close()
        return played

    return run


def bare_postgres(url: str, schema: str) -> Callable[[], int]:
    def run() -> int:
        import psycopg

        balances: dict[int, int] = {}
        played = 0
        with psycopg.connect(url, autocommit=True) as conn:

            def page(after: int) -> list[tuple[int, str, str]]:
                with conn.transaction():
                    return conn.execute(
                        f'SELECT position, type, data FROM "{schema}".pt_events '
                        "WHERE position > %s ORDER BY position LIMIT %s",
                        (after, PAGE),
                    ).fetchall()

            for rows in bare_pages(page):
                for _, kind, data in rows:
                    fold(balances, kind, json.loads(data))
                played += len(rows)
        return played

    return run


def run(b: Backend, events: int, reps: int) -> Result:
    with b.place() as place:
        with b.engine(place, building=True) as engine:
            build(engine, events)
        bare = bare_postgres(b.url, place) if isinstance(b, PostgresBackend) else bare_sqlite(place)

        def ours() -> Timing:
            with b.engine(place) as engine:
                timer = Timer()
                report = engine.admin.replay()
                timing = timer.done(report.played)
            assert report.played == events, report
            return timing

        def floor() -> Timing:
            timer = Timer()
            played = bare()
            timing = timer.done(played)
            assert played == events
            return timing

        return measure(f"full replay, {events:,} events", "events/s", ours, floor, reps)


def stored(engine: Engine) -> tuple[list[Any], list[Any]]:
    """Every snapshot and heads value, and every heads row with its value."""
    with engine.store.reader() as reader:
        records = list(reader.iter_snapshots())
        keys = sorted({r.key for r in records})
        heads = sorted((k, tuple(h)) for k, h in reader.heads(keys).items())
        return sorted(tuple(r) for r in records), heads


def run_parallel(b: Backend, events: int, reps: int, workers: int) -> Result:
    """replay(workers=N) against replay() on a store of 100 components (clusters of 10)."""
    with b.place() as place:
        with b.engine(place, building=True) as engine:
            build(engine, events, cluster=10)
        with b.engine(place) as engine:
            engine.admin.replay()
            one = stored(engine)
            engine.admin.replay(workers=workers)
            if stored(engine) != one:
                raise SystemExit("replay(workers=N) wrote other rows than replay()")

        def timed(n: int) -> Callable[[], Timing]:
            def go() -> Timing:
                with b.engine(place) as engine:
                    timer = Timer()
                    report = engine.admin.replay(workers=n)
                    timing = timer.done(report.played)
                assert report.played == events, report
                return timing

            return go

        return measure(
            f"replay(workers={workers}) vs replay(), {events:,} events, 100 components",
            "events/s",
            timed(workers),
            timed(1),
            reps,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["sqlite", "postgres", "all"], default="sqlite")
    parser.add_argument("--events", type=int, default=60_000)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--url", default=None)
    parser.add_argument("--build", metavar="FILE", help="only build a SQLite store of --events")
    parser.add_argument("--replay-once", metavar="FILE", help="only replay that SQLite store once")
    parser.add_argument("--bare-once", metavar="FILE", help="only run the bare loop there once")
    parser.add_argument(
        "--workers",
        type=int,
        default=0,
        help="instead: replay(workers=N) against replay() on a store of 100 components",
    )
    args = parser.parse_args()
    if args.build:
        with Engine.open(file_url(Path(args.build), synchronous="off")) as engine:
            build(engine, args.events)
        return
    if args.bare_once:
        print(f"folded {bare_sqlite(args.bare_once)():,} events")
        return
    if args.replay_once:
        with Engine.open(file_url(Path(args.replay_once), synchronous="off")) as engine:
            report = engine.admin.replay()
        print(f"replayed {report.played:,} events")
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
            if args.workers:
                parallel = run_parallel(b, args.events, args.reps, args.workers)
                print(markdown_table([parallel], goal=1.7))
                print("\n(CPU: this process only; the workers' CPU is not counted)")
            else:
                print(markdown_table([run(b, args.events, args.reps)], goal=0.3))
            sys.stdout.flush()
        finally:
            b.close()


if __name__ == "__main__":
    main()
