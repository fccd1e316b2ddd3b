"""The SQLite database of a store: the connection, its transactions, the schema.

Writers take SQLite's write lock up front (``BEGIN IMMEDIATE``), so the check
of the heads table and the append happen under one lock, across processes too;
positions are assigned inside that transaction, so commit order is position
order. Every transaction goes through :meth:`SQLiteDatastore._transaction`.

One store is shared by every engine of a process: a lock serialises its
transactions (a read transaction, an append, a snapshot write), so threads can
share it; SQLite runs one statement at a time per connection anyway, and one
connection keeps an in-memory database one database.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from time import monotonic, sleep
from typing import Literal, Self
from urllib.parse import quote

from ... import _options
from ..._errors import SchemaVersionError, StaleForgetError, StoreError
from .._base import (
    MIGRATIONS,
    SCHEMA_VERSION,
    NoStoreError,
    parse_schema_version,
    stale_forget_message,
)
from . import _sql as q


def check_epoch(conn: sqlite3.Connection, epoch: int | None) -> None:
    """StaleForgetError if a subject was forgotten since ``epoch`` (None: not checked)."""
    if epoch is None:
        return
    (now,) = conn.execute(f"SELECT {q.SHARED.EPOCH}").fetchone()
    if now != epoch:
        raise StaleForgetError(stale_forget_message())


def check_epoch_and_head(conn: sqlite3.Connection, epoch: int) -> int:
    """``check_epoch`` and the log's head (its last position) in one statement."""
    now, head = conn.execute(q.EPOCH_AND_HEAD).fetchone()
    if now != epoch:
        raise StaleForgetError(stale_forget_message())
    return int(head)


def _file_uri(path: str, query: str) -> str:
    """The URI of ``path`` with ``query``; ``mode=rw`` never creates the file, and opens
    it read-only if the OS says so."""
    return f"file:{quote(os.path.abspath(path))}?{query}"


