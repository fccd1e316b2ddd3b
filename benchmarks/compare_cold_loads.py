"""Issue 10's workload: cold loads and single-event commits against the bare driver.

300 accounts, 4 deposits each, 600 transfers between random pairs, one event
per commit; then every account loaded one by one in a fresh engine, and all of
them with one ``load_many`` in another fresh engine. Two domains:

- ``coupled``: the README's transfer, one ``apply(source, target, ledger)``;
- ``split``: the same transfer with one apply hook per state.

The bare floor, interleaved in the same run on the same database: for loads,
the driver (sqlite3 or psycopg) reading each account's event rows through its
links and decoding their JSON; for commits (one deposit per commit, blocks of
ours and bare alternating), the driver writing one event, its link and heads
row (SQLite: checking the heads first) with the same durability. Ratios are
ours/bare throughput (goal >= 0.5). "build" is the workload's own commit rate.

    .venv/bin/python benchmarks/compare_cold_loads.py [--quick] [--pg URL] [--no-values]

``--no-values`` writes with ``head_values=False`` (and works against older
versions of playthrough, which have no such option: the "before" column).
"""

from __future__ import annotations

import argparse
import json
import random
import sqlite3
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs

from playthrough import Engine, Event, SingletonState, State, state_id


@attrs.define
class Account(State, type_name="cold.Account"):
    owner: str = ""
    balance: int = 0


@attrs.define
class Ledger(SingletonState, type_name="cold.Ledger"):
    transfers: int = 0


@attrs.define
class Opened(Event, type_name="cold.Opened"):
    account_id: int = state_id(Account)
    owner: str = ""

    def apply(self, account: Account) -> None:
        account.owner = self.owner


@attrs.define
class Deposited(Event, type_name="cold.Deposited"):
    account_id: int = state_id(Account)
    amount: int = 0

    def apply(self, account: Account) -> None:
        account.balance += self.amount


@attrs.define
class Transferred(Event, type_name="cold.Transferred"):
    """The README's transfer: one apply hook over both accounts and the ledger."""

    source_id: int = state_id(Account)
    target_id: int = state_id(Account)
    amount: int = 0

    def apply(self, source: Account, target: Account, ledger: Ledger) -> None:
        source.balance -= self.amount
        target.balance += self.amount
        ledger.transfers += 1


@attrs.define
class SplitTransferred(Event, type_name="cold.SplitTransferred"):
    """The same transfer with one apply hook per state: it couples nothing."""

    source_id: int = state_id(Account)
    target_id: int = state_id(Account)
    amount: int = 0

    def apply_source(self, source: Account) -> None:
        source.balance -= self.amount

    def apply_target(self, target: Account) -> None:
        target.balance += self.amount

    def apply_ledger(self, ledger: Ledger) -> None:
        ledger.transfers += 1


def _engine(url: str, values: bool, **options: Any) -> Engine:
    if not values:
        options["head_values"] = False
    try:
        return Engine.open(url, **options)
    except TypeError:  # an older playthrough: no head_values option
        options.pop("head_values", None)
        return Engine.open(url, **options)


def build(url: str, domain: str, accounts: int, values: bool, seed: int = 7) -> float:
    """Write the workload, one event per commit; returns commits per second."""
    rng = random.Random(seed)
    transfer = Transferred if domain == "coupled" else SplitTransferred
    events: list[Event] = [Opened(account_id=n, owner=f"o{n}") for n in range(accounts)]
    events += [Deposited(account_id=n, amount=100) for _ in range(4) for n in range(accounts)]
    for _ in range(2 * accounts):
        a, b = rng.sample(range(accounts), 2)
        events.append(transfer(source_id=a, target_id=b, amount=rng.randint(1, 50)))
    engine = _engine(url, values)
    start = time.perf_counter()
    for event in events:
        engine.fire(event)
        engine.commit()
    elapsed = time.perf_counter() - start
    engine.close()
    return len(events) / elapsed


def load_one_by_one(url: str, accounts: int) -> float:
    engine = _engine(url, True)
    start = time.perf_counter()
    for n in range(accounts):
        engine.load(Account, n)
    elapsed = time.perf_counter() - start
    engine.close()
    return accounts / elapsed


def load_many(url: str, accounts: int) -> float:
    engine = _engine(url, True)
    start = time.perf_counter()
    engine.load_many(Account, range(accounts))
    elapsed = time.perf_counter() - start
    engine.close()
    return accounts / elapsed


