"""Async stores: the base class, the SQLite one (a dedicated thread) and ``connect``."""

from __future__ import annotations

import abc
import asyncio
import contextvars
import functools
import queue
import threading
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar, cast

from .. import _telemetry
from .._errors import ConfigurationError, StoreError
from .._steps import Await, Call, Read, Steps, run_reader
from .._stores import Store, open_store, parse_store_url, resolve_store_url, store_options

if TYPE_CHECKING:
    from ._engine import AsyncEngine

T = TypeVar("T")


class AsyncStore(abc.ABC):
    """A store the async engine awaits; open one with ``await playthrough.aio.connect(url)``.

    Share it between tasks (one per process, opened in the app's lifespan); make
    an engine per request with :meth:`engine`; ``await store.close()`` at shutdown.
    It answers the requests of the I/O-free core (see ``playthrough._steps``):
    a store call, or a read transaction running reader calls.
    """

    #: The sync store the engine's core holds (used by no async path on PostgreSQL).
    sync: Store

    @property
    @abc.abstractmethod
    def url(self) -> str: ...

    @abc.abstractmethod
    async def call(self, request: Call) -> Any:
        """Perform one store request (``heads``, ``append``, ``write_values``...)."""

    @abc.abstractmethod
    async def read(self, steps: Steps[T]) -> T:
        """Run ``steps`` in one read transaction, their requests going to the reader."""

    @abc.abstractmethod
    async def blocking(self, work: Callable[[Store], T]) -> T:
        """Run sync code on a sync store, off the event loop: what runs user code against
        a sync transaction (a follower's handlers) or reads the whole log (verify)."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Close the store (its connections, or its thread); engines on it stop working."""

    def engine(self, **options: Any) -> AsyncEngine:
        """A new async engine over this store (cheap: no connection, no round trip).

        ``async with store.engine() as engine:`` commits at the end of the block
        and discards on an error. ``options`` are those of ``Engine``, the snapshot
        policies (``snapshot_every``, ``snapshot_after_events``) included; ``archive``
        is not taken by the async engine: read archive files with the sync one.
        """
        from ._engine import AsyncEngine

        return AsyncEngine(self, **options)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.url}>"

    async def __aenter__(self) -> AsyncStore:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


