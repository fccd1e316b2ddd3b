"""Our PostgreSQL throughput as a fraction of bare psycopg doing the same writes and reads.

Usage::

    .venv/bin/python benchmarks/compare_postgres.py [--quick] [--url postgresql://...]

The server is ``--url``, else PLAYTHROUGH_PG_URL, else
postgresql://root@127.0.0.1:5432/test. Every run works in schemas of its own
(``pt_bench_<random>_<n>``), each dropped right after use.

Phases 1-4 run the engine and a bare psycopg loop in the same process,
interleaved (ours then bare, then bare then ours, ...), each repetition on a
fresh schema. The bare floor writes the same rows (events, links, heads) in the
same transactions, with the same JSON text (checked before timing), the way one
would by hand: BEGIN; read the heads of the touched states FOR UPDATE and
compare them with what the writer knows; insert the events (positions from an
identity column), their links and upsert the heads with ``executemany``;
COMMIT. It does not serialise appends, so its positions are not in commit order:
that guarantee is what the ratio pays for.

1. fire+commit of one one-state event (Deposited), per commit;
2. fire+commit of one two-state event (Transferred), per commit;
3. 1000 Deposited events per commit, per event;
4. loading 1000 accounts in a fresh engine (``load_many``) from a log of 5000
   events; the floor reads the links rows of those states and the events rows
   they name in one REPEATABLE READ transaction and ``json.loads`` each event.

5. Writers in parallel: W OS processes (W = 1 and 4) each commit N one-state
   (disjoint: each writer its own accounts) or two-state (shared: transfers
   among 4 accounts all writers use, retrying conflicts) events, started
   together; the figure is total commits per second of wall time, median over
   the repetitions. It runs for ours, for the bare floor, and for the bare
   floor taking an advisory lock first (held, like any lock, to its COMMIT,
   across its client round trips): the gap between the two bare rows is what
   serialising appends naively costs; ours serialises too, but sends the lock,
   the write and the COMMIT in one pipelined round trip. On shared states a
   refused commit makes our engine reload the stale states; each of our
   writers uses ``snapshot_after_events=50`` so those reloads stay short (the
   bare writer only re-reads the heads).

The report gives medians over the repetitions and ours/bare (goal >= 0.5).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import statistics
import sys
import time
import uuid
import zlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import psycopg
from compare_sqlite import BareEvent, bare_deposit, bare_transfer, check_same_payloads

from domain import Account, Deposited, Transferred
from playthrough import ConcurrencyError, Engine

DEFAULT_URL = "postgresql://root@127.0.0.1:5432/test"
ACCOUNT = Account._pt_type_name
WARM_ACCOUNTS = 100
BATCH = 1000
LOAD_STATES = 1000
LOAD_DEPOSITS_PER_STATE = 4  # plus one transfer out and one in: 5000 events, 6000 links
SHARED_ACCOUNTS = 4
RELOAD_SNAPSHOT_AFTER = 50  # ours, shared states: snapshot_after_events of each writer

Key = tuple[str, str]

_BARE_SCHEMA = """
CREATE SCHEMA {s};
CREATE TABLE {s}.pt_events (
    position bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    type text NOT NULL, data text NOT NULL, caused_by bigint, fired_at text NOT NULL);
CREATE TABLE {s}.pt_links (
    state_type text COLLATE "C" NOT NULL, state_id text COLLATE "C" NOT NULL,
    position bigint NOT NULL, grp integer NOT NULL,
    PRIMARY KEY (state_type, state_id, position));
CREATE INDEX ON {s}.pt_links (position);
CREATE TABLE {s}.pt_heads (
    state_type text COLLATE "C" NOT NULL, state_id text COLLATE "C" NOT NULL,
    last_position bigint NOT NULL, PRIMARY KEY (state_type, state_id));
