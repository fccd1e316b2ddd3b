"""Our SQLite throughput as a fraction of bare ``sqlite3`` doing the same writes and reads.

Usage::

    .venv/bin/python benchmarks/compare_sqlite.py [--quick]

For each phase, the engine and a bare ``sqlite3`` loop run in the same process,
interleaved (ours then bare, then bare then ours, …), each repetition on fresh
database files in one temporary directory. Both use the schema of
``playthrough._stores.sqlite._SCHEMA``, WAL and synchronous=FULL, and the same
transactions: BEGIN IMMEDIATE, read the heads of the touched states, read the
log head, insert the events, their links, upsert the heads, COMMIT. The bare
loop writes the same JSON text (checked before timing), produced by
``json.dumps`` of a plain dict, and the same ``fired_at`` text.

Phases:

1. fire+commit of one one-state event (Deposited), per commit;
2. fire+commit of one two-state event (Transferred), per commit;
3. 1000 Deposited events per commit, per event;
4. loading 1000 accounts in a fresh engine (``load_many``) from a log of 5000
   events; the bare floor reads the links rows of those 1000 states, the events
   rows they name, and decodes each event's JSON with ``json.loads``. A second
   row compares the same load with a "minimal engine" reference: the floor plus
   structuring each event into its attrs class and calling its ``apply``, the
   least any engine must add (no planning), to show how much of the gap is
   inherent in Python objects and hooks.

The report gives medians over the repetitions and ours/bare (goal >= 0.5).
"""

from __future__ import annotations

import argparse
import json
import platform
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from domain import Account, Deposited, Transferred, file_url, remove_db
from playthrough import Engine
from playthrough._serialization import converter, encode_event
from playthrough._stores.sqlite import _SCHEMA

ACCOUNT = Account._pt_type_name
DEPOSITED = Deposited._pt_type_name
TRANSFERRED = Transferred._pt_type_name
WARM_ACCOUNTS = 100  # the single-event phases cycle over these (all in memory)
BATCH = 1000
LOAD_STATES = 1000
LOAD_DEPOSITS_PER_STATE = 4  # plus one transfer out and one in: 5000 events, 6000 links

Key = tuple[str, str]


@dataclass(frozen=True)
class Settings:
    reps: int
    single_commits: int
    batch_commits: int


FULL = Settings(reps=9, single_commits=400, batch_commits=8)
QUICK = Settings(reps=3, single_commits=100, batch_commits=3)


# --------------------------------------------------------------------------- timing


@dataclass(frozen=True)
class Timing:
    """Operations done, wall-clock seconds and this process's CPU seconds."""

    ops: int
    wall: float
    cpu: float


class Timer:
    def __init__(self) -> None:
        self.wall = time.perf_counter()
        self.cpu = time.process_time()

    def done(self, ops: int) -> Timing:
        return Timing(ops, time.perf_counter() - self.wall, time.process_time() - self.cpu)


# --------------------------------------------------------------------------- bare sqlite3


def _dumps(value: dict[str, Any]) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


@dataclass(frozen=True)
class BareEvent:
    type: str
    data: str
    links: tuple[tuple[Key, int], ...]
    fired_at: str


def bare_deposit(account: int, amount: int) -> BareEvent:
    return BareEvent(
        DEPOSITED,
        _dumps({"account_id": account, "amount": amount}),
        (((ACCOUNT, str(account)), 0),),
        datetime.now(UTC).isoformat(),
    )


def bare_transfer(source: int, target: int, amount: int) -> BareEvent:
    return BareEvent(
        TRANSFERRED,
        _dumps({"amount": amount, "source_id": source, "target_id": target}),
        (((ACCOUNT, str(source)), 0), ((ACCOUNT, str(target)), 0)),
        datetime.now(UTC).isoformat(),
    )


