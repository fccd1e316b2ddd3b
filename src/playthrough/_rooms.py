"""The engine's rooms: the log, the stored states, the followers and maintenance.

Each room is built from the store, the reconstitutor and the unit of work
(and, for maintenance, the snapshot coordinator and the handlers stage),
never from the Engine: ``engine.log``, ``engine.states``,
``engine.followers`` and ``engine.admin`` (``engine.scheduler`` is
``_scheduling.Scheduler``).
"""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime
from typing import IO, TYPE_CHECKING, Any, TypeVar

import attrs

from . import _followers, _logging, _telemetry
from ._archive import ArchiveReader, ArchiveReport, archive_log
from ._errors import PlaythroughError
from ._followers import FollowerReport, FollowerStatus, Projection
from ._handlers import Handlers
from ._history import History, state_history
from ._log import EventLog
from ._model import Event, State, encode_id, key_of
from ._options import at_least
from ._personal import clear_values
from ._query import StateInfo, StateQueries, _completed_check, completion_steps
from ._reconstitution import StateReconstitutor
from ._replay import ReplayReport, full_replay
from ._snapshots import SnapshotCoordinator, SyncReport
from ._steps import Steps, call, run_sync
from ._stores import Store
from ._stores._base import Completion, refuse_archived
from ._transfer import BinaryWriter, TransferReport, export_log, import_log
from ._work import UnitOfWork

if TYPE_CHECKING:
    from ._verify import VerifyOptions, VerifyReport

S = TypeVar("S", bound=State)

StateRef = tuple[type[State], Any]


class Log(EventLog):
    """``engine.log``: the committed log, read and written out.

    ``events``, ``event``, ``causes``, ``effects`` (see ``EventLog``), a
    state's ``history`` and ``export``.
    """

    def __init__(
        self, store: Store, reconstitutor: StateReconstitutor, archive: ArchiveReader | None
    ) -> None:
        super().__init__(store)
        self._reconstitutor = reconstitutor
        self._archive = archive

    def __repr__(self) -> str:
        return f"<Log of {self._store.url}>"

    def history(
        self, state_class: type[State], state_id: Any = None, *, at: int | None = None
    ) -> History:
        """Every event that touched this state up to ``at`` (default: the head), oldest
        first, each with its position, time, type, metadata, cause and the fields it
        changed (before -> after). One plan, played once; exact like every load."""
        key = key_of(state_class, state_id)
        return state_history(self._store, self._reconstitutor, self._archive, key, at)

    def export(
        self,
        out: BinaryWriter,
        *,
        after: int = 0,
        progress: Callable[[int, int], None] | None = None,
        with_followers: bool = False,
        keys: bool = True,
    ) -> TransferReport:
        """Write the committed log after position ``after`` to a binary file, as JSON Lines.

        Header (with the log's running hash up to ``after``), one line per
        event (personal values stay sealed), trailer with count and SHA-256,
        then what the store needs besides the log: scheduled events, pending
        handlers, completions, the followers' positions (``with_followers``)
        and last the keys of the data subjects (not with ``keys=False``);
        constant memory in the log's length. Wrap ``out`` in
        ``gzip.open(path, "wb")`` to compress.
        """
        return export_log(
            self._store,
            out,
            after=after,
            progress=progress,
            with_followers=with_followers,
            keys=keys,
        )


