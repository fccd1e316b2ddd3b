"""A web app under load: async endpoints on playthrough.aio against sync ones in the thread pool.

One uvicorn worker (a subprocess on a loopback port) serves ``examples/fastapi_app.py``
on PostgreSQL; ``--clients`` concurrent httpx clients each post ``--requests``
deposits to an account of their own (no conflicts: this measures the I/O path),
first to the sync routes (``def`` endpoints, FastAPI's thread pool, the sync
engine), then to the async ones (``/async``, ``async def`` endpoints on
``playthrough.aio``), interleaved over ``--reps`` rounds. Both stores get the
same pool size (``--pool``). Reported: commits/s (median over rounds) and the
p50/p99 request latency over all rounds, and the server's CPU time per commit
(from ``/proc``, so less at the mercy of other work on the machine than the
wall time); goal: async ≥ 1.3x commits/s with a lower p99. Bounded: every
request has a timeout, the server is stopped at the end.

    .venv/bin/python benchmarks/bench_aio_web.py [--clients 50] [--requests 20] [--reps 3]
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import os
import socket
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import psycopg

PG_URL = os.environ.get("PLAYTHROUGH_PG_URL", "postgresql://root@127.0.0.1:5432/test")
EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "fastapi_app.py"
TIMEOUT = 60.0


def serve(url: str, port: int, pool: int) -> None:
    """The server process: the example app on one uvicorn worker."""
    import uvicorn

    spec = importlib.util.spec_from_file_location("fastapi_app_bench", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    app = module.create_app(url, max_size=pool)
    # Keep-alive as long as a request may take: on a loaded machine uvicorn's 5 s default
    # closed connections the client was about to reuse (httpx.ReadError mid-round).
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        workers=1,
        timeout_keep_alive=int(TIMEOUT),
    )


async def _round(base: str, clients: int, requests: int, first: int) -> tuple[float, list[float]]:
    latencies: list[float] = []
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=base, timeout=TIMEOUT, limits=limits) as client:

        async def one_client(n: int) -> None:
            account = first + n
            for _ in range(requests):
                started = time.perf_counter()
                r = await client.post(f"/accounts/{account}/deposits", json={"amount": 1})
                latencies.append(time.perf_counter() - started)
                if r.status_code != 200:
                    raise RuntimeError(f"{r.status_code}: {r.text}")

        started = time.perf_counter()
        await asyncio.gather(*(one_client(n) for n in range(clients)))
        wall = time.perf_counter() - started
    return clients * requests / wall, latencies


def _cpu_seconds(pid: int) -> float:
    """The user and system CPU time a process has used (Linux ``/proc``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_up(base: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("the server stopped while starting")
        try:
            if httpx.get(f"{base}/sales", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError("the server did not start")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--requests", type=int, default=20)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--pool", type=int, default=10)
    parser.add_argument("--serve", nargs=2, metavar=("URL", "PORT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve[0], int(args.serve[1]), args.pool)
        return
    schema = f"pt_bench_{uuid.uuid4().hex[:10]}"
    url = f"{PG_URL}?schema={schema}"
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, __file__, "--serve", url, str(port), "--pool", str(args.pool)]
    proc = subprocess.Popen(cmd)
    rates: dict[str, list[float]] = {"sync": [], "async": []}
    lat: dict[str, list[float]] = {"sync": [], "async": []}
    cpu: dict[str, float] = {"sync": 0.0, "async": 0.0}
    try:
        _wait_up(base, proc)
        asyncio.run(_round(base, args.clients, 2, 1_000_000))  # warm both paths
        asyncio.run(_round(base + "/async", args.clients, 2, 2_000_000))
        account = 1
        for rep in range(args.reps):
            order = ["sync", "async"] if rep % 2 == 0 else ["async", "sync"]
            for side in order:
                prefix = "" if side == "sync" else "/async"
                used = _cpu_seconds(proc.pid)
                rate, latencies = asyncio.run(
                    _round(base + prefix, args.clients, args.requests, account)
                )
                cpu[side] += _cpu_seconds(proc.pid) - used
                account += args.clients
                rates[side].append(rate)
                lat[side].extend(latencies)
    finally:
        proc.terminate()
        proc.wait(TIMEOUT)
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    print(
        f"{args.clients} clients x {args.requests} deposits, {args.reps} rounds, pool {args.pool}"
    )
    print("| side | commits/s (median) | p50 ms | p99 ms | server CPU ms per commit |")
    print("|---|---|---|---|---|")
    summary: dict[str, Any] = {}
    commits = args.clients * args.requests * args.reps
    for side in ("sync", "async"):
        q = statistics.quantiles(lat[side], n=100)
        summary[side] = statistics.median(rates[side])
        print(
            f"| {side} | {summary[side]:,.0f} | {q[49] * 1000:.1f} | {q[98] * 1000:.1f} "
            f"| {cpu[side] / commits * 1000:.2f} |"
        )
    print(f"async/sync commits/s: {summary['async'] / summary['sync']:.2f}")


if __name__ == "__main__":
    main()
