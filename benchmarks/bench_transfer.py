"""Export and import throughput on SQLite against a bare SELECT / INSERT loop.

Usage::

    .venv/bin/python benchmarks/bench_transfer.py [--events N] [--reps R]
    .venv/bin/python benchmarks/bench_transfer.py --build FILE --events N
    .venv/bin/python benchmarks/bench_transfer.py --export-once FILE [--bare]
    .venv/bin/python benchmarks/bench_transfer.py --import-once FILE [--bare]

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

The goals are at least 50,000 events/s and ours/bare at least 0.8, for export
and for import; the table gives the rates and ours/bare.

``--build`` and the ``--*-once`` modes split building from the work, for
counting instructions, which unlike wall time repeat on a shared machine:
``--build FILE`` writes the store FILE and its export ``FILE.jsonl.gz``;
``--export-once FILE`` exports FILE once (into a temporary file),
``--import-once FILE`` imports ``FILE.jsonl.gz`` once into a fresh store, and
``--bare`` runs the bare loop instead. Build two stores of different sizes,
count each run with callgrind and divide the difference by the difference in
events::

    .venv/bin/python benchmarks/bench_transfer.py --build /tmp/t10.db --events 10000
    .venv/bin/python benchmarks/bench_transfer.py --build /tmp/t30.db --events 30000
    PYTHONHASHSEED=0 valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.i10 \\
        .venv/bin/python benchmarks/bench_transfer.py --import-once /tmp/t10.db
    (the same for t30; instructions per event = (Ir(t30) - Ir(t10)) / 20000)
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import random
import sqlite3
import tempfile
from itertools import count as counting
from pathlib import Path

from domain import Deposited, Transferred, file_url
from harness import Timer, Timing, markdown_table, measure
from playthrough import Engine


def build(path: Path, events: int) -> None:
    rng = random.Random(13)
    with Engine.open(file_url(path)) as engine:
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


def export_ours(source: Path, dump: Path) -> Timing:
    with Engine.open(file_url(source)) as engine:
        timer = Timer()
        with gzip.open(dump, "wb", compresslevel=6) as out:
            report = engine.log.export(out)
        return timer.done(report.count)


def export_bare(source: Path, dump: Path) -> Timing:
    conn = sqlite3.connect(source)
    timer = Timer()
    count = 0
    with gzip.open(dump, "wb", compresslevel=6) as out:
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


def _remove(target: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(f"{target}{suffix}"):
            os.remove(f"{target}{suffix}")


def import_ours(dump: Path, target: Path) -> Timing:
    with Engine.open(file_url(target)) as engine:
        timer = Timer()
        with dump.open("rb") as source_file:
            report = engine.admin.import_log(source_file)
        timing = timer.done(report.count)
    _remove(target)
    return timing


def import_bare(dump: Path, target: Path) -> Timing:
    Engine.open(file_url(target)).close()  # the same schema and settings
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
    _remove(target)
    return timing


def dump_of(store: Path) -> Path:
    return store.with_name(store.name + ".jsonl.gz")


def once(args: argparse.Namespace) -> None:
    work = Path(tempfile.mkdtemp(prefix="pt-bench-transfer-"))
    if args.export_once:
        export = export_bare if args.bare else export_ours
        timing = export(Path(args.export_once), work / "out.jsonl.gz")
        os.remove(work / "out.jsonl.gz")
    else:
        load = import_bare if args.bare else import_ours
        timing = load(dump_of(Path(args.import_once)), work / "target.db")
    os.rmdir(work)
    print(f"{'bare' if args.bare else 'ours'}: {timing.ops:,} events in {timing.wall:.2f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--build", metavar="FILE", help="only build a store and its export")
    parser.add_argument("--export-once", metavar="FILE", help="only export that store once")
    parser.add_argument("--import-once", metavar="FILE", help="only import FILE.jsonl.gz once")
    parser.add_argument("--bare", action="store_true", help="with --*-once: the bare loop")
    args = parser.parse_args()
    if args.build:
        store = Path(args.build)
        build(store, args.events)
        export_ours(store, dump_of(store))
        return
    if args.export_once or args.import_once:
        once(args)
        return
    work = Path(tempfile.mkdtemp(prefix="pt-bench-transfer-"))
    source = work / "source.db"
    build(source, args.events)
    dump = work / "ours.jsonl.gz"
    counter = counting()
    results = [
        measure(
            "export (gzip)",
            "events/s",
            lambda: export_ours(source, dump),
            lambda: export_bare(source, work / "bare.jsonl.gz"),
            args.reps,
        ),
        measure(
            "import (gzip)",
            "events/s",
            lambda: import_ours(dump, work / f"ours-{next(counter)}.db"),
            lambda: import_bare(dump, work / f"bare-{next(counter)}.db"),
            args.reps,
        ),
    ]
    print(f"{args.events:,} events, SQLite file, {args.reps} repetitions\n")
    print(markdown_table(results, goal=None))


if __name__ == "__main__":
    main()
