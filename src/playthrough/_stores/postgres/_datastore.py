"""The PostgreSQL database of a store: settings, schema, the pool and its transactions.

Readers are ``REPEATABLE READ, READ ONLY`` transactions on one pooled
connection, so every query of a load sees one snapshot; writers are READ
COMMITTED transactions. A store is shared by the threads of a process: each
thread's read transaction holds a pooled connection of its own (size the pool
to the threads). ``statements`` counts queries sent; transaction control
(BEGIN/COMMIT) is not counted, as in the SQLite store.
"""

from __future__ import annotations

import re
import threading
import zlib
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Self

import psycopg
from psycopg import sql
from psycopg.pq import TransactionStatus
from psycopg_pool import ConnectionPool, PoolTimeout

from ... import _options
from ..._errors import SchemaVersionError, StoreError
from .._base import MIGRATIONS, SCHEMA_VERSION, NoStoreError, parse_schema_version
from . import _sql as q
from ._settings import Settings, int32, one_line
from ._settings import settings as read_settings
from ._sql import Conn


class PostgresDatastore:
    """The database of a PostgreSQL store: one schema of one database.

    ``url`` is a libpq URL (``postgresql://user:password@host:5432/db``); the
    schema is ``schema=`` or ``?schema=NAME`` in the URL (default ``public``),
    created with its tables on first use. ``min_size``/``max_size`` size the
    connection pool; ``connect_timeout`` (seconds) bounds each connection attempt
    and ``pool_timeout`` the wait for a pooled connection.

    Opening is three steps: :func:`_settings.settings` reads the URL and options,
    :meth:`_migrate` creates or checks the schema over a first direct
    connection, :meth:`_open_pool` opens the pool the store then uses.
    """

    def __init__(
        self,
        url: str,
        *,
        schema: str | None = None,
        min_size: int = 1,
        max_size: int = 2,
        connect_timeout: int = 5,
        pool_timeout: float = 30.0,
        create: bool = True,
        lock_timeout: float = 60.0,
    ) -> None:
        _options.postgres(
            min_size=min_size,
            max_size=max_size,
            connect_timeout=connect_timeout,
            pool_timeout=pool_timeout,
            lock_timeout=lock_timeout,
        )
        self.statements = 0
        # What reopen() opens again (the URL keeps its password: the conninfo holds it too).
        self._given = (url, schema, connect_timeout, pool_timeout, lock_timeout)
        self._local = threading.local()  # per thread: is a read transaction open
        self._pool: ConnectionPool[Conn] | None = None
        settings = read_settings(url, schema, min_size, max_size, connect_timeout)
        self.schema = settings.schema
        self._url = settings.url
        self._password = settings.password
        self._where = settings.where
        self._max_size = max_size
        self._quoted = sql.Identifier(self.schema).as_string()
        self._rendered: OrderedDict[str, str] = OrderedDict()
        self._lock_key = int32(zlib.crc32(self.schema.encode()))
        self._conninfo = settings.conninfo
        self._connect_kwargs = settings.connect_kwargs
        self._lock_timeout_ms = str(max(1, round(lock_timeout * 1000)))
        self._lock_params = (q.LOCK_APPEND, self._lock_key, self._lock_timeout_ms)

        # A direct first connection: its error names the cause (refused,
        # unknown database, bad password), where a pool would only time out.
        try:
            first = psycopg.connect(settings.conninfo, **settings.connect_kwargs)
        except psycopg.Error as exc:
            raise StoreError(f"cannot connect to {self._where}: {self._clean(exc)}") from exc
        try:
            if create:
                self._migrate(first)
            else:
                self._check_exists(first)
        finally:
            first.close()
        self._pool = self._open_pool(settings, min_size, max_size, pool_timeout, connect_timeout)

    # ------------------------------------------------------------------ setup

    @property
    def url(self) -> str:
        return self._url

    def reopen(self) -> Self:
        url, schema, connect_timeout, pool_timeout, lock_timeout = self._given
        return type(self)(
            url,
            schema=schema,
            min_size=1,
            max_size=2,
            connect_timeout=connect_timeout,
            pool_timeout=pool_timeout,
            create=False,
            lock_timeout=lock_timeout,
        )

    def _sql(self, template: str) -> str:
        """A statement constant with ``{s}`` replaced by this store's quoted schema."""
        rendered = self._rendered  # least recently used first; each step atomic (threads)
        text = rendered.get(template)
        if text is None:
            text = rendered[template] = template.replace("{s}", self._quoted)
            while len(rendered) > q.RENDERED_MAX:  # texts built per call (find_events) vary
                try:
                    rendered.popitem(last=False)
                except KeyError:  # another thread emptied it meanwhile
                    break
        else:
            try:
                rendered.move_to_end(template)
            except KeyError:  # evicted by another thread meanwhile
                pass
        return text

    def _clean(self, exc: BaseException) -> str:
        # libpq does not echo passwords; masking is a second line of defence
        # (skipped for very short ones, which would mask ordinary letters).
        text = one_line(exc)
        return text.replace(self._password, "***") if len(self._password) >= 4 else text

    def _failure(self, what: str, exc: psycopg.Error) -> StoreError:
        return StoreError(
            f"{what} on {self._where} (schema {self.schema!r}) failed: {self._clean(exc)}"
        )

    def _check_exists(self, conn: Conn) -> None:
        """For read-only use: refuse a schema without a store; never create or migrate."""
        quoted = self._quoted
        try:
            row = conn.execute("SELECT to_regclass(%s)", (f"{quoted}.pt_meta",)).fetchone()
            found = None
            if row is not None and row[0] is not None:
                found = conn.execute(
                    f"SELECT value FROM {quoted}.pt_meta WHERE key = 'schema_version'"
                ).fetchone()
        except psycopg.Error as exc:
            raise self._failure("checking the store", exc) from exc
        if found is None:
            raise NoStoreError(
                f"no playthrough store in schema {self.schema!r} on {self._where} "
                "(nothing was created)"
            )
        version = parse_schema_version(found[0], f"schema {self.schema!r} on {self._where}")
        if version > SCHEMA_VERSION:
            raise SchemaVersionError(
                f"schema {self.schema!r} on {self._where} holds schema version {found[0]}, "
                f"written by a newer playthrough; this one reads up to version {SCHEMA_VERSION}"
            )
        if version < SCHEMA_VERSION:  # a reader never migrates: the writer's job
            raise StoreError(
                f"schema {self.schema!r} on {self._where} holds schema version {found[0]}, "
                f"older than this playthrough's {SCHEMA_VERSION}: open it once with a writer "
                "(Engine.open) to upgrade it; nothing was changed"
            )

    def _migrate(self, conn: Conn) -> None:
        """Create the schema's tables, or check its version, under the migration lock."""
        quoted = self._quoted
        try:
            conn.execute(q.WRITE)
            conn.execute(self._sql(q.LOCK), (q.LOCK_MIGRATE, self._lock_key))
            row = conn.execute("SELECT to_regclass(%s)", (f"{quoted}.pt_meta",)).fetchone()
            version = SCHEMA_VERSION
            if row is None or row[0] is None:
                for statement in q.SCHEMA:  # the tables of version 1; the steps follow
                    conn.execute(self._sql(statement))
                conn.execute(f"INSERT INTO {quoted}.pt_meta VALUES ('schema_version', '1')")
                version = 1
            else:
                found = conn.execute(
                    f"SELECT value FROM {quoted}.pt_meta WHERE key = 'schema_version'"
                ).fetchone()
                if found is None:
                    raise StoreError(
                        f"schema {self.schema!r} on {self._where} has a pt_meta table "
                        "without a schema_version: not a playthrough store"
                    )
                version = parse_schema_version(found[0], f"schema {self.schema!r} on {self._where}")
                if version > SCHEMA_VERSION:
                    raise SchemaVersionError(
                        f"schema {self.schema!r} on {self._where} holds schema version "
                        f"{found[0]}, written by a newer playthrough; this one reads up to "
                        f"version {SCHEMA_VERSION}"
                    )
            for target, statements in MIGRATIONS:
                if version < target:
                    for statement in statements:
                        if not statement.startswith("--sqlite"):
                            conn.execute(statement.replace("{s}", quoted + "."))
                    version = target
            conn.execute(
                f"UPDATE {quoted}.pt_meta SET value = %s WHERE key = 'schema_version'",
                (str(version),),
            )
            conn.execute("COMMIT")
        except psycopg.Error as exc:
            raise StoreError(
                f"cannot set up schema {self.schema!r} on {self._where}: {self._clean(exc)}"
            ) from exc

    def _open_pool(
        self,
        settings: Settings,
        min_size: int,
        max_size: int,
        pool_timeout: float,
        connect_timeout: int,
    ) -> ConnectionPool[Conn]:
        pool: ConnectionPool[Conn] = ConnectionPool(
            settings.conninfo,
            kwargs=settings.connect_kwargs,
            min_size=min_size,
            max_size=max_size,
            open=False,
            timeout=pool_timeout,
            name=f"playthrough:{self.schema}",
            num_workers=1,
        )
        try:
            pool.open(wait=True, timeout=float(connect_timeout) + 5.0)
        except PoolTimeout as exc:
            pool.close()
            raise StoreError(
                f"cannot open a connection pool to {self._where}: {self._clean(exc)}"
            ) from exc
        return pool

    # ------------------------------------------------------------------ transactions

    def _checkout(self, begin: str | None) -> Conn:
        """A pooled connection with a transaction begun; dead connections are replaced.

        ``begin=None``: the connection as the pool gives it, nothing sent (the
        append sends its BEGIN in its own round trip and handles a dead connection).
        """
        if self._pool is None:
            raise StoreError(f"the store on {self.url} is closed")
        if begin is None:
            try:
                return self._pool.getconn()
            except PoolTimeout as exc:
                raise StoreError(f"no connection to {self._where}: {self._clean(exc)}") from exc
        last: psycopg.Error | None = None
        for _ in range(self._max_size + 1):
            try:
                conn = self._pool.getconn()
            except PoolTimeout as exc:
                raise StoreError(f"no connection to {self._where}: {self._clean(exc)}") from exc
            try:
                conn.execute(begin, prepare=False)
                return conn
            except psycopg.OperationalError as exc:
                # Nothing was sent but BEGIN: safe to retry on another connection.
                self._pool.putconn(conn)
                last = exc
                if not conn.broken:
                    break
        assert last is not None
        raise StoreError(f"cannot reach {self._where}: {self._clean(last)}") from last

    def _release(self, conn: Conn, end: str | None) -> None:
        assert self._pool is not None
        try:
            if end is not None and not conn.broken:
                conn.execute(end, prepare=False)
        finally:
            self._pool.putconn(conn)

    def _abort(self, conn: Conn) -> None:
        try:
            self._release(conn, "ROLLBACK")
        except psycopg.Error:
            pass  # the connection is gone; the server rolled the transaction back

    @contextmanager
    def _transaction(self, doing: str, committing: str) -> Iterator[Conn]:
        """A READ COMMITTED write transaction on a pooled connection.

        When the block raises, the transaction is rolled back (a psycopg error
        becomes StoreError naming ``doing``); when it ends, it is committed
        (StoreError naming ``committing`` if that fails) unless the block
        already committed, as :meth:`append` does in its pipeline.
        """
        if getattr(self._local, "reading", False):
            raise StoreError("cannot write inside a read transaction")
        conn = self._checkout(q.WRITE)
        try:
            yield conn
        except psycopg.Error as exc:
            self._abort(conn)
            raise self._failure(doing, exc) from exc
        except BaseException:
            self._abort(conn)
            raise
        ended = conn.info.transaction_status == TransactionStatus.IDLE
        try:
            self._release(conn, None if ended else "COMMIT")
        except psycopg.Error as exc:
            raise self._failure(committing, exc) from exc

    def _single(self, template: str, params: Sequence[Any]) -> tuple[list[tuple[Any, ...]], int]:
        """One statement in autocommit on a pooled connection (one round trip): rows, rowcount."""
        if getattr(self._local, "reading", False):
            raise StoreError("heads and values are read and written outside a read transaction")
        if self._pool is None:
            raise StoreError(f"the store on {self.url} is closed")
        last: psycopg.Error | None = None
        for _ in range(self._max_size + 1):
            try:
                conn = self._pool.getconn()
            except PoolTimeout as exc:
                raise StoreError(f"no connection to {self._where}: {self._clean(exc)}") from exc
            try:
                self.statements += 1
                cursor = conn.execute(self._sql(template), params)
                rows = cursor.fetchall() if cursor.description is not None else []
                return rows, cursor.rowcount
            except psycopg.OperationalError as exc:
                last = exc
                if not conn.broken:
                    raise self._failure("a statement", exc) from exc
                # A dead pooled connection: one statement on its own, safe to retry.
            except psycopg.Error as exc:
                raise self._failure("a statement", exc) from exc
            finally:
                self._pool.putconn(conn)
        assert last is not None
        raise StoreError(f"cannot reach {self._where}: {self._clean(last)}") from last

    def _runner(self, conn: Conn) -> Callable[[str, Sequence[Any]], list[tuple[Any, ...]]]:
        """``run(sql, params)`` for ``_forget``: ``?`` placeholders, bare ``pt_`` tables."""

        def run(sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
            self.statements += 1
            text = re.sub(r"\bpt_", "{s}.pt_", sql).replace("?", "%s")
            cursor = conn.execute(self._sql(text), list(params))
            return cursor.fetchall() if cursor.description is not None else []

        return run

    def _discard(self, conn: Conn) -> None:
        """Close a connection whose state is unknown and give it back (the pool drops it)."""
        assert self._pool is not None
        try:
            conn.close()
        finally:
            self._pool.putconn(conn)

    def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.close()
