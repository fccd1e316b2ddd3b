"""The Engine's methods that moved to its rooms, kept as deprecated forwarders.

``engine.find(...)`` is ``engine.states.find(...)``, ``engine.run_due()`` is
``engine.scheduler.run_due()`` and so on. Each forwarder warns
(``DeprecationWarning``) naming its new call and the version that removes it
(:data:`REMOVAL`); mypy flags every use of one.
"""

from __future__ import annotations

import functools
import os
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime, timedelta
from typing import IO, TYPE_CHECKING, Any, TypeVar, cast

from ._model import Event, State
from ._scheduling import LEASE

if TYPE_CHECKING:
    from typing_extensions import deprecated

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
F = TypeVar("F", bound=Callable[..., Any])

#: The version that removes the forwarders.
REMOVAL = "0.4.0"

if not TYPE_CHECKING:

    def deprecated(message: str) -> Callable[[F], F]:
        """Warn (DeprecationWarning, naming the new call) each time the forwarder is called;
        mypy reads ``typing_extensions.deprecated`` instead and flags every use."""

        def wrap(method: F) -> F:
            @functools.wraps(method)
            def forwarder(*args: Any, **kwargs: Any) -> Any:
                warnings.warn(message, DeprecationWarning, stacklevel=2)
                return method(*args, **kwargs)

            return cast(F, forwarder)

        return wrap


