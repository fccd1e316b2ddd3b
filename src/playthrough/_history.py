"""A state's history: every event that touched it, in order, with what each changed.

Built from **one plan**, not one load per event: the state is planned from
blank (``since=0``: every event of its own is played) up to the position
asked, the states its coupled events need join the plan as in any load, and
the plan is played once while an observer copies the state's value just
before and just after each event it takes part in. So every "after" is exactly
what ``load(..., at=position)`` gives, and personal fields of a forgotten
subject read ``FORGOTTEN`` as in every load.

After an archive the log before the cut is gone from the store: with the
engine's ``archive=`` files the history's first part is played from them (up to
the cut), and the rest from the store, starting at the base snapshot the
archive left at the cut; without them the history starts at the cut
(``History.since``), from that base snapshot.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import TYPE_CHECKING, Any, NamedTuple

import attrs

from ._ids import label
from ._model import Event, State, StateKey
from ._serialization import converter, dumps
from ._steps import Read, Steps, call, run_reader
from ._stores import Store
from ._stores._base import archived_until_steps, check_archived

if TYPE_CHECKING:
    from ._archive import ArchiveReader
    from ._reconstitution import StateReconstitutor

__all__ = ["Change", "History", "HistoryEntry", "state_history"]


@attrs.frozen
class Change:
    """One field an event changed (``address.city`` for a nested attrs value)."""

    field: str
    before: Any
    after: Any


@attrs.frozen
class HistoryEntry:
    """One event that touched the state, and the fields it changed there."""

    position: int
    fired_at: datetime | None
    type: str
    metadata: dict[str, Any] | None
    caused_by: int | None
    correlation: str | None
    changes: tuple[Change, ...]
    event: Event = attrs.field(repr=False)
    #: The state's whole value just after the event (what ``load(..., at=position)`` gives).
    value: dict[str, Any] = attrs.field(repr=False, factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "position": self.position,
            "fired_at": self.fired_at.isoformat() if self.fired_at else None,
            "type": self.type,
            "metadata": self.metadata,
            "caused_by": self.caused_by,
            "correlation": self.correlation,
            "data": converter.unstructure(self.event),
            "changes": [
                {"field": c.field, "before": c.before, "after": c.after} for c in self.changes
            ],
        }


@attrs.frozen
class History:
    """``engine.log.history``'s answer: the state's events up to ``at``, oldest first."""

    key: StateKey
    at: int
    #: 0, or the archive cut when the events before it could not be read (no archive files):
    #: the history then starts from the state's base snapshot there (``start``).
    since: int
    start: dict[str, Any]
    entries: tuple[HistoryEntry, ...]
    value: dict[str, Any]

    def __iter__(self) -> Iterator[HistoryEntry]:
        return iter(self.entries)

    def __len__(self) -> int:
        return len(self.entries)

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": self.key.type,
            "label": label(self.key),
            "at": self.at,
            "since": self.since,
            "start": self.start,
            "value": self.value,
            "events": [e.to_dict() for e in self.entries],
        }

    def __str__(self) -> str:
        lines = [f"history of {label(self.key)}: {len(self.entries)} event(s) up to {self.at}"]
        if self.since:
            lines.append(
                f"  (positions 1..{self.since} are archived and no archive file was given: "
                f"starting from the base snapshot {dumps(self.start)})"
            )
        for e in self.entries:
            when = e.fired_at.isoformat(timespec="seconds") if e.fired_at else "-"
            line = f"#{e.position:<6} {when}  {e.type}"
            if e.caused_by is not None:
                line += f"  caused by #{e.caused_by}"
            if e.metadata:
                line += f"  {dumps(e.metadata)}"
            lines.append(line)
            if not e.changes:
                lines.append("         (no field changed)")
            for c in e.changes:
                lines.append(f"         {c.field}: {_short(c.before)} -> {_short(c.after)}")
        return "\n".join(lines)


def _short(value: Any) -> str:
    text = dumps(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _flatten(value: Any, prefix: str, out: dict[str, Any]) -> None:
    if isinstance(value, dict) and value and all(isinstance(k, str) for k in value):
        for k, v in value.items():
            _flatten(v, f"{prefix}.{k}" if prefix else k, out)
    else:
        out[prefix] = value


def changes(before: dict[str, Any], after: dict[str, Any]) -> tuple[Change, ...]:
    """Field-by-field differences, nested objects by dotted path, in field order."""
    flat_before: dict[str, Any] = {}
    flat_after: dict[str, Any] = {}
    _flatten(before, "", flat_before)
    _flatten(after, "", flat_after)
    names = list(dict.fromkeys([*flat_before, *flat_after]))
    missing = object()
    out = []
    for name in names:
        a = flat_before.get(name, missing)
        b = flat_after.get(name, missing)
        if a is missing or b is missing or a != b or type(a) is not type(b):
            out.append(Change(name, None if a is missing else a, None if b is missing else b))
    return tuple(out)


class _Recorder:
    """The plan's observer: copies the state's value around each event it takes part in."""

    def __init__(self, key: StateKey) -> None:
        self.key = key
        self.entries: list[HistoryEntry] = []
        self.first: dict[str, Any] | None = None
        self._before: dict[str, Any] = {}

    def before(
        self, event: Event, position: int, part: tuple[StateKey, ...], states: dict[StateKey, State]
    ) -> None:
        if self.key in part:
            self._before = converter.unstructure(states[self.key])
            if self.first is None:
                self.first = self._before

    def after(
        self, event: Event, position: int, part: tuple[StateKey, ...], states: dict[StateKey, State]
    ) -> None:
        if self.key not in part:
            return
        value = converter.unstructure(states[self.key])
        self.entries.append(
            HistoryEntry(
                position=position,
                fired_at=event.fired_at,
                type=type(event)._pt_type_name,
                metadata=event.metadata or None,
                caused_by=event.caused_by,
                correlation=event.correlation,
                changes=changes(self._before, value),
                event=event,
                value=value,
            )
        )


def _walk(
    reconstitutor: StateReconstitutor, key: StateKey, since: int, at: int
) -> Steps[tuple[_Recorder, dict[str, Any]]]:
    recorder = _Recorder(key)
    states, _ = yield from reconstitutor.reconstitute_steps(
        [key], at, since=since, observer=recorder
    )
    return recorder, converter.unstructure(states[key])


class _Recent(NamedTuple):
    """What the store's own log says of a history (the archive, if any, is read after)."""

    at: int
    cut: int
    since: int
    entries: list[HistoryEntry]
    start: dict[str, Any]
    value: dict[str, Any]


