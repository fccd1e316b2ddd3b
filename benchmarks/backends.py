"""One adapter per backend: fresh stores, the bare-driver floor of each phase, cleanup.

An adapter knows how to

- make a fresh place for a store (a database file in a temporary directory for
  SQLite, a schema of its own for PostgreSQL) and remove it afterwards;
- open an engine there through the public API (``Engine.open(url, ...)``);
- write the same rows the engine writes (events, links, heads) with the bare
  driver, in the same transactions and with the same durability
  (:class:`BareWriter`);
- read, with the bare driver, the events that touch some accounts through the
  links table and json-decode them (:meth:`Backend.bare_read`), one account per
  transaction or all of them in one.

The bare rows are checked against what the engine writes before anything is
timed (:func:`check_same_rows`), through the database, never through private
modules of the library.
"""

from __future__ import annotations

import json
import os
import sqlite3
import tempfile
import uuid
import zlib
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from domain import Deposited, Opened, SplitTransferred, Transferred, file_url, remove_db
from harness import Timer, Timing
from playthrough import Engine
from playthrough.errors import ConcurrencyError

DEFAULT_PG_URL = "postgresql://root@127.0.0.1:5432/test"
ACCOUNT = "bench.Account"

Key = tuple[str, str]


# --------------------------------------------------------------------------- bare events


@dataclass(frozen=True)
class BareEvent:
    """One event as the bare floor writes it: its row and its link rows (key, group)."""

    type: str
    data: str
    links: tuple[tuple[Key, int], ...]
    fired_at: str


def _dumps(value: dict[str, Any]) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _now() -> str:
    return datetime.now(UTC).isoformat()


def bare_opened(account: int) -> BareEvent:
    return BareEvent(
        "bench.Opened", _dumps({"account_id": account}), (((ACCOUNT, str(account)), 0),), _now()
    )


def bare_deposit(account: int, amount: int) -> BareEvent:
    return BareEvent(
        "bench.Deposited",
        _dumps({"account_id": account, "amount": amount}),
        (((ACCOUNT, str(account)), 0),),
        _now(),
    )


def bare_transfer(source: int, target: int, amount: int, *, split: bool = False) -> BareEvent:
    """A coupled transfer (both accounts in group 0) or a split one (groups 0 and 1)."""
    return BareEvent(
        "bench.SplitTransferred" if split else "bench.Transferred",
        _dumps({"amount": amount, "source_id": source, "target_id": target}),
        (((ACCOUNT, str(source)), 0), ((ACCOUNT, str(target)), 1 if split else 0)),
        _now(),
    )


