"""The commit, one way: each stage owns one concern and none calls back up.

``Commit.steps`` → guard (not inside a hook, something to write) →
``Append.steps`` (the unit of work's events and its participants' extras, in
one checked append) → ``Handlers.steps`` (each committed event's ``handle``
hooks; what they fire goes through ``Append.steps`` again, with the handler's
completion) → settle (completed states leave the map, the snapshot policy,
trimming) → the ``CommitResult``.

Handlers and scheduled fires drive a commit through these stages' public
methods (``Firing.fire_steps``, ``Commit.steps``, ``Commit.flush_steps``,
``Append.steps``); none of them knows the Engine.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import NamedTuple, cast

import attrs

from . import _logging
from ._binding import links
from ._errors import ConcurrencyError, PlaythroughError, StaleForgetError
from ._handlers import CommitResult, Handlers, has_handlers
from ._lifecycle import Completions
from ._loading import Loader
from ._log import metadata_text, new_id
from ._model import Event, StateKey
from ._personal import new_key, personal_spec, seal, subject_of
from ._serialization import encode_event, encode_state_checked
from ._slots import set_last_event_id, set_position
from ._snapshots import SnapshotCoordinator
from ._steps import Steps, call, run_sync
from ._stores import NewEvent
from ._stores._base import HeadValue
from ._typecheck import check_state_types
from ._upcasting import current_value_shape
from ._work import UnitOfWork

logger = logging.getLogger("playthrough")


class _ValueOf(NamedTuple):
    """Names a state's value in an error (formatted only then, not on every commit)."""

    key: StateKey

    def __str__(self) -> str:
        return f"the value of {self.key}"


class Append:
    """The append stage: the unit of work's events, checked, in one store transaction."""

    def __init__(
        self, work: UnitOfWork, coordinator: SnapshotCoordinator, *, head_values: bool
    ) -> None:
        self.work = work
        self.coordinator = coordinator
        self.head_values = head_values
        #: The id of the last commit sent (see ``Engine.was_committed``).
        self.last_commit_id: str | None = None

    def steps(self, handled: Sequence[int] = ()) -> Steps[list[Event]]:
        """Append the pending events (checked), as store requests: the seam of both engines.

        ``handled``: positions whose handlers this append completes. On failure
        the unit of work is discarded and the error propagates.
        """
        work = self.work
        batch = list(work.events)
        commit_id = new_id()
        self.last_commit_id = commit_id
        if not batch:
            # Schedule changes alone, or a handler's completion with nothing fired:
            # one append of no events, checked like any other (see Store.append).
            extras = work.extras([])
            try:
                yield call("append", [], {}, commit_id=commit_id, handled=handled, extras=extras)
            except BaseException:
                work.discard()
                raise
            return []
        keys = list(work.keys)
        try:
            expected = {}
            values: dict[StateKey, HeadValue] | None = {} if self.head_values else None
            for k in keys:
                state = work.repository.get(k)
                if state is None:
                    raise PlaythroughError(f"{k} was dropped from memory while events were pending")
                expected[k] = state.last_event_id
                # Before anything is written: the values an apply stored must be of
                # the declared types, or a replay would not give them back.
                check_state_types(k, state)
                if values is not None:
                    # The live state after the whole batch: exact once the heads
                    # check passes, so its value rides in the same statement.
                    cls = type(state)
                    data = encode_state_checked(state, _ValueOf(k))
                    values[k] = HeadValue(data, *current_value_shape(cls))
            rows = []
            keys_of = yield from self._subject_keys(batch)
            for event in batch:
                fired = event.fired_at
                assert fired is not None
                data = encode_event(event)
                spec = personal_spec(type(event))
                if spec is not None:
                    subject = subject_of(event, spec)
                    data = seal(data, type(event)._pt_type_name, spec, subject, keys_of[subject])
                rows.append(
                    NewEvent(
                        type=type(event)._pt_type_name,
                        data=data,
                        links=links(event),
                        caused_by=event.caused_by,
                        fired_at=fired.isoformat(),
                        version=type(event)._pt_version,
                        key=event.idempotency_key,
                        needs_handling=has_handlers(event),
                        metadata=metadata_text(event),
                        correlation=event.correlation,
                    )
                )
            extras = work.extras(batch)
            started = time.perf_counter()
            positions = yield call(
                "append",
                rows,
                expected,
                values,
                commit_id=commit_id,
                handled=handled,
                extras=None if extras.empty else extras,
                epoch=work.epoch,
            )
            _logging.committed(positions, time.perf_counter() - started, batch)
        except ConcurrencyError as exc:
            _logging.conflict(len(batch), exc, _logging.event_types(batch))
            work.discard()
            if isinstance(exc, StaleForgetError):
                work.drop_forgotten()
            raise
        except Exception as exc:
            _logging.commit_failed(len(batch), exc, _logging.event_types(batch))
            work.discard()
            raise
        except BaseException:
            work.discard()
            raise
        last: dict[StateKey, int] = {}
        for event, position, row in zip(batch, positions, rows, strict=True):
            set_position(event, position)
            for key, _ in row.links:
                last[key] = position
        for key, position in last.items():
            state = work.repository.get(key)
            if state is not None:
                set_last_event_id(state, position)
        work.committed()
        self.coordinator.committed(last)
        return batch

    def _subject_keys(self, batch: list[Event]) -> Steps[dict[str, bytes]]:
        """The keys of the data subjects of the batch's personal fields (created if new).

        Written in their own transaction before the append: a key whose events
        then fail to commit encrypts nothing and is harmless.
        """
        subjects = {
            subject_of(e, spec): None for e in batch if (spec := personal_spec(type(e))) is not None
        }
        if not subjects:
            return {}
        found = yield call("ensure_subject_keys", {s: new_key() for s in subjects})
        return cast(dict[str, bytes], found)


