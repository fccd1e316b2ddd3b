"""The Engine's methods that moved to its rooms, kept as forwarders.

``engine.find(...)`` is ``engine.states.find(...)``, ``engine.run_due()`` is
``engine.scheduler.run_due()`` and so on; each forwarder names its new call.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime, timedelta
from typing import IO, TYPE_CHECKING, Any, TypeVar

from ._model import Event, State
from ._scheduling import LEASE

if TYPE_CHECKING:
    from ._archive import ArchiveReport
    from ._followers import FollowerReport, Projection
    from ._history import History
    from ._log import StateRefArg
    from ._query import StateInfo
    from ._replay import ReplayReport
    from ._rooms import Admin, Followers, Log, StateRef, States
    from ._scheduling import ScheduledEvent, Scheduler
    from ._snapshots import SyncReport
    from ._stores._base import Completion
    from ._transfer import BinaryWriter, TransferReport
    from ._verify import VerifyOptions, VerifyReport

S = TypeVar("S", bound=State)


class MovedMethods:
    """The forwarders of the Engine's methods that now live in its rooms."""

    log: Log
    states: States
    scheduler: Scheduler
    followers: Followers
    admin: Admin

    def events(
        self,
        *,
        after: int = 0,
        types: Sequence[type[Event] | str] | None = None,
        state: StateRefArg | None = None,
        caused_by: int | None = None,
        correlation: str | None = None,
        limit: int | None = None,
    ) -> Iterator[Event]:
        """Moved: ``engine.log.events``."""
        return self.log.events(
            after=after,
            types=types,
            state=state,
            caused_by=caused_by,
            correlation=correlation,
            limit=limit,
        )

    def event(self, position: int) -> Event:
        """Moved: ``engine.log.event``."""
        return self.log.event(position)

    def causes(self, position: int) -> list[Event]:
        """Moved: ``engine.log.causes``."""
        return self.log.causes(position)

    def effects(self, position: int) -> list[Event]:
        """Moved: ``engine.log.effects``."""
        return self.log.effects(position)

    def history(
        self, state_class: type[State], state_id: Any = None, *, at: int | None = None
    ) -> History:
        """Moved: ``engine.log.history``."""
        return self.log.history(state_class, state_id, at=at)

    def export(
        self,
        out: BinaryWriter,
        *,
        after: int = 0,
        progress: Callable[[int, int], None] | None = None,
        with_followers: bool = False,
        keys: bool = True,
    ) -> TransferReport:
        """Moved: ``engine.log.export``."""
        return self.log.export(
            out, after=after, progress=progress, with_followers=with_followers, keys=keys
        )

    def find(
        self,
        state_class: type[S],
        *,
        limit: int | None = None,
        order_by: str | Sequence[str] | None = None,
        completed: bool | None = None,
        **filters: Any,
    ) -> Iterator[S]:
        """Moved: ``engine.states.find``."""
        return self.states.find(
            state_class, limit=limit, order_by=order_by, completed=completed, **filters
        )

    def count(self, state_class: type[State], **filters: Any) -> int:
        """Moved: ``engine.states.count``."""
        return self.states.count(state_class, **filters)

    def info(self, state_class: type[State], state_id: Any = None) -> StateInfo:
        """Moved: ``engine.states.info``."""
        return self.states.info(state_class, state_id)

    def completion(self, state_class: type[State], state_id: Any = None) -> Completion | None:
        """Moved: ``engine.states.completion``."""
        return self.states.completion(state_class, state_id)

    def schedule(
        self, event: Event, *, at: datetime | None = None, after: timedelta | None = None
    ) -> str:
        """Moved: ``engine.scheduler.schedule``."""
        return self.scheduler.schedule(event, at=at, after=after)

    def cancel(self, schedule_id: str) -> bool:
        """Moved: ``engine.scheduler.cancel``."""
        return self.scheduler.cancel(schedule_id)

    def reschedule(self, schedule_id: str, *, at: datetime | None = None) -> ScheduledEvent:
        """Moved: ``engine.scheduler.reschedule``."""
        return self.scheduler.reschedule(schedule_id, at=at)

    def scheduled(self, schedule_id: str) -> ScheduledEvent:
        """Moved: ``engine.scheduler.scheduled``."""
        return self.scheduler.scheduled(schedule_id)

    def run_due(self, *, limit: int = 100, lease: timedelta = LEASE) -> list[ScheduledEvent]:
        """Moved: ``engine.scheduler.run_due``."""
        return self.scheduler.run_due(limit=limit, lease=lease)

    def run(
        self,
        projection: Projection,
        *,
        until_idle: bool = False,
        poll_interval: float = 1.0,
        batch_size: int | None = None,
        stop: Callable[[], bool] | None = None,
    ) -> FollowerReport:
        """Moved: ``engine.followers.run``."""
        return self.followers.run(
            projection,
            until_idle=until_idle,
            poll_interval=poll_interval,
            batch_size=batch_size,
            stop=stop,
        )

    def reset_follower(self, projection: Projection | str, position: int = 0) -> None:
        """Moved: ``engine.followers.reset``."""
        self.followers.reset(projection, position)

    def snapshot(self, refs: Iterable[StateRef] | None = None, *, at: int | None = None) -> int:
        """Moved: ``engine.admin.snapshot``."""
        return self.admin.snapshot(refs, at=at)

    def drop_snapshots(self, refs: Iterable[StateRef] | None = None) -> int:
        """Moved: ``engine.admin.drop_snapshots``."""
        return self.admin.drop_snapshots(refs)

    def snapshot_sync(self) -> SyncReport:
        """Moved: ``engine.admin.snapshot_sync``."""
        return self.admin.snapshot_sync()

    def replay(
        self,
        *,
        progress: Callable[[int, int], None] | None = None,
        snapshot_every: int = 10_000,
        chunk_size: int = 2_000,
        resume: bool = True,
    ) -> ReplayReport:
        """Moved: ``engine.admin.replay``."""
        return self.admin.replay(
            progress=progress, snapshot_every=snapshot_every, chunk_size=chunk_size, resume=resume
        )

    def fill_head_values(
        self,
        *,
        progress: Callable[[int, int], None] | None = None,
        snapshot_every: int = 10_000,
        chunk_size: int = 2_000,
    ) -> ReplayReport:
        """Moved: ``engine.admin.fill_head_values``."""
        return self.admin.fill_head_values(
            progress=progress, snapshot_every=snapshot_every, chunk_size=chunk_size
        )

    def verify(
        self,
        options: VerifyOptions | None = None,
        *,
        progress: Callable[[str, int, int], None] | None = None,
        clock: Callable[[], float] | None = None,
        **changes: Any,
    ) -> VerifyReport:
        """Moved: ``engine.admin.verify``."""
        return self.admin.verify(options, progress=progress, clock=clock, **changes)

    def archive(
        self,
        *,
        before: int | datetime,
        to: str | os.PathLike[str],
        progress: Callable[[str, int, int], None] | None = None,
        vacuum: bool = False,
    ) -> ArchiveReport:
        """Moved: ``engine.admin.archive``."""
        return self.admin.archive(before=before, to=to, progress=progress, vacuum=vacuum)

    def import_log(
        self,
        source: IO[bytes],
        *,
        append: bool = False,
        progress: Callable[[int, int], None] | None = None,
        forgotten: bool = False,
    ) -> TransferReport:
        """Moved: ``engine.admin.import_log``."""
        return self.admin.import_log(source, append=append, progress=progress, forgotten=forgotten)

    def forget(self, subject: Any) -> bool:
        """Moved: ``engine.admin.forget``."""
        return self.admin.forget(subject)

    def drop_forgotten(self) -> None:
        """Moved: ``engine.admin.drop_forgotten``."""
        self.admin.drop_forgotten()

    def run_pending_handlers(self, limit: int = 1_000) -> list[Event]:
        """Moved: ``engine.admin.run_pending_handlers``."""
        return self.admin.run_pending_handlers(limit)
