"""PostgreSQL, awaited: psycopg's AsyncConnection and AsyncConnectionPool.

No statement is written here. Every request runs the sync store's own code
(its SQL constants, parameters, row decoding, error mapping, the heads check
and the outcome of a lost commit) against a *replay connection*: the first
statement that code sends is raised out to this module, which awaits it on an
async connection and runs the code again with that answer recorded, until
the code returns. Each statement is sent once, in order, on one async
connection; the sync code between them is pure (it depends only on the
answers), so running it again is exact. The cost is CPU: a request of k
statements runs its Python code k + 1 times (k is 1 for a read and for an
append, whose pipeline counts as one).

A pipeline (the append's BEGIN, lock, statement and COMMIT) is queued by the replay
connection and sent as one batch in one round trip, as the sync store does. Known
limit: a commit whose connection fails learns its outcome (``_resolve``) over a short
blocking connection, on that failure path only.
"""

from __future__ import annotations

import asyncio
import copy
import functools
import threading
import types
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, NamedTuple, TypeVar

import psycopg
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from .. import _telemetry
from .._errors import PlaythroughError, StoreError
from .._steps import Call, Steps
from .._stores.postgres import PostgresStore
from .._stores.postgres._reader import PostgresReader
from .._stores.postgres._sql import READ, WRITE
from ._store import AsyncStore

T = TypeVar("T")
AConn = psycopg.AsyncConnection[Any]

#: The store requests the async engine sends (the rest run on the sync Engine).
_CALLS = frozenset(
    {
        "heads",
        "append",
        "write_values",
        "ensure_subject_keys",
        "write_snapshots",
        "drop_snapshots",
        "claim_due",
        "finish_schedule",
        "forget_subject",
        "rearm_schedule",
        "mark_handled",
    }
)


class _Need(BaseException):
    """Not an error: raised by the replay connection for the first statement it has no
    answer for (``batch``: the statements of a pipeline, sent in one round trip). A
    BaseException, so the store code's ``except Exception`` clauses let it through."""

    def __init__(
        self,
        query: Any,
        params: Any,
        prepare: bool | None,
        batch: list[tuple[Any, Any, bool | None]] | None = None,
    ) -> None:
        self.query = query
        self.params = params
        self.prepare = prepare
        self.batch = batch


class _Batch(NamedTuple):
    """A pipeline's answers: one per statement (None where it did not run), the first error."""

    answers: list[_Answer | None]
    error: psycopg.Error | None


class _Deferred:
    """A cursor of a statement queued in a pipeline: its rows come with ``sync()``."""

    def __init__(self) -> None:
        self.answer: _Answer | None = None

    @property
    def description(self) -> object:
        return None if self.answer is None else self.answer.description

    @property
    def rowcount(self) -> int:
        return -1 if self.answer is None else self.answer.rowcount

    @property
    def statusmessage(self) -> str | None:
        """None until the statement's answer came back (its command tag is not kept)."""
        return None if self.answer is None else ""

    def fetchall(self) -> list[tuple[Any, ...]]:
        return [] if self.answer is None else self.answer.rows

    def fetchone(self) -> tuple[Any, ...] | None:
        return None if self.answer is None else self.answer.fetchone()


class _ReplayPipeline:
    """``conn.pipeline()`` on the replay connection: statements are queued, and ``sync()``
    answers them all from one recorded batch, or asks for the batch to be sent."""

    def __init__(self, conn: _ReplayConnection) -> None:
        self._conn = conn
        self.queued: list[tuple[Any, Any, bool | None]] = []
        self.cursors: list[_Deferred] = []

    def __enter__(self) -> _ReplayPipeline:
        self._conn._pipeline = self
        return self

    def __exit__(self, *exc: object) -> None:
        self._conn._pipeline = None
        if self.queued and exc[0] is None:
            self.sync()

    def sync(self) -> None:
        conn = self._conn
        if not self.queued:
            return
        n = conn._sent
        conn._sent += 1
        queued, cursors = self.queued, self.cursors
        self.queued, self.cursors = [], []
        if n < len(conn._answers):
            batch = conn._answers[n]
            assert isinstance(batch, _Batch)
            for cursor, answer in zip(cursors, batch.answers, strict=True):
                cursor.answer = answer
            if batch.error is not None:
                raise batch.error
            return
        conn._need = _Need(None, None, None, queued)
        raise conn._need


