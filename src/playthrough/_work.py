"""The unit of work: what one engine holds between two commits.

The live states (the current identity map), the pending events in firing
order, the states and idempotency keys they touch, the metadata and
correlation of the block being fired in, and the forget epoch the states were
loaded at. Everything the next append writes besides the events comes from
its *participants*: objects that share one shape, ``take(batch)`` (what this
batch writes, then forget it), ``clear()`` (a discard) and ``mark()`` /
``rollback(mark)`` (undo what an event and its fired hooks queued). Today
they are the completions the batch makes and the schedule changes queued
with it.

The rooms (``engine.log``, ``engine.states``, ``engine.scheduler``,
``engine.followers``, ``engine.admin``) and the stages of the commit read and
change this object, never the Engine.
"""

from __future__ import annotations

import copy
from collections.abc import Collection, Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Protocol, cast

import attrs

from ._model import Event, State, StateKey
from ._records import CommitExtras
from ._repository import StateRepository
from ._slots import unfire

_ATOMIC = (int, float, str, bool, bytes, type(None))
_FIELD_NAMES: dict[type, tuple[str, ...]] = {}

#: A state and its fields before some events changed them (to put them back).
Saved = dict[StateKey, tuple[State, dict[str, Any]]]


class Participant(Protocol):
    """Something a commit writes besides the events (completions, schedule changes)."""

    def take(self, batch: list[Event]) -> Mapping[str, Any]:
        """What the append of ``batch`` writes, by ``CommitExtras`` field; forgotten here."""

    def clear(self) -> None:
        """Forget everything queued (a discard)."""

    def mark(self) -> Any:
        """What :meth:`rollback` needs to go back to now."""

    def rollback(self, mark: Any) -> None:
        """Forget what was queued since ``mark``."""

    def has_queued(self) -> bool:
        """Whether something waits to be written even without events."""


@attrs.define
class Mark:
    """Where the unit of work stood, to undo the events queued since (see ``rollback``)."""

    events: int
    keys: int
    event_keys: int
    participants: tuple[Any, ...]