class States:
    """``engine.states``: the stored states, found by their values, and what the store
    knows of each."""

    def __init__(self, store: Store, reconstitutor: StateReconstitutor, work: UnitOfWork) -> None:
        self._store = store
        self.queries = StateQueries(store, reconstitutor, work)

    def __repr__(self) -> str:
        return f"<States of {self._store.url}>"

    def find(
        self,
        state_class: type[S],
        *,
        limit: int | None = None,
        order_by: str | Sequence[str] | None = None,
        completed: bool | None = None,
        **filters: Any,
    ) -> Iterator[S]:
        """Stored states of a type whose values match, as of the store's head.

        ``balance__gt=100``, ``owner="ada"``, ``tags__contains=["vip"]``,
        ``address__city="Oslo"``; ``order_by="-balance"``. Every state returned
        satisfies the filter as returned, at one cut of the committed log: this
        engine's live state when it is at the matched position, else the stored
        value, which replaces the older one in memory. Refused (PlaythroughError)
        while this engine has uncommitted events on the type. ``completed=False``
        (or True) keeps only the states that are not (or are) completed, for a
        class that declares completion.
        """
        queries = self.queries
        if completed is None:
            return queries.find(state_class, filters, limit, order_by)
        _completed_check(state_class, limit, completed)
        found = queries.find(state_class, filters, None, order_by)
        kept = (s for s in found if s.is_complete() == completed)
        return itertools.islice(kept, limit) if limit is not None else kept

    def count(self, state_class: type[State], **filters: Any) -> int:
        """How many stored states of a type match (counted by the database)."""
        return self.queries.count(state_class, filters)

    def info(self, state_class: type[State], state_id: Any = None) -> StateInfo:
        """When a state was created and last changed, how many events, its newest snapshot."""
        return self.queries.info(state_class, state_id)

    def completion(self, state_class: type[State], state_id: Any = None) -> Completion | None:
        """Whether the store records this state completed: the position and type of the
        event that completed it, or None."""
        return run_sync(completion_steps(key_of(state_class, state_id)), self._store)


class Followers:
    """``engine.followers``: run projections, move them back, and (called) their status."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def __repr__(self) -> str:
        return f"<Followers of {self._store.url}>"

    def __call__(self) -> list[FollowerStatus]:
        """Every follower's position and lag behind the head."""
        return _followers.statuses(self._store)

    def run(
        self,
        projection: Projection,
        *,
        until_idle: bool = False,
        poll_interval: float = 1.0,
        batch_size: int | None = None,
        stop: Callable[[], bool] | None = None,
    ) -> FollowerReport:
        """Feed every committed event after the follower's stored position to ``projection``.

        ``until_idle``: return once there is nothing left; otherwise poll every
        ``poll_interval`` seconds until ``stop()`` is true. Raises
        ``FollowerFailed`` (position unchanged) when a handler raises.
        """
        return _followers.run(
            self._store,
            projection,
            until_idle=until_idle,
            poll_interval=poll_interval,
            batch_size=batch_size,
            stop=stop,
        )

    def reset(self, projection: Projection | str, position: int = 0) -> None:
        """Move a follower back (default: to 0, to re-project everything).

        Given a Projection, its ``reset(tx)`` clears the read model in the same transaction.
        Given a name, the follower must exist (a NotFoundError otherwise: a typo never
        creates a follower).
        """
        _followers.reset(self._store, projection, position)