# ---------------------------------------------------------------------- bare drivers

_EVENTS_OF = (
    "SELECT e.data FROM pt_links l JOIN pt_events e ON e.position = l.position "
    "WHERE l.state_type = {p} AND l.state_id = {p} ORDER BY l.position"
)


def bare_sqlite_load(path: str, accounts: int) -> float:
    conn = sqlite3.connect(path, isolation_level=None)
    sql = _EVENTS_OF.format(p="?")
    start = time.perf_counter()
    for n in range(accounts):
        conn.execute("BEGIN")
        rows = conn.execute(sql, ("cold.Account", str(n))).fetchall()
        conn.execute("COMMIT")
        [json.loads(r[0]) for r in rows]
    elapsed = time.perf_counter() - start
    conn.close()
    return accounts / elapsed


class BareSQLite:
    """One event per commit: check the heads, insert the event, its links, the heads."""

    def __init__(self, path: str) -> None:
        self.conn = conn = sqlite3.connect(path, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.executescript(
            "CREATE TABLE ev (position INTEGER PRIMARY KEY, type TEXT, data TEXT, caused_by "
            "INTEGER, fired_at TEXT);"
            "CREATE TABLE lk (t TEXT, i TEXT, position INTEGER, grp INTEGER, "
            "PRIMARY KEY (t, i, position)) WITHOUT ROWID;"
            "CREATE TABLE hd (t TEXT, i TEXT, last INTEGER, PRIMARY KEY (t, i)) WITHOUT ROWID;"
        )
        self.p = 0

    def commits(self, n: int) -> float:
        conn = self.conn
        start = time.perf_counter()
        for _ in range(n):
            self.p += 1
            p, i = self.p, str(self.p % 300)
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("SELECT last FROM hd WHERE t = 'A' AND i = ?", (i,)).fetchall()
            data = json.dumps({"account_id": p % 300, "amount": 100}, sort_keys=True)
            conn.execute("INSERT INTO ev VALUES (?, 'D', ?, NULL, '2026')", (p, data))
            conn.execute("INSERT INTO lk VALUES ('A', ?, ?, 0)", (i, p))
            conn.execute(
                "INSERT INTO hd VALUES ('A', ?, ?) ON CONFLICT (t, i) "
                "DO UPDATE SET last = excluded.last",
                (i, p),
            )
            conn.execute("COMMIT")
        return time.perf_counter() - start


def our_commits(engine: Engine, n: int, offset: list[int]) -> float:
    """One Deposited per commit, on the accounts of the workload."""
    start = time.perf_counter()
    for _ in range(n):
        offset[0] += 1
        engine.fire(Deposited(account_id=offset[0] % 300, amount=1))
        engine.commit()
    return time.perf_counter() - start


def interleaved_commits(
    engine: Engine, bare: Callable[[int], float], n: int, rounds: int = 5
) -> tuple[float, float]:
    """(ours, bare) commits per second, alternating blocks of ``n`` in one run."""
    ours_time = bare_time = 0.0
    offset = [0]
    for _ in range(rounds):
        ours_time += our_commits(engine, n, offset)
        bare_time += bare(n)
    return n * rounds / ours_time, n * rounds / bare_time


def bare_pg_load(url: str, schema: str, accounts: int) -> float:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        sql = _EVENTS_OF.replace("pt_", f'"{schema}".pt_').format(p="%s")
        start = time.perf_counter()
        for n in range(accounts):
            rows = conn.execute(sql, ("cold.Account", str(n))).fetchall()
            [json.loads(r[0]) for r in rows]
        return accounts / (time.perf_counter() - start)


class BarePG:
    """One event per commit: the heads upsert, the event and its link, one transaction."""

    def __init__(self, url: str) -> None:
        import psycopg

        self.schema = schema = f"bare_{uuid.uuid4().hex[:8]}"
        self.conn = conn = psycopg.connect(url, autocommit=True)
        conn.execute(f'CREATE SCHEMA "{schema}"')
        conn.execute(f'SET search_path TO "{schema}"')
        conn.execute(
            "CREATE TABLE ev (position bigint PRIMARY KEY, type text, data text, "
            "caused_by bigint, fired_at text)"
        )
        conn.execute(
            "CREATE TABLE lk (t text, i text, position bigint, grp int, "
            "PRIMARY KEY (t, i, position))"
        )
        conn.execute("CREATE TABLE hd (t text, i text, last bigint, PRIMARY KEY (t, i))")
        self.p = 0

    def commits(self, n: int) -> float:
        conn = self.conn
        start = time.perf_counter()
        for _ in range(n):
            self.p += 1
            p, i = self.p, str(self.p % 300)
            data = json.dumps({"account_id": p % 300, "amount": 100}, sort_keys=True)
            with conn.transaction():  # BEGIN, 3 writes, COMMIT: what a careful app sends
                conn.execute(
                    "INSERT INTO hd VALUES ('A', %s, %s) ON CONFLICT (t, i) "
                    "DO UPDATE SET last = excluded.last",
                    (i, p),
                )
                conn.execute("INSERT INTO ev VALUES (%s, 'D', %s, NULL, '2026')", (p, data))
                conn.execute("INSERT INTO lk VALUES ('A', %s, %s, 0)", (i, p))
        return time.perf_counter() - start

    def close(self) -> None:
        self.conn.execute(f'DROP SCHEMA "{self.schema}" CASCADE')
        self.conn.close()


def _ratio(ours: float, bare: float) -> str:
    return f"{ours:10.0f}/s {bare:10.0f}/s  {ours / bare:5.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="100 accounts instead of 300")
    parser.add_argument("--pg", metavar="URL", help="also run on this PostgreSQL server")
    parser.add_argument("--no-values", action="store_true", help="write with head_values=False")
    args = parser.parse_args()
    accounts = 100 if args.quick else 300
    values = not args.no_values
    rows: list[tuple[str, str, str, str]] = []

    def measure(
        store: str,
        make: Callable[[str], str],
        bare_load: Callable[[str], float],
        bare_commits: Callable[[int], float],
    ) -> None:
        for domain in ("coupled", "split"):
            url = make(domain)
            commits = build(url, domain, accounts, values)
            one = many = floor = 0.0
            for _ in range(3):  # interleaved, best of three each: the machine is noisy
                one = max(one, load_one_by_one(url, accounts))
                floor = max(floor, bare_load(url))
                many = max(many, load_many(url, accounts))
            rows.append((store, domain, "load one by one", _ratio(one, floor)))
            rows.append((store, domain, "load_many", _ratio(many, floor)))
            rows.append((store, domain, "build (1 event/commit)", f"{commits:10.0f}/s"))
            if domain == "split":  # the commit path does not depend on the transfer's hooks
                engine = _engine(url, values)
                ours, bare = interleaved_commits(engine, bare_commits, 100 if args.quick else 300)
                engine.close()
                rows.append((store, "-", "commit 1 deposit", _ratio(ours, bare)))

    with tempfile.TemporaryDirectory() as tmp:

        def sqlite_url(domain: str) -> str:
            return f"sqlite:///{Path(tmp) / domain}.db"

        bare_sqlite = BareSQLite(str(Path(tmp) / "bare.db"))
        measure(
            "SQLite",
            sqlite_url,
            lambda url: bare_sqlite_load(url.removeprefix("sqlite:///"), accounts),
            bare_sqlite.commits,
        )
        bare_sqlite.conn.close()

    if args.pg:
        import psycopg

        schemas: list[str] = []

        def pg_url(domain: str) -> str:
            schema = f"cold_{domain}_{uuid.uuid4().hex[:6]}"
            schemas.append(schema)
            return f"{args.pg}?schema={schema}"

        bare_pg = BarePG(args.pg)
        try:
            measure(
                "PostgreSQL",
                pg_url,
                lambda url: bare_pg_load(args.pg, url.rsplit("schema=", 1)[1], accounts),
                bare_pg.commits,
            )
        finally:
            bare_pg.close()
            with psycopg.connect(args.pg, autocommit=True) as conn:
                for schema in schemas:
                    conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')

    mode = "heads values on" if values else "no heads values"
    print(f"{accounts} accounts, {7 * accounts} events ({mode})")
    print(f"{'store':11} {'domain':8} {'phase':24} {'ours':>12} {'bare':>12}  ratio")
    for store, domain, phase, figures in rows:
        print(f"{store:11} {domain:8} {phase:24} {figures}")


if __name__ == "__main__":
    main()