class _Answer(NamedTuple):
    rows: list[tuple[Any, ...]]
    rowcount: int
    described: bool

    @property
    def description(self) -> object:
        return True if self.described else None

    def fetchall(self) -> list[tuple[Any, ...]]:
        return self.rows

    def fetchone(self) -> tuple[Any, ...] | None:
        return self.rows[0] if self.rows else None


class _Info:
    def __init__(self, conn: AConn) -> None:
        self._conn = conn

    @property
    def backend_pid(self) -> int:
        return int(self._conn.info.backend_pid)

    @property
    def transaction_status(self) -> Any:
        return self._conn.info.transaction_status


class _ReplayConnection:
    """Stands for a psycopg Connection: answers recorded statements, raises _Need for the next."""

    def __init__(self, conn: AConn, answers: list[_Answer | _Batch | BaseException]) -> None:
        self._conn = conn
        self._answers = answers
        self._sent = 0
        self.info = _Info(conn)
        self.discarded = False
        self._need: _Need | None = None
        self._pipeline: _ReplayPipeline | None = None

    @property
    def broken(self) -> bool:
        return bool(self._conn.broken)

    def pipeline(self) -> _ReplayPipeline:
        return _ReplayPipeline(self)

    def execute(self, query: Any, params: Any = None, *, prepare: bool | None = None) -> Any:
        if self._need is not None:  # code cleaning up on the way out (a ROLLBACK in a
            raise self._need  # finally) must not replace the statement it has to send
        if self._pipeline is not None:
            cursor = _Deferred()
            self._pipeline.queued.append((query, params, prepare))
            self._pipeline.cursors.append(cursor)
            return cursor
        n = self._sent
        self._sent += 1
        if n < len(self._answers):
            answer = self._answers[n]
            if isinstance(answer, BaseException):
                raise answer
            return answer
        self._need = _Need(query, params, prepare)
        raise self._need

    def close(self) -> None:
        self.discarded = True


async def _replay(run: Callable[[_ReplayConnection], T], conn: AConn) -> T:
    """Run sync store code over ``conn``, one awaited statement at a time (see module doc)."""
    answers: list[_Answer | _Batch | BaseException] = []
    while True:
        replay = _ReplayConnection(conn, answers)
        try:
            result = run(replay)
            if isinstance(result, types.GeneratorType):
                result = list(result)  # type: ignore[assignment]
        except _Need as need:
            if replay.discarded:  # pragma: no cover - nothing is sent after a discard
                raise StoreError("a statement after the connection was dropped") from None
            if need.batch is not None:
                answers.append(await _send_batch(conn, need.batch))
                continue
            try:
                cursor = await conn.execute(need.query, need.params, prepare=need.prepare)
                described = cursor.description is not None
                rows = await cursor.fetchall() if described else []
                answers.append(_Answer(rows, cursor.rowcount, described))
            except (psycopg.Error, asyncio.CancelledError) as exc:
                answers.append(exc)  # the sync code handles it where it sent the statement
            continue
        finally:
            if replay.discarded:
                await conn.close()
        return result


async def _send_batch(conn: AConn, batch: list[tuple[Any, Any, bool | None]]) -> _Batch:
    """Send a pipeline's statements in one round trip; their answers and the first error."""
    cursors: list[psycopg.AsyncCursor[Any]] = []
    error: psycopg.Error | None = None
    try:
        # One Sync, sent when the block ends: one round trip (an explicit sync()
        # inside the block would cost a second one at its exit).
        async with conn.pipeline():
            try:
                for query, params, prepare in batch:
                    cursors.append(await conn.execute(query, params, prepare=prepare))
            except psycopg.Error as exc:
                error = exc
    except psycopg.Error as exc:
        error = error or exc
    answers: list[_Answer | None] = []
    for cursor in cursors:
        try:
            described = cursor.description is not None
            rows = await cursor.fetchall() if described else []
            answers.append(_Answer(rows, cursor.rowcount, described))
        except psycopg.Error:
            answers.append(None)  # aborted by an earlier error
    answers += [None] * (len(batch) - len(answers))
    return _Batch(answers, error)


