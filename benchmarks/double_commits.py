"""Double commits of handlers under two concurrent ``playthrough handlers`` runners.

Usage::

    .venv/bin/python benchmarks/double_commits.py [--orders 200] [--runners 2]
        [--backend sqlite|postgres|all] [--url POSTGRES_URL]

Commits ``--orders`` orders whose handler (issue one invoice) is left pending,
then starts ``--runners`` ``playthrough handlers`` processes at once on the
store and counts, from the log, the orders that got more than one invoice and
the orders that got none. Exactly once means 0 and 0. The runners' exit codes
are printed too. Run it against another checkout's code by putting that
checkout's ``src`` first on PYTHONPATH.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import uuid
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_PG = os.environ.get("PLAYTHROUGH_PG_URL", "postgresql://root@127.0.0.1:5432/test")


def _env(**extra: str) -> dict[str, str]:
    path = [str(HERE), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(path), **extra}


def _setup(url: str, orders: int) -> None:
    code = (
        "import sys\n"
        "from playthrough import Engine, HandlerFailed\n"
        "from runners_domain import OrderPlaced\n"
        "with Engine.open(sys.argv[1]) as engine:\n"
        "    for n in range(int(sys.argv[2])):\n"
        "        engine.fire(OrderPlaced(order_id=n))\n"
        "    try:\n"
        "        engine.commit()\n"
        "    except HandlerFailed:\n"
        "        pass\n"
    )
    subprocess.run(
        [sys.executable, "-c", code, url, str(orders)], check=True, env=_env(RUNNERS_SETUP="1")
    )


def _count(url: str) -> Counter[int]:
    code = (
        "import json, sys\n"
        "from playthrough import Engine\n"
        "with Engine.open(sys.argv[1]) as engine, engine.store.reader() as r:\n"
        "    print(json.dumps([e.data for e in r.events_after(0, 10**9)\n"
        "                      if e.type == 'bench.runners.InvoiceIssued']))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, url], check=True, env=_env(), capture_output=True, text=True
    )
    return Counter(json.loads(d)["order_id"] for d in json.loads(out.stdout))


def run(url: str, orders: int, runners: int) -> tuple[int, int, list[int]]:
    _setup(url, orders)
    command = [
        sys.executable,
        "-c",
        "from playthrough._cli import main; main()",
        "handlers",
        url,
        "--app",
        "runners_domain",
    ]
    procs = [
        subprocess.Popen(command, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        for _ in range(runners)
    ]
    codes = [p.wait(timeout=600) for p in procs]
    invoices = _count(url)
    doubled = sum(1 for n in range(orders) if invoices[n] > 1)
    missing = sum(1 for n in range(orders) if invoices[n] == 0)
    return doubled, missing, codes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--orders", type=int, default=200)
    parser.add_argument("--runners", type=int, default=2)
    parser.add_argument("--backend", choices=["sqlite", "postgres", "all"], default="all")
    parser.add_argument("--url", default=DEFAULT_PG)
    args = parser.parse_args()
    if args.backend in ("sqlite", "all"):
        with tempfile.TemporaryDirectory() as tmp:
            url = f"sqlite:///{Path(tmp) / 'runners.db'}"
            doubled, missing, codes = run(url, args.orders, args.runners)
            print(
                f"sqlite: {doubled}/{args.orders} orders invoiced more than once, "
                f"{missing} never; runner exit codes {codes}"
            )
    if args.backend in ("postgres", "all"):
        import psycopg

        schema = f"pt_bench_{uuid.uuid4().hex[:12]}"
        sep = "&" if "?" in args.url else "?"
        try:
            doubled, missing, codes = run(
                f"{args.url}{sep}schema={schema}", args.orders, args.runners
            )
            print(
                f"postgres: {doubled}/{args.orders} orders invoiced more than once, "
                f"{missing} never; runner exit codes {codes}"
            )
        finally:
            with psycopg.connect(args.url, autocommit=True) as conn:
                conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


if __name__ == "__main__":
    main()
