"""AsyncEngine: the engine's core, driven by awaiting an async store.

The core (``playthrough._engine.Engine``: the identity map, the planner, the
player, the codec, the checks) is the very object the sync engine is; its
operations that need the store are generators of requests (``_steps``).
This shell answers them by awaiting its :class:`~playthrough.aio.AsyncStore`,
where the sync ``Engine`` calls its store: one core, two shells.
"""

from __future__ import annotations

import asyncio
import functools
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager, asynccontextmanager
from datetime import datetime, timedelta
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar, cast

from .. import _logging, _telemetry
from .._engine import Engine
from .._errors import ConcurrencyError, ConfigurationError, EventRejected, PlaythroughError
from .._followers import FollowerReport, Projection
from .._handlers import CommitResult
from .._log import PAGE
from .._model import Event, State, StateKey, key_of
from .._reconstitution import Plan, explain_steps
from .._retry import ATTEMPTS, BACKOFF, MAX_BACKOFF, check_retry, wait
from .._scheduling import LEASE, ScheduledEvent
from .._steps import Await, Call, Read, Steps, read_one
from .._verify import VerifyOptions, VerifyReport
from ._rooms import AsyncAdmin, AsyncFollowers, AsyncLog, AsyncScheduler, AsyncStates
from ._store import AsyncSQLiteStore, AsyncStore

if TYPE_CHECKING:
    from typing_extensions import deprecated
else:
    from .._moved import deprecated

S = TypeVar("S", bound=State)
T = TypeVar("T")
E = TypeVar("E", bound=Event)

#: Engine options the async engine does not take (archive files are read by sync code).
_REFUSED = ("archive",)


async def drive(steps: Steps[T], store: AsyncStore) -> T:
    """The async shell's driver: answer each request of the core by awaiting ``store``.

    A store's exception (or a cancellation) is thrown into the core where it
    yielded, so its handling (a failed append discards what was pending) is
    the sync engine's own.
    """
    token = _telemetry.using(store)  # the spans on the way carry the store's db.system
    try:
        request = next(steps)
        while True:
            try:
                if type(request) is Call:
                    answer = await store.call(request)
                elif type(request) is Read:
                    answer = await store.read(request.steps)
                elif type(request) is Await:
                    answer = await request.value
                else:
                    raise TypeError(f"not a store request: {request!r}")
            except BaseException as exc:  # noqa: BLE001 - thrown into the core at its yield
                request = steps.throw(exc)
                continue
            request = steps.send(answer)
    except StopIteration as done:
        return cast(T, done.value)
    finally:
        _telemetry.done(token)


