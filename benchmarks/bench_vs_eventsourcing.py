"""playthrough against the eventsourcing library (9.5) on one small bank, durable, both stores.

Usage::

    .venv/bin/pip install -e '.[bench]'     # eventsourcing==9.5.0
    .venv/bin/python benchmarks/bench_vs_eventsourcing.py [--backend sqlite|postgres|all]
        [--accounts N] [--deposits D] [--reps R] [--url URL]

The same domain written the way each library's documentation shows it:

- playthrough: an ``Account`` state, ``AccountOpened`` and ``MoneyDeposited`` events
  with ``apply`` hooks; one store (``playthrough.connect``) and, per command, an
  engine (``with store.engine() as engine: engine.fire(...)``: the README's
  "one engine per request", committing when the block ends);
- eventsourcing: an ``Account`` aggregate whose ``__init__`` and ``deposit``
  are decorated with ``@event``, and an ``Application`` subclass whose
  commands get the aggregate from its repository, call it and ``save`` it;
  persistence through its ``eventsourcing.sqlite`` or ``eventsourcing.postgres``
  module, configured by the application's environment.

Two phases, each side on a store of its own (a SQLite file each, or a
PostgreSQL schema each, created for the run and dropped after), interleaved
(see harness.py), ``reps`` times:

- commits: N accounts opened, then D deposits into each, one event per commit
  (N * (D + 1) commits), each command loading the account it changes (the
  deposit's balance check needs it);
- cold loads: a fresh ``Engine.open`` / a fresh ``Application`` on the store the
  commits phase just wrote, then every account loaded one by one
  (``engine.load`` / ``app.repository.get``); construction is not timed on
  either side. The loaded balances are checked against the expected ones.

Both use the stores' durable defaults: SQLite in WAL mode with
synchronous=FULL, PostgreSQL with fsync and synchronous_commit on. Neither side
keeps anything between commands (eventsourcing's aggregate cache and snapshots
are off by default, and each playthrough command has a new engine), so every
command reads its account from the store. The table gives
playthrough/eventsourcing (above 1: playthrough is faster); the goals are
commits at least 1.5 and loads at least 3.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import attrs

import playthrough
from harness import Result, Timer, Timing, markdown_table, measure
from playthrough import Engine, Event, State, state_id
from playthrough.errors import EventRejected

DEFAULT_PG_URL = "postgresql://root@127.0.0.1:5432/test"

try:
    from eventsourcing.application import Application
    from eventsourcing.domain import Aggregate, event
except ImportError:  # pragma: no cover - the extra is not installed
    Application = None


# --------------------------------------------------------------------------- playthrough


@attrs.define
class Account(State, type_name="vs.Account"):
    owner: str = ""
    balance: int = 0


@attrs.define
class AccountOpened(Event, type_name="vs.AccountOpened"):
    account_id: int = state_id(Account)
    owner: str = ""

    def apply(self, account: Account) -> None:
        account.owner = self.owner


@attrs.define
class MoneyDeposited(Event, type_name="vs.MoneyDeposited"):
    account_id: int = state_id(Account)
    amount: int = 0

    def validate(self, account: Account) -> None:
        if not account.owner:
            raise EventRejected("no such account")

    def apply(self, account: Account) -> None:
        account.balance += self.amount


def workload(accounts: int, deposits: int) -> tuple[list[tuple[int, int]], dict[int, int]]:
    """The deposits (account, amount), in commit order, and the balances they give."""
    rng = random.Random(5)
    rounds = [(n, rng.randint(1, 100)) for _ in range(deposits) for n in range(accounts)]
    balances = dict.fromkeys(range(accounts), 0)
    for n, amount in rounds:
        balances[n] += amount
    return rounds, balances


def ours_commits(url: str, accounts: int, rounds: list[tuple[int, int]]) -> Timing:
    store = playthrough.connect(url)
    timer = Timer()
    for n in range(accounts):
        with store.engine() as engine:
            engine.fire(AccountOpened(account_id=n, owner=f"owner {n}"))
    for n, amount in rounds:
        with store.engine() as engine:
            engine.fire(MoneyDeposited(account_id=n, amount=amount))
    timing = timer.done(accounts + len(rounds))
    store.close()
    return timing


def ours_loads(url: str, balances: dict[int, int]) -> Timing:
    with Engine.open(url) as engine:  # fresh: nothing in memory
        timer = Timer()
        loaded = [engine.load(Account, n).balance for n in balances]
        timing = timer.done(len(loaded))
    if loaded != list(balances.values()):
        raise AssertionError("playthrough loaded other balances than the deposits give")
    return timing


# --------------------------------------------------------------------------- eventsourcing

if Application is not None:

    class BankAccount(Aggregate):  # type: ignore[misc]
        @event("Opened")  # type: ignore[untyped-decorator]
        def __init__(self, owner: str) -> None:
            self.owner = owner
            self.balance = 0

        @event("Deposited")  # type: ignore[untyped-decorator]
        def deposit(self, amount: int) -> None:
            self.balance += amount

    class Bank(Application):  # type: ignore[misc]
        def open_account(self, owner: str) -> uuid.UUID:
            account = BankAccount(owner)
            self.save(account)
            return account.id  # type: ignore[no-any-return]

        def deposit(self, account_id: uuid.UUID, amount: int) -> None:
            account = self.repository.get(account_id)
            account.deposit(amount)
            self.save(account)

        def balance(self, account_id: uuid.UUID) -> int:
            return self.repository.get(account_id).balance  # type: ignore[no-any-return]


def theirs_commits(
    env: dict[str, str], accounts: int, rounds: list[tuple[int, int]], ids: dict[int, uuid.UUID]
) -> Timing:
    app = Bank(env=env)
    timer = Timer()
    for n in range(accounts):
        ids[n] = app.open_account(f"owner {n}")
    for n, amount in rounds:
        app.deposit(ids[n], amount)
    timing = timer.done(accounts + len(rounds))
    app.close()
    return timing


def theirs_loads(
    env: dict[str, str], balances: dict[int, int], ids: dict[int, uuid.UUID]
) -> Timing:
    app = Bank(env=env)  # fresh: nothing in memory
    timer = Timer()
    loaded = [app.balance(ids[n]) for n in balances]
    timing = timer.done(len(loaded))
    app.close()
    if loaded != list(balances.values()):
        raise AssertionError("eventsourcing loaded other balances than the deposits give")
    return timing


# --------------------------------------------------------------------------- places


class Places:
    """Fresh stores for each side: (playthrough URL, eventsourcing environment)."""

    def __init__(self, kind: str, url: str, stack: contextlib.ExitStack) -> None:
        self.kind = kind
        self.url = url
        self.stack = stack
        self.work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="pt-vs-es-")))
        self.prefix = f"pt_vs_es_{uuid.uuid4().hex[:8]}"
        self.count = 0

    def _schema(self) -> str:
        import psycopg

        self.count += 1
        name = f"{self.prefix}_{self.count}"
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(f'CREATE SCHEMA "{name}"')

        def drop() -> None:
            with psycopg.connect(self.url, autocommit=True) as conn:
                conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')

        self.stack.callback(drop)
        return name

    def ours(self) -> str:
        if self.kind == "sqlite":
            self.count += 1
            return f"sqlite:///{self.work / f'ours-{self.count}.db'}"
        return f"{self.url}?schema={self._schema()}"

    def theirs(self) -> dict[str, str]:
        if self.kind == "sqlite":
            self.count += 1
            path = self.work / f"theirs-{self.count}.db"
            return {"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": str(path)}
        parts = urlsplit(self.url)
        return {
            "PERSISTENCE_MODULE": "eventsourcing.postgres",
            "POSTGRES_DBNAME": parts.path.lstrip("/"),
            "POSTGRES_HOST": parts.hostname or "127.0.0.1",
            "POSTGRES_PORT": str(parts.port or 5432),
            "POSTGRES_USER": parts.username or "",
            "POSTGRES_PASSWORD": parts.password or "",
            "POSTGRES_SCHEMA": self._schema(),
        }


def run(kind: str, url: str, accounts: int, deposits: int, reps: int) -> list[Result]:
    rounds, balances = workload(accounts, deposits)
    with contextlib.ExitStack() as stack:
        places = Places(kind, url, stack)
        ours_written: list[str] = []
        theirs_written: list[tuple[dict[str, str], dict[int, uuid.UUID]]] = []

        def commit_ours() -> Timing:
            ours_written.append(places.ours())
            return ours_commits(ours_written[-1], accounts, rounds)

        def commit_theirs() -> Timing:
            ids: dict[int, uuid.UUID] = {}
            theirs_written.append((places.theirs(), ids))
            return theirs_commits(theirs_written[-1][0], accounts, rounds, ids)

        commits = measure(
            f"commits ({accounts} opened, {deposits} deposits each; one event per commit)",
            "commits/s",
            commit_ours,
            commit_theirs,
            reps,
        )
        loads = measure(
            f"cold loads, {accounts} accounts one by one ({deposits + 1} events each)",
            "loads/s",
            lambda: ours_loads(ours_written[-1], balances),
            lambda: theirs_loads(theirs_written[-1][0], balances, theirs_written[-1][1]),
            reps,
        )
    return [commits, loads]


def pg_unavailable(url: str) -> str | None:
    try:
        import psycopg
    except ImportError:
        return "psycopg is not installed (pip install 'playthrough[postgres]')"
    try:
        psycopg.connect(url, connect_timeout=3).close()
    except psycopg.Error as exc:
        return f"no PostgreSQL server answers at {url}: {exc}"
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=("sqlite", "postgres", "all"), default="all")
    parser.add_argument("--accounts", type=int, default=200)
    parser.add_argument("--deposits", type=int, default=4)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--url", default=os.environ.get("PLAYTHROUGH_PG_URL", DEFAULT_PG_URL))
    args = parser.parse_args()
    if Application is None:
        sys.exit(
            "eventsourcing is not installed: pip install -e '.[bench]' "
            "(it brings eventsourcing==9.5.0)"
        )
    kinds = ("sqlite", "postgres") if args.backend == "all" else (args.backend,)
    for kind in kinds:
        if kind == "postgres" and (why := pg_unavailable(args.url)):
            print(f"## PostgreSQL\n\nskipped: {why}\n")
            continue
        results = run(kind, args.url, args.accounts, args.deposits, args.reps)
        load = os.getloadavg()
        print(f"## {'SQLite' if kind == 'sqlite' else 'PostgreSQL'}\n")
        print(
            f"{args.reps} repetitions, ours = playthrough, bare = eventsourcing "
            f"{_their_version()}; load average {load[0]:.1f}\n"
        )
        print(markdown_table(results, goal=None))
        print()


def _their_version() -> Any:
    from importlib.metadata import version

    return version("eventsourcing")


if __name__ == "__main__":
    main()
