"""Our throughput as a fraction of the bare driver doing the same writes and reads.

Usage::

    .venv/bin/python benchmarks/compare.py --backend sqlite|postgres|all [--quick]
        [--reps N] [--url postgresql://...] [--parallel] [--synchronous off|normal|full]
        [--markdown FILE]

Each phase runs the engine (public API only) and the bare driver (sqlite3 or
psycopg, see ``backends.py``) in the same process, interleaved, each repetition
of a write phase on a fresh store; the report gives medians and ours/bare.

Write phases (fire+commit vs bare insert of events, links and heads with the
same transactions and durability):

1. one one-state event (Deposited) per commit;
2. one two-state event per commit, coupled (Transferred: one ``apply``) and
   split (SplitTransferred: ``apply_source`` and ``apply_target``);
3. 1000 Deposited events per commit (per event);
4. one commit of more new states than the engine's default ``max_states``
   (10,000) holds: 20,000 Deposited events to distinct accounts (12,000 with
   ``--quick``), every one pending until the commit.

Read phases ("Fast reads"), in the coupled and the split domain: a
log of 300 opened accounts, 4 deposits each and 600 transfers between random
pairs (seeded), one event per commit; then, in a fresh engine
(``Engine.open``, as a new process or web request would), every account loaded
one by one with ``engine.load``, and separately all of them with
``engine.load_many``. The bare floor reads, in the same run, the same rows: the
events that touch each account through the links table, json-decoded (one
transaction per account, or one for all).

``--parallel`` (PostgreSQL): W writer processes (1 and 4) on disjoint or shared
states, ours against the bare floor with and without an advisory lock.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import multiprocessing
import platform
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from backends import (
    Backend,
    BareEvent,
    PostgresBackend,
    PostgresBareWriter,
    backend,
    bare_deposit,
    bare_transfer,
    check_same_rows,
)
from domain import Account, Deposited, SplitTransferred, Transferred
from harness import Result, Timer, Timing, markdown_table, measure
from playthrough import Engine, Event
from playthrough.errors import ConcurrencyError
from workloads import (
    BATCH,
    READ_ACCOUNTS,
    WARM_ACCOUNTS,
    build_read_log,
    read_workload,
    warm,
)

SHARED_ACCOUNTS = 4
RELOAD_SNAPSHOT_AFTER = 50


@dataclass(frozen=True)
class Settings:
    reps: int
    single_commits: int
    batch_commits: int
    parallel_commits: int
    parallel_reps: int
    large_states: int


FULL = Settings(
    reps=3,
    single_commits=200,
    batch_commits=3,
    parallel_commits=200,
    parallel_reps=3,
    large_states=20_000,
)
QUICK = Settings(
    reps=3,
    single_commits=60,
    batch_commits=2,
    parallel_commits=60,
    parallel_reps=1,
    large_states=12_000,
)


# --------------------------------------------------------------------------- write phases


def ours_single(be: Backend, commits: int, kind: str) -> Timing:
    with be.place() as place, be.engine(place) as engine:
        warm(engine, WARM_ACCOUNTS)
        timer = Timer()
        for i in range(commits):
            a, b = i % WARM_ACCOUNTS, (i + 1) % WARM_ACCOUNTS
            if kind == "one":
                engine.fire(Deposited(account_id=a, amount=1))
            elif kind == "coupled":
                engine.fire(Transferred(source_id=a, target_id=b, amount=1))
            else:
                engine.fire(SplitTransferred(source_id=a, target_id=b, amount=1))
            engine.commit()
        return timer.done(commits)


def bare_single(be: Backend, commits: int, kind: str) -> Timing:
    with be.place() as place:
        store = be.bare_writer(place)
        try:
            store.append([bare_deposit(n, 1_000) for n in range(WARM_ACCOUNTS)])
            timer = Timer()
            for i in range(commits):
                a, b = i % WARM_ACCOUNTS, (i + 1) % WARM_ACCOUNTS
                if kind == "one":
                    store.append([bare_deposit(a, 1)])
                else:
                    store.append([bare_transfer(a, b, 1, split=kind == "split")])
            return timer.done(commits)
        finally:
            store.close()


def ours_batch(be: Backend, commits: int) -> Timing:
    with be.place() as place, be.engine(place) as engine:
        warm(engine, BATCH)
        timer = Timer()
        for _ in range(commits):
            for n in range(BATCH):
                engine.fire(Deposited(account_id=n, amount=1))
            engine.commit()
        return timer.done(commits * BATCH)


def bare_batch(be: Backend, commits: int) -> Timing:
    with be.place() as place:
        store = be.bare_writer(place)
        try:
            store.append([bare_deposit(n, 1_000) for n in range(BATCH)])
            timer = Timer()
            for _ in range(commits):
                store.append([bare_deposit(n, 1) for n in range(BATCH)])
            return timer.done(commits * BATCH)
        finally:
            store.close()


def ours_large(be: Backend, states: int) -> Timing:
    """One commit of ``states`` new states, more than the default max_states holds."""
    with be.place() as place, be.engine(place) as engine:
        timer = Timer()
        for n in range(states):
            engine.fire(Deposited(account_id=n, amount=1))
        engine.commit()
        return timer.done(states)


def bare_large(be: Backend, states: int) -> Timing:
    with be.place() as place:
        store = be.bare_writer(place)
        try:
            timer = Timer()
            store.append([bare_deposit(n, 1) for n in range(states)])
            return timer.done(states)
        finally:
            store.close()


# --------------------------------------------------------------------------- read phases


def _check(states: Sequence[Account], ids: Sequence[int], expected: dict[int, Any]) -> None:
    got = [(s.balance, s.movements) for s in states]
    want = [expected[i] for i in ids]
    if got != want:
        raise SystemExit("the engine loaded accounts that differ from the expected values")


def ours_load(
    be: Backend, place: str, ids: Sequence[int], expected: dict[int, Any], *, each: bool
) -> Timing:
    with be.engine(place) as engine:  # a fresh engine: nothing in memory
        timer = Timer()
        if each:
            states = [engine.load(Account, i) for i in ids]
        else:
            states = engine.load_many(Account, ids)
        timing = timer.done(len(ids))
    _check(states, ids, expected)
    return timing


def read_phases(be: Backend, reps: int) -> list[Result]:
    results = []
    ids = list(range(READ_ACCOUNTS))
    for split in (False, True):
        domain = "split" if split else "coupled"
        events, expected = read_workload(split=split)
        with be.place() as place:
            build_read_log(be, place, events)
            for each in (True, False):
                how = "one by one" if each else "load_many"
                results.append(
                    measure(
                        f"load {READ_ACCOUNTS} accounts {how}, {domain} ({len(events)} events)",
                        "states/s",
                        functools.partial(ours_load, be, place, ids, expected, each=each),
                        functools.partial(be.bare_read, place, ids, each=each),
                        reps,
                    )
                )
    return results


# --------------------------------------------------------------------------- parallel writers


def _writer(
    kind: str, url: str, schema: str, worker: int, commits: int, shared: bool, ready: Any
) -> tuple[int, int]:
    """One writer process: wait for the start, commit ``commits`` events; (commits, conflicts)."""
    conflicts = 0
    own = [worker * WARM_ACCOUNTS + n for n in range(WARM_ACCOUNTS)]

    def event(i: int) -> tuple[Event, BareEvent]:
        if shared:
            a = (worker + i) % SHARED_ACCOUNTS
            b = (a + 1) % SHARED_ACCOUNTS
            return Transferred(source_id=a, target_id=b, amount=1), bare_transfer(a, b, 1)
        n = own[i % len(own)]
        return Deposited(account_id=n, amount=1), bare_deposit(n, 1)

    if kind == "ours":
        # Shared states: a refused commit drops the stale states and the retry
        # reloads them; snapshots written by long loads keep those reloads short.
        options = {"snapshot_after_events": RELOAD_SNAPSHOT_AFTER} if shared else {}
        with Engine.open(url, schema=schema, **options) as engine:
            if not shared:
                engine.load_many(Account, own)
            ready.wait()
            for i in range(commits):
                while True:
                    engine.fire(event(i)[0])
                    try:
                        engine.commit()
                        break
                    except ConcurrencyError:  # the engine dropped the stale states: re-fire
                        conflicts += 1
        return commits, conflicts
    store = PostgresBareWriter(url, schema, lock=kind == "bare+lock", create=False)
    try:
        with store.conn.execute(
            f'SELECT state_type, state_id, last_position FROM "{schema}".pt_heads'
        ) as cur:
            store.known.update({(t, i): p for t, i, p in cur})
        ready.wait()
        for i in range(commits):
            while True:
                try:
                    store.append([event(i)[1]])
                    break
                except ConcurrencyError:
                    conflicts += 1
    finally:
        store.close()
    return commits, conflicts


def _writer_process(
    kind: str, url: str, schema: str, worker: int, commits: int, shared: bool, ready: Any, out: Any
) -> None:
    try:
        out.put(_writer(kind, url, schema, worker, commits, shared, ready))
    except BaseException as exc:
        ready.abort()
        out.put(f"writer {worker}: {exc!r}")
        raise


def parallel(
    be: PostgresBackend, kind: str, writers: int, commits: int, shared: bool
) -> tuple[float, int]:
    """Total commits/s of ``writers`` processes started together; and conflicts retried."""
    with be.place() as schema:
        accounts = SHARED_ACCOUNTS if shared else writers * WARM_ACCOUNTS
        if kind == "ours":
            with be.engine(schema) as engine:
                warm(engine, accounts)
        else:
            store = be.bare_writer(schema)
            store.append([bare_deposit(n, 1_000) for n in range(accounts)])
            store.close()
        ctx = multiprocessing.get_context("spawn")
        ready = ctx.Barrier(writers + 1)
        results = ctx.Queue()
        procs = [
            ctx.Process(
                target=_writer_process,
                args=(kind, be.url, schema, w, commits, shared, ready, results),
            )
            for w in range(writers)
        ]
        for p in procs:
            p.start()
        try:
            ready.wait(timeout=120)
            start = time.perf_counter()
            outcomes = [results.get(timeout=600) for _ in procs]
            elapsed = time.perf_counter() - start
        finally:
            for p in procs:
                p.join(timeout=60)
                if p.is_alive():
                    p.kill()
    failed = [o for o in outcomes if isinstance(o, str)]
    if failed:
        raise SystemExit(f"a writer failed: {failed[0]}")
    return sum(c for c, _ in outcomes) / elapsed, sum(k for _, k in outcomes)


def parallel_report(be: PostgresBackend, settings: Settings) -> str:
    commits = settings.parallel_commits
    kinds = ["ours", "bare", "bare+lock"]
    runs: dict[tuple[bool, str, int], list[float]] = {}
    conflicts: dict[tuple[bool, str], list[int]] = {}
    for rep in range(settings.parallel_reps):
        for shared in (False, True):
            for kind in kinds[rep % 3 :] + kinds[: rep % 3]:  # rotate who goes first
                for writers in (1, 4):
                    rate, retried = parallel(be, kind, writers, commits, shared)
                    runs.setdefault((shared, kind, writers), []).append(rate)
                    if writers == 4:
                        conflicts.setdefault((shared, kind), []).append(retried)
    lines = [
        f"Writers in parallel ({commits} commits each, commits/s of wall time, medians; "
        f"shared = transfers among {SHARED_ACCOUNTS} accounts, conflicts retried):",
        "",
        "| writers | 1 writer | 4 writers | 4w/1w | conflicts (4w) |",
        "|---|---:|---:|---:|---:|",
    ]
    for shared in (False, True):
        for kind in kinds:
            one = statistics.median(runs[(shared, kind, 1)])
            four = statistics.median(runs[(shared, kind, 4)])
            median_retried = statistics.median(conflicts[(shared, kind)])
            label = f"{'shared' if shared else 'disjoint'} {kind}"
            lines.append(
                f"| {label} | {one:,.0f} | {four:,.0f} | {four / one:.2f} | {median_retried:.0f} |"
            )
    return "\n".join(lines)


# --------------------------------------------------------------------------- driver


def run_backend(be: Backend, settings: Settings, *, with_parallel: bool) -> str:
    check_same_rows(be)
    n, b, reps = settings.single_commits, settings.batch_commits, settings.reps
    results = [
        measure(
            "fire+commit, one-state event",
            "commits/s",
            lambda: ours_single(be, n, "one"),
            lambda: bare_single(be, n, "one"),
            reps,
        ),
        measure(
            "fire+commit, two-state event, coupled",
            "commits/s",
            lambda: ours_single(be, n, "coupled"),
            lambda: bare_single(be, n, "coupled"),
            reps,
        ),
        measure(
            "fire+commit, two-state event, split",
            "commits/s",
            lambda: ours_single(be, n, "split"),
            lambda: bare_single(be, n, "split"),
            reps,
        ),
        measure(
            f"{BATCH} events per commit",
            "events/s",
            lambda: ours_batch(be, b),
            lambda: bare_batch(be, b),
            reps,
        ),
        measure(
            f"{settings.large_states:,} new states in one commit (default max_states)",
            "events/s",
            lambda: ours_large(be, settings.large_states),
            lambda: bare_large(be, settings.large_states),
            reps,
        ),
    ]
    results += read_phases(be, reps)
    report = markdown_table(results)
    if with_parallel and isinstance(be, PostgresBackend):
        report += "\n\n" + parallel_report(be, settings)
    return report


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--backend", choices=["sqlite", "postgres", "all"], default="all")
    parser.add_argument("--quick", action="store_true", help="fewer repetitions and commits")
    parser.add_argument("--reps", type=int, help="repetitions per phase (default 3, quick 3)")
    parser.add_argument("--url", help="PostgreSQL URL (default: PLAYTHROUGH_PG_URL or local)")
    parser.add_argument("--parallel", action="store_true", help="PostgreSQL: parallel writers")
    parser.add_argument("--markdown", type=Path, help="also write the report to this file")
    parser.add_argument(
        "--synchronous",
        choices=["off", "normal", "full"],
        default="full",
        help="SQLite's synchronous level for ours and bare alike (off compares CPU)",
    )
    args = parser.parse_args(argv)
    settings = QUICK if args.quick else FULL
    if args.reps:
        settings = dataclasses.replace(settings, reps=args.reps)
    names = ["sqlite", "postgres"] if args.backend == "all" else [args.backend]
    sections = []
    for name in names:
        be = backend(name, url=args.url, synchronous=args.synchronous)
        try:
            reason = be.unavailable()
            if reason is not None:
                if args.backend != "all":
                    raise SystemExit(f"{name}: {reason}")
                print(f"## {name}: skipped ({reason})\n", flush=True)
                continue
            started = time.perf_counter()
            header = (
                f"## {name}\n\npython {platform.python_version()}, {be.describe()}, "
                f"{settings.reps} repetitions per phase (medians), "
                f"{'quick' if args.quick else 'full'} run"
            )
            print(f"{name}: running...", flush=True)
            body = run_backend(be, settings, with_parallel=args.parallel)
            section = (
                f"{header}, {time.perf_counter() - started:.0f} s\n\n{body}\n\n"
                "ours, bare: median throughput over wall-clock time; ours/bare: their ratio "
                "(goal >= 0.5); CPU: the same over this process's CPU time; per repetition: "
                "ours/bare in run order.\n"
            )
            print("\n" + section, flush=True)
            sections.append(section)
        finally:
            be.close()
    if args.markdown:
        args.markdown.write_text("\n".join(sections))
    return 0


if __name__ == "__main__":
    sys.exit(main())