def _chunks(items: Sequence[Any], size: int) -> Iterable[Sequence[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


# --------------------------------------------------------------------------- the contract


class BareWriter(ABC):
    """Appends events the way one would by hand: check the heads, insert, upsert, commit."""

    def __init__(self) -> None:
        self.known: dict[Key, int] = {}  # what this writer knows: its optimistic check

    @abstractmethod
    def append(self, events: Sequence[BareEvent]) -> None: ...

    @abstractmethod
    def close(self) -> None: ...


class Backend(ABC):
    name: str

    @abstractmethod
    def unavailable(self) -> str | None:
        """Why this backend cannot run here, or None."""

    @abstractmethod
    def describe(self) -> str:
        """Versions and durability settings, for the report's header."""

    @abstractmethod
    def place(self) -> Any:
        """A context manager giving a fresh, empty place for one store; removed on exit."""

    @abstractmethod
    def engine(self, place: str, *, building: bool = False, **options: Any) -> Engine:
        """An engine on ``place``; ``building``: lighter durability, for untimed setup."""

    @abstractmethod
    def bare_writer(self, place: str) -> BareWriter:
        """A bare writer on ``place`` (creating its tables: use a place of its own)."""

    @abstractmethod
    def bare_read(self, place: str, ids: Sequence[int], *, each: bool) -> Timing:
        """Read and json-decode the events touching accounts ``ids`` (ops: accounts).

        ``each``: one transaction per account, like loading them one by one;
        else one transaction for all, like ``load_many``.
        """

    @abstractmethod
    def stored_rows(self, place: str) -> tuple[list[tuple[str, str]], list[tuple[Any, ...]]]:
        """(type, data) of every event and (type, id, position, group) of every link."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release what the adapter holds (nothing by default)."""


def check_same_rows(backend: Backend) -> None:
    """The bare floor must write exactly the rows the engine writes: compare them."""
    bare = [
        bare_opened(7),
        bare_deposit(7, 3),
        bare_transfer(7, 2, 5),
        bare_transfer(2, 7, 1, split=True),
    ]
    with backend.place() as place:
        with backend.engine(place) as engine:
            engine.fire(Opened(account_id=7))
            engine.fire(Deposited(account_id=7, amount=3))
            engine.fire(Transferred(source_id=7, target_id=2, amount=5))
            engine.fire(SplitTransferred(source_id=2, target_id=7, amount=1))
            engine.commit()
        events, links = backend.stored_rows(place)
    want_events = [(e.type, e.data) for e in bare]
    want_links = sorted(
        (k[0], k[1], n, group) for n, e in enumerate(bare, 1) for k, group in e.links
    )
    if events != want_events or sorted(tuple(row) for row in links) != want_links:
        raise SystemExit(
            f"{backend.name}: the bare rows differ from the engine's:\n"
            f"  engine events {events}\n  bare events   {want_events}\n"
            f"  engine links  {sorted(links)}\n  bare links    {want_links}"
        )


# --------------------------------------------------------------------------- SQLite

_SQLITE_BARE_SCHEMA = """
CREATE TABLE pt_events (
    position INTEGER PRIMARY KEY AUTOINCREMENT,
    type TEXT NOT NULL, data TEXT NOT NULL, caused_by INTEGER, fired_at TEXT NOT NULL);
CREATE TABLE pt_links (
    state_type TEXT NOT NULL, state_id TEXT NOT NULL, position INTEGER NOT NULL,
    grp INTEGER NOT NULL, PRIMARY KEY (state_type, state_id, position)) WITHOUT ROWID;
CREATE INDEX pt_links_by_position ON pt_links (position);
CREATE TABLE pt_heads (
    state_type TEXT NOT NULL, state_id TEXT NOT NULL, last_position INTEGER NOT NULL,
    PRIMARY KEY (state_type, state_id)) WITHOUT ROWID;
"""


def _sqlite_connect(path: str, synchronous: str = "full") -> sqlite3.Connection:
    """A connection with the store's default durable settings (WAL, synchronous=FULL).

    ``synchronous`` (off, normal, full) sets the same level the engine's URL does,
    so that a run at ``off`` compares CPU rather than fsyncs.
    """
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={synchronous.upper()}")
    return conn


class SQLiteBareWriter(BareWriter):
    def __init__(self, path: str, synchronous: str = "full") -> None:
        super().__init__()
        self.conn = _sqlite_connect(path, synchronous)
        for statement in _SQLITE_BARE_SCHEMA.split(";"):
            if statement.strip():
                self.conn.execute(statement)

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
                raise ConcurrencyError("heads moved under the bare writer")
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


class SQLiteBackend(Backend):
    """Database files in one temporary directory, default durable settings unless told."""

    name = "sqlite"

    def __init__(self, synchronous: str = "full") -> None:
        if synchronous not in ("off", "normal", "full"):
            raise ValueError(f"synchronous must be off, normal or full, not {synchronous!r}")
        self._tmp = tempfile.TemporaryDirectory(prefix="pt-bench-")
        self._n = 0
        self.synchronous = synchronous

    def unavailable(self) -> str | None:
        return None

    def describe(self) -> str:
        return f"SQLite {sqlite3.sqlite_version} (WAL, synchronous={self.synchronous.upper()})"

    @contextmanager
    def place(self) -> Iterator[str]:
        self._n += 1
        path = Path(self._tmp.name) / f"store{self._n}.db"
        try:
            yield str(path)
        finally:
            remove_db(path)

    def engine(self, place: str, *, building: bool = False, **options: Any) -> Engine:
        level = "normal" if building else self.synchronous
        url = file_url(Path(place), synchronous=None if level == "full" else level)
        return Engine.open(url, **options)

    def bare_writer(self, place: str) -> BareWriter:
        return SQLiteBareWriter(place, self.synchronous)

    def bare_read(self, place: str, ids: Sequence[int], *, each: bool) -> Timing:
        conn = _sqlite_connect(place, self.synchronous)
        try:
            timer = Timer()
            decoded = 0
            groups = [[i] for i in ids] if each else [list(ids)]
            for group in groups:
                conn.execute("BEGIN")
                for chunk in _chunks(group, 300):
                    values = ",".join("(?,?)" for _ in chunk)
                    rows = conn.execute(
                        f"WITH want(t, i) AS (VALUES {values}) "
                        "SELECT position, type, data FROM pt_events WHERE position IN ("
                        "SELECT l.position FROM want w JOIN pt_links l "
                        "ON l.state_type = w.t AND l.state_id = w.i) ORDER BY position",
                        [v for i in chunk for v in (ACCOUNT, str(i))],
                    )
                    decoded += len([(p, t, json.loads(d)) for p, t, d in rows])
                conn.execute("COMMIT")
            timing = timer.done(len(ids))
        finally:
            conn.close()
        assert decoded >= len(ids)
        return timing

    def stored_rows(self, place: str) -> tuple[list[tuple[str, str]], list[tuple[Any, ...]]]:
        conn = sqlite3.connect(place)
        try:
            events = conn.execute("SELECT type, data FROM pt_events ORDER BY position").fetchall()
            links = conn.execute("SELECT state_type, state_id, position, grp FROM pt_links")
            return events, links.fetchall()
        finally:
            conn.close()

    def close(self) -> None:
        self._tmp.cleanup()


# --------------------------------------------------------------------------- PostgreSQL

_PG_BARE_SCHEMA = """
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


class PostgresBareWriter(BareWriter):
    """BEGIN; the heads FOR UPDATE; insert events (identity positions), links, heads; COMMIT.

    It does not serialise appends unless ``lock``: its positions are then not in
    commit order, the guarantee our store pays for.
    """

    def __init__(self, url: str, schema: str, *, lock: bool = False, create: bool = True) -> None:
        import psycopg

        super().__init__()
        self.conn = psycopg.connect(url, autocommit=True)
        self.s = f'"{schema}"'
        if create:
            for statement in _PG_BARE_SCHEMA.replace("{s}", self.s).split(";"):
                if statement.strip():
                    self.conn.execute(statement)
        self.lock = lock
        self.lock_key = zlib.crc32(schema.encode()) & 0x7FFFFFFF

    def append(self, events: Sequence[BareEvent]) -> None:
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
                row = cur.execute(insert, values[0]).fetchone()
                assert row is not None
                positions.append(row[0])
            else:
                cur.executemany(insert, values, returning=True)
                while True:
                    row = cur.fetchone()
                    assert row is not None
                    positions.append(row[0])
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

    def close(self) -> None:
        self.conn.close()


class PostgresBackend(Backend):
    """A schema of its own per place (``pt_bench_<random>_<n>``), dropped after use."""

    name = "postgres"

    def __init__(self, url: str | None = None) -> None:
        self.url = url or os.environ.get("PLAYTHROUGH_PG_URL", DEFAULT_PG_URL)
        self.prefix = f"pt_bench_{uuid.uuid4().hex[:8]}"
        self._n = 0

    def unavailable(self) -> str | None:
        try:
            import psycopg
        except ImportError:
            return "psycopg is not installed (pip install 'playthrough[postgres]')"
        try:
            psycopg.connect(self.url, connect_timeout=3).close()
        except psycopg.Error as exc:
            return f"no PostgreSQL server answers at {self.url}: {exc}"
        return None

    def describe(self) -> str:
        import psycopg

        with psycopg.connect(self.url) as conn:
            version = conn.info.server_version
            fsync = conn.execute("SHOW fsync").fetchone()
            sync = conn.execute("SHOW synchronous_commit").fetchone()
        return (
            f"psycopg {psycopg.__version__}, PostgreSQL {version // 10000}.{version % 10000} "
            f"(fsync={fsync and fsync[0]}, synchronous_commit={sync and sync[0]})"
        )

    @contextmanager
    def place(self) -> Iterator[str]:
        import psycopg

        self._n += 1
        name = f"{self.prefix}_{self._n}"
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(f'CREATE SCHEMA "{name}"')
        try:
            yield name
        finally:
            with psycopg.connect(self.url, autocommit=True) as conn:
                conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')

    def engine(self, place: str, *, building: bool = False, **options: Any) -> Engine:
        return Engine.open(self.url, schema=place, **options)

    def bare_writer(self, place: str) -> BareWriter:
        return PostgresBareWriter(self.url, place)

    def bare_read(self, place: str, ids: Sequence[int], *, each: bool) -> Timing:
        import psycopg

        s = f'"{place}"'
        query = (
            f"SELECT position, type, data FROM {s}.pt_events WHERE position IN ("
            f"SELECT position FROM {s}.pt_links WHERE (state_type, state_id) IN "
            "(SELECT * FROM unnest(%s::text[], %s::text[]))) ORDER BY position"
        )
        decoded = 0
        with psycopg.connect(self.url, autocommit=True) as conn:
            timer = Timer()
            groups = [[i] for i in ids] if each else [list(ids)]
            for group in groups:
                conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                rows = conn.execute(query, ([ACCOUNT] * len(group), [str(i) for i in group]))
                decoded += len([(p, t, json.loads(d)) for p, t, d in rows])
                conn.execute("COMMIT")
            timing = timer.done(len(ids))
        assert decoded >= len(ids)
        return timing

    def stored_rows(self, place: str) -> tuple[list[tuple[str, str]], list[tuple[Any, ...]]]:
        import psycopg

        with psycopg.connect(self.url) as conn:
            events = conn.execute(
                f'SELECT type, data FROM "{place}".pt_events ORDER BY position'
            ).fetchall()
            links = conn.execute(
                f'SELECT state_type, state_id, position, grp FROM "{place}".pt_links'
            ).fetchall()
        return events, links


def backend(name: str, *, url: str | None = None, synchronous: str = "full") -> Backend:
    """The adapter called ``name`` ("sqlite" or "postgres"); ``synchronous``: SQLite's level."""
    if name == "sqlite":
        return SQLiteBackend(synchronous)
    if name == "postgres":
        return PostgresBackend(url)
    raise ValueError(f"unknown backend {name!r}: sqlite or postgres")