class AsyncSQLiteStore(AsyncStore):
    """SQLite, awaited: the sync store, every request run on one thread of its own.

    SQLite is embedded: its calls block in the C library, with no socket to
    await. One dedicated thread per store keeps the event loop free and runs
    exactly the sync store's statements and transactions, in order (the store
    already serialises its transactions); a read request runs the whole plan on
    that thread in one hop. ``aiosqlite`` would also be a thread per connection
    underneath, and would need every statement of the store written a second
    time against its API.
    """

    def __init__(self, sync: Store, thread: StoreThread | None = None) -> None:
        self.sync = sync
        self._thread = thread if thread is not None else StoreThread()
        self._closed = False

    @property
    def url(self) -> str:
        return self.sync.url

    async def _run(self, fn: Callable[[], T]) -> T:
        if self._closed:
            raise StoreError(f"the store {self.sync.url} is closed")
        return await self._thread.submit(fn)

    async def call(self, request: Call) -> Any:
        method = getattr(self.sync, request.name)
        return await self._run(functools.partial(method, *request.args, **(request.kwargs or {})))

    async def read(self, steps: Steps[T]) -> T:
        def run() -> T:
            with self.sync.reader() as reader:
                return run_reader(steps, reader)

        return await self._run(run)

    async def drive(self, steps: Steps[T]) -> T:
        """Run a core operation's steps, handing the store's thread all its requests in
        one hop (a load's heads, plan and write-back), coming back to the event loop
        only to await what an ``async def`` hook returned (an ``Await`` request).

        The steps start on the event loop: an operation that needs no store request
        (a fire of states already in memory) makes no hop at all. They run in one
        copy of the caller's context wherever they run (its context vars, for its
        hooks and spans)."""
        token = _telemetry.using(self)  # the spans on the way carry the store's db.system
        try:
            context = contextvars.copy_context()
            try:
                request = context.run(next, steps)
                while True:
                    if type(request) is Await:
                        try:
                            answer = await request.value
                        except BaseException as exc:  # noqa: BLE001 - thrown into the core
                            request = context.run(steps.throw, exc)
                        else:
                            request = context.run(steps.send, answer)
                        continue
                    done, value = await self._run(
                        functools.partial(context.run, _answer, steps, self.sync, request)
                    )
                    if done:
                        return cast(T, value)
                    request = value
            except StopIteration as done:
                return cast(T, done.value)
        finally:
            _telemetry.done(token)

    async def run_sync(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` (sync code on the sync store) on the store's thread."""
        return await self._run(fn)

    async def blocking(self, work: Callable[[Store], T]) -> T:
        """On the store's own thread, in turn with the engines' requests."""
        return await self._run(functools.partial(work, self.sync))

    async def close(self) -> None:
        if self._closed:
            return
        await self._run(self.sync.close)
        self._closed = True
        self._thread.shutdown(wait=True)


def _answer(steps: Steps[Any], store: Store, request: Any) -> tuple[bool, Any]:
    """On the store's thread: answer ``request`` and the ones the steps yield after it,
    until they return (``(True, result)``) or yield an ``Await`` (``(False, request)``),
    as ``run_sync`` does."""
    try:
        while True:
            try:
                if type(request) is Call:
                    method = getattr(store, request.name)
                    answer = method(*request.args, **(request.kwargs or {}))
                elif type(request) is Read:
                    with store.reader() as reader:
                        answer = run_reader(request.steps, reader)
                elif type(request) is Await:
                    return False, request
                else:
                    raise TypeError(f"not a store request: {request!r}")
            except BaseException as exc:  # noqa: BLE001 - thrown into the core at its yield
                request = steps.throw(exc)
                continue
            request = steps.send(answer)
    except StopIteration as done:
        return True, done.value


class StoreThread:
    """The one thread an async SQLite store runs its work on, in the order handed.

    Cheaper than ``run_in_executor`` on a one-worker pool (about half the CPU per
    hop): a simple queue in, the event loop's future settled through
    ``call_soon_threadsafe`` on the way back, and no ``concurrent.futures`` future
    in between. A daemon thread, stopped by :meth:`shutdown` (the store's close)
    or when the store is garbage collected; an interpreter exiting with the store
    still open does not wait for it (an unfinished SQLite transaction is rolled
    back by SQLite's journal, as after a crash).
    """

    def __init__(self, name: str = "playthrough-sqlite") -> None:
        self._queue: queue.SimpleQueue[_Work | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=_work, args=(self._queue,), name=name, daemon=True)
        self._thread.start()
        weakref.finalize(self, self._queue.put, None)

    def submit(self, fn: Callable[[], T]) -> asyncio.Future[T]:
        """Queue ``fn``; the returned future (of the running loop) gets its result."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._queue.put((loop, future, fn))
        return future

    def shutdown(self, wait: bool = True) -> None:
        """Stop the thread once the work queued before is done."""
        self._queue.put(None)
        if wait and threading.current_thread() is not self._thread:
            self._thread.join()


_Work = tuple[asyncio.AbstractEventLoop, "asyncio.Future[Any]", Callable[[], Any]]


def _work(work: queue.SimpleQueue[_Work | None]) -> None:
    while (item := work.get()) is not None:
        loop, future, fn = item
        try:
            result, error = fn(), None
        except BaseException as exc:  # noqa: BLE001 - handed to the awaiting task
            result, error = None, exc
        try:
            loop.call_soon_threadsafe(_settle, future, result, error)
        except RuntimeError:  # the loop is closed: nobody awaits the answer
            pass
        del item, future, fn, result, error


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.done():  # the awaiting task was cancelled; the work ran all the same
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


async def connect(url: str | None = None, **options: Any) -> AsyncStore:
    """Open the store a URL names for the async engine, once per process.

    The same URLs and store options as ``playthrough.connect``: SQLite
    (``"sqlite://"``, ``sqlite:///path.db``) runs on one thread of its own;
    PostgreSQL (``postgresql://user@host/db?schema=name``) through psycopg's
    async connections and pool, nothing blocking the event loop once open.
    Opening creates or checks the schema. ``await store.close()`` at shutdown.
    """
    url = resolve_store_url(url)
    parsed = parse_store_url(url)
    unknown = sorted(set(options) - set(store_options(parsed.kind)))
    if unknown:
        raise ConfigurationError(
            f"unknown option{'s' if len(unknown) > 1 else ''} {', '.join(unknown)} for the "
            f"{parsed.kind} store; it takes: {', '.join(store_options(parsed.kind))}"
        )
    if parsed.kind == "sqlite":
        # Opened on the thread that will run it (creation takes a lock, may wait).
        thread = StoreThread()
        try:
            sync = await thread.submit(functools.partial(open_store, url, **options))
        except BaseException:
            thread.shutdown(wait=False)
            raise
        return AsyncSQLiteStore(sync, thread)
    from ._postgres import AsyncPostgresStore

    return await AsyncPostgresStore.open(url, **options)
