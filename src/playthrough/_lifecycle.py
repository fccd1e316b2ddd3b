"""Completed states: refusing events that touch them, and recording who completed them.

A state class declares how it is complete (``State.complete_when`` or
``State.is_complete``). The engine asks :class:`Completions` three things:

- before loading states to fire an event: are any of them recorded complete in
  the store (``pt_completed``)? Then the event is refused without rehydrating
  them (one indexed read, only for state types that can complete);
- before validating: is any touched live state complete? (the authority: it
  also catches states completed before the table existed);
- after applying: which touched states did the event complete or reopen? That
  goes into the commit, in the append's transaction, and completed states are
  dropped from the identity map once the commit is done.

Completion never changes how events are played: loads, time travel and full
replays apply every event in the log, so a completed state reconstitutes like
any other; the table is an index of the log's outcome, not a second truth.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from ._errors import StateCompleted
from ._model import Event, State, StateKey, registry
from ._steps import Read, Steps, read_one
from ._stores import Store
from ._stores._base import Completion


def completable(key: StateKey) -> bool:
    cls = registry.states.get(key.type)
    return cls is not None and cls._pt_completable


class Completions:
    """Completions and reopenings made by an engine's pending events."""

    def __init__(self, store: Store) -> None:
        self._store = store
        # state -> the pending event that completed it (None: an event reopened it)
        self.pending: dict[StateKey, Event | None] = {}
        # states completed by this commit, dropped from the identity map at its end
        self.evict: dict[StateKey, None] = {}

    def clear(self) -> None:
        self.pending.clear()

    # ------------------------------------------------------------------ refusing

    def refuse_stored(self, event: Event, keys: Sequence[StateKey]) -> Steps[None]:
        """Refuse ``event`` if the store records one of these (not yet loaded) states complete."""
        wanted = [k for k in keys if completable(k) and k not in self.pending]
        if not wanted:
            return
        found = yield Read(read_one("completions", wanted))
        for key in wanted:
            if key in found:
                raise self._error(event, key, found[key])

    def refuse_live(self, event: Event, states: Mapping[StateKey, State]) -> dict[StateKey, bool]:
        """Whether each completable touched state is complete now; refuse the event if one is
        (unless its class allows touching completed states)."""
        was = {k: s.is_complete() for k, s in states.items() if type(s)._pt_completable}
        if not type(event).touches_completed:
            for key, done in was.items():
                if done:
                    raise self._error(event, key, self._who(key))
        return was

    def _who(self, key: StateKey) -> Completion | Event | None:
        by = self.pending.get(key)
        if by is not None:
            return by
        with self._store.reader() as reader:
            return reader.completions([key]).get(key)

    def _error(self, event: Event, key: StateKey, by: Completion | Event | None) -> StateCompleted:
        name = type(event)._pt_type_name
        if isinstance(by, Completion):
            how = f"by {by.event_type} at position {by.position}"
            position, by_type = by.position, by.event_type
        elif isinstance(by, Event):
            by_type = type(by)._pt_type_name
            how, position = f"by the pending {by_type}", None
        else:
            how, position, by_type = "(the store has no record of the completing event)", None, None
        return StateCompleted(
            f"{name} touches {key}, which was completed {how}; an event class that may "
            f"touch completed states sets touches_completed = True",
            state=key,
            event_type=name,
            completed_by=position,
            completed_by_type=by_type,
        )

    # ------------------------------------------------------------------ recording

    def after_apply(
        self, event: Event, states: Mapping[StateKey, State], was: Mapping[StateKey, bool]
    ) -> None:
        for key, before in was.items():
            now = states[key].is_complete()
            if now and not before:
                self.pending[key] = event
            elif before and not now:
                self.pending[key] = None

    def has_queued(self) -> bool:
        return False  # completions ride a commit of events, never one of their own

    def mark(self) -> dict[StateKey, Event | None]:
        return dict(self.pending)

    def rollback(self, mark: dict[StateKey, Event | None]) -> None:
        self.pending.clear()
        self.pending.update(mark)

    def take(self, batch: Iterable[Event]) -> dict[str, tuple[Any, ...]]:
        """The batch's completions (state, index of the completing event) and reopenings."""
        if not self.pending:
            return {}
        index = {id(e): n for n, e in enumerate(batch)}
        completed = tuple(
            (k, index[id(e)]) for k, e in self.pending.items() if e is not None and id(e) in index
        )
        reopened = tuple(k for k, e in self.pending.items() if e is None)
        for key, _ in completed:
            self.evict[key] = None
        self.pending.clear()
        return {"completed": completed, "reopened": reopened}


def completion_mismatches(store: Store, encodings: Mapping[StateKey, str]) -> list[str]:
    """Where ``pt_completed`` disagrees with the log (``verify``): states complete in the
    log's replay (``encodings``: every state's JSON at the head) without a row, and rows
    for states the replay says are not complete."""
    from ._serialization import decode

    wanted: dict[StateKey, bool] = {}
    for key, text in encodings.items():
        cls = registry.states.get(key.type)
        if cls is not None and cls._pt_completable:
            wanted[key] = decode(cls, text, f"state {key}").is_complete()
    if not wanted:
        return []
    with store.reader() as reader:
        rows = reader.completions(wanted)
    problems = []
    for key, complete in wanted.items():
        row = rows.get(key)
        if complete and row is None:
            problems.append(
                f"completed states: {key} is complete as the log replays it, but pt_completed "
                "has no row for it (events touching it would not be refused before loading it)"
            )
        elif row is not None and not complete:
            problems.append(
                f"completed states: pt_completed records {key} completed by {row.event_type} "
                f"at position {row.position}, but as the log replays it, it is not complete "
                "(events touching it are refused wrongly; did its completion rule change?)"
            )
    return problems
