"""Scheduled events: stored now, fired when due, exactly once.

``engine.scheduler.schedule(event, at=... | after=...)`` stores a row in ``pt_schedule``:
at once when nothing is in progress, otherwise with the engine's next append
(the commit the caller is building, or the commit a ``handle`` hook runs in),
so a schedule and the events that caused it are written together or not at
all. ``engine.scheduler.cancel(id)`` likewise.

``engine.scheduler.run_due()`` is one worker pass: lease the due rows (skipping rows
another worker holds), and for each one fire its event with ``fired_at`` = the
due time (so ``now()`` in its hooks is the due time, on every replay) and
commit it. The append that writes the event also moves its row from
``pending`` to ``fired`` and is refused if the row is no longer pending: an
event is appended exactly when its row is marked, in one transaction, so two
workers, or a worker that crashed after firing, never fire it twice. A
rejected event (``EventRejected``, such as a completed state) or one whose
hooks raise is recorded on its row (``rejected`` / ``failed`` with the error),
never dropped without a trace; so is a row whose event type no imported module
defines (``failed``), and the pass goes on with the rows behind it.
``engine.scheduler.reschedule(id, at=...)`` re-arms a failed row.

``engine.scheduler.cancel(id)`` is checked where it is written: a cancel riding a commit
refuses that commit (``CancelRefused``) if the row fired meanwhile, and a cancel
written on its own answers False. An event is never both cancelled and fired.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import attrs

from . import _telemetry
from ._clock import Clock, aware, stamp
from ._errors import (
    CancelRefused,
    ConcurrencyError,
    DecodeError,
    DuplicateEvent,
    EventRejected,
    HandlerFailed,
    PlaythroughError,
    ScheduleNotFound,
    StoreError,
)
from ._model import Event, binding, registry
from ._personal import MARK, new_key, personal_spec, seal, subject_of, unseal
from ._playing import hook_time
from ._serialization import decode, decode_event, encode_event
from ._slots import fired_data, set_position, unfire
from ._steps import Read, Steps, call, read_one, run_sync
from ._stores import Store
from ._stores._base import ScheduleRecord, ScheduleRow, StoredEvent

if TYPE_CHECKING:
    from ._append import Commit
    from ._engine import Engine
    from ._firing import Firing
    from ._work import UnitOfWork

log = logging.getLogger("playthrough.scheduler")

LEASE = timedelta(minutes=5)  # how long run_due() holds a due row while firing it


@attrs.frozen
class ScheduledEvent:
    """A scheduled event as the store holds it.

    ``status``: ``pending`` (not fired yet), ``fired`` (``position`` is the event's),
    ``cancelled``, ``rejected`` (its validate hooks or a completed state refused
    it: ``error``) or ``failed`` (its hooks raised, its type is unknown or it
    could not be decoded: ``error``; ``engine.scheduler.reschedule`` re-arms it).
    """

    id: str
    due_at: datetime
    event_type: str
    status: str
    position: int | None
    error: str | None
    created_at: datetime

    @classmethod
    def from_record(cls, r: ScheduleRecord) -> ScheduledEvent:
        return cls(
            id=r.id,
            due_at=datetime.fromisoformat(r.due_at),
            event_type=r.type,
            status=r.status,
            position=r.position,
            error=r.error,
            created_at=datetime.fromisoformat(r.created_at),
        )


class ScheduleQueue:
    """Schedule changes waiting for the next append: a participant of the unit of work."""

    def __init__(self) -> None:
        self.queued: list[ScheduleRow] = []
        self.cancelled: list[str] = []
        self.firing: dict[int, str] = {}  # id(event) -> schedule id, while pending

    def has_queued(self) -> bool:
        return bool(self.queued or self.cancelled)

    def clear(self) -> None:
        self.queued.clear()
        self.cancelled.clear()
        self.firing.clear()

    def take(self, batch: list[Event]) -> dict[str, tuple[Any, ...]]:
        """What the next append writes: rows to store, ids to cancel, rows this batch fires."""
        if not (self.firing or self.queued or self.cancelled):
            return {}  # the common commit: nothing scheduled, nothing to scan
        fired = tuple((self.firing[id(e)], n) for n, e in enumerate(batch) if id(e) in self.firing)
        out = {"schedule": tuple(self.queued), "cancel": tuple(self.cancelled), "fired": fired}
        self.clear()
        return out

    def mark(self) -> tuple[list[ScheduleRow], list[str], dict[int, str]]:
        return list(self.queued), list(self.cancelled), dict(self.firing)

    def rollback(self, mark: tuple[list[ScheduleRow], list[str], dict[int, str]]) -> None:
        queued, cancelled, firing = mark
        self.queued[:] = queued
        self.cancelled[:] = cancelled
        self.firing.clear()
        self.firing.update(firing)


@attrs.define(eq=False, repr=False, slots=False)
class Scheduler:
    """``engine.scheduler``: schedule, cancel and re-arm events, and the worker pass.

    Built from the store, the clock, the unit of work's schedule queue and the
    firing and commit stages (a scheduled event is fired and committed through
    them like any other), never from the Engine.
    """

    _store: Store
    _clock: Clock
    _work: UnitOfWork
    _queue: ScheduleQueue
    _firing: Firing
    _commit: Commit
    # The lease owner name, drawn on first use: most engines never claim a lease,
    # and a uuid is a fifth of what building an engine costs.
    _owner: str | None = attrs.field(init=False, default=None)

    @property
    def owner(self) -> str:
        """The lease owner name of this engine (unique; drawn once, on first use)."""
        if self._owner is None:
            self._owner = uuid.uuid4().hex
        return self._owner

    @owner.setter
    def owner(self, owner: str) -> None:
        self._owner = owner

    def __repr__(self) -> str:
        return f"<Scheduler on {self._store.url}>"

    # ------------------------------------------------------------------ scheduling

    def schedule(
        self, event: Event, *, at: datetime | None = None, after: timedelta | None = None
    ) -> str:
        """Store ``event`` to be fired at ``at`` (an aware datetime) or ``after`` from now.

        Returns the schedule id. Called while a commit is being built (pending
        events, a ``transaction()`` block, a ``handle`` hook), the row is written
        by that commit's append; otherwise at once. Due events are fired by
        :meth:`run_due` or ``playthrough scheduler``.
        """
        return run_sync(self.schedule_steps(event, at, after), self._store)

    def schedule_steps(
        self, event: Event, at: datetime | None, after: timedelta | None
    ) -> Steps[str]:
        """``schedule`` as store requests: the seam both engines drive."""
        if not isinstance(event, Event):
            raise TypeError(f"schedule() takes an Event, not {type(event).__name__}")
        if event.id is not None or fired_data(event) is not None:
            raise PlaythroughError(f"{type(event).__qualname__} was already fired")
        if (at is None) == (after is None):
            raise TypeError("schedule() takes exactly one of at= (datetime) or after= (timedelta)")
        now = self._clock.now()
        if after is not None:
            if not isinstance(after, timedelta):
                raise TypeError(f"after= takes a timedelta, not {type(after).__name__}")
            # Inside a hook, "after" counts from the event's time (now() there), so a
            # handler's "15 minutes after the order" does not drift with handler latency.
            due = aware(hook_time() or now) + after
        else:
            assert at is not None
            due = aware(at)
        binding(event)  # refuses bad state ids now, not when the event is due
        data = encode_event(event)
        cls = type(event)
        try:
            decode(cls, data, f"event {cls._pt_type_name}")
        except DecodeError as exc:
            raise TypeError(
                f"{cls.__qualname__} holds a value that would not come back from storage: {exc}"
            ) from exc
        spec = personal_spec(cls)
        stored = data
        if spec is not None:  # the schedule table holds personal values sealed, like the log
            subject = subject_of(event, spec)
            keys = yield call("ensure_subject_keys", {subject: new_key()})
            stored = seal(data, cls._pt_type_name, spec, subject, keys[subject])
        row = ScheduleRow(
            uuid.uuid4().hex, stamp(due), cls._pt_type_name, stored, stamp(now), cls._pt_version
        )
        self._queue.queued.append(row)
        yield from self._commit.flush_steps()
        return row.id

    def cancel(self, schedule_id: str) -> bool:
        """Cancel a scheduled event; False if it was already fired or cancelled.

        Unknown ids raise ``ScheduleNotFound``. Like :meth:`schedule`, the change
        goes with the commit being built, if any; that commit is refused with
        ``CancelRefused`` (nothing written) if the event fired meanwhile. Called
        on its own, the cancel is written at once and answers False instead: an
        event is never both cancelled and fired.
        """
        return run_sync(self.cancel_steps(schedule_id), self._store)

    def cancel_steps(self, schedule_id: str) -> Steps[bool]:
        """``cancel`` as store requests: the seam both engines drive."""
        queue = self._queue
        for row in queue.queued:
            if row.id == schedule_id:
                queue.queued.remove(row)
                return True
        record = yield from self.scheduled_steps(schedule_id)
        if record.status != "pending":
            return False
        queue.cancelled.append(schedule_id)
        try:
            yield from self._commit.flush_steps()
        except CancelRefused:
            return False  # written at once, and refused: it fired meanwhile
        return True

    def reschedule(self, schedule_id: str, *, at: datetime | None = None) -> ScheduledEvent:
        """Re-arm a ``failed`` (or ``pending``) scheduled event: pending again, due at ``at``.

        ``at`` (an aware datetime) defaults to now, so the next :meth:`run_due`
        fires it. Its error and lease are cleared. Unknown ids raise
        ``ScheduleNotFound``; a row that fired, was cancelled or was rejected
        raises ``PlaythroughError`` (nothing changes). Written at once.
        """
        return run_sync(self.reschedule_steps(schedule_id, at), self._store)

    def reschedule_steps(self, schedule_id: str, at: datetime | None) -> Steps[ScheduledEvent]:
        """``reschedule`` as store requests: the seam both engines drive."""
        due = aware(self._clock.now() if at is None else at)
        if not (yield call("rearm_schedule", schedule_id, stamp(due))):
            record = yield from self.scheduled_steps(schedule_id)  # ScheduleNotFound if unknown
            raise PlaythroughError(
                f"scheduled event {schedule_id} is {record.status}: only a failed or pending "
                "one can be rescheduled"
            )
        return (yield from self.scheduled_steps(schedule_id))

    def scheduled(self, schedule_id: str) -> ScheduledEvent:
        """A scheduled event's row: due time, status, the fired event's position, error."""
        return run_sync(self.scheduled_steps(schedule_id), self._store)

    def scheduled_steps(self, schedule_id: str) -> Steps[ScheduledEvent]:
        """``scheduled`` as store requests: the seam both engines drive."""
        found = yield Read(read_one("schedule", schedule_id))
        if found is None:
            queued = [r for r in self._queue.queued if r.id == schedule_id]
            if queued:
                r = queued[0]
                found = ScheduleRecord(
                    *r[:4], "pending", None, None, r.created_at, None, None, r.version
                )
            else:
                raise ScheduleNotFound(f"no scheduled event has the id {schedule_id!r}")
        return ScheduledEvent.from_record(found)

    # ------------------------------------------------------------------ the worker pass

    def run_due(self, *, limit: int = 100, lease: timedelta = LEASE) -> list[ScheduledEvent]:
        """Fire the scheduled events due by ``clock.now()`` (one pass, at most ``limit``).

        Each is fired with its due time as ``fired_at`` and committed on its own;
        the commit marks its row fired in the same transaction, so no event is
        fired twice, by several workers or after a crash. Rows are leased for
        ``lease`` so concurrent workers take different ones. Returns the rows
        handled, with their outcome (``fired``, ``rejected``, ``failed``, or
        ``pending`` when a concurrent change made it retry on the next pass).
        """
        return run_sync(self.run_due_steps(limit, lease), self._store)

    def run_due_steps(self, limit: int, lease: timedelta = LEASE) -> Steps[list[ScheduledEvent]]:
        """The worker pass as store requests: the seam both engines drive (the commit of
        each row runs the hooks with the firing stage's ``hook_shells``)."""
        if self._work.has_queued():
            raise PlaythroughError("commit or discard pending events before run_due()")
        if limit < 1:
            raise ValueError(f"limit must be at least 1, not {limit}")
        now = aware(self._clock.now())
        started = time.perf_counter()
        claimed = yield call("claim_due", stamp(now), stamp(now + lease), self.owner, limit)
        done: list[ScheduledEvent] = []
        for row in claimed:
            handled = yield from self._fire_one(row)
            _telemetry.scheduled(row.type, handled.status)
            done.append(handled)
        if claimed:  # an idle pass makes no span
            fired = sum(r.status == "fired" for r in done)
            attributes = {"claimed": len(claimed), "fired": fired}
            _telemetry.span("scheduler.pass", time.perf_counter() - started, attributes)
        return done

    def _fire_one(self, row: ScheduleRecord) -> Steps[ScheduledEvent]:
        """Fire one leased row; the result says what this worker did with it."""

        def outcome(
            status: str, position: int | None = None, error: str | None = None
        ) -> ScheduledEvent:
            return ScheduledEvent.from_record(
                row._replace(status=status, position=position, error=error)
            )

        where = f" (scheduled event {row.id})"
        try:
            # A type no imported module defines is a DecodeError: the row is marked
            # failed with the reason and the pass goes on with the rows behind it
            # (engine.scheduler.reschedule re-arms it once the module is deployed).
            registry.event_class(row.type, where)
            if MARK in row.data:  # personal values: decrypted, or FORGOTTEN
                asked: list[set[str]] = []

                def subjects(wanted: Iterable[str]) -> dict[str, bytes]:
                    asked.append(set(wanted))
                    return {}

                unseal([row], subjects, data_index=3, type_index=2)
                keys = (yield Read(read_one("subject_keys", *asked))) if asked else {}
                [row] = unseal([row], lambda _: keys, data_index=3, type_index=2)
            # Decoded like a stored event, so a row scheduled by an older version of
            # the class is upcast; then it is a fresh event again, to be fired.
            event = decode_event(StoredEvent(0, row.type, row.data, None, row.due_at, row.version))
            unfire(event)
            set_position(event, None)
        except DecodeError as exc:
            error = f"{type(exc).__name__}: {exc}"
            yield call("finish_schedule", row.id, self.owner, "failed", error)
            return outcome("failed", error=error)
        try:
            # Its fired_at (now() in its hooks) is the due time; the commit marks the
            # row fired in the same transaction (the key makes a second firing a no-op).
            due = datetime.fromisoformat(row.due_at)
            yield from self._firing.fire_steps(event, due, None, f"schedule:{row.id}")
            self._queue.firing[id(event)] = row.id
        except EventRejected as exc:
            error = f"{type(exc).__name__}: {exc}"
            yield call("finish_schedule", row.id, self.owner, "rejected", error)
            return outcome("rejected", error=error)
        except StoreError:
            # The store failed, not the row: give it back for the next pass.
            yield from self._give_back(row)
            raise
        except Exception as exc:  # noqa: BLE001 - recorded on the row
            # Its hooks raised, or it cannot be fired (a state that cannot be
            # rebuilt, say): failed with the reason, and the pass goes on, so one
            # such row never stalls the rows behind it.
            self._work.discard()
            error = f"{type(exc).__name__}: {exc}"
            yield call("finish_schedule", row.id, self.owner, "failed", error)
            return outcome("failed", error=error)
        try:
            result = yield from self._commit.steps()
            result.raise_for_failures()
        except HandlerFailed as exc:
            # The event is committed and its row marked fired; a handle hook raised
            # afterwards. Reported in the result and logged; the worker goes on.
            log.error("scheduled event %s fired, then: %s", row.id, exc, exc_info=exc)
            return outcome("fired", event.id, f"HandlerFailed: {exc}")
        except (ConcurrencyError, DuplicateEvent) as exc:
            # A state moved under us, or another worker fired or cancelled the row:
            # nothing was written; give the lease back so the next pass decides again.
            yield from self._give_back(row)
            return outcome("pending", error=f"retry: {exc}")
        except BaseException:
            # The store failed (or the process is stopping): nothing was written, since
            # the event and the row's move to fired are one transaction.
            yield from self._give_back(row)
            raise
        return outcome("fired", event.id)

    def _give_back(self, row: ScheduleRecord) -> Steps[None]:
        """Release the lease (best effort: if the store is gone, the lease runs out)."""
        self._work.discard()
        try:
            yield call("finish_schedule", row.id, self.owner, "pending", None)
        except Exception:  # noqa: BLE001 - the original error is the one to report
            log.warning("could not release the lease of scheduled event %s", row.id)


def serve(
    engine: Engine,
    *,
    interval: float = 1.0,
    limit: int = 100,
    passes: int | None = None,
    until_idle: bool = False,
    echo: Callable[[str], object] = print,
    sleep: Callable[[float], object] = time.sleep,
    report: Callable[[ScheduledEvent], object] | None = None,
) -> int:
    """The worker loop behind ``playthrough scheduler``: ``run_due`` pass after pass.

    A pass that fired something is followed at once by the next; an idle one by
    ``interval`` seconds of pause (or the end, with ``until_idle``). ``passes``
    bounds the number of passes. Returns how many scheduled events it handled.
    Each is told to ``report`` when given (``--format json``), else as a line to ``echo``.
    """
    handled = 0
    done = 0
    while passes is None or done < passes:
        results = engine.scheduler.run_due(limit=limit)
        done += 1
        for r in results:
            handled += 1
            if report is not None:
                report(r)
                continue
            where = f" at position {r.position}" if r.position is not None else ""
            error = f": {r.error}" if r.error else ""
            echo(f"{r.id} {r.event_type} due {r.due_at.isoformat()}: {r.status}{where}{error}")
        if not results:
            if until_idle:
                break
            if passes is None or done < passes:
                sleep(interval)
    return handled