def _chunks(items: Sequence[Any], size: int) -> Iterable[Sequence[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


class BareStore:
    """The floor: the same rows and transactions as the SQLite store, written by hand."""

    def __init__(self, path: Path) -> None:
        self.conn = sqlite3.connect(path, isolation_level=None)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=FULL")
        for statement in _SCHEMA.split(";"):
            if statement.strip():
                self.conn.execute(statement)
        self.known: dict[Key, int] = {}  # what this writer knows: its optimistic check

    def append(self, events: Sequence[BareEvent]) -> None:
        conn = self.conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            keys = list(dict.fromkeys(k for e in events for k, _ in e.links))
            current: dict[Key, int] = {}
            for chunk in _chunks(keys, 400):
                values = ",".join("(?,?)" for _ in chunk)
                rows = conn.execute(
                    "SELECT state_type, state_id, last_position FROM pt_heads "
                    f"WHERE (state_type, state_id) IN (VALUES {values})",
                    [v for k in chunk for v in k],
                ).fetchall()
                for t, i, p in rows:
                    current[(t, i)] = p
            if any(current.get(k) != self.known.get(k) for k in keys):
                raise RuntimeError("heads moved under the bare writer")
            row = conn.execute(
                "SELECT seq FROM sqlite_sequence WHERE name = 'pt_events'"
            ).fetchone()
            base = int(row[0]) if row else 0
            conn.executemany(
                "INSERT INTO pt_events (position, type, data, caused_by, fired_at) "
                "VALUES (?, ?, ?, ?, ?)",
                [(base + 1 + n, e.type, e.data, None, e.fired_at) for n, e in enumerate(events)],
            )
            heads: dict[Key, int] = {}
            links = []
            for n, e in enumerate(events):
                for key, group in e.links:
                    links.append((key[0], key[1], base + 1 + n, group))
                    heads[key] = base + 1 + n
            conn.executemany("INSERT INTO pt_links VALUES (?, ?, ?, ?)", links)
            conn.executemany(
                "INSERT INTO pt_heads VALUES (?, ?, ?) ON CONFLICT (state_type, state_id) "
                "DO UPDATE SET last_position = excluded.last_position",
                [(k[0], k[1], p) for k, p in heads.items()],
            )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        self.known.update(heads)

    def close(self) -> None:
        self.conn.close()


def _read_events(conn: sqlite3.Connection, ids: Sequence[int]) -> list[tuple[int, str, str]]:
    """(position, type, data) of every event touching the accounts ``ids``, in order."""
    keys = [(ACCOUNT, str(i)) for i in ids]
    positions: dict[int, None] = {}
    for chunk in _chunks(keys, 300):
        # a join against the wanted keys is about twice as fast in SQLite as
        # WHERE (state_type, state_id) IN (VALUES ...)
        values = ",".join("(?,?)" for _ in chunk)
        rows = conn.execute(
            f"WITH want(t, i) AS (VALUES {values}) "
            "SELECT l.position, l.state_type, l.state_id, l.grp FROM want w "
            "JOIN pt_links l ON l.state_type = w.t AND l.state_id = w.i",
            [v for k in chunk for v in k],
        ).fetchall()
        for p, _, _, _ in rows:
            positions[p] = None
    ordered = sorted(positions)
    out = []
    for chunk in _chunks(ordered, 500):
        marks = ",".join("?" for _ in chunk)
        for p, type_, data, _cause, _fired in conn.execute(
            "SELECT position, type, data, caused_by, fired_at FROM pt_events "
            f"WHERE position IN ({marks}) ORDER BY position",
            list(chunk),
        ):
            out.append((p, type_, data))
    return out


def _reader(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    return conn


def bare_load(path: Path, ids: Sequence[int]) -> Timing:
    """The floor: read the links and events of ``ids``, json.loads each event (ops: states)."""
    conn = _reader(path)
    try:
        timer = Timer()
        conn.execute("BEGIN")
        decoded = [(p, json.loads(data)) for p, _, data in _read_events(conn, ids)]
        conn.execute("COMMIT")
        timing = timer.done(len(ids))
    finally:
        conn.close()
    assert len(decoded) > 0
    return timing


def minimal_load(path: Path, ids: Sequence[int]) -> Timing:
    """A second reference: the floor plus the least any engine must add.

    Each event is structured into its attrs class (cattrs, hooks looked up once)
    and its ``apply`` called on blank accounts, with no planning, no coupling
    checks and no bookkeeping. It only works for this log (deposits and
    transfers among the loaded accounts, no snapshots).
    """
    hooks: dict[str, tuple[type[Any], Callable[[Any, type[Any]], Any]]] = {
        cls._pt_type_name: (cls, converter.get_structure_hook(cls))
        for cls in (Deposited, Transferred)
    }
    conn = _reader(path)
    try:
        timer = Timer()
        conn.execute("BEGIN")
        accounts = {str(i): Account() for i in ids}
        for _p, type_, data in _read_events(conn, ids):
            cls, structure = hooks[type_]
            event = structure(json.loads(data), cls)
            if isinstance(event, Deposited):
                event.apply(accounts[str(event.account_id)])
            elif isinstance(event, Transferred):
                event.apply(accounts[str(event.source_id)], accounts[str(event.target_id)])
        conn.execute("COMMIT")
        timing = timer.done(len(ids))
    finally:
        conn.close()
    assert accounts[str(ids[0])].movements == LOAD_DEPOSITS_PER_STATE + 2
    return timing


# --------------------------------------------------------------------------- the phases


def _warm_engine(engine: Engine, accounts: int) -> None:
    for n in range(accounts):
        engine.fire(Deposited(account_id=n, amount=1_000))
    engine.commit()


def ours_single(path: Path, commits: int, *, two: bool) -> Timing:
    engine = Engine.open(file_url(path))
    try:
        _warm_engine(engine, WARM_ACCOUNTS)
        timer = Timer()
        for i in range(commits):
            a = i % WARM_ACCOUNTS
            if two:
                engine.fire(Transferred(source_id=a, target_id=(a + 1) % WARM_ACCOUNTS, amount=1))
            else:
                engine.fire(Deposited(account_id=a, amount=1))
            engine.commit()
        return timer.done(commits)
    finally:
        engine.close()
        remove_db(path)


def bare_single(path: Path, commits: int, *, two: bool) -> Timing:
    store = BareStore(path)
    try:
        store.append([bare_deposit(n, 1_000) for n in range(WARM_ACCOUNTS)])
        timer = Timer()
        for i in range(commits):
            a = i % WARM_ACCOUNTS
            if two:
                store.append([bare_transfer(a, (a + 1) % WARM_ACCOUNTS, 1)])
            else:
                store.append([bare_deposit(a, 1)])
        return timer.done(commits)
    finally:
        store.close()
        remove_db(path)


def ours_batch(path: Path, commits: int) -> Timing:
    engine = Engine.open(file_url(path))
    try:
        _warm_engine(engine, BATCH)
        timer = Timer()
        for _ in range(commits):
            for n in range(BATCH):
                engine.fire(Deposited(account_id=n, amount=1))
            engine.commit()
        return timer.done(commits * BATCH)
    finally:
        engine.close()
        remove_db(path)


def bare_batch(path: Path, commits: int) -> Timing:
    store = BareStore(path)
    try:
        store.append([bare_deposit(n, 1_000) for n in range(BATCH)])
        timer = Timer()
        for _ in range(commits):
            store.append([bare_deposit(n, 1) for n in range(BATCH)])
        return timer.done(commits * BATCH)
    finally:
        store.close()
        remove_db(path)


def build_load_log(path: Path) -> int:
    """LOAD_STATES accounts: 4 deposits each, then a ring of transfers; returns events."""
    with Engine.open(file_url(path, synchronous="normal")) as engine:
        for _ in range(LOAD_DEPOSITS_PER_STATE):
            for n in range(LOAD_STATES):
                engine.fire(Deposited(account_id=n, amount=10))
            engine.commit()
        for n in range(LOAD_STATES):
            engine.fire(Transferred(source_id=n, target_id=(n + 1) % LOAD_STATES, amount=1))
        engine.commit()
        return engine.head()


def ours_load(path: Path) -> Timing:
    engine = Engine.open(file_url(path))
    try:
        timer = Timer()
        states = engine.load_many(Account, range(LOAD_STATES))
        timing = timer.done(LOAD_STATES)
        assert len(states) == LOAD_STATES and states[0].movements == LOAD_DEPOSITS_PER_STATE + 2
        return timing
    finally:
        engine.close()


def check_same_payloads() -> None:
    """The bare loop must write exactly the text the engine writes."""
    pairs = [
        (bare_deposit(7, 3).data, encode_event(Deposited(account_id=7, amount=3))),
        (
            bare_transfer(1, 2, 5).data,
            encode_event(Transferred(source_id=1, target_id=2, amount=5)),
        ),
    ]
    for bare, ours in pairs:
        if bare != ours:
            raise SystemExit(f"payload mismatch: bare {bare!r} vs ours {ours!r}")


# --------------------------------------------------------------------------- driver


@dataclass
class Result:
    name: str
    unit: str
    ours: list[Timing]  # one per repetition
    bare: list[Timing]

    @staticmethod
    def rate(timings: list[Timing], cpu: bool = False) -> float:
        """Median throughput (ops per wall second, or per CPU second)."""
        return statistics.median(t.ops / (t.cpu if cpu else t.wall) for t in timings)

    def ratio(self, cpu: bool = False) -> float:
        return self.rate(self.ours, cpu) / self.rate(self.bare, cpu)


Runner = Callable[[Path], Timing]


def measure(name: str, unit: str, ours: Runner, bare: Runner, tmp: Path, reps: int) -> Result:
    result = Result(name, unit, [], [])
    for rep in range(reps):
        order: list[tuple[Runner, list[Timing]]] = [(ours, result.ours), (bare, result.bare)]
        if rep % 2:
            order.reverse()
        for run, into in order:
            into.append(run(tmp / "phase.db"))
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions and commits")
    args = parser.parse_args(argv)
    settings = QUICK if args.quick else FULL
    check_same_payloads()
    print(
        f"python {platform.python_version()}, SQLite {sqlite3.sqlite_version}, "
        f"{settings.reps} repetitions per phase (medians), "
        f"{'quick' if args.quick else 'full'} run"
    )
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="pt-compare-") as tmp_name:
        tmp = Path(tmp_name)
        n = settings.single_commits
        results.append(
            measure(
                "fire+commit, one-state event",
                "commits/s",
                lambda p: ours_single(p, n, two=False),
                lambda p: bare_single(p, n, two=False),
                tmp,
                settings.reps,
            )
        )
        results.append(
            measure(
                "fire+commit, two-state event",
                "commits/s",
                lambda p: ours_single(p, n, two=True),
                lambda p: bare_single(p, n, two=True),
                tmp,
                settings.reps,
            )
        )
        b = settings.batch_commits
        results.append(
            measure(
                f"{BATCH} events per commit",
                "events/s",
                lambda p: ours_batch(p, b),
                lambda p: bare_batch(p, b),
                tmp,
                settings.reps,
            )
        )
        log = tmp / "load.db"
        events = build_load_log(log)
        ids = list(range(LOAD_STATES))
        results.append(
            measure(
                f"load {LOAD_STATES} states ({events} events), fresh engine",
                "states/s",
                lambda _p: ours_load(log),
                lambda _p: bare_load(log, ids),
                tmp,
                settings.reps,
            )
        )
        results.append(
            measure(
                "  same, against the minimal-engine reference",
                "states/s",
                lambda _p: ours_load(log),
                lambda _p: minimal_load(log, ids),
                tmp,
                settings.reps,
            )
        )
        remove_db(log)
    width = max(len(r.name) for r in results)
    print()
    print(
        f"{'phase':<{width}}  {'unit':<10} {'ours':>9} {'bare':>9} {'ratio':>6}  goal >= 0.5"
        f"   {'cpu ratio':>9}"
    )
    for r in results:
        verdict = "ok   " if r.ratio() >= 0.5 else "UNDER"
        print(
            f"{r.name:<{width}}  {r.unit:<10} {r.rate(r.ours):>9,.0f} {r.rate(r.bare):>9,.0f} "
            f"{r.ratio():>6.2f}  {verdict}         {r.ratio(cpu=True):>9.2f}"
        )
    print()
    print("ours, bare: median throughput over wall-clock time; ratio = ours/bare (the figure).")
    print("cpu ratio: the same over this process's CPU time (less sensitive to other load).")
    print()
    print("per-repetition ours/bare, wall clock (paired in run order):")
    for r in results:
        pairs = ", ".join(
            f"{(o.ops / o.wall) / (b.ops / b.wall):.2f}"
            for o, b in zip(r.ours, r.bare, strict=True)
        )
        print(f"  {r.name:<{width}}  {pairs}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
