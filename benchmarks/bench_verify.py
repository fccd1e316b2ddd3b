"""``verify`` of a big store against a full ``replay()`` of the same store.

Usage::

    .venv/bin/python benchmarks/bench_verify.py [--backend sqlite|postgres|all]
        [--states N] [--reps R] [--quick] [--url URL]

A store holds N accounts (default 100,000) and 2N events: each account is
opened (``Opened``) and receives a deposit (``Deposited``) on a random account,
fired through the engine 1,000 events per commit (heads values on, the
default). One untimed ``engine.admin.replay()`` then writes its snapshot sets (every
10,000 events), so every timed run finds the same store. Interleaved, ``reps``
times each (see harness.py):

- ``engine.admin.verify()``: the heads and snapshot metadata checks, every snapshot
  and heads value against the log, each event's links against its payload, the
  determinism replay (in this process; with ``--subprocess``, in a subprocess
  with another hash seed, started before the first replay so the two run side
  by side) and the snapshot sync;
- ``engine.admin.replay()``: one full replay from blank, writing the same snapshot sets.

The goal is verify at most 3x the time of the replay, on both stores (verify
reads the log twice, from blank, and compares what the replay only writes).
The table gives both rates in events per second and replay/verify as the
ratio, so the goal reads as "ratio at least 0.33"; the time ratio verify/replay
is printed below each table. ``--quick``: 5,000 states, 2 repetitions.
"""

from __future__ import annotations

import argparse
import random
import time

from backends import Backend, backend
from domain import Deposited, Opened
from harness import Result, Timer, Timing, markdown_table, measure
from playthrough import Engine, Event


def build(b: Backend, place: str, states: int) -> int:
    """The store: ``states`` accounts, two events each on average; returns the head."""
    rng = random.Random(17)
    events: list[Event] = [Opened(account_id=i) for i in range(states)]
    events += [Deposited(account_id=rng.randrange(states), amount=1) for _ in range(states)]
    with b.engine(place, building=True) as engine:
        for start in range(0, len(events), 1_000):
            for event in events[start : start + 1_000]:
                engine.fire(event)
            engine.commit()
        engine.admin.replay()  # the snapshot sets every timed replay writes again
        return engine.head()


def run(b: Backend, states: int, reps: int, subprocess: bool = False) -> tuple[Result, float]:
    with b.place() as place:
        started = time.perf_counter()
        head = build(b, place, states)
        print(f"built {states:,} states, {head:,} events in {time.perf_counter() - started:.0f} s")

        def open_engine() -> Engine:
            return b.engine(place)

        def verify() -> Timing:
            with open_engine() as engine:
                timer = Timer()
                if subprocess:  # the second replay in a subprocess, alongside the first
                    report = engine.admin.verify(apps=["domain"], subprocess_replay=True)
                else:
                    report = engine.admin.verify(subprocess_replay=False)
                timing = timer.done(head)
            if not (report.ok and report.complete):
                raise SystemExit(f"verify did not pass:\n{report.to_text()}")
            if subprocess and "subprocess with" not in report.determinism.mode:
                raise SystemExit(f"the second replay did not run in a subprocess: {report}")
            return timing

        def replay() -> Timing:
            with open_engine() as engine:
                timer = Timer()
                engine.admin.replay()
                return timer.done(head)

        # "ours" is verify, "bare" the replay: ours/bare is replay time / verify time.
        result = measure(f"verify vs replay, {states:,} states", "events/s", verify, replay, reps)
    return result, 1 / result.ratio()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["sqlite", "postgres", "all"], default="all")
    parser.add_argument("--states", type=int, default=None)
    parser.add_argument("--reps", type=int, default=None)
    parser.add_argument("--quick", action="store_true", help="5,000 states, 2 repetitions")
    parser.add_argument("--url", default=None, help="the PostgreSQL server")
    parser.add_argument(
        "--subprocess",
        action="store_true",
        help="the determinism replay in a subprocess (started with the first replay)",
    )
    args = parser.parse_args()
    states = args.states or (5_000 if args.quick else 100_000)
    reps = args.reps or (2 if args.quick else 3)
    names = ["sqlite", "postgres"] if args.backend == "all" else [args.backend]
    for name in names:
        b = backend(name, url=args.url)
        why = b.unavailable()
        if why is not None:
            print(f"## {name}: skipped ({why})\n")
            continue
        print(f"## {name}: {b.describe()}, {reps} repetitions")
        result, times = run(b, states, reps, args.subprocess)
        print(markdown_table([result], goal=1 / 3))
        verdict = "within" if times <= 3 else "over"
        print(f"\nverify / replay time: {times:.2f} ({verdict} the goal of 3)\n")


if __name__ == "__main__":
    main()
