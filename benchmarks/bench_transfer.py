"""Export and import throughput on SQLite against a bare SELECT / INSERT loop.

Usage::

    .venv/bin/python benchmarks/bench_transfer.py [--events N] [--reps R]

A SQLite file (WAL, synchronous=FULL, the store's defaults) holds N events
(default 100,000): deposits on 1000 accounts and two-state transfers, appended
through the engine 1000 events per commit. Then, interleaved (see harness.py):

- export: ``engine.log.export`` into a gzip file (level 6, as ``playthrough export``
  writes), against a bare loop over ``SELECT`` of the events and links that
  writes each row as a JSON line into a gzip file of the same level;
- import: ``engine.admin.import_log`` of that file into a fresh store (one
  transaction, checksum, positions kept, heads moved), against a bare loop that
  reads the same file's lines, ``json.loads`` them and ``executemany``s the
  ``INSERT``s of events and links in one transaction (no heads, no checks).

The goal is at least 50,000 events/s for export and for import; the table
gives the rates and ours/bare.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import random
import sqlite3
import tempfile
from pathlib import Path

from domain import Deposited, Transferred
from harness import Timer, Timing, markdown_table, measure
from playthrough import Engine


def build(path: Path, events: int) -> None:
    rng = random.Random(13)
    with Engine.open(f"sqlite:///{path}") as engine:
        for start in range(0, events, 1000):
            for _ in range(min(1000, events - start)):
                if rng.random() < 0.7:
                    engine.fire(
                        Deposited(account_id=rng.randrange(1000), amount=rng.randrange(100))
                    )
                else:
                    a, b = rng.sample(range(1000), 2)
                    engine.fire(Transferred(source_id=a, target_id=b, amount=1))
            engine.commit()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="pt-bench-transfer-"))
    source = work / "source.db"
    build(source, args.events)
    dump = work / "ours.jsonl.gz"
    counter = iter(range(10**9))

    def export_ours() -> Timing:
        with Engine.open(f"sqlite:///{source}") as engine:
            timer = Timer()
            with gzip.open(dump, "wb", compresslevel=6) as out:
                report = engine.log.export(out)
            return timer.done(report.count)

    def export_bare() -> Timing:
        conn = sqlite3.connect(source)
        timer = Timer()
        count = 0
        with gzip.open(work / "bare.jsonl.gz", "wb", compresslevel=6) as out:
            conn.execute("BEGIN")
            for row in conn.execute(
                "SELECT position, type, data, caused_by, fired_at FROM pt_events ORDER BY position"
            ):
                out.write((json.dumps(row) + "\n").encode())
                count += 1
            for row in conn.execute("SELECT * FROM pt_links ORDER BY position"):
                out.write((json.dumps(row) + "\n").encode())
            conn.execute("COMMIT")
        conn.close()
        return timer.done(count)

    def import_ours() -> Timing:
        target = work / f"ours-{next(counter)}.db"
        with Engine.open(f"sqlite:///{target}") as engine:
            timer = Timer()
            with dump.open("rb") as source_file:
                report = engine.admin.import_log(source_file)
            timing = timer.done(report.count)
        os.remove(target)
        return timing

    def import_bare() -> Timing:
        target = work / f"bare-{next(counter)}.db"
        Engine.open(f"sqlite:///{target}").close()  # the same schema and settings
        conn = sqlite3.connect(target, isolation_level=None)
        conn.execute("PRAGMA synchronous=FULL")
        timer = Timer()
        count = 0
        conn.execute("BEGIN IMMEDIATE")
        events: list[tuple[object, ...]] = []
        links: list[tuple[object, ...]] = []

        def flush() -> None:
            conn.executemany(
                "INSERT INTO pt_events (position, type, data, caused_by, fired_at) "
                "VALUES (?, ?, ?, ?, ?)",
                events,
            )
            conn.executemany("INSERT INTO pt_links VALUES (?, ?, ?, ?)", links)
            events.clear()
            links.clear()

        with gzip.open(dump, "rb") as lines:
            next(lines)
            for raw in lines:
                row = json.loads(raw)
                if "trailer" in row:
                    break
                p = row["position"]
                events.append((p, row["type"], row["data"], row["caused_by"], row["fired_at"]))
                links.extend((t, i, p, g) for t, i, g in row["links"])
                count += 1
                if len(events) >= 5000:
                    flush()
        flush()
        conn.execute("COMMIT")
        timing = timer.done(count)
        conn.close()
        os.remove(target)
        return timing

    results = [
        measure("export (gzip)", "events/s", export_ours, export_bare, args.reps),
        measure("import (gzip)", "events/s", import_ours, import_bare, args.reps),
    ]
    print(f"{args.events:,} events, SQLite file, {args.reps} repetitions\n")
    print(markdown_table(results, goal=None))


if __name__ == "__main__":
    main()