"""


@dataclass(frozen=True)
class Settings:
    reps: int
    single_commits: int
    batch_commits: int
    parallel_commits: int
    parallel_reps: int


FULL = Settings(reps=5, single_commits=400, batch_commits=8, parallel_commits=200, parallel_reps=5)
QUICK = Settings(reps=2, single_commits=100, batch_commits=3, parallel_commits=60, parallel_reps=1)


# --------------------------------------------------------------------------- schemas


class Schemas:
    """Hands out fresh schema names and drops each after use."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.prefix = f"pt_bench_{uuid.uuid4().hex[:8]}"
        self.n = 0

    @contextmanager
    def fresh(self, *, bare: bool = False) -> Iterator[str]:
        self.n += 1
        name = f"{self.prefix}_{self.n}"
        if bare:
            with psycopg.connect(self.url, autocommit=True) as conn:
                for statement in _BARE_SCHEMA.replace("{s}", f'"{name}"').split(";"):
                    if statement.strip():
                        conn.execute(statement)
        try:
            yield name
        finally:
            with psycopg.connect(self.url, autocommit=True) as conn:
                conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


# --------------------------------------------------------------------------- bare psycopg


class BareStore:
    """The floor: the same rows and transactions as the PostgreSQL store, written by hand."""

    def __init__(self, url: str, schema: str, *, lock: bool = False) -> None:
        self.conn = psycopg.connect(url, autocommit=True)
        self.s = f'"{schema}"'
        self.lock = lock
        self.lock_key = zlib.crc32(schema.encode()) & 0x7FFFFFFF
        self.known: dict[Key, int] = {}  # what this writer knows: its optimistic check

    def append(self, events: Sequence[BareEvent]) -> list[int]:
        conn, s = self.conn, self.s
        conn.execute("BEGIN")
        try:
            if self.lock:
                conn.execute("SELECT pg_advisory_xact_lock(1, %s)", (self.lock_key,))
            keys = list(dict.fromkeys(k for e in events for k, _ in e.links))
            rows = conn.execute(
                f"SELECT state_type, state_id, last_position FROM {s}.pt_heads "
                "WHERE (state_type, state_id) IN (SELECT * FROM unnest(%s::text[], %s::text[])) "
                "ORDER BY state_type, state_id FOR UPDATE",  # one lock order: no deadlocks
                ([k[0] for k in keys], [k[1] for k in keys]),
            ).fetchall()
            current = {(t, i): p for t, i, p in rows}
            if any(current.get(k) != self.known.get(k) for k in keys):
                self.known.update(current)
                raise ConcurrencyError("heads moved under the bare writer")
            cur = conn.cursor()
            insert = (
                f"INSERT INTO {s}.pt_events (type, data, caused_by, fired_at) "
                "VALUES (%s, %s, %s, %s) RETURNING position"
            )
            values = [(e.type, e.data, None, e.fired_at) for e in events]
            positions: list[int] = []
            if len(values) == 1:
                positions.append(cur.execute(insert, values[0]).fetchone()[0])
            else:
                cur.executemany(insert, values, returning=True)
                while True:
                    positions.append(cur.fetchone()[0])
                    if not cur.nextset():
                        break
            heads: dict[Key, int] = {}
            links = []
            for p, e in zip(positions, events, strict=True):
                for key, group in e.links:
                    links.append((key[0], key[1], p, group))
                    heads[key] = p
            cur.executemany(f"INSERT INTO {s}.pt_links VALUES (%s, %s, %s, %s)", links)
            cur.executemany(
                f"INSERT INTO {s}.pt_heads VALUES (%s, %s, %s) "
                "ON CONFLICT (state_type, state_id) "
                "DO UPDATE SET last_position = excluded.last_position",
                [(k[0], k[1], p) for k, p in heads.items()],
            )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        self.known.update(heads)
        return positions

    def close(self) -> None:
        self.conn.close()


def bare_load(url: str, schema: str, ids: Sequence[int]) -> tuple[int, float]:
    """Read the links and events of ``ids`` and json.loads each event; returns (events, s)."""
    s = f'"{schema}"'
    with psycopg.connect(url, autocommit=True) as conn:
        start = time.perf_counter()
        conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        links = conn.execute(
            f"SELECT position, state_type, state_id, grp FROM {s}.pt_links "
            "WHERE (state_type, state_id) IN (SELECT * FROM unnest(%s::text[], %s::text[]))",
            ([ACCOUNT] * len(ids), [str(i) for i in ids]),
        ).fetchall()
        positions = sorted({p for p, _, _, _ in links})
        decoded = [
            (p, json.loads(data))
            for p, _type, data, _cause, _fired in conn.execute(
                f"SELECT position, type, data, caused_by, fired_at FROM {s}.pt_events "
                "WHERE position = ANY(%s::bigint[]) ORDER BY position",
                (positions,),
            )
        ]
        conn.execute("COMMIT")
        return len(decoded), time.perf_counter() - start


