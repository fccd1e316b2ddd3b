"""Instructions per commit: one event per commit, and per event at 1000 per commit.

Usage::

    .venv/bin/python benchmarks/bench_commit.py --once COMMITS --per-commit K

Opens a fresh SQLite store (``synchronous=off``, a temporary file), opens 100
accounts and warms the engine with a few commits, then fires COMMITS commits
of K ``Deposited`` events each (round robin over the accounts) and exits.
Wall time on a shared machine does not repeat; instruction counts do, so run
it twice under callgrind, with COMMITS = 0 and COMMITS = N, and divide the
difference by N (or by N * K for a figure per event)::

    for n in 0 200; do valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.one.$n \\
        .venv/bin/python benchmarks/bench_commit.py --once $n --per-commit 1; done
    for n in 0 4; do valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.batch.$n \\
        .venv/bin/python benchmarks/bench_commit.py --once $n --per-commit 1000; done

(one event per commit: (Ir(200) - Ir(0)) / 200; 1000 per commit:
(Ir(4) - Ir(0)) / 4000). ``--report`` runs those four under callgrind and
prints the figures.

``--new-states N [--max-states none]`` fires N ``Deposited`` events to N new
accounts into one pending commit (more than the default ``max_states``,
10,000) and commits it, the large-commit workload of ``compare.py``.
``--report-large`` counts it at 10,000, 20,000 and 30,000 events with the
default ``max_states`` and with none (no trimming at all), and prints the
instructions per event between each pair of sizes: O(1) amortized work per
fire means the same figure from 20,000 to 30,000 as from 10,000 to 20,000,
with or without the bound (a trim that rescanned the pending states on every
fire made it grow with the size)::

    .venv/bin/python benchmarks/bench_commit.py --report-large
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from domain import Deposited, Opened, file_url
from playthrough import Engine

ACCOUNTS = 100
WARM = 3


def run(commits: int, per_commit: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        url = file_url(Path(tmp) / "commit.db", synchronous="off")
        with Engine.open(url) as engine:
            for account in range(ACCOUNTS):
                engine.fire(Opened(account_id=account))
            engine.commit()
            n = 0
            for _ in range(WARM + commits):
                for _ in range(per_commit):
                    engine.fire(Deposited(account_id=n % ACCOUNTS, amount=1))
                    n += 1
                engine.commit()


def run_large(states: int, max_states: int | None) -> None:
    """``states`` new accounts, one event each, in one commit (nothing stored before)."""
    options = {} if max_states == DEFAULT else {"max_states": max_states}
    with tempfile.TemporaryDirectory() as tmp:
        url = file_url(Path(tmp) / "large.db", synchronous="off")
        with Engine.open(url, **options) as engine:
            engine.fire(Opened(account_id=-1))  # warm: the store and the classes in use
            engine.commit()
            for n in range(states):
                engine.fire(Deposited(account_id=n, amount=1))
            engine.commit()


DEFAULT = -1  # the engine's default max_states


def instructions(commits: int, per_commit: int) -> int:
    """Instructions of one ``--once`` run under callgrind."""
    return _counted(["--once", str(commits), "--per-commit", str(per_commit)])


def _counted(arguments: list[str]) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "cg.out"
        subprocess.run(
            [
                "valgrind",
                "--tool=callgrind",
                f"--callgrind-out-file={out}",
                sys.executable,
                __file__,
                *arguments,
            ],
            check=True,
            capture_output=True,
            # String hashing is randomised per process; fixed, repeated counts agree.
            env={**os.environ, "PYTHONHASHSEED": "0"},
        )
        match = re.search(r"^summary: (\d+)", out.read_text(), re.MULTILINE)
        if match is None:
            raise RuntimeError(f"no summary line in {out}")
        return int(match.group(1))


def report() -> None:
    base_one = instructions(0, 1)
    one = instructions(200, 1)
    base_batch = instructions(0, 1000)
    batch = instructions(4, 1000)
    print("| phase | instructions |")
    print("|---|---:|")
    print(f"| one event per commit, per commit | {(one - base_one) // 200:,} |")
    print(f"| 1000 events per commit, per event | {(batch - base_batch) // 4000:,} |")


def report_large() -> None:
    sizes = (10_000, 20_000, 30_000)
    print("| max_states | per event, 10,000 to 20,000 | per event, 20,000 to 30,000 |")
    print("|---|---:|---:|")
    for shown, flag in (("default (10,000)", []), ("None", ["--max-states", "none"])):
        counts = [_counted(["--new-states", str(n), *flag]) for n in sizes]
        first = (counts[1] - counts[0]) // (sizes[1] - sizes[0])
        second = (counts[2] - counts[1]) // (sizes[2] - sizes[1])
        print(f"| {shown} | {first:,} | {second:,} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--once", type=int, help="commits to run, then exit")
    parser.add_argument("--per-commit", type=int, default=1)
    parser.add_argument("--report", action="store_true", help="count both phases under callgrind")
    parser.add_argument("--new-states", type=int, help="one commit of this many new states")
    parser.add_argument("--max-states", choices=["default", "none"], default="default")
    parser.add_argument(
        "--report-large", action="store_true", help="count --new-states under callgrind"
    )
    args = parser.parse_args()
    if args.report:
        report()
    elif args.report_large:
        report_large()
    elif args.new_states is not None:
        run_large(args.new_states, DEFAULT if args.max_states == "default" else None)
    elif args.once is not None:
        run(args.once, args.per_commit)
    else:
        parser.error("give --once COMMITS, --new-states N, --report or --report-large")


if __name__ == "__main__":
    main()