class AsyncEngine:
    """The engine, natively async: ``async with store.engine() as engine:``.

    Everything that reads or writes the store is awaited (``fire`` may load
    the states it touches, ``commit`` appends); the rest (``pending``,
    ``discard``, ``metadata``) is as on the sync ``Engine``, and so are the
    errors and outcomes (``ConcurrencyError``, ``CommitOutcomeUnknown`` with
    ``was_committed``, ``DuplicateEvent`` for idempotency keys,
    ``StateMutationError``). Not safe to share between tasks: one per request
    or task, over one shared store. ``handle`` hooks may be ``async def`` (they
    get this engine and await it); a plain ``def`` one gets a view that fires
    and loads without I/O, from the states in memory (those the hook declares
    are loaded for it).
    """

    def __init__(self, store: AsyncStore, **options: Any) -> None:
        refused = sorted(set(options) & set(_REFUSED))
        if refused:
            raise ConfigurationError(
                f"the async engine does not take {', '.join(refused)}: archive files are read "
                "by the sync Engine (Engine.open(url, archive=...))"
            )
        self.store = store
        self._options = options
        #: The core: the same Engine the sync shell is, never driven by its own store here.
        self.core = Engine(store.sync, **options)
        self._hook_view = _HookView(self)
        self.core.hook_shells = (self._hook_view, self)  # what fired hooks get

    # The rooms, as on the sync Engine (their calls, awaited), built when first used.

    @functools.cached_property
    def scheduler(self) -> AsyncScheduler:
        """``engine.scheduler``, as on the sync Engine: its calls, awaited."""
        return AsyncScheduler(self)

    @functools.cached_property
    def log(self) -> AsyncLog:
        """``engine.log``, as on the sync Engine: its calls, awaited."""
        return AsyncLog(self)

    @functools.cached_property
    def states(self) -> AsyncStates:
        """``engine.states``, as on the sync Engine: its calls, awaited."""
        return AsyncStates(self)

    @functools.cached_property
    def followers(self) -> AsyncFollowers:
        """``engine.followers``, as on the sync Engine: its calls, awaited."""
        return AsyncFollowers(self)

    @functools.cached_property
    def admin(self) -> AsyncAdmin:
        """``engine.admin``, as on the sync Engine: its calls, awaited."""
        return AsyncAdmin(self)

    def __repr__(self) -> str:
        return f"<AsyncEngine on {self.store.url}>"

    async def _drive(self, steps: Steps[T]) -> T:
        store = self.store
        if type(store) is AsyncSQLiteStore:  # one hop to its thread for all the requests
            return await store.drive(steps)
        return await drive(steps, store)

    # ------------------------------------------------------------------ context

    async def __aenter__(self) -> AsyncEngine:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        core = self.core
        try:
            if exc_type is None and core._work.has_queued():
                await self.commit()
            else:
                core.discard()
        finally:
            core.close()

    def close(self) -> None:
        """Close the engine (the store stays open); pending events are discarded, with a warning."""
        self.core.close()

    @property
    def pending(self) -> tuple[Event, ...]:
        return self.core.pending

    @property
    def last_commit_id(self) -> str | None:
        """The id of the last commit this engine sent (see ``was_committed``)."""
        return self.core.last_commit_id

    def discard(self) -> None:
        """Forget pending events and drop the states they changed from memory."""
        self.core.discard()

    def metadata(
        self, correlation: str | None = None, **values: Any
    ) -> AbstractContextManager[None]:
        """Store ``values`` as metadata with every event fired in the ``with`` block."""
        return self.core.metadata(correlation, **values)

    # ------------------------------------------------------------------ loading

    async def head(self) -> int:
        """The store's largest committed position."""
        return cast(int, await self.store.read(read_one("head")))

    async def load(self, state_class: type[S], state_id: Any = None, *, at: int | None = None) -> S:
        """The state as this engine knows it; with ``at``, as it was at that position."""
        key = key_of(state_class, state_id)
        return cast(S, (await self._load([key], at))[key])

    async def load_or_fail(self, state_class: type[S], state_id: Any = None) -> S:
        """Like :meth:`load`, but ``NotFoundError`` for a state no event ever touched."""
        return self.core._loader.found(
            state_class, state_id, await self.load(state_class, state_id)
        )

    async def load_many(self, state_class: type[S], ids: Iterable[Any]) -> list[S]:
        """Several states of one type, loaded together."""
        keys = [key_of(state_class, i) for i in ids]
        found = await self._load(keys, None)
        return [cast(S, found[k]) for k in keys]

    async def explain(
        self, state_class: type[State], state_id: Any = None, *, at: int | None = None
    ) -> Plan:
        """The plan a load of this state would run (nothing is loaded or changed)."""
        key = key_of(state_class, state_id)
        return cast(Plan, await self.store.read(explain_steps(self.core.reconstitutor, key, at)))

    def refresh(self) -> None:
        """Drop every state held in memory; the next load reads the store (pending events
        are discarded too, since the states they changed are gone)."""
        self.core.refresh()

    async def _load(self, keys: Sequence[StateKey], at: int | None) -> dict[StateKey, State]:
        core = self.core
        if at is not None:
            started = time.perf_counter()
            _, result = await self.store.read(core._loader.at_steps(keys, at))
            assert result is not None  # the async engine has no archive files
            _logging.loaded(result[1], time.perf_counter() - started, self.store)
            return result[0]
        loader = core._loader
        for key in keys:
            loader.guard(key)
        repository = core.repository
        found = {k: s for k in keys if (s := repository.get(k)) is not None}
        missing = [k for k in dict.fromkeys(keys) if k not in found]
        if missing:
            found.update(await self._drive(loader.live_steps(missing)))
            loader.trim()
        return found

    # ------------------------------------------------------------------ firing

    async def fire(
        self, event: E, *, metadata: Mapping[str, Any] | None = None, key: str | None = None
    ) -> E:
        """Validate and apply an event to the live states and queue it for commit
        (``Engine.fire``: the same checks, hooks, errors and ``key`` idempotency)."""
        return await self._drive(self.core._firing.fire_steps(event, None, metadata, key))

    async def fire_if_valid(
        self, event: E, *, metadata: Mapping[str, Any] | None = None, key: str | None = None
    ) -> E | None:
        """Fire ``event`` unless it is refused (``EventRejected``, ``StateCompleted``): then
        nothing is queued and ``None`` is returned (``Engine.fire_if_valid``)."""
        try:
            return await self.fire(event, metadata=metadata, key=key)
        except EventRejected:
            return None

    async def is_valid(self, event: Event) -> bool:
        """Whether firing ``event`` now would be accepted (``Engine.is_valid``): it is fired
        and undone, nothing stays queued or changed; False when it is refused."""
        return await self._drive(self.core._firing.is_valid_steps(event))

    async def commit(self) -> CommitResult:
        """Append pending events atomically, then run their ``handle`` hooks (``Engine.commit``:
        a ``CommitResult``, handler failures reported in it unless ``raise_handler_failures``)."""
        return await self._drive(self.core._commit.steps((self._hook_view, self)))

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncEngine]:
        """Commit at the end of the block; discard everything pending if it raises."""
        core = self.core
        work = core._work
        work.transactions += 1
        try:
            yield self
        except BaseException:
            work.transactions -= 1
            core.discard()
            raise
        work.transactions -= 1
        await self.commit()

    async def retry(
        self,
        work: Callable[[AsyncEngine], Awaitable[T]],
        *,
        attempts: int = ATTEMPTS,
        backoff: float = BACKOFF,
        max_backoff: float = MAX_BACKOFF,
    ) -> T:
        """Run ``await work(engine)`` and commit; on ConcurrencyError wait (jittered) and run it
        again (``Engine.retry``: the same policy, awaiting ``asyncio.sleep``)."""
        check_retry(self.core, attempts, backoff, max_backoff)
        draw = random.Random()
        for failures in range(attempts):
            try:
                async with self.transaction():
                    result = await work(self)
                return result
            except ConcurrencyError:
                if failures + 1 == attempts:
                    raise
                await asyncio.sleep(wait(draw, failures, backoff, max_backoff))
        raise AssertionError("unreachable")  # pragma: no cover

    async def was_committed(self, commit_id: str) -> bool:
        """Whether the commit with this id (``CommitOutcomeUnknown.commit_id``) is in the log."""
        return await self.store.read(read_one("commit_positions", commit_id)) is not None

    # ------------------------------------------------------------------ moved to the rooms

    @deprecated("AsyncEngine.snapshot is deprecated (removed in 0.4.0): use engine.admin.snapshot")
    async def snapshot(
        self, refs: Iterable[tuple[type[State], Any]] | None = None, *, at: int | None = None
    ) -> int:
        """Moved: ``engine.admin.snapshot``."""
        return await self.admin.snapshot(refs, at=at)

    @deprecated(
        "AsyncEngine.schedule is deprecated (removed in 0.4.0): use engine.scheduler.schedule"
    )
    async def schedule(
        self, event: Event, *, at: datetime | None = None, after: timedelta | None = None
    ) -> str:
        """Moved: ``engine.scheduler.schedule``."""
        return await self.scheduler.schedule(event, at=at, after=after)

    @deprecated("AsyncEngine.cancel is deprecated (removed in 0.4.0): use engine.scheduler.cancel")
    async def cancel(self, schedule_id: str) -> bool:
        """Moved: ``engine.scheduler.cancel``."""
        return await self.scheduler.cancel(schedule_id)

    @deprecated(
        "AsyncEngine.reschedule is deprecated (removed in 0.4.0): use engine.scheduler.reschedule"
    )
    async def reschedule(self, schedule_id: str, *, at: datetime | None = None) -> ScheduledEvent:
        """Moved: ``engine.scheduler.reschedule``."""
        return await self.scheduler.reschedule(schedule_id, at=at)

    @deprecated(
        "AsyncEngine.scheduled is deprecated (removed in 0.4.0): use engine.scheduler.scheduled"
    )
    async def scheduled(self, schedule_id: str) -> ScheduledEvent:
        """Moved: ``engine.scheduler.scheduled``."""
        return await self.scheduler.scheduled(schedule_id)

    @deprecated(
        "AsyncEngine.run_due is deprecated (removed in 0.4.0): use engine.scheduler.run_due"
    )
    async def run_due(self, *, limit: int = 100, lease: timedelta = LEASE) -> list[ScheduledEvent]:
        """Moved: ``engine.scheduler.run_due``."""
        return await self.scheduler.run_due(limit=limit, lease=lease)

    @deprecated("AsyncEngine.forget is deprecated (removed in 0.4.0): use engine.admin.forget")
    async def forget(self, subject: Any) -> bool:
        """Moved: ``engine.admin.forget``."""
        return await self.admin.forget(subject)

    @deprecated("AsyncEngine.run is deprecated (removed in 0.4.0): use engine.followers.run")
    async def run(
        self,
        projection: Projection,
        *,
        until_idle: bool = False,
        poll_interval: float = 1.0,
        batch_size: int | None = None,
        stop: Callable[[], bool] | None = None,
    ) -> FollowerReport:
        """Moved: ``engine.followers.run``."""
        return await self.followers.run(
            projection,
            until_idle=until_idle,
            poll_interval=poll_interval,
            batch_size=batch_size,
            stop=stop,
        )

    @deprecated(
        "AsyncEngine.reset_follower is deprecated (removed in 0.4.0): use engine.followers.reset"
    )
    async def reset_follower(self, projection: Projection | str, position: int = 0) -> None:
        """Moved: ``engine.followers.reset``."""
        await self.followers.reset(projection, position)

    @deprecated("AsyncEngine.verify is deprecated (removed in 0.4.0): use engine.admin.verify")
    async def verify(
        self,
        options: VerifyOptions | None = None,
        *,
        progress: Callable[[str, int, int], None] | None = None,
        clock: Callable[[], float] | None = None,
        **changes: Any,
    ) -> VerifyReport:
        """Moved: ``engine.admin.verify``."""
        return await self.admin.verify(options, progress=progress, clock=clock, **changes)

    @deprecated("AsyncEngine.events is deprecated (removed in 0.4.0): use engine.log.events")
    async def events(
        self,
        *,
        after: int = 0,
        types: Sequence[type[Event] | str] | None = None,
        state: tuple[type[State], Any] | None = None,
        caused_by: int | None = None,
        correlation: str | None = None,
        limit: int | None = None,
        page_size: int = PAGE,
    ) -> AsyncIterator[Event]:
        """Moved: ``engine.log.events``."""
        async for event in self.log.events(
            after=after,
            types=types,
            state=state,
            caused_by=caused_by,
            correlation=correlation,
            limit=limit,
            page_size=page_size,
        ):
            yield event

    @deprecated("AsyncEngine.find is deprecated (removed in 0.4.0): use engine.states.find")
    async def find(
        self,
        state_class: type[S],
        *,
        limit: int | None = None,
        order_by: str | Sequence[str] | None = None,
        completed: bool | None = None,
        **filters: Any,
    ) -> list[S]:
        """Moved: ``engine.states.find``."""
        return await self.states.find(
            state_class, limit=limit, order_by=order_by, completed=completed, **filters
        )

    @deprecated("AsyncEngine.count is deprecated (removed in 0.4.0): use engine.states.count")
    async def count(self, state_class: type[State], **filters: Any) -> int:
        """Moved: ``engine.states.count``."""
        return await self.states.count(state_class, **filters)