# --------------------------------------------------------------------------- phases 1-4


def _warm_engine(engine: Engine, accounts: int) -> None:
    for n in range(accounts):
        engine.fire(Deposited(account_id=n, amount=1_000))
    engine.commit()


def ours_single(url: str, schema: str, commits: int, *, two: bool) -> tuple[int, float]:
    with Engine.open(url, schema=schema) as engine:
        _warm_engine(engine, WARM_ACCOUNTS)
        start = time.perf_counter()
        for i in range(commits):
            a = i % WARM_ACCOUNTS
            if two:
                engine.fire(Transferred(source_id=a, target_id=(a + 1) % WARM_ACCOUNTS, amount=1))
            else:
                engine.fire(Deposited(account_id=a, amount=1))
            engine.commit()
        return commits, time.perf_counter() - start


def bare_single(url: str, schema: str, commits: int, *, two: bool) -> tuple[int, float]:
    store = BareStore(url, schema)
    try:
        store.append([bare_deposit(n, 1_000) for n in range(WARM_ACCOUNTS)])
        start = time.perf_counter()
        for i in range(commits):
            a = i % WARM_ACCOUNTS
            if two:
                store.append([bare_transfer(a, (a + 1) % WARM_ACCOUNTS, 1)])
            else:
                store.append([bare_deposit(a, 1)])
        return commits, time.perf_counter() - start
    finally:
        store.close()


def ours_batch(url: str, schema: str, commits: int) -> tuple[int, float]:
    with Engine.open(url, schema=schema) as engine:
        _warm_engine(engine, BATCH)
        start = time.perf_counter()
        for _ in range(commits):
            for n in range(BATCH):
                engine.fire(Deposited(account_id=n, amount=1))
            engine.commit()
        return commits * BATCH, time.perf_counter() - start


def bare_batch(url: str, schema: str, commits: int) -> tuple[int, float]:
    store = BareStore(url, schema)
    try:
        store.append([bare_deposit(n, 1_000) for n in range(BATCH)])
        start = time.perf_counter()
        for _ in range(commits):
            store.append([bare_deposit(n, 1) for n in range(BATCH)])
        return commits * BATCH, time.perf_counter() - start
    finally:
        store.close()


def build_load_log(url: str, schema: str) -> int:
    """LOAD_STATES accounts: 4 deposits each, then a ring of transfers; returns events."""
    with Engine.open(url, schema=schema) as engine:
        for _ in range(LOAD_DEPOSITS_PER_STATE):
            for n in range(LOAD_STATES):
                engine.fire(Deposited(account_id=n, amount=10))
            engine.commit()
        for n in range(LOAD_STATES):
            engine.fire(Transferred(source_id=n, target_id=(n + 1) % LOAD_STATES, amount=1))
        engine.commit()
        return engine.head()


def build_bare_load_log(url: str, schema: str) -> None:
    store = BareStore(url, schema)
    try:
        for _ in range(LOAD_DEPOSITS_PER_STATE):
            store.append([bare_deposit(n, 10) for n in range(LOAD_STATES)])
        store.append([bare_transfer(n, (n + 1) % LOAD_STATES, 1) for n in range(LOAD_STATES)])
    finally:
        store.close()


def ours_load(url: str, schema: str) -> tuple[int, float]:
    with Engine.open(url, schema=schema) as engine:
        start = time.perf_counter()
        states = engine.load_many(Account, range(LOAD_STATES))
        elapsed = time.perf_counter() - start
        assert len(states) == LOAD_STATES and states[0].movements == LOAD_DEPOSITS_PER_STATE + 2
        return LOAD_STATES, elapsed


# --------------------------------------------------------------------------- phase 5