class UnitOfWork:
    """Pending events, the states and keys they touch, and the identity map they live in."""

    def __init__(self, participants: Iterable[Participant] = ()) -> None:
        self.repository = self.own_repository = StateRepository()
        self.events: list[Event] = []
        self.keys: dict[StateKey, None] = {}
        self.event_keys: dict[str, None] = {}
        self.metadata: dict[str, Any] = {}
        self.correlation: str | None = None
        self.caused_by: int | None = None
        # The store's forget epoch when the states in memory were loaded (None: not
        # known yet); a commit or snapshot from an older epoch is refused.
        self.epoch: int | None = None
        # While fired hooks run: the event types from the outermost fire inward, and per
        # level the states' fields before that level's events changed them (to undo it).
        self.fired_chain: list[str] = []
        self.savepoints: list[Saved] = []
        self.committing = False
        self.transactions = 0
        self.participants: list[Participant] = list(participants)

    # ------------------------------------------------------------------ reading

    def pending_types(self) -> set[str]:
        """The type names of the states the pending events touch."""
        return {k.type for k in self.keys}

    def has_queued(self) -> bool:
        """Whether a commit has something to write (events, or a participant's rows)."""
        return bool(self.events) or any(p.has_queued() for p in self.participants)

    def in_progress(self) -> bool:
        """Whether a commit is being built (pending events, a transaction block) or runs."""
        return bool(self.events) or self.committing or bool(self.transactions)

    def extras(self, batch: list[Event]) -> CommitExtras:
        """What the participants write with ``batch`` (taken: they forget it)."""
        fields: dict[str, Any] = {}
        for participant in self.participants:
            fields.update(participant.take(batch))
        return CommitExtras(**fields)

    # ------------------------------------------------------------------ the identity map

    @contextmanager
    def using(self, repository: StateRepository) -> Iterator[StateRepository]:
        if self.events:
            from ._errors import PlaythroughError

            raise PlaythroughError("commit or discard pending events before swapping repositories")
        previous = self.repository
        self.repository = repository
        try:
            yield repository
        finally:
            self.repository = previous

    def trim(self, limit: int | None) -> None:
        """Evict least recently used states beyond ``limit`` (never pending ones)."""
        own = self.own_repository
        if limit is not None and self.repository is own and len(own) > limit:
            own.trim(limit, self.keys)

    def drop_forgotten(self) -> None:
        """Drop every state from memory and the forget epoch they were loaded at."""
        self.repository.clear()
        self.epoch = None

    # the view the SnapshotCoordinator has of the live states

    def live_states(self) -> Iterable[tuple[StateKey, State]]:
        return self.repository.items()

    def live_state(self, key: StateKey) -> State | None:
        return self.repository.get(key)

    def has_pending(self) -> bool:
        return bool(self.events)

    def pending_keys(self) -> Collection[StateKey]:
        return self.keys.keys()

    def current_epoch(self) -> int | None:
        return self.epoch

    # ------------------------------------------------------------------ changing

    def add(self, event: Event, keys: Iterable[StateKey], key: str | None) -> None:
        """Queue a fired event (its states are already changed)."""
        if key is not None:
            self.event_keys[key] = None
        self.events.append(event)
        for k in keys:
            self.keys[k] = None

    @contextmanager
    def caused(self, event: Event) -> Iterator[None]:
        """What is fired in the block is caused by ``event`` and shares its correlation."""
        previous = self.caused_by, self.correlation
        self.caused_by = event.id
        self.correlation = event.correlation
        try:
            yield
        finally:
            self.caused_by, self.correlation = previous

    def discard(self) -> None:
        """Forget pending events and drop the states they changed from memory."""
        for event in self.events:
            unfire(event)
        for key in self.keys:
            self.repository.forget(key)
        self.events.clear()
        self.keys.clear()
        self.own_repository.release()
        for participant in self.participants:
            participant.clear()
        self.event_keys.clear()

    def committed(self) -> None:
        """The pending events are in the log: nothing is pending any more."""
        self.events.clear()
        self.keys.clear()
        self.own_repository.release()  # no longer pending: evictable again
        self.event_keys.clear()

    def mark(self) -> Mark:
        """What :meth:`rollback` needs to undo the events queued from here on."""
        return Mark(
            len(self.events),
            len(self.keys),
            len(self.event_keys),
            tuple(p.mark() for p in self.participants),
        )

    def rollback(self, mark: Mark, saved: Mapping[StateKey, tuple[State, dict[str, Any]]]) -> None:
        """Undo every event queued since ``mark``: their states' fields, the queue, the rest."""
        for state, fields in saved.values():
            restore(state, fields)
        for event in self.events[mark.events :]:
            unfire(event)
        del self.events[mark.events :]
        for key in list(self.keys)[mark.keys :]:
            del self.keys[key]
        self.own_repository.release()  # the states trim set aside may be pending no more
        for event_key in list(self.event_keys)[mark.event_keys :]:
            del self.event_keys[event_key]
        for participant, at in zip(self.participants, mark.participants, strict=True):
            participant.rollback(at)


def fields_of(state: State) -> dict[str, Any]:
    """A copy of a state's field values, to put back if a hook raises."""
    cls = type(state)
    names = _FIELD_NAMES.get(cls)
    if names is None:
        names = _FIELD_NAMES[cls] = tuple(a.name for a in attrs.fields(cast(Any, cls)))
    saved = {}
    for name in names:
        value = getattr(state, name)
        saved[name] = value if type(value) in _ATOMIC else copy.deepcopy(value)
    return saved


def restore(state: State, saved: dict[str, Any]) -> None:
    for name, value in saved.items():
        object.__setattr__(state, name, value)