@attrs.define(eq=False, repr=False, slots=False)
class Admin:
    """``engine.admin``: snapshots, replays, checks, archives, imports, erasure, handlers."""

    _store: Store
    _reconstitutor: StateReconstitutor
    _work: UnitOfWork
    _coordinator: SnapshotCoordinator
    _handlers: Handlers

    def __repr__(self) -> str:
        return f"<Admin of {self._store.url}>"

    def _refuse_pending(self, what: str) -> None:
        if self._work.events:
            raise PlaythroughError(f"commit or discard pending events before {what}")

    # ------------------------------------------------------------------ snapshots

    def snapshot(self, refs: Iterable[StateRef] | None = None, *, at: int | None = None) -> int:
        """Write an event-aligned snapshot set and return its position.

        Without ``refs``: every state in memory plus the states coupled with
        them, as of the store's head. With ``refs`` (``[(Account, 1), (Ledger, None)]``):
        exactly those states, as they were at ``at`` (default: the head).
        """
        return run_sync(self.snapshot_steps(refs, at), self._store)

    def drop_snapshots(self, refs: Iterable[StateRef] | None = None) -> int:
        """Forget stored snapshots (all, or those of the given states); returns how many."""
        return run_sync(self.drop_snapshots_steps(refs), self._store)

    def snapshot_steps(self, refs: Iterable[StateRef] | None, at: int | None) -> Steps[int]:
        """:meth:`snapshot` as store requests (both engines)."""
        keys = None if refs is None else [key_of(cls, i) for cls, i in refs]
        return (yield from self._coordinator.write_set_steps(keys, at))

    def drop_snapshots_steps(self, refs: Iterable[StateRef] | None) -> Steps[int]:
        """:meth:`drop_snapshots` as store requests (both engines)."""
        keys = None if refs is None else [key_of(cls, i) for cls, i in refs]
        dropped: int = yield call("drop_snapshots", keys)
        return dropped

    def snapshot_sync(self) -> SyncReport:
        """Which coupled states have snapshots that disagree on their position."""
        return self._coordinator.check_sync()

    # ------------------------------------------------------------------ whole-log passes

    def replay(
        self,
        *,
        progress: Callable[[int, int], None] | None = None,
        snapshot_every: int = 10_000,
        chunk_size: int = 2_000,
        resume: bool = True,
        workers: int = 1,
    ) -> ReplayReport:
        """Rebuild every state from the log with bounded memory; see ``full_replay``.

        ``progress(position, head)`` is called after each chunk; an interrupted
        replay resumes from its last snapshot set when ``resume`` is true.
        ``workers`` > 1 replays the independent coupling components in that many
        processes (forked; a file or server store) and writes the same snapshots
        and heads values as one process; ``progress`` is then called when they
        are done, and an interrupted run resumes from where it started.
        """
        workers = at_least("workers", workers, 1)
        self._refuse_pending("a replay")
        with self._store.reader() as reader:
            refuse_archived(reader, 0, "a full replay")
        started = time.perf_counter()
        report = full_replay(
            self._store,
            snapshot_history=self._coordinator.history,
            progress=progress,
            snapshot_every=snapshot_every,
            chunk_size=chunk_size,
            resume=resume,
            workers=workers,
        )
        self._work.repository.clear()
        _logging.replayed(report, time.perf_counter() - started, self._store)
        return report

    def fill_head_values(
        self,
        *,
        progress: Callable[[int, int], None] | None = None,
        snapshot_every: int = 10_000,
        chunk_size: int = 2_000,
    ) -> ReplayReport:
        """Give every state a current heads value in one pass over the log, in bounded memory.

        For stores written without heads values (before schema version 2, or
        with ``head_values=False``): afterwards a cold load of any state reads
        one row. Stored snapshots are kept; the pass adds a snapshot set every
        ``snapshot_every`` events (how memory stays bounded). Handlers do not run.
        """
        self._refuse_pending("filling values")
        report = full_replay(
            self._store,
            snapshot_history=self._coordinator.history,
            progress=progress,
            snapshot_every=snapshot_every,
            chunk_size=chunk_size,
            resume=False,
            fill=True,
        )
        self._work.repository.clear()
        return report

    def verify(
        self,
        options: VerifyOptions | None = None,
        *,
        progress: Callable[[str, int, int], None] | None = None,
        clock: Callable[[], float] | None = None,
        **changes: Any,
    ) -> VerifyReport:
        """Check the store: heads and links, snapshots against the log, determinism, sync.

        Returns a ``VerifyReport`` (``.ok``: no wrong or irreproducible result).
        The live repository is untouched. Ctrl-C (a ``KeyboardInterrupt``) raises
        ``playthrough._verify.VerifyInterrupted``, a ``KeyboardInterrupt`` whose
        ``report`` holds what was found until then.

        What is checked is ``options`` (a ``VerifyOptions``: ``sample``, ``seed``,
        ``start``, ``end``, ``time_budget``, ``strict_sync``, ``apps``, ``url``,
        ``subprocess_replay``, ``determinism``), with ``changes`` to its fields
        given as keywords (``engine.admin.verify(sample=100)``; any other keyword
        is a ``TypeError``). ``progress(stage, done, total)`` is called as work
        advances; ``time_budget`` counts seconds of ``clock`` (by default
        ``time.monotonic``).

        See ``playthrough._verify.verify``.
        """
        from ._verify import VerifyOptions, verify

        options = attrs.evolve(options or VerifyOptions(), **changes)
        started = time.perf_counter()
        report = verify(
            self._store,
            self._reconstitutor,
            options,
            sync_check=self.snapshot_sync,
            progress=progress,
            clock=clock,
        )
        _telemetry.span(
            "verify",
            time.perf_counter() - started,
            {"ok": report.ok, "head": report.head, "snapshots_checked": report.snapshots.checked},
            store=self._store,
        )
        return report

    # ------------------------------------------------------------------ archive, import

    def archive(
        self,
        *,
        before: int | datetime,
        to: str | os.PathLike[str],
        progress: Callable[[str, int, int], None] | None = None,
        vacuum: bool = False,
    ) -> ArchiveReport:
        """Move the events before a position (or fired before a date) to an archive file.

        Writes a snapshot at the cut of every state touched before it, exports
        the archived events to ``to`` (gzip, the export format), then deletes
        them in one transaction. Loads at or after the cut and new commits work
        unchanged; loads before it and ``replay()`` raise ``ArchivedRangeError``
        unless the engine is opened with ``archive=`` (this file, and any
        earlier ones, in order). ``progress(stage, done, total)`` is called as
        it goes; ``vacuum=True`` gives the deleted rows' space back afterwards
        (``Store.vacuum``; without it a SQLite file keeps its size and reuses
        the free pages for new rows).
        """
        self._refuse_pending("archiving")
        return archive_log(
            self._store,
            self._reconstitutor,
            before=before,
            to=to,
            progress=progress,
            vacuum=vacuum,
        )

    def import_log(
        self,
        source: IO[bytes],
        *,
        append: bool = False,
        progress: Callable[[int, int], None] | None = None,
        forgotten: bool = False,
    ) -> TransferReport:
        """Import an export (plain or gzip) keeping its positions, then check the snapshots.

        The store must be empty, or with ``append`` its head must be where the
        file starts and its log the one the file continues (the header's
        chain). A damaged or truncated file raises ``TransferError`` and
        writes nothing, as does sealed personal data whose keys the file does
        not carry, unless ``forgotten`` (then it reads as forgotten). Ends with
        verify's snapshot check when the store holds snapshots
        (``report.verify``); the domain's classes must be imported.
        """
        self._refuse_pending("an import")
        report = import_log(
            self._store, source, append=append, progress=progress, forgotten=forgotten
        )
        self._work.repository.clear()
        with self._store.reader() as reader:
            has_snapshots = next(reader.iter_snapshots(), None) is not None
        if has_snapshots:
            report = attrs.evolve(report, verify=self.verify(determinism=False))
        return report

    # ------------------------------------------------------------------ erasure

    def forget(self, subject: Any) -> bool:
        """Erase a data subject's personal data: delete their key (crypto-shredding).

        ``subject`` is the value of the events' ``data_subject`` field. Afterwards
        their personal fields read as ``playthrough.FORGOTTEN`` in every load,
        replay and export; every other field stays exact. In the same
        transaction the snapshots and heads values of the states the subject's
        events touched are dropped (they may hold derived personal values;
        loads rebuild them from the log; no other state is touched), their
        clear values are scrubbed out of an archive's base snapshots and the
        schedule's error texts, and followers are told
        (``Projection.on_forgotten``). Every engine that loaded states before
        has its next commit or snapshot refused (``StaleForgetError``), so none
        can write the data back. This engine's states are dropped from memory.
        Returns False when the subject had no key. Events of the subject
        committed later get a new key; the old values stay forgotten.
        """
        return run_sync(self.forget_steps(subject), self._store)

    def forget_steps(self, subject: Any) -> Steps[bool]:
        """:meth:`forget` as store requests (both engines)."""
        if self._work.has_queued():
            raise PlaythroughError("commit or discard pending events before forget()")
        started = time.perf_counter()
        encoded = encode_id(subject)
        gone: bool = yield call("forget_subject", encoded, clear_values)
        _logging.forgotten(encoded, gone, time.perf_counter() - started)
        self._work.drop_forgotten()
        return gone

    def drop_forgotten(self) -> None:
        """Drop every state from memory and the forget epoch they were loaded at.

        Done by ``forget`` and when a commit or snapshot is refused with
        StaleForgetError (another engine forgot a subject): the next load reads
        the store's truth, where the subject's personal values read FORGOTTEN.
        """
        self._work.drop_forgotten()

    # ------------------------------------------------------------------ handlers

    def run_pending_handlers(self, limit: int = 1_000) -> list[Event]:
        """Run the handlers the store records as not completed; return their events.

        Those are handlers that raised, or that a crash cut short between the
        commit and their completion. Raises ``HandlerFailed`` if some fail again
        (the others still run). Handlers are at-least-once: a handler that was
        running elsewhere when this is called may run twice.
        """
        return run_sync(self.run_pending_handlers_steps(None, limit), self._store)

    def run_pending_handlers_steps(
        self, shells: tuple[object, object] | None, limit: int
    ) -> Steps[list[Event]]:
        """:meth:`run_pending_handlers` as store requests (both engines; ``shells``: what
        the hooks get as their engine, see ``Handlers.steps``)."""
        return (yield from self._handlers.run_pending_steps(shells, limit))