def _writer(
    kind: str, url: str, schema: str, worker: int, commits: int, shared: bool, ready: Any
) -> tuple[int, int]:
    """One writer process: wait for the start, commit ``commits`` events; (commits, conflicts)."""
    conflicts = 0
    own = [worker * WARM_ACCOUNTS + n for n in range(WARM_ACCOUNTS)]
    if kind == "ours":
        # Shared states: a refused commit drops the stale states and the retry
        # reloads them; snapshots written by long loads keep those reloads short.
        options = {"snapshot_after_events": RELOAD_SNAPSHOT_AFTER} if shared else {}
        engine = Engine.open(url, schema=schema, **options)
        try:
            if not shared:
                engine.load_many(Account, own)
            ready.wait()
            for i in range(commits):
                while True:
                    if shared:
                        a = (worker + i) % SHARED_ACCOUNTS
                        engine.fire(
                            Transferred(source_id=a, target_id=(a + 1) % SHARED_ACCOUNTS, amount=1)
                        )
                    else:
                        engine.fire(Deposited(account_id=own[i % len(own)], amount=1))
                    try:
                        engine.commit()
                        break
                    except ConcurrencyError:  # the engine dropped the stale states: re-fire
                        conflicts += 1
        finally:
            engine.close()
        return commits, conflicts
    store = BareStore(url, schema, lock=kind == "bare+lock")
    try:
        with store.conn.execute(
            f'SELECT state_type, state_id, last_position FROM "{schema}".pt_heads'
        ) as cur:
            store.known.update({(t, i): p for t, i, p in cur})
        ready.wait()
        for i in range(commits):
            while True:
                if shared:
                    a = (worker + i) % SHARED_ACCOUNTS
                    event = bare_transfer(a, (a + 1) % SHARED_ACCOUNTS, 1)
                else:
                    event = bare_deposit(own[i % len(own)], 1)
                try:
                    store.append([event])
                    break
                except ConcurrencyError:
                    conflicts += 1
    finally:
        store.close()
    return commits, conflicts


