"""The async engine's rooms: ``engine.log``, ``states``, ``followers`` and ``admin``.

Each method drives the same steps as the sync room of the same name
(``playthrough._rooms``), awaiting the async store where that one calls the
sync store: the names, arguments, results and errors are the sync engine's.
Work that runs user code on a sync transaction (a follower's handlers),
passes over the whole log (replay, verify) or works on files (export, import,
archive) is the sync room's own, run off the event loop through
``AsyncStore.blocking``.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from datetime import datetime, timedelta
from typing import IO, TYPE_CHECKING, Any, TypeVar

from .. import _followers
from .._archive import ArchiveReport
from .._engine import Engine
from .._followers import FollowerReport, FollowerStatus, Projection
from .._history import History, history_steps
from .._log import PAGE, EventPager, causes_steps, effects_steps, event_steps
from .._model import Event, State, key_of
from .._query import StateInfo, _completed_check, completion_steps
from .._replay import ReplayReport
from .._scheduling import LEASE, ScheduledEvent
from .._snapshots import SyncReport
from .._stores._base import Completion, EventQuery
from .._transfer import BinaryWriter, TransferReport, export_log
from .._verify import VerifyOptions, VerifyReport

if TYPE_CHECKING:
    from ._engine import AsyncEngine

S = TypeVar("S", bound=State)
T = TypeVar("T")


class AsyncLog:
    """``engine.log`` of the async engine: the committed log, read (``engine.log`` of the
    sync engine, awaited; ``events`` is an async iterator)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    def __repr__(self) -> str:
        return f"<Log of {self._engine.store.url}>"

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
        """Committed events after ``after``, in order, one short read per page (nothing is
        held open between pages: the caller may fire and commit while iterating)."""
        store = self._engine.store
        pager = EventPager(after, types, state, caused_by, correlation, limit, page_size)
        query: EventQuery | None = await store.read(pager.start_steps())
        while query is not None:
            rows = await store.read(pager.page_steps(query))
            for event in pager.decode(rows):
                yield event
            query = pager.next_query(rows)

    async def event(self, position: int) -> Event:
        """The committed event at ``position`` (``NotFoundError`` outside the log)."""
        return await self._engine._drive(event_steps(position))

    async def causes(self, position: int) -> list[Event]:
        """The events that led to this one, root first (empty for a root event)."""
        return await self._engine._drive(causes_steps(position))

    async def effects(self, position: int) -> list[Event]:
        """Every event this one caused, directly or not, in position order."""
        return await self._engine._drive(effects_steps(position))

    async def history(
        self, state_class: type[State], state_id: Any = None, *, at: int | None = None
    ) -> History:
        """Every event that touched this state up to ``at`` (default: the head), oldest
        first, with the fields each changed (``engine.log.history``)."""
        key = key_of(state_class, state_id)
        return await self._engine._drive(history_steps(self._engine.core.reconstitutor, key, at))

    async def export(
        self,
        out: BinaryWriter,
        *,
        after: int = 0,
        progress: Callable[[int, int], None] | None = None,
        with_followers: bool = False,
        keys: bool = True,
    ) -> TransferReport:
        """Write the committed log after ``after`` to a binary file (``engine.log.export``:
        the same format, header, trailer and report). It reads the whole log and writes
        the file off the event loop (the SQLite store's thread; a worker thread over a
        sync PostgreSQL connection); ``out`` is written and ``progress`` called from there."""
        return await self._engine.store.blocking(
            lambda store: export_log(
                store,
                out,
                after=after,
                progress=progress,
                with_followers=with_followers,
                keys=keys,
            )
        )


