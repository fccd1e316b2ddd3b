"""The async engine against the sync one: one client, same work, same store, interleaved.

Each operation is a unit of work as a request does it: a fresh engine, load
an account, fire a deposit on it, commit (``--op commit``), or a fresh engine
and a cold load of a stored account (``--op load``). "ours" is
``playthrough.aio`` (awaited in one event loop), "bare" is the sync
``Engine`` on the same store: the figure is async/sync throughput (goal:
≥ 0.9, that is at most 10% overhead). Loopback PostgreSQL, SQLite files in a
temporary directory; bounded by ``--ops`` and ``--reps``.

    .venv/bin/python benchmarks/bench_aio.py --backend all [--ops 500] [--reps 5]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import uuid
from collections.abc import Callable

import psycopg

import playthrough
import playthrough.aio
from domain import Account, Deposited, Opened
from harness import Result, Timer, Timing

PG_URL = os.environ.get("PLAYTHROUGH_PG_URL", "postgresql://root@127.0.0.1:5432/test")


def _url(backend: str, tmp: str) -> tuple[str, Callable[[], None]]:
    if backend == "sqlite":
        return f"sqlite:///{tmp}/aio-{uuid.uuid4().hex[:8]}.db", lambda: None
    schema = f"pt_bench_{uuid.uuid4().hex[:10]}"

    def drop() -> None:
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')

    return f"{PG_URL}?schema={schema}", drop


def measure(backend: str, op: str, ops: int, reps: int) -> Result:
    with tempfile.TemporaryDirectory() as tmp:
        url, drop = _url(backend, tmp)
        try:
            return asyncio.run(_measure(url, op, ops, reps))
        finally:
            drop()


async def _measure(url: str, op: str, ops: int, reps: int) -> Result:
    sync_store = playthrough.connect(url)
    async_store = await playthrough.aio.connect(url)
    accounts = list(range(1, ops + 1))
    with sync_store.engine() as engine:
        for a in accounts:
            engine.fire(Opened(account_id=a))
    result = Result(f"{op} ({url.split(':')[0]})", "ops/s")

    def run_sync() -> Timing:
        timer = Timer()
        for a in accounts:
            with sync_store.engine() as engine:
                if op == "commit":
                    engine.load(Account, a)
                    engine.fire(Deposited(account_id=a, amount=1))
                else:
                    engine.load(Account, a)
        return timer.done(len(accounts))

    async def run_async() -> Timing:
        timer = Timer()
        for a in accounts:
            async with async_store.engine() as engine:
                if op == "commit":
                    await engine.load(Account, a)
                    await engine.fire(Deposited(account_id=a, amount=1))
                else:
                    await engine.load(Account, a)
        return timer.done(len(accounts))

    try:
        await run_async()  # warm both (caches, connections)
        run_sync()
        for rep in range(reps):
            if rep % 2 == 0:
                result.ours.append(await run_async())
                result.bare.append(run_sync())
            else:
                result.bare.append(run_sync())
                result.ours.append(await run_async())
    finally:
        await async_store.close()
        sync_store.close()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--backend", choices=["sqlite", "postgres", "all"], default="all")
    parser.add_argument("--ops", type=int, default=500)
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args()
    backends = ["sqlite", "postgres"] if args.backend == "all" else [args.backend]
    print("| backend | op | async ops/s | sync ops/s | async/sync (wall) | async/sync (CPU) |")
    print("|---|---|---|---|---|---|")
    for backend in backends:
        for op in ("commit", "load"):
            r = measure(backend, op, args.ops, args.reps)
            print(
                f"| {backend} | {op} | {Result.rate(r.ours):,.0f} | {Result.rate(r.bare):,.0f} "
                f"| {r.ratio():.2f} | {r.ratio(cpu=True):.2f} |"
            )


if __name__ == "__main__":
    main()