def parallel(
    kind: str, url: str, schemas: Schemas, writers: int, commits: int, shared: bool
) -> tuple[float, int]:
    """Total commits/s of ``writers`` processes started together; and conflicts retried."""
    with schemas.fresh(bare=kind != "ours") as schema:
        accounts = SHARED_ACCOUNTS if shared else writers * WARM_ACCOUNTS
        if kind == "ours":
            with Engine.open(url, schema=schema) as engine:
                _warm_engine(engine, accounts)
        else:
            store = BareStore(url, schema)
            store.append([bare_deposit(n, 1_000) for n in range(accounts)])
            store.close()
        ctx = multiprocessing.get_context("spawn")
        ready = ctx.Barrier(writers + 1)
        results = ctx.Queue()
        procs = [
            ctx.Process(
                target=_writer_process,
                args=(kind, url, schema, w, commits, shared, ready, results),
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
    done = sum(c for c, _ in outcomes)
    return done / elapsed, sum(k for _, k in outcomes)


def _writer_process(
    kind: str, url: str, schema: str, worker: int, commits: int, shared: bool, ready: Any, out: Any
) -> None:
    try:
        out.put(_writer(kind, url, schema, worker, commits, shared, ready))
    except BaseException as exc:
        ready.abort()
        out.put(f"writer {worker}: {exc!r}")
        raise


# --------------------------------------------------------------------------- driver


@dataclass
class Result:
    name: str
    unit: str
    ours: list[float]
    bare: list[float]

    @property
    def ratio(self) -> float:
        return statistics.median(self.ours) / statistics.median(self.bare)


Runner = Callable[[str], tuple[int, float]]


def measure(
    name: str, unit: str, ours: Runner, bare: Runner, schemas: Schemas, reps: int
) -> Result:
    result = Result(name, unit, [], [])
    for rep in range(reps):
        order: list[tuple[Runner, list[float], bool]] = [
            (ours, result.ours, False),
            (bare, result.bare, True),
        ]
        if rep % 2:
            order.reverse()
        for run, into, is_bare in order:
            with schemas.fresh(bare=is_bare) as schema:
                ops, seconds = run(schema)
            into.append(ops / seconds)
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions and commits")
    parser.add_argument("--url", default=os.environ.get("PLAYTHROUGH_PG_URL", DEFAULT_URL))
    args = parser.parse_args(argv)
    settings = QUICK if args.quick else FULL
    url: str = args.url
    check_same_payloads()
    with psycopg.connect(url) as conn:
        version = conn.info.server_version
        fsync = conn.execute("SHOW fsync").fetchone()
        sync = conn.execute("SHOW synchronous_commit").fetchone()
    print(
        f"python {platform.python_version()}, psycopg {psycopg.__version__}, PostgreSQL "
        f"{version // 10000}.{version % 10000} (fsync={fsync and fsync[0]}, "
        f"synchronous_commit={sync and sync[0]}), {os.cpu_count()} CPUs, "
        f"{settings.reps} repetitions per phase (medians), {'quick' if args.quick else 'full'} run"
    )
    schemas = Schemas(url)
    n, b = settings.single_commits, settings.batch_commits
    results = [
        measure(
            "fire+commit, one-state event",
            "commits/s",
            lambda s: ours_single(url, s, n, two=False),
            lambda s: bare_single(url, s, n, two=False),
            schemas,
            settings.reps,
        ),
        measure(
            "fire+commit, two-state event",
            "commits/s",
            lambda s: ours_single(url, s, n, two=True),
            lambda s: bare_single(url, s, n, two=True),
            schemas,
            settings.reps,
        ),
        measure(
            f"{BATCH} events per commit",
            "events/s",
            lambda s: ours_batch(url, s, b),
            lambda s: bare_batch(url, s, b),
            schemas,
            settings.reps,
        ),
    ]
    ids = list(range(LOAD_STATES))
    load = Result(f"load {LOAD_STATES} states (5000 events), fresh engine", "states/s", [], [])
    with schemas.fresh() as ours_schema, schemas.fresh(bare=True) as bare_schema:
        build_load_log(url, ours_schema)
        build_bare_load_log(url, bare_schema)
        for rep in range(settings.reps):
            runs = [
                (lambda: ours_load(url, ours_schema), load.ours),
                (lambda: (LOAD_STATES, bare_load(url, bare_schema, ids)[1]), load.bare),
            ]
            if rep % 2:
                runs.reverse()
            for run, into in runs:
                ops, seconds = run()
                into.append(ops / seconds)
    results.append(load)

    width = max(len(r.name) for r in results)
    print()
    print(f"{'phase':<{width}}  {'unit':<10} {'ours':>11} {'bare':>11} {'ratio':>6}  goal >= 0.5")
    for r in results:
        ours, bare = statistics.median(r.ours), statistics.median(r.bare)
        verdict = "ok" if r.ratio >= 0.5 else "UNDER"
        print(
            f"{r.name:<{width}}  {r.unit:<10} {ours:>11,.0f} {bare:>11,.0f} {r.ratio:>6.2f}  "
            f"{verdict}"
        )

    commits = settings.parallel_commits
    kinds = ["ours", "bare", "bare+lock"]
    runs: dict[tuple[bool, str, int], list[float]] = {}
    conflicts: dict[tuple[bool, str], list[int]] = {}
    for rep in range(settings.parallel_reps):
        for shared in (False, True):
            for kind in kinds[rep % 3 :] + kinds[: rep % 3]:  # rotate who goes first
                for writers in (1, 4):
                    rate, retried = parallel(kind, url, schemas, writers, commits, shared)
                    runs.setdefault((shared, kind, writers), []).append(rate)
                    if writers == 4:
                        conflicts.setdefault((shared, kind), []).append(retried)
    print()
    print(
        f"writers in parallel ({commits} commits each, commits/s of wall time, medians; "
        f"shared = transfers among {SHARED_ACCOUNTS} accounts, conflicts retried)"
    )
    print(f"{'':<22}{'1 writer':>10} {'4 writers':>10} {'4w/1w':>6}  conflicts (4w)")
    for shared in (False, True):
        for kind in kinds:
            one = statistics.median(runs[(shared, kind, 1)])
            four = statistics.median(runs[(shared, kind, 4)])
            retried = statistics.median(conflicts[(shared, kind)])
            label = f"{'shared' if shared else 'disjoint'} {kind}"
            print(f"{label:<22}{one:>10,.0f} {four:>10,.0f} {four / one:>6.2f}  {retried:.0f}")
    print()
    print("4 writers, per repetition (commits/s):")
    for shared in (False, True):
        for kind in kinds:
            label = f"{'shared' if shared else 'disjoint'} {kind}"
            values = ", ".join(f"{v:,.0f}" for v in runs[(shared, kind, 4)])
            print(f"  {label:<22}{values}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
