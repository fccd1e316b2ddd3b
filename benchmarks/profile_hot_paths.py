"""Profile the hot paths with cProfile and list their top costs.

Usage::

    .venv/bin/python benchmarks/profile_hot_paths.py [--quick] [--top N] [--phase NAME ...]

Phases (the workloads of ``compare.py``, from ``workloads.py``, on a SQLite file in a
temporary directory with the default durable settings):

- ``one``: fire+commit of one Deposited event, repeated;
- ``two``: fire+commit of one Transferred event, repeated;
- ``batch``: 1000 Deposited events fired, then one commit, repeated;
- ``load``: ``load_many`` of the 300 accounts of the read log (coupled transfers,
  2100 events) in a fresh engine, repeated.

For each phase it prints the functions with the most own time (tottime) and the
playthrough functions with the most cumulative time; paths are shortened.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from backends import SQLiteBackend
from domain import Account, Deposited, Transferred, file_url, remove_db
from playthrough import Engine
from workloads import BATCH, READ_ACCOUNTS, WARM_ACCOUNTS, build_read_log, read_workload

FuncKey = tuple[str, int, str]


def _short(key: FuncKey) -> str:
    path, line, name = key
    if path == "~":
        return name  # a builtin, like <method 'execute' of 'sqlite3.Connection' objects>
    for marker in ("/src/playthrough/", "/site-packages/", "/lib/python3"):
        if marker in path:
            path = path.split(marker, 1)[1]
            if marker == "/src/playthrough/":
                path = "playthrough/" + path
            elif marker == "/lib/python3":
                path = "stdlib/" + path.split("/", 1)[1]
            break
    return f"{path}:{line}({name})"


def report(
    profile: cProfile.Profile, title: str, ops: int, unit: str, seconds: float, top: int
) -> None:
    stats = pstats.Stats(profile)
    raw: dict[FuncKey, tuple[int, int, float, float, object]] = stats.stats  # type: ignore[attr-defined]
    total = sum(tt for _, _, tt, _, _ in raw.values())
    print(f"== {title}: {ops} {unit} in {seconds:.2f}s under the profiler ({total:.2f}s profiled)")
    print(f"   {'own %':>6} {'own us/op':>10} {'cum us/op':>10} {'calls/op':>9}  function")
    by_own = sorted(raw.items(), key=lambda kv: kv[1][2], reverse=True)[:top]
    for key, (_, calls, tt, ct, _) in by_own:
        print(
            f"   {100 * tt / total:>5.1f}% {1e6 * tt / ops:>10.1f} {1e6 * ct / ops:>10.1f} "
            f"{calls / ops:>9.2f}  {_short(key)}"
        )
    print(f"   -- playthrough functions by cumulative time (top {top})")
    ours = [kv for kv in raw.items() if "/src/playthrough/" in kv[0][0]]
    for key, (_, calls, _tt, ct, _) in sorted(ours, key=lambda kv: kv[1][3], reverse=True)[:top]:
        print(
            f"   {100 * ct / total:>5.1f}% {'':>10} {1e6 * ct / ops:>10.1f} {calls / ops:>9.2f}  "
            f"{_short(key)}"
        )
    print()


def profiled(work: Callable[[], None]) -> tuple[cProfile.Profile, float]:
    profile = cProfile.Profile()
    start = time.perf_counter()
    profile.enable()
    work()
    profile.disable()
    return profile, time.perf_counter() - start


def phase_single(tmp: Path, commits: int, two: bool, top: int) -> None:
    path = tmp / "single.db"
    engine = Engine.open(file_url(path))
    try:
        for n in range(WARM_ACCOUNTS):
            engine.fire(Deposited(account_id=n, amount=1_000))
        engine.commit()

        def work() -> None:
            for i in range(commits):
                a = i % WARM_ACCOUNTS
                if two:
                    engine.fire(
                        Transferred(source_id=a, target_id=(a + 1) % WARM_ACCOUNTS, amount=1)
                    )
                else:
                    engine.fire(Deposited(account_id=a, amount=1))
                engine.commit()

        profile, seconds = profiled(work)
    finally:
        engine.close()
        remove_db(path)
    kind = "two-state" if two else "one-state"
    report(profile, f"fire+commit, {kind} event", commits, "commits", seconds, top)


def phase_batch(tmp: Path, commits: int, top: int) -> None:
    path = tmp / "batch.db"
    engine = Engine.open(file_url(path))
    try:
        for n in range(BATCH):
            engine.fire(Deposited(account_id=n, amount=1_000))
        engine.commit()

        def work() -> None:
            for _ in range(commits):
                for n in range(BATCH):
                    engine.fire(Deposited(account_id=n, amount=1))
                engine.commit()

        profile, seconds = profiled(work)
    finally:
        engine.close()
        remove_db(path)
    report(profile, f"{BATCH} events per commit", commits * BATCH, "events", seconds, top)


def phase_load(loads: int, top: int) -> None:
    """load_many of every account of the read log (coupled), in fresh engines."""
    backend = SQLiteBackend()
    profile = cProfile.Profile()
    seconds = 0.0
    try:
        with backend.place() as place:
            build_read_log(backend, place, read_workload(split=False)[0])
            for _ in range(loads):
                with backend.engine(place) as engine:
                    start = time.perf_counter()
                    profile.enable()
                    engine.load_many(Account, range(READ_ACCOUNTS))
                    profile.disable()
                    seconds += time.perf_counter() - start
    finally:
        backend.close()
    report(
        profile,
        f"load_many of {READ_ACCOUNTS} states",
        loads * READ_ACCOUNTS,
        "states",
        seconds,
        top,
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    parser.add_argument("--top", type=int, default=15, help="rows per table")
    parser.add_argument(
        "--phase", action="append", choices=["one", "two", "batch", "load"], help="repeatable"
    )
    args = parser.parse_args(argv)
    phases = args.phase or ["one", "two", "batch", "load"]
    scale = 1 if args.quick else 4
    with tempfile.TemporaryDirectory(prefix="pt-profile-") as tmp_name:
        tmp = Path(tmp_name)
        for phase in phases:
            if phase == "one":
                phase_single(tmp, 500 * scale, False, args.top)
            elif phase == "two":
                phase_single(tmp, 500 * scale, True, args.top)
            elif phase == "batch":
                phase_batch(tmp, 3 * scale, args.top)
            else:
                phase_load(3 * scale, args.top)
    return 0


if __name__ == "__main__":
    sys.exit(main())