class MovedMethods:
    """The forwarders of the Engine's methods that now live in its rooms."""

    if TYPE_CHECKING:  # the Engine's rooms (it builds all but the scheduler when first used)

        @property
        def log(self) -> Log: ...
        @property
        def states(self) -> States: ...
        @property
        def scheduler(self) -> Scheduler: ...
        @property
        def followers(self) -> Followers: ...
        @property
        def admin(self) -> Admin: ...

    @deprecated("Engine.events is deprecated (removed in 0.4.0): use engine.log.events")
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

    @deprecated("Engine.event is deprecated (removed in 0.4.0): use engine.log.event")
    def event(self, position: int) -> Event:
        """Moved: ``engine.log.event``."""
        return self.log.event(position)

    @deprecated("Engine.causes is deprecated (removed in 0.4.0): use engine.log.causes")
    def causes(self, position: int) -> list[Event]:
        """Moved: ``engine.log.causes``."""
        return self.log.causes(position)

    @deprecated("Engine.effects is deprecated (removed in 0.4.0): use engine.log.effects")
    def effects(self, position: int) -> list[Event]:
        """Moved: ``engine.log.effects``."""
        return self.log.effects(position)

    @deprecated("Engine.history is deprecated (removed in 0.4.0): use engine.log.history")
    def history(
        self, state_class: type[State], state_id: Any = None, *, at: int | None = None
    ) -> History:
        """Moved: ``engine.log.history``."""
        return self.log.history(state_class, state_id, at=at)

    @deprecated("Engine.export is deprecated (removed in 0.4.0): use engine.log.export")
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

    @deprecated("Engine.find is deprecated (removed in 0.4.0): use engine.states.find")
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

    @deprecated("Engine.count is deprecated (removed in 0.4.0): use engine.states.count")
    def count(self, state_class: type[State], **filters: Any) -> int:
        """Moved: ``engine.states.count``."""
        return self.states.count(state_class, **filters)

    @deprecated("Engine.info is deprecated (removed in 0.4.0): use engine.states.info")
    def info(self, state_class: type[State], state_id: Any = None) -> StateInfo:
        """Moved: ``engine.states.info``."""
        return self.states.info(state_class, state_id)

    @deprecated("Engine.completion is deprecated (removed in 0.4.0): use engine.states.completion")
    def completion(self, state_class: type[State], state_id: Any = None) -> Completion | None:
        """Moved: ``engine.states.completion``."""
        return self.states.completion(state_class, state_id)

    @deprecated("Engine.schedule is deprecated (removed in 0.4.0): use engine.scheduler.schedule")
    def schedule(
        self, event: Event, *, at: datetime | None = None, after: timedelta | None = None
    ) -> str:
        """Moved: ``engine.scheduler.schedule``."""
        return self.scheduler.schedule(event, at=at, after=after)

    @deprecated("Engine.cancel is deprecated (removed in 0.4.0): use engine.scheduler.cancel")
    def cancel(self, schedule_id: str) -> bool:
        """Moved: ``engine.scheduler.cancel``."""
        return self.scheduler.cancel(schedule_id)

    @deprecated(
        "Engine.reschedule is deprecated (removed in 0.4.0): use engine.scheduler.reschedule"
    )
    def reschedule(self, schedule_id: str, *, at: datetime | None = None) -> ScheduledEvent:
        """Moved: ``engine.scheduler.reschedule``."""
        return self.scheduler.reschedule(schedule_id, at=at)

    @deprecated("Engine.scheduled is deprecated (removed in 0.4.0): use engine.scheduler.scheduled")
    def scheduled(self, schedule_id: str) -> ScheduledEvent:
        """Moved: ``engine.scheduler.scheduled``."""
        return self.scheduler.scheduled(schedule_id)

    @deprecated("Engine.run_due is deprecated (removed in 0.4.0): use engine.scheduler.run_due")
    def run_due(self, *, limit: int = 100, lease: timedelta = LEASE) -> list[ScheduledEvent]:
        """Moved: ``engine.scheduler.run_due``."""
        return self.scheduler.run_due(limit=limit, lease=lease)

    @deprecated("Engine.run is deprecated (removed in 0.4.0): use engine.followers.run")
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

    @deprecated(
        "Engine.reset_follower is deprecated (removed in 0.4.0): use engine.followers.reset"
    )
    def reset_follower(self, projection: Projection | str, position: int = 0) -> None:
        """Moved: ``engine.followers.reset``."""
        self.followers.reset(projection, position)

    @deprecated("Engine.snapshot is deprecated (removed in 0.4.0): use engine.admin.snapshot")
    def snapshot(self, refs: Iterable[StateRef] | None = None, *, at: int | None = None) -> int:
        """Moved: ``engine.admin.snapshot``."""
        return self.admin.snapshot(refs, at=at)

    @deprecated(
        "Engine.drop_snapshots is deprecated (removed in 0.4.0): use engine.admin.drop_snapshots"
    )
    def drop_snapshots(self, refs: Iterable[StateRef] | None = None) -> int:
        """Moved: ``engine.admin.drop_snapshots``."""
        return self.admin.drop_snapshots(refs)

    @deprecated(
        "Engine.snapshot_sync is deprecated (removed in 0.4.0): use engine.admin.snapshot_sync"
    )
    def snapshot_sync(self) -> SyncReport:
        """Moved: ``engine.admin.snapshot_sync``."""
        return self.admin.snapshot_sync()

    @deprecated("Engine.replay is deprecated (removed in 0.4.0): use engine.admin.replay")
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

    @deprecated(
        "Engine.fill_head_values is deprecated (removed in 0.4.0): "
        "use engine.admin.fill_head_values"
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

    @deprecated("Engine.verify is deprecated (removed in 0.4.0): use engine.admin.verify")
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

    @deprecated("Engine.archive is deprecated (removed in 0.4.0): use engine.admin.archive")
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

    @deprecated("Engine.import_log is deprecated (removed in 0.4.0): use engine.admin.import_log")
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

    @deprecated("Engine.forget is deprecated (removed in 0.4.0): use engine.admin.forget")
    def forget(self, subject: Any) -> bool:
        """Moved: ``engine.admin.forget``."""
        return self.admin.forget(subject)

    @deprecated(
        "Engine.drop_forgotten is deprecated (removed in 0.4.0): use engine.admin.drop_forgotten"
    )
    def drop_forgotten(self) -> None:
        """Moved: ``engine.admin.drop_forgotten``."""
        self.admin.drop_forgotten()

    @deprecated(
        "Engine.run_pending_handlers is deprecated (removed in 0.4.0): "
        "use engine.admin.run_pending_handlers"
    )
    def run_pending_handlers(self, limit: int = 1_000) -> list[Event]:
        """Moved: ``engine.admin.run_pending_handlers``."""
        return self.admin.run_pending_handlers(limit)