class SQLiteDatastore:
    """The SQLite database a store lives in. ``path`` is a file name or ``":memory:"``.

    ``synchronous`` is SQLite's setting for the file (``"FULL"`` by default:
    a commit is on disk when ``commit()`` returns). ``create=False`` opens a
    store that exists and changes nothing to do so (no file, table or journal
    mode is created; a missing one is ``NoStoreError``); a file the process may
    not write (read-only file or directory) opens that way, for reading.
    """

    def __init__(
        self,
        path: str = ":memory:",
        *,
        synchronous: str = "FULL",
        busy_timeout: float = 30.0,
        create: bool = True,
    ) -> None:
        self._path = _options.sqlite_path(path)
        level = _options.synchronous(synchronous)
        busy_timeout = _options.at_least("busy_timeout", busy_timeout, 0, integer=False, unit=" s")
        self._given = (path, synchronous, busy_timeout)  # what reopen() opens again
        self.statements = 0
        self._lock = threading.RLock()  # one transaction at a time, across threads
        memory = path == ":memory:"
        try:
            self._connection: sqlite3.Connection | None = sqlite3.connect(
                path if create or memory else _file_uri(path, "mode=rw"),
                isolation_level=None,
                timeout=busy_timeout,
                check_same_thread=False,
                uri=not (create or memory),
            )
        except sqlite3.Error as exc:
            if not create and not os.path.exists(path):
                raise NoStoreError(
                    f"no playthrough store in {path!r}: no such file (nothing was created)"
                ) from exc
            raise StoreError(f"cannot open SQLite database {path!r}: {exc}") from exc
        self._reading = False
        #: Opened for reading only: the process may not write the file (or its directory).
        self.read_only = False
        try:
            if create and not memory:
                self._switch_to_wal(busy_timeout)
            elif not memory:  # a store that exists is in WAL mode already: change nothing
                self._readable(path, busy_timeout)
            if not self.read_only:
                self._conn.execute(f"PRAGMA synchronous={level}")
            self._conn.execute("PRAGMA foreign_keys=OFF")
            # Deleted content (a forgotten subject's key and values) is overwritten
            # with zeros, not left in free space: forgetting must be final on disk.
            self._conn.execute("PRAGMA secure_delete=ON")
            self._migrate(create)
        except StoreError:
            self._conn.close()
            raise
        except sqlite3.DatabaseError as exc:
            self._conn.close()
            hint = ""
            if "readonly" in str(exc) and create:
                hint = " (a read-only file or directory opens with create=False, to read)"
            raise StoreError(
                f"cannot use {path!r} as a playthrough SQLite store: {exc}{hint}"
            ) from exc

    def _readable(self, path: str, busy_timeout: float) -> None:
        """Make sure the file can be read; reopen it read-only if this process may not write it.

        Reading a WAL file needs its ``-shm`` index, which SQLite creates next
        to the file: in a directory this process may not write, even a read
        fails ("attempt to write a readonly database"). Then the file is
        reopened with ``mode=ro``; when no ``-wal`` file exists either (no
        writer has it open) and neither the file nor its directory is writable,
        with ``immutable=1``: SQLite reads it without any index or lock.
        """
        try:
            self._conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
            return
        except sqlite3.OperationalError as exc:
            if "readonly" not in str(exc):
                raise
        self._conn.close()
        folder = os.path.dirname(os.path.abspath(path))
        immutable = (
            not os.path.exists(path + "-wal")
            and not os.access(path, os.W_OK)
            and not os.access(folder, os.W_OK)
        )
        self._connection = sqlite3.connect(
            _file_uri(path, "mode=ro&immutable=1" if immutable else "mode=ro"),
            isolation_level=None,
            timeout=busy_timeout,
            check_same_thread=False,
            uri=True,
        )
        self.read_only = True
        self._conn.execute("SELECT count(*) FROM sqlite_master").fetchone()

    def _switch_to_wal(self, busy_timeout: float) -> None:
        """``PRAGMA journal_mode=WAL``, retried until ``busy_timeout`` like any other write.

        SQLite does not call its busy handler for a journal mode change: when
        another process holds the new file (creating it too), the switch fails
        at once with "database is locked", or leaves the mode unchanged. Two
        processes opening a fresh file at once then failed about 3 times in 10.
        """
        deadline = monotonic() + busy_timeout
        pause = 0.001
        while True:
            try:
                row = self._conn.execute("PRAGMA journal_mode=WAL").fetchone()
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) and "busy" not in str(exc):
                    raise
                row = None
            if row is not None and str(row[0]).lower() == "wal":
                return
            if monotonic() >= deadline:
                found = "database is locked" if row is None else f"journal mode {row[0]}"
                raise StoreError(
                    f"cannot switch {self._path!r} to WAL mode within the busy timeout "
                    f"({busy_timeout:g} s): {found}"
                )
            sleep(pause)
            pause = min(pause * 2, 0.05)

    @property
    def url(self) -> str:
        from ..._urls import sqlite_url

        return sqlite_url(self._path)

    @contextmanager
    def _transaction(
        self, begin: Literal["BEGIN", "BEGIN IMMEDIATE"], failure: str | None = None
    ) -> Iterator[sqlite3.Connection]:
        """One transaction: COMMIT when the block ends, ROLLBACK when it raises.

        ``BEGIN IMMEDIATE`` takes the write lock before the first read. With
        ``failure``, SQLite errors become StoreError(``failure: cause``).
        """
        with self._lock:
            yield from self._locked_transaction(begin, failure)

    def _locked_transaction(
        self, begin: Literal["BEGIN", "BEGIN IMMEDIATE"], failure: str | None
    ) -> Iterator[sqlite3.Connection]:
        conn = self._conn
        try:
            conn.execute(begin)
        except sqlite3.Error as exc:
            self._rollback()
            if failure is None:
                raise
            raise StoreError(
                f"{failure}: cannot start a write transaction on {self.url}: {exc}"
            ) from exc
        try:
            yield conn
            conn.execute("COMMIT")
        except BaseException as exc:
            self._rollback()
            if failure is not None and isinstance(exc, sqlite3.Error):
                raise StoreError(f"{failure}: {exc}") from exc
            raise

    def _rollback(self) -> None:
        """Roll back whatever is open; a failed or already ended transaction is not an error."""
        if self._conn.in_transaction:
            try:
                self._conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass  # SQLite already rolled it back (e.g. after an I/O error)

    def _writing(self, what: str) -> None:
        if self._reading:
            raise StoreError(f"cannot {what} inside a read transaction")

    def _migrate(self, create: bool = True) -> None:
        """Create or upgrade the tables; with ``create=False`` only check (read-only use)."""
        try:  # an up-to-date store needs no write lock to open
            row = self._conn.execute(q.SCHEMA_VERSION_READ).fetchone()
        except sqlite3.OperationalError:
            row = None  # no pt_meta yet
        if row is not None and row[0] == str(SCHEMA_VERSION):
            return
        if not create:
            if row is None:
                raise NoStoreError(f"no playthrough store in {self._path!r} (nothing was created)")
            if parse_schema_version(row[0], repr(self._path)) > SCHEMA_VERSION:
                raise SchemaVersionError(
                    f"{self._path!r} holds schema version {row[0]}, written by a newer "
                    f"playthrough; this one reads up to version {SCHEMA_VERSION}"
                )
            raise StoreError(  # a reader never migrates: the writer's job
                f"{self._path!r} holds schema version {row[0]}, older than this "
                f"playthrough's {SCHEMA_VERSION}: open it once with a writer (Engine.open) "
                "to upgrade it; nothing was changed"
            )
        with self._transaction("BEGIN IMMEDIATE") as conn:
            for statement in q.SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)
            row = conn.execute(q.SCHEMA_VERSION_READ).fetchone()
            # New tables are those of version 1.
            version = 1 if row is None else parse_schema_version(row[0], repr(self._path))
            if version > SCHEMA_VERSION:
                raise SchemaVersionError(
                    f"{self._path!r} holds schema version {version}, written by a newer "
                    f"playthrough; this one reads up to version {SCHEMA_VERSION}"
                )
            for target, statements in MIGRATIONS:
                if version < target:
                    for statement in statements:
                        if not statement.startswith("--postgres"):
                            conn.execute(statement.replace("{s}", ""))
                    version = target
            conn.execute(q.SCHEMA_VERSION_WRITE, (str(version),))

    @property
    def _conn(self) -> sqlite3.Connection:
        """The open connection; a closed store is a StoreError naming it."""
        conn = self._connection
        if conn is None:
            raise StoreError(f"the store on {self.url} is closed")
        return conn

    def reopen(self) -> Self | None:
        path, synchronous, busy_timeout = self._given
        if path == ":memory:":
            return None  # the database lives in this connection only
        return type(self)(path, synchronous=synchronous, busy_timeout=busy_timeout, create=False)

    def close(self) -> None:
        """Close the connection; closing again does nothing."""
        with self._lock:
            conn, self._connection = self._connection, None
            if conn is not None:
                conn.close()