@attrs.define(eq=False, repr=False, slots=False)
class Commit:
    """``commit()``: append, run the handlers, settle. The stages below never call it."""

    work: UnitOfWork
    append: Append
    handlers: Handlers
    completions: Completions
    loader: Loader
    raise_handler_failures: bool = attrs.field(kw_only=True)
    #: The last failure of the automatic snapshot policy after a commit (logged too).
    snapshot_error: Exception | None = attrs.field(default=None, init=False)

    def __call__(self) -> CommitResult:
        return run_sync(self.steps(), self.loader.store)

    def steps(self, shells: tuple[object, object] | None = None) -> Steps[CommitResult]:
        """The commit as store requests; the hooks get ``shells`` (plain def, async def
        hooks; default: the firing stage's) as their engine: the seam both engines drive."""
        work = self.work
        if work.committing:
            raise PlaythroughError("commit() from inside a handle hook: fire events instead")
        if work.fired_chain:
            raise PlaythroughError(
                "commit() from inside a fired hook: what it fires joins the commit of its event"
            )
        if not work.has_queued():
            return CommitResult()
        work.committing = True
        try:
            committed = yield from self.append.steps()
            failures = yield from self.handlers.steps(shells, list(committed), committed)
        finally:
            work.committing = False
            self._evict_completed()
        yield from self._snapshot_policy_steps()
        self.loader.trim()
        result = CommitResult(committed, failures)
        if self.raise_handler_failures:
            result.raise_for_failures()
        return result

    def flush_steps(self) -> Steps[None]:
        """Write queued schedule changes now, unless a commit is being built or running
        (then they go with its append, in the same transaction)."""
        if not self.work.in_progress():
            yield from self.steps()

    def _evict_completed(self) -> None:
        """Drop the states this commit completed from the identity map (see _lifecycle)."""
        evict = self.completions.evict
        repository = self.work.repository
        for key in evict:
            state = repository.get(key)
            if state is not None and key not in self.work.keys and state.is_complete():
                repository.forget(key)
        evict.clear()

    def _snapshot_policy_steps(self) -> Steps[None]:
        """The ``snapshot_every`` policy: best effort, since the commit already stands."""
        try:
            yield from self.loader.coordinator.after_commit_steps()
        except Exception as exc:
            self.snapshot_error = exc
            logger.warning(
                "automatic snapshot after a commit failed (the commit stands; the next "
                "snapshot or load reads the log): %r",
                exc,
                exc_info=True,
            )