class AsyncStates:
    """``engine.states`` of the async engine: the stored states, found by their values, and
    what the store knows of each (``engine.states`` of the sync engine, awaited; ``find``
    returns a list)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    def __repr__(self) -> str:
        return f"<States of {self._engine.store.url}>"

    async def find(
        self,
        state_class: type[S],
        *,
        limit: int | None = None,
        order_by: str | Sequence[str] | None = None,
        completed: bool | None = None,
        **filters: Any,
    ) -> list[S]:
        """Stored states of a type whose values match, as of the store's head, as a list
        (``engine.states.find``: the same filters, ordering, checks and errors)."""
        drive = self._engine._drive
        queries = self._engine.core.states.queries
        if completed is None:
            return await drive(queries.find_steps(state_class, filters, limit, order_by))
        _completed_check(state_class, limit, completed)
        found = await drive(queries.find_steps(state_class, filters, None, order_by))
        kept = [s for s in found if s.is_complete() == completed]
        return kept if limit is None else kept[:limit]

    async def count(self, state_class: type[State], **filters: Any) -> int:
        """How many stored states of a type match (counted by the database)."""
        queries = self._engine.core.states.queries
        return await self._engine._drive(queries.count_steps(state_class, filters))

    async def info(self, state_class: type[State], state_id: Any = None) -> StateInfo:
        """When a state was created and last changed, how many events, its newest snapshot."""
        queries = self._engine.core.states.queries
        return await self._engine._drive(queries.info_steps(state_class, state_id))

    async def completion(self, state_class: type[State], state_id: Any = None) -> Completion | None:
        """Whether the store records this state completed: the position and type of the
        event that completed it, or None."""
        return await self._engine._drive(completion_steps(key_of(state_class, state_id)))


class AsyncFollowers:
    """``engine.followers`` of the async engine: run projections, move them back, and
    (called, awaited) their status."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    def __repr__(self) -> str:
        return f"<Followers of {self._engine.store.url}>"

    async def __call__(self) -> list[FollowerStatus]:
        """Every follower's position and lag behind the head."""
        return await self._engine.store.blocking(_followers.statuses)

    async def run(
        self,
        projection: Projection,
        *,
        until_idle: bool = False,
        poll_interval: float = 1.0,
        batch_size: int | None = None,
        stop: Callable[[], bool] | None = None,
    ) -> FollowerReport:
        """Feed every committed event after the follower's stored position to ``projection``
        (``engine.followers.run``: the same batches, transactions and ``FollowerFailed``).

        Its ``on_<EventType>(event, tx)`` handlers are sync code on a sync transaction, so
        each batch runs off the event loop (the SQLite store's thread; a worker thread
        over a sync PostgreSQL connection); the waits between batches are awaited.
        """
        store = self._engine.store
        follow = _followers.Follow(projection, batch_size)
        while stop is None or not stop():
            found = await store.blocking(follow.step)
            if found == _followers.MORE:
                continue
            if until_idle and found == _followers.IDLE:
                break
            await asyncio.sleep(poll_interval)  # idle, or another process holds the follower
        return follow.report()

    async def reset(self, projection: Projection | str, position: int = 0) -> None:
        """Move a follower back (default: to 0, to re-project everything)."""
        await self._engine.store.blocking(
            lambda store: _followers.reset(store, projection, position)
        )