class AsyncPostgresStore(AsyncStore):
    """The PostgreSQL store for the async engine: an ``AsyncConnectionPool``.

    Opened by ``await playthrough.aio.connect(url, **options)``: the schema
    is created or checked once (the sync store's migration, on a thread, at
    open only), then every request is awaited on the pool (``min_size`` /
    ``max_size`` / ``pool_timeout`` size it as for the sync store).
    """

    sync: PostgresStore

    def __init__(
        self,
        sync: PostgresStore,
        pool: AsyncConnectionPool[AConn],
        given: tuple[str, dict[str, Any]] | None = None,
    ) -> None:
        self.sync = sync
        self._pool: AsyncConnectionPool[AConn] | None = pool
        self._given = given or (sync.url, {})  # the URL and options opened with
        self._blocking: PostgresStore | None = None
        self._opening = asyncio.Lock()
        self._gauges = _GaugeReads(self._given)
        _telemetry.watch(self._gauges)  # the observable gauges read it through sync reads

    @classmethod
    async def open(cls, url: str, **options: Any) -> AsyncPostgresStore:
        sized = {"min_size": options.get("min_size", 1), "max_size": options.get("max_size", 2)}
        timeout = float(options.get("pool_timeout", 30.0))
        connect_timeout = float(options.get("connect_timeout", 5))
        # The sync store checks the options and creates or migrates the schema over
        # one direct connection; its own pool is closed at once (no sync I/O after).
        opening = {**options, "min_size": 0, "max_size": 1}
        sync = await asyncio.to_thread(PostgresStore, url, **opening)
        sync.close()
        pool: AsyncConnectionPool[AConn] = AsyncConnectionPool(
            sync._conninfo,
            kwargs=sync._connect_kwargs,
            open=False,
            timeout=timeout,
            name=f"playthrough-aio:{sync.schema}",
            num_workers=1,
            **sized,
        )
        try:
            await pool.open(wait=True, timeout=connect_timeout + 5.0)
        except PoolTimeout as exc:
            await pool.close()
            raise StoreError(
                f"cannot open a connection pool to {sync._where}: {sync._clean(exc)}"
            ) from exc
        return cls(sync, pool, (url, options))

    @property
    def url(self) -> str:
        return self.sync.url

    def _checked_pool(self) -> AsyncConnectionPool[AConn]:
        if self._pool is None:
            raise StoreError(f"the store on {self.sync._where} is closed")
        return self._pool

    async def _getconn(self) -> AConn:
        try:
            return await self._checked_pool().getconn()
        except PoolTimeout as exc:
            raise StoreError(f"no connection to {self.sync._where}: {exc}") from exc

    async def call(self, request: Call) -> Any:
        if request.name not in _CALLS:
            raise PlaythroughError(
                f"{request.name} is not available on the async PostgreSQL store: "
                "run it with the sync Engine"
            )
        pool = self._checked_pool()
        conn = await self._getconn()
        try:
            func = getattr(PostgresStore, request.name)
            args, kwargs = request.args, request.kwargs or {}
            return await _replay(lambda c: func(_bind(self.sync, c), *args, **kwargs), conn)
        finally:
            idle = psycopg.pq.TransactionStatus.IDLE
            if not conn.closed and conn.info.transaction_status != idle:
                try:
                    await conn.execute("ROLLBACK")
                except psycopg.Error:
                    pass
            await pool.putconn(conn)

    async def read(self, steps: Steps[T]) -> T:
        pool = self._checked_pool()
        conn = await self._getconn()
        ok = False
        try:
            await conn.execute(READ, prepare=False)
            result = await _drive_reader(steps, self.sync, conn)
            ok = True
            return result
        except psycopg.Error as exc:
            raise self.sync._failure("read", exc) from exc
        finally:
            try:
                if not conn.broken:
                    await conn.execute("COMMIT" if ok else "ROLLBACK", prepare=False)
            except psycopg.Error:
                pass  # a read-only transaction: nothing to lose; the pool drops a dead connection
            await pool.putconn(conn)

    async def blocking(self, work: Callable[[PostgresStore], T]) -> T:
        """On a worker thread, over a sync store opened on first use (its own small pool,
        closed with this store): only for work that needs a sync connection."""
        self._checked_pool()
        async with self._opening:
            if self._blocking is None:
                url, options = self._given
                sized = {"min_size": 0, "max_size": options.get("max_size", 2)}
                self._blocking = await asyncio.to_thread(PostgresStore, url, **{**options, **sized})
            store = self._blocking
        return await asyncio.to_thread(work, store)

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        blocking, self._blocking = self._blocking, None
        await asyncio.to_thread(self._gauges.close)
        if blocking is not None:
            await asyncio.to_thread(blocking.close)
        if pool is not None:
            await pool.close()