class _HookScheduler:
    """A plain ``def`` hook's ``engine.scheduler`` under the async engine: what it
    schedules joins the commit being built, with no I/O."""

    def __init__(self, view: _HookView) -> None:
        self._view = view

    def schedule(
        self, event: Event, *, at: datetime | None = None, after: timedelta | None = None
    ) -> str:
        return self._view.schedule(event, at=at, after=after)


class _HookView:
    """What a plain ``def`` handle hook gets as its engine under the async engine.

    It fires and loads through the same core, but cannot wait for the store:
    a state the hook did not declare and that is not in memory is refused,
    naming it, with the remedy (``async def handle`` and ``await engine.fire``).
    """

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self.scheduler = _HookScheduler(self)

    def fire(
        self, event: E, *, metadata: Mapping[str, Any] | None = None, key: str | None = None
    ) -> E:
        return _in_memory(self._engine.core._firing.fire_steps(event, None, metadata, key))

    def load(self, state_class: type[S], state_id: Any = None) -> S:
        key = key_of(state_class, state_id)
        return cast(S, _in_memory(self._engine.core._loader.live_steps([key]), key))

    def schedule(
        self, event: Event, *, at: datetime | None = None, after: timedelta | None = None
    ) -> str:
        return _in_memory(
            self._engine.core.scheduler.schedule_steps(event, at, after), doing="schedule"
        )

    @property
    def pending(self) -> tuple[Event, ...]:
        return self._engine.pending


def _in_memory(steps: Steps[T], key: StateKey | None = None, doing: str = "fire") -> T:
    try:
        request = next(steps)
    except StopIteration as done:
        return cast(T, done.value)
    steps.close()
    remedy = (
        "declare the state in the hook's parameters, or make the hook async def and await "
        "engine.fire(...) / engine.load(...)"
        if doing != "schedule"
        else "make the hook async def and await engine.scheduler.schedule(...)"
    )
    raise PlaythroughError(
        f"a plain def handle hook under the async engine cannot wait for the store "
        f"({_what(request, key)}): {remedy}"
    )


def _what(request: object, key: StateKey | None) -> str:
    if key is not None:
        return f"{key} is not in memory"
    if isinstance(request, Call) and request.name == "heads" and request.args:
        return "the states " + ", ".join(str(k) for k in request.args[0]) + " are not in memory"
    if isinstance(request, Call) and request.name == "ensure_subject_keys":
        return "a personal value is sealed with its subject's key, which it must read"
    if isinstance(request, Call):
        return f"it needs the store's {request.name}"
    return "it needs a read"