class AsyncAdmin:
    """``engine.admin`` of the async engine: snapshots, replays, checks, archival, imports,
    erasure, handlers (``engine.admin`` of the sync engine, awaited)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    def __repr__(self) -> str:
        return f"<Admin of {self._engine.store.url}>"

    async def _blocking(self, work: Callable[[Engine], T]) -> T:
        """``work`` on a sync engine over the store (this engine's options), off the loop."""
        options = self._engine._options
        return await self._engine.store.blocking(lambda store: work(Engine(store, **options)))

    async def snapshot(
        self, refs: Iterable[tuple[type[State], Any]] | None = None, *, at: int | None = None
    ) -> int:
        """Write an event-aligned snapshot set and return its position (without ``refs``:
        the states in memory and those coupled with them, at the head)."""
        engine = self._engine
        return await engine._drive(engine.core.admin.snapshot_steps(refs, at))

    async def drop_snapshots(self, refs: Iterable[tuple[type[State], Any]] | None = None) -> int:
        """Forget stored snapshots (all, or those of the given states); returns how many."""
        engine = self._engine
        return await engine._drive(engine.core.admin.drop_snapshots_steps(refs))

    async def snapshot_sync(self) -> SyncReport:
        """Which coupled states have snapshots that disagree on their position."""
        return await self._blocking(lambda sync: sync.admin.snapshot_sync())

    async def replay(
        self,
        *,
        progress: Callable[[int, int], None] | None = None,
        snapshot_every: int = 10_000,
        chunk_size: int = 2_000,
        resume: bool = True,
        workers: int = 1,
    ) -> ReplayReport:
        """Rebuild every state from the log with bounded memory (``engine.admin.replay``),
        off the event loop; ``progress`` is called from that thread. This engine's
        states are dropped from memory afterwards, as on the sync engine."""
        core = self._engine.core
        core.admin._refuse_pending("a replay")
        report = await self._blocking(
            lambda sync: sync.admin.replay(
                progress=progress,
                snapshot_every=snapshot_every,
                chunk_size=chunk_size,
                resume=resume,
                workers=workers,
            )
        )
        core.repository.clear()
        return report

    async def fill_head_values(
        self,
        *,
        progress: Callable[[int, int], None] | None = None,
        snapshot_every: int = 10_000,
        chunk_size: int = 2_000,
    ) -> ReplayReport:
        """Give every state a current heads value in one pass (``engine.admin.fill_head_values``),
        off the event loop; this engine's states are dropped from memory afterwards."""
        core = self._engine.core
        core.admin._refuse_pending("filling values")
        report = await self._blocking(
            lambda sync: sync.admin.fill_head_values(
                progress=progress, snapshot_every=snapshot_every, chunk_size=chunk_size
            )
        )
        core.repository.clear()
        return report

    async def verify(
        self,
        options: VerifyOptions | None = None,
        *,
        progress: Callable[[str, int, int], None] | None = None,
        clock: Callable[[], float] | None = None,
        **changes: Any,
    ) -> VerifyReport:
        """Check the store (``engine.admin.verify``: the same checks and report).

        It reads the whole log and replays states to compare, CPU-bound work: it runs
        off the event loop, on a sync engine over the store (the SQLite store's thread;
        a worker thread on PostgreSQL), with this engine's options. ``progress`` is
        called from that thread.
        """
        return await self._blocking(
            lambda sync: sync.admin.verify(options, progress=progress, clock=clock, **changes)
        )

    async def archive(
        self,
        *,
        before: int | datetime,
        to: str | os.PathLike[str],
        progress: Callable[[str, int, int], None] | None = None,
        vacuum: bool = False,
    ) -> ArchiveReport:
        """Move the events before a position (or fired before a date) to an archive file
        (``engine.admin.archive``: the same snapshots at the cut, file and deletion).

        File and log work, off the event loop, on a sync engine over the store with this
        engine's options; ``progress`` is called from that thread. Refused while this
        engine has pending events. Loads before the cut then raise ``ArchivedRangeError``
        (the async engine reads no archive files: open a sync ``Engine`` with
        ``archive=`` for those).
        """
        self._engine.core.admin._refuse_pending("archiving")
        return await self._blocking(
            lambda sync: sync.admin.archive(before=before, to=to, progress=progress, vacuum=vacuum)
        )

    async def import_log(
        self,
        source: IO[bytes],
        *,
        append: bool = False,
        progress: Callable[[int, int], None] | None = None,
        forgotten: bool = False,
    ) -> TransferReport:
        """Import an export keeping its positions, then check the snapshots
        (``engine.admin.import_log``: the same checks, errors and report; a damaged file
        writes nothing). Off the event loop, on a sync engine over the store with this
        engine's options; ``source`` is read and ``progress`` called from that thread.
        Refused while this engine has pending events; its states are dropped from memory
        afterwards, as on the sync engine."""
        core = self._engine.core
        core.admin._refuse_pending("an import")
        report = await self._blocking(
            lambda sync: sync.admin.import_log(
                source, append=append, progress=progress, forgotten=forgotten
            )
        )
        core.repository.clear()
        return report

    async def forget(self, subject: Any) -> bool:
        """Erase a data subject's personal data (``engine.admin.forget``: their key is deleted,
        and what was derived from it dropped); False when the subject had no key."""
        engine = self._engine
        return await engine._drive(engine.core.admin.forget_steps(subject))

    def drop_forgotten(self) -> None:
        """Drop every state from memory and the forget epoch they were loaded at (no I/O)."""
        self._engine.core.admin.drop_forgotten()

    async def run_pending_handlers(self, limit: int = 1_000) -> list[Event]:
        """Run the handlers the store records as not completed; return their events
        (``engine.admin.run_pending_handlers``; ``HandlerFailed`` if some fail again). Their
        hooks may be ``async def``, as after a commit of this engine."""
        engine = self._engine
        shells = (engine._hook_view, engine)
        return await engine._drive(engine.core.admin.run_pending_handlers_steps(shells, limit))


class AsyncScheduler:
    """``engine.scheduler`` of the async engine: the sync ``engine.scheduler``'s calls,
    awaited, driving the same steps, so code that schedules (a hook shared by both
    engines) reads the same on both."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    def __repr__(self) -> str:
        return f"<Scheduler of {self._engine.store.url}>"

    async def schedule(
        self, event: Event, *, at: datetime | None = None, after: timedelta | None = None
    ) -> str:
        """Store ``event`` to be fired at ``at`` or ``after`` from now; returns its id
        (written with the commit being built, if any, else at once)."""
        engine = self._engine
        return await engine._drive(engine.core.scheduler.schedule_steps(event, at, after))

    async def cancel(self, schedule_id: str) -> bool:
        """Cancel a scheduled event; False if it was already fired or cancelled
        (``ScheduleNotFound`` for an unknown id)."""
        engine = self._engine
        return await engine._drive(engine.core.scheduler.cancel_steps(schedule_id))

    async def reschedule(self, schedule_id: str, *, at: datetime | None = None) -> ScheduledEvent:
        """Re-arm a failed (or pending) scheduled event, due at ``at`` (default: now)."""
        engine = self._engine
        return await engine._drive(engine.core.scheduler.reschedule_steps(schedule_id, at))

    async def scheduled(self, schedule_id: str) -> ScheduledEvent:
        """A scheduled event's row: due time, status, the fired event's position, error."""
        engine = self._engine
        return await engine._drive(engine.core.scheduler.scheduled_steps(schedule_id))

    async def run_due(self, *, limit: int = 100, lease: timedelta = LEASE) -> list[ScheduledEvent]:
        """Fire the scheduled events due by ``clock.now()``: one pass, each row committed on
        its own with its row marked fired; its hooks may be ``async def``."""
        engine = self._engine
        return await engine._drive(engine.core.scheduler.run_due_steps(limit, lease))