def _recent_steps(
    reconstitutor: StateReconstitutor, key: StateKey, at: int | None, archived: bool
) -> Steps[_Recent]:
    entries: list[HistoryEntry] = []
    start: dict[str, Any] = {}
    value: dict[str, Any] = {}
    head = yield call("head")
    if at is None:
        at = head
    elif isinstance(at, bool) or not isinstance(at, int) or not 0 <= at <= head:
        raise ValueError(f"position {at!r} is outside the log (0..{head})")
    cut = yield from archived_until_steps()
    since = cut if cut and not archived else 0
    if since and at < cut:
        check_archived(cut, at, f"the history of {label(key)} as of {at}")
    if not cut or at > cut or since:
        recent, value = yield from _walk(reconstitutor, key, cut, at)
        entries = recent.entries
        start = recent.first if recent.first is not None else value
    return _Recent(at, cut, since, entries, start, value)


def history_steps(
    reconstitutor: StateReconstitutor, key: StateKey, at: int | None = None
) -> Steps[History]:
    """The history of ``key`` up to ``at`` from the store alone, in one read (the async
    engine's, which has no archive files)."""
    r = yield Read(_recent_steps(reconstitutor, key, at, False))
    return History(key, r.at, r.since, r.start, tuple(r.entries), r.value)


def state_history(
    store: Store,
    reconstitutor: StateReconstitutor,
    archive: ArchiveReader | None,
    key: StateKey,
    at: int | None = None,
) -> History:
    """The history of ``key`` up to ``at`` (default: the head), see the module doc;
    ``archive``: the engine's ``archive=`` files, if any."""
    with store.reader() as reader:
        r = run_reader(_recent_steps(reconstitutor, key, at, archive is not None), reader)
    at, cut, since, entries, start, value = r
    if cut and archive is not None:
        with archive.store(cut).reader() as archived:
            old, old_value = run_reader(_walk(reconstitutor, key, 0, min(at, cut)), archived)
        start = old.first if old.first is not None else old_value
        if at > cut:
            entries = old.entries + entries
        else:
            entries, value = old.entries, old_value
    return History(key, at, since, start, tuple(entries), value)
