"""Async stores: the base class, the SQLite one (a dedicated thread) and ``connect``."""

from __future__ import annotations

import abc
import asyncio
import contextvars
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
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

    def __init__(self, sync: Store, thread: ThreadPoolExecutor) -> None:
        self.sync = sync
        self._thread = thread  # max_workers=1: the store's own thread
        self._closed = False

    @property
    def url(self) -> str:
        return self.sync.url

    async def _run(self, fn: Callable[[], T]) -> T:
        if self._closed:
            raise StoreError(f"the store {self.sync.url} is closed")
        return await asyncio.get_running_loop().run_in_executor(self._thread, fn)

    async def call(self, request: Call) -> Any:
        method = getattr(self.sync, request.name)
        return await self._run(functools.partial(method, *request.args, **(request.kwargs or {})))

    async def read(self, steps: Steps[T]) -> T:
        def run() -> T:
            with self.sync.reader() as reader:
                return run_reader(steps, reader)

        return await self._run(run)

    async def drive(self, steps: Steps[T]) -> T:
        """Run a core operation's steps on the store's thread, in one hop for all its
        requests (a load's heads, plan and write-back), coming back to the event loop
        only to await what an ``async def`` hook returned (an ``Await`` request)."""
        token = _telemetry.using(self)  # the spans on the way carry the store's db.system
        try:
            context = contextvars.copy_context()  # the caller's context vars, for its hooks
            mode, value = _START, None
            while True:
                done, answer = await self._run(
                    functools.partial(context.run, _advance, steps, self.sync, mode, value)
                )
                if done:
                    return cast(T, answer)
                try:
                    mode, value = _SEND, await answer
                except BaseException as exc:  # noqa: BLE001 - thrown into the core at its yield
                    mode, value = _THROW, exc
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


_START, _SEND, _THROW = 0, 1, 2


def _advance(steps: Steps[Any], store: Store, mode: int, value: Any) -> tuple[bool, Any]:
    """On the store's thread: resume ``steps`` and answer its requests until it returns
    (``(True, result)``) or yields an ``Await`` (``(False, awaitable)``), as ``run_sync``."""
    try:
        if mode == _START:
            request = next(steps)
        elif mode == _SEND:
            request = steps.send(value)
        else:
            request = steps.throw(value)
        while True:
            try:
                if type(request) is Call:
                    method = getattr(store, request.name)
                    answer = method(*request.args, **(request.kwargs or {}))
                elif type(request) is Read:
                    with store.reader() as reader:
                        answer = run_reader(request.steps, reader)
                elif type(request) is Await:
                    return False, request.value
                else:
                    raise TypeError(f"not a store request: {request!r}")
            except BaseException as exc:  # noqa: BLE001 - thrown into the core at its yield
                request = steps.throw(exc)
                continue
            request = steps.send(answer)
    except StopIteration as done:
        return True, done.value


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
        thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="playthrough-sqlite")
        try:
            sync = await asyncio.get_running_loop().run_in_executor(
                thread, functools.partial(open_store, url, **options)
            )
        except BaseException:
            thread.shutdown(wait=False)
            raise
        return AsyncSQLiteStore(sync, thread)
    from ._postgres import AsyncPostgresStore

    return await AsyncPostgresStore.open(url, **options)
