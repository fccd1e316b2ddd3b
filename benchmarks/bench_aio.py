"""The async engine against the sync one: one client, same work, same store, interleaved.

Each operation is a unit of work as a request does it: a fresh engine, load
an account, fire a deposit on it, commit (``--op commit``), or a fresh engine
and a cold load of a stored account (``--op load``). "ours" is
``playthrough.aio`` (awaited in one event loop), "bare" is the sync
``Engine`` on the same store: the figure is async/sync throughput (goal:
≥ 0.9, that is at most 10% overhead). Loopback PostgreSQL, SQLite files in a
temporary directory; bounded by ``--ops`` and ``--reps``. The ``driver`` row is
the floor under both: the bare driver's own async/sync ratio on one short
statement (psycopg's async connection against its sync one; on SQLite, a call
handed to a store thread and awaited against the same call made in place).

    .venv/bin/python benchmarks/bench_aio.py --backend all [--ops 500] [--reps 5]

Wall time on a shared machine does not repeat; ``--instructions`` counts the
instructions of one operation instead, per shell, op and backend: a process
doing N operations under callgrind (``--once SHELL OP N``, SQLite with
``synchronous=off``), run with N = 0 and N = 200, the difference divided by 200.
Callgrind counts user space only (the Python side of a thread hop, the
event loop, the driver), not the kernel's part of a wake-up::

    .venv/bin/python benchmarks/bench_aio.py --instructions [--backend sqlite]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

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


async def _interleave(
    result: Result,
    run_async: Callable[[], Awaitable[Timing]],
    run_sync: Callable[[], Timing],
    reps: int,
) -> None:
    """Warm both sides once (caches, connections), then time ``reps`` runs of each,
    alternating which goes first: async is ``result.ours``, sync ``result.bare``."""
    await run_async()
    run_sync()
    for rep in range(reps):
        if rep % 2 == 0:
            result.ours.append(await run_async())
            result.bare.append(run_sync())
        else:
            result.bare.append(run_sync())
            result.ours.append(await run_async())


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
        await _interleave(result, run_async, run_sync, reps)
    finally:
        await async_store.close()
        sync_store.close()
    return result


WARM = 20


def once(url: str, shell: str, op: str, n: int) -> None:
    """``n`` operations of one shell (after WARM of each, to fill the caches), then exit."""
    accounts = list(range(1, n + WARM + 1))
    with playthrough.connect(url) as store, store.engine() as engine:
        for a in accounts:
            engine.fire(Opened(account_id=a))
    if shell == "sync":
        with playthrough.connect(url) as store:
            for a in accounts:
                with store.engine() as engine:
                    engine.load(Account, a)
                    if op == "commit":
                        engine.fire(Deposited(account_id=a, amount=1))
        return

    async def run() -> None:
        async with await playthrough.aio.connect(url) as store:
            for a in accounts:
                async with store.engine() as engine:
                    await engine.load(Account, a)
                    if op == "commit":
                        await engine.fire(Deposited(account_id=a, amount=1))

    asyncio.run(run())


def instructions(backend: str, shell: str, op: str, n: int) -> int:
    """Instructions of one ``--once`` run under callgrind."""
    with tempfile.TemporaryDirectory() as tmp:
        url, drop = _url(backend, tmp)
        if backend == "sqlite":
            url += "?synchronous=off"
        out = Path(tmp) / "cg.out"
        try:
            command = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}"]
            subprocess.run(
                [*command, sys.executable, __file__, "--once", shell, op, str(n), "--url", url],
                check=True,
                capture_output=True,
                # String hashing is randomised per process; fixed, repeated counts agree.
                env={**os.environ, "PYTHONHASHSEED": "0"},
            )
        finally:
            drop()
        counts = re.findall(r"^summary: (\d+)", out.read_text(), re.MULTILINE)
        if not counts:
            raise RuntimeError(f"no summary line in {out}")
        return sum(int(c) for c in counts)  # one file; a line per thread if split


def report(backends: list[str], n: int = 200) -> None:
    print("| backend | op | sync instructions/op | async instructions/op | async/sync |")
    print("|---|---|---:|---:|---:|")
    for backend in backends:
        for op in ("commit", "load"):
            per = {}
            for shell in ("sync", "async"):
                base = instructions(backend, shell, op, 0)
                per[shell] = (instructions(backend, shell, op, n) - base) // n
            print(
                f"| {backend} | {op} | {per['sync']:,} | {per['async']:,} "
                f"| {per['async'] / per['sync']:.2f} |"
            )


async def _floor(backend: str, ops: int, reps: int) -> Result:
    """The bare driver's own async/sync ratio on one short statement: the floor under ours.

    PostgreSQL: psycopg's ``AsyncConnection`` against its ``Connection``, each
    executing and fetching the same one-row read. SQLite: ``sqlite3`` called on the
    event loop's thread against the same call handed to a store thread and awaited
    (one hop, as the async SQLite store makes per operation).
    """
    result = Result(f"driver ({backend})", "ops/s")
    query = "SELECT 1 WHERE %s::text[] IS NOT NULL"
    if backend == "postgres":
        sync_conn = psycopg.connect(PG_URL, autocommit=True)
        async_conn = await psycopg.AsyncConnection.connect(PG_URL, autocommit=True)

        def run_sync() -> Timing:
            timer = Timer()
            for _ in range(ops):
                sync_conn.execute(query, (["a"],)).fetchall()
            return timer.done(ops)

        async def run_async() -> Timing:
            timer = Timer()
            for _ in range(ops):
                await (await async_conn.execute(query, (["a"],))).fetchall()
            return timer.done(ops)

        close = [sync_conn.close, async_conn.close]
    else:
        import sqlite3

        from playthrough.aio._store import StoreThread

        thread = StoreThread()
        db = sqlite3.connect(":memory:", check_same_thread=False)

        def read() -> list[tuple[int]]:
            return db.execute("SELECT 1").fetchall()

        def run_sync() -> Timing:
            timer = Timer()
            for _ in range(ops):
                read()
            return timer.done(ops)

        async def run_async() -> Timing:
            timer = Timer()
            for _ in range(ops):
                await thread.submit(read)
            return timer.done(ops)

        close = [lambda: thread.shutdown(wait=True), db.close]
    try:
        await _interleave(result, run_async, run_sync, reps)
    finally:
        for closing in close:
            closed = closing()  # the async connection's close is a coroutine
            if asyncio.iscoroutine(closed):
                await closed
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--backend", choices=["sqlite", "postgres", "all"], default="all")
    parser.add_argument("--ops", type=int, default=500)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--instructions", action="store_true", help="count under callgrind")
    parser.add_argument("--once", nargs=3, metavar=("SHELL", "OP", "N"), help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    backends = ["sqlite", "postgres"] if args.backend == "all" else [args.backend]
    if args.once:
        shell, op, n = args.once
        once(args.url, shell, op, int(n))
        return
    if args.instructions:
        report(backends)
        return
    print("| backend | op | async ops/s | sync ops/s | async/sync (wall) | async/sync (CPU) |")
    print("|---|---|---|---|---|---|")
    for backend in backends:
        for op in ("commit", "load", "driver"):
            if op == "driver":
                r = asyncio.run(_floor(backend, args.ops * 10, args.reps))
            else:
                r = measure(backend, op, args.ops, args.reps)
            print(
                f"| {backend} | {op} | {Result.rate(r.ours):,.0f} | {Result.rate(r.bare):,.0f} "
                f"| {r.ratio():.2f} | {r.ratio(cpu=True):.2f} |"
            )


if __name__ == "__main__":
    main()