def _read(
    sync: PostgresStore,
    name: str,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    conn: _ReplayConnection,
) -> Any:
    reader = PostgresReader(sync, conn)  # type: ignore[arg-type]
    return getattr(reader, name)(*args, **kwargs)


async def _drive_reader(steps: Steps[T], sync: PostgresStore, conn: AConn) -> T:
    """Answer reader requests with the sync reader's own methods, replayed over ``conn``."""
    try:
        request = next(steps)
        while True:
            try:
                if not isinstance(request, Call):
                    raise TypeError(f"a read may only call the reader, not {request!r}")
                name, args, kwargs = request.name, request.args, request.kwargs or {}

                answer = await _replay(functools.partial(_read, sync, name, args, kwargs), conn)
            except BaseException as exc:  # noqa: BLE001 - thrown into the core at its yield
                request = steps.throw(exc)
                continue
            request = steps.send(answer)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]


def _bind(sync: PostgresStore, replay: _ReplayConnection) -> PostgresStore:
    """A shallow copy of the sync store whose transactions run on ``replay``."""
    store: PostgresStore = copy.copy(sync)

    def checkout(begin: str | None) -> Any:
        if begin is not None:
            replay.execute(begin, prepare=False)
        return replay

    def release(conn: Any, end: str | None) -> None:
        if end is not None and not conn.broken:
            conn.execute(end, prepare=False)

    def discard(conn: Any) -> None:
        conn.close()

    @contextmanager
    def transaction(doing: str, committing: str) -> Iterator[Any]:
        conn = checkout(WRITE)
        try:
            yield conn
        except _Need:
            raise
        except psycopg.Error as exc:
            release(conn, "ROLLBACK")
            raise store._failure(doing, exc) from exc
        except BaseException:
            release(conn, "ROLLBACK")
            raise
        try:
            release(conn, "COMMIT")
        except psycopg.Error as exc:
            raise store._failure(committing, exc) from exc

    def single(template: str, params: Sequence[Any]) -> tuple[list[tuple[Any, ...]], int]:
        try:
            cursor = replay.execute(store._sql(template), params)
        except psycopg.Error as exc:
            raise store._failure("a statement", exc) from exc
        return (cursor.fetchall() if cursor.description is not None else []), cursor.rowcount

    def settle_interrupted(
        conn: Any, commit_id: str, count: int, interruption: BaseException
    ) -> None:
        if not isinstance(interruption, _Need):  # a statement to send, not an interruption
            PostgresStore._settle_interrupted(store, conn, commit_id, count, interruption)

    store._append_attempts = lambda: 1  # type: ignore[method-assign]  # one connection per request
    store._checkout = checkout  # type: ignore[method-assign]
    store._release = release  # type: ignore[method-assign]
    store._discard = discard  # type: ignore[method-assign]
    store._transaction = transaction  # type: ignore[method-assign]
    store._single = single  # type: ignore[method-assign]
    store._settle_interrupted = settle_interrupted  # type: ignore[method-assign]
    return store


class _GaugeReads:
    """What the observable gauges read for an async PostgreSQL store: the metrics reader
    calls them on its own thread, synchronously, so they go through a sync store of one
    connection at most, opened at the first collection (never, without metrics) and
    closed with the async store."""

    def __init__(self, given: tuple[str, dict[str, Any]]) -> None:
        self._given = given
        self._lock = threading.Lock()
        self._store: PostgresStore | None = None
        self._closed = False

    @property
    def url(self) -> str:
        return self._given[0]

    @contextmanager
    def reader(self) -> Iterator[Any]:
        with self._lock:
            if self._closed:
                raise StoreError("the async store is closed")
            if self._store is None:
                url, options = self._given
                self._store = PostgresStore(url, **{**options, "min_size": 0, "max_size": 1})
            store = self._store
        with store.reader() as reader:
            yield reader

    def close(self) -> None:
        with self._lock:
            self._closed = True
            store, self._store = self._store, None
        if store is not None:
            store.close()
