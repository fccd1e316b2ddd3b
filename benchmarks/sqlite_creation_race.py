"""How often do processes opening one fresh SQLite file at once fail?

Each round starts ``--processes`` processes that wait on a barrier file, then
all open the same new file with ``Engine.open`` and commit one event. A round
fails when any process raises; the report counts failed rounds and the errors
seen. ``PYTHONPATH=other/src`` measures another checkout's code (the code
before a fix). Before the creation race was fixed, two processes failed with "database
is locked" about 3 rounds in 10.

    .venv/bin/python benchmarks/sqlite_creation_race.py --rounds 50 --processes 2
"""

from __future__ import annotations

import argparse
import collections
import subprocess
import sys
import tempfile
from pathlib import Path

_CHILD = """
import sys
from playthrough import Engine
from playthrough.examples.bank import AccountOpened
db, n = sys.argv[1], sys.argv[2]
sys.stdout.write("ready\\n")
sys.stdout.flush()
sys.stdin.readline()  # the barrier: every process is started and imported
try:
    with Engine.open("sqlite:///" + db) as engine:
        engine.fire(AccountOpened(account_id=int(n), owner="x"))
        engine.commit()
except Exception as exc:
    print(type(exc).__name__ + ": " + str(exc).splitlines()[0][-60:])
    sys.exit(1)
"""


def run(rounds: int, processes: int) -> tuple[int, collections.Counter[str]]:
    failed = 0
    errors: collections.Counter[str] = collections.Counter()
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(rounds):
            db = Path(tmp) / f"race{r}.db"
            children = [
                subprocess.Popen(
                    [sys.executable, "-c", _CHILD, str(db), str(i)],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    text=True,
                )
                for i in range(processes)
            ]
            for child in children:  # every child imported, waiting on the barrier
                assert child.stdout is not None and child.stdin is not None
                child.stdout.readline()
            for child in children:
                assert child.stdin is not None
                child.stdin.write("go\n")
                child.stdin.flush()
            bad = False
            for child in children:
                out, _ = child.communicate()
                if child.returncode:
                    bad = True
                    errors[out.strip()] += 1
            failed += bad
    return failed, errors


def run_threads(rounds: int, openers: int) -> tuple[int, collections.Counter[str]]:
    """The same race between connections of one process, one thread each (faster)."""
    import threading

    from playthrough._stores import SQLiteStore
    from playthrough.errors import PlaythroughError

    failed = 0
    errors: collections.Counter[str] = collections.Counter()
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(rounds):
            path = str(Path(tmp) / f"race{r}.db")
            barrier = threading.Barrier(openers)
            seen: list[str] = []

            def open_it(
                path: str = path, barrier: threading.Barrier = barrier, seen: list[str] = seen
            ) -> None:
                barrier.wait()
                try:
                    SQLiteStore(path).close()
                except PlaythroughError as exc:
                    seen.append(type(exc).__name__ + ": " + str(exc)[-40:])

            threads = [threading.Thread(target=open_it) for _ in range(openers)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            failed += bool(seen)
            errors.update(seen)
    return failed, errors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=50)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument(
        "--threads", action="store_true", help="connections in threads of this process"
    )
    args = parser.parse_args()
    if args.threads:
        failed, errors = run_threads(args.rounds, args.processes)
    else:
        failed, errors = run(args.rounds, args.processes)
    unit = "threads" if args.threads else "processes"
    print(f"{failed}/{args.rounds} rounds failed ({args.processes} {unit} each)")
    for text, count in errors.most_common():
        print(f"  {count:4}  {text}")


if __name__ == "__main__":
    main()
