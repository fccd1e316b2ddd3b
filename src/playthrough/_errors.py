"""Every exception playthrough raises on purpose derives from PlaythroughError."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._model import Event


class PlaythroughError(Exception):
    """Base class of the errors playthrough raises."""


class EventRejected(PlaythroughError):
    """Raised by a ``validate`` hook to refuse an event; nothing is changed or queued."""


class StateCompleted(EventRejected):
    """An event touches a completed state and its class does not allow that.

    ``state`` is the completed state's key, ``completed_by`` the position of the
    event that completed it (None while that event is pending, or when the store
    has no record of it) and ``completed_by_type`` its type name.
    """

    def __init__(
        self,
        message: str,
        *,
        state: object,
        event_type: str,
        completed_by: int | None,
        completed_by_type: str | None,
    ) -> None:
        super().__init__(message)
        self.state = state
        self.event_type = event_type
        self.completed_by = completed_by
        self.completed_by_type = completed_by_type


class ScheduleNotFound(PlaythroughError, KeyError):
    """``engine.scheduler.cancel`` or ``engine.scheduler.scheduled`` was given an id no
    scheduled event has."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class DefinitionError(PlaythroughError, TypeError):
    """A state or event class is declared in a way playthrough cannot use."""


class ConcurrencyError(PlaythroughError):
    """Another writer committed an event touching a state this commit touches.

    Nothing of the failed commit was written, and the states it touched were
    dropped from memory, so the next load reads the store's truth.
    """


class StaleForgetError(ConcurrencyError):
    """A data subject was forgotten since this engine loaded its states.

    Its states may hold the subject's personal data in clear, so its commit (or
    snapshot) was refused and nothing was written; the engine dropped every
    state from memory, so a retry reads the store's truth.
    """


class HandledElsewhere(ConcurrencyError):
    """A handler's completion was refused: another runner completed that event's handlers.

    Handler completion deletes the event's pending-handler row and checks that
    it was still there; when it was not, the commit carrying the handler's
    events is refused and nothing of it was written, so a handler's store
    effects happen once however many runners there are.
    """


class CancelRefused(ConcurrencyError):
    """A commit cancelling a scheduled event was refused: the event is no longer pending.

    It was fired (or rejected, or failed) meanwhile; nothing of the commit was
    written. ``engine.scheduler.cancel`` called on its own answers ``False`` instead.
    """


class ConfigurationError(PlaythroughError):
    """An engine or store was configured wrongly: no URL, or an option that does not exist."""


class StoreError(PlaythroughError):
    """The store could not be opened, read or written."""


class CapabilityMissing(StoreError):
    """The store does not have the capability a call needs; nothing was read or written.

    ``capability`` names it (``"read side"``, ``"lifecycle"`` or ``"maintenance"``;
    every store has ``"log"``), ``method`` the store method that was called.
    """

    def __init__(self, message: str, capability: str, method: str) -> None:
        super().__init__(message)
        self.capability = capability
        self.method = method


class CommitOutcomeUnknown(StoreError):
    """The connection failed while a commit was in flight and its outcome could not be learnt.

    The commit may or may not be in the log. ``commit_id`` names it:
    ``engine.was_committed(commit_id)`` answers for certain once the store is
    reachable again. Retrying blindly could write the events twice; fire them
    with ``key=`` to make a retry safe.
    """

    def __init__(self, message: str, commit_id: str) -> None:
        super().__init__(message)
        self.commit_id = commit_id


class DuplicateEvent(PlaythroughError):
    """An event's idempotency key is already in the log (or twice in one commit).

    Nothing of the commit that carried it was written. ``key`` is the key and
    ``position`` where the stored event with that key is (``None`` when the
    duplicate is inside the refused commit itself).
    """

    def __init__(self, message: str, key: str, position: int | None) -> None:
        super().__init__(message)
        self.key = key
        self.position = position


class CorruptionError(StoreError):
    """Stored data contradicts what the store guarantees (a gap in the positions, a link
    to a missing event, a heads row behind the log...). ``position`` names where."""

    def __init__(self, message: str, position: int | None = None) -> None:
        super().__init__(message)
        self.position = position


class SchemaVersionError(StoreError):
    """The store's schema was written by a version of playthrough this one cannot read."""


class DecodeError(PlaythroughError):
    """A row in the store could not be turned back into an event or a state."""


class UnknownKeysError(DecodeError):
    """A stored payload holds keys its class has no field for (strict decoding).

    ``type_name`` is the stored type, ``position`` the event's position (or the
    snapshot's), ``keys`` the unknown keys (dotted paths for nested classes).
    Usually a renamed or removed field: add an ``upcast_vK`` hook that maps it
    and bump the class's ``version=``.
    """

    def __init__(
        self, message: str, *, type_name: str, position: int, keys: tuple[str, ...]
    ) -> None:
        super().__init__(message)
        self.type_name = type_name
        self.position = position
        self.keys = keys


class UnknownTypeError(DecodeError):
    """A stored type name is not registered by any loaded State or Event class."""


class ReconstitutionError(PlaythroughError):
    """A state could not be rebuilt (for example an ``apply`` hook touched an undeclared state)."""


class HandlerFailed(PlaythroughError):
    """One or more ``handle`` hooks raised after their events were committed.

    The events stay committed, and every other handler still ran. ``failures``
    lists ``(event, exception)`` for each event whose handlers failed (what
    such a handler fired was discarded); those events stay recorded as
    pending in the store, and ``engine.admin.run_pending_handlers()`` runs them
    again (handlers are at-least-once). ``committed`` holds every event the
    call committed, as ``commit()`` would have returned them. ``event`` is the
    first failed event and ``__cause__`` its exception.
    """

    def __init__(
        self,
        message: str,
        failures: list[tuple[Event, BaseException]],
        committed: list[Event] | None = None,
    ) -> None:
        super().__init__(message)
        self.failures = failures
        self.committed = committed or []
        self.event = failures[0][0] if failures else None


class StateMutationError(PlaythroughError):
    """A state's field was assigned outside an ``apply`` hook of an event that declares it."""


class StateTypeError(PlaythroughError, TypeError):
    """A commit was refused: a state's field holds a value of another type than declared."""


class NotFoundError(PlaythroughError, LookupError):
    """There is no event at that position, or no stored state with that id."""


class QueryError(PlaythroughError, ValueError):
    """A ``find``/``count``/``events`` filter names an unknown field or lookup, or a bad value."""


class FollowerFailed(PlaythroughError):
    """A follower's handler raised; the follower stopped at that event.

    Nothing of the batch was kept: the follower's stored position is still
    ``position`` (the last event it finished), ``event`` the one that failed and
    ``__cause__`` the original exception. The next run starts again after ``position``.
    """

    def __init__(self, message: str, *, follower: str, position: int, event: object) -> None:
        super().__init__(message)
        self.follower = follower
        self.position = position
        self.event = event


class FollowerBusy(PlaythroughError):
    """Another process holds the lock of a follower with this name."""


class TransferError(PlaythroughError):
    """An export file is damaged or does not fit the store it is imported into.

    Nothing was written: an import reads the file inside one transaction.
    """


class ArchivedRangeError(PlaythroughError):
    """An operation needs events that were moved to an archive (``playthrough archive``).

    The message names the archived range; open the engine with ``archive=`` to read it.
    """
