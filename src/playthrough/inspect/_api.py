"""What the inspector shows, as JSON-able data: one function per API resource.

Framework-free (the Starlette app in ``_app`` only routes to these), so every
answer and every refusal is testable without a server. Bad input raises
:class:`ApiError` with a 4xx status and a message naming the problem; the app
turns it into ``{"error": ...}``. Nothing here writes to the store: states are
read with ``load(..., at=head)`` (no heads-value write-back), plans with
``explain`` and histories with ``history``.

Personal data: a personal field of an event (``Personal[str]``, see
``engine.admin.forget``) or of a state reads ``[personal]`` unless the inspector was
started with ``show_personal``; a forgotten subject's fields read
``[forgotten]`` whatever the setting.
"""

from __future__ import annotations

import typing
from collections.abc import Callable, Mapping
from typing import Any

import attrs

from .._coupling import coupling_graph
from .._engine import Engine
from .._errors import (
    ArchivedRangeError,
    DecodeError,
    NotFoundError,
    PlaythroughError,
    UnknownTypeError,
)
from .._ids import label, parse_state_id, readable_id
from .._model import Event, SingletonState, State, StateKey, key_of, registry
from .._personal import FORGOTTEN, PERSONAL
from .._scheduling import ScheduledEvent
from .._serialization import converter

__all__ = ["PERSONAL_MASK", "Api", "ApiError"]

PERSONAL_MASK = "[personal]"
MAX_LIMIT = 1000


class ApiError(Exception):
    """A request the inspector refuses: ``status`` (4xx) and a message naming the problem."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _personal_fields(cls: type) -> tuple[str, ...]:
    """Fields marked personal (``Personal[...]`` or ``metadata={"personal": True}``)."""
    try:
        fields = attrs.fields(typing.cast(Any, cls))
        hints = typing.get_type_hints(cls, include_extras=True)
    except Exception:  # noqa: BLE001 - not an attrs class, or unresolvable hints
        return ()
    out = []
    for a in fields:
        hint = hints.get(a.name)
        if a.metadata.get("personal") or (
            typing.get_origin(hint) is typing.Annotated and PERSONAL in typing.get_args(hint)[1:]
        ):
            out.append(a.name)
    return tuple(out)


def _int_param(params: Mapping[str, str], name: str, default: int, lo: int, hi: int) -> int:
    text = params.get(name)
    if text is None or text == "":
        return default
    try:
        value = int(text)
    except ValueError:
        raise ApiError(400, f"{name} must be an integer, not {text!r}") from None
    if not lo <= value <= hi:
        raise ApiError(400, f"{name} must be between {lo} and {hi}, not {value}")
    return value


class Api:
    """The inspector's answers over one engine factory (one short engine per request)."""

    def __init__(
        self,
        engine: Callable[[], Engine],
        *,
        show_personal: bool = False,
        modules: tuple[str, ...] = (),
    ) -> None:
        self._engine = engine
        self.show_personal = show_personal
        self.modules = modules

    # -------------------------------------------------------------- names and masks

    def state_class(self, name: str) -> type[State]:
        if name in registry.states:
            return registry.states[name]
        matches = list(dict.fromkeys(c for c in registry.states.values() if c.__name__ == name))
        if len(matches) == 1:
            return matches[0]
        known = ", ".join(sorted(n for n, c in registry.states.items() if c is not SingletonState))
        known = known or "none (start it with --app MODULE)"
        if matches:
            names = ", ".join(sorted(c._pt_type_name for c in matches))
            raise ApiError(400, f"{name!r} names several state types: {names}")
        raise ApiError(404, f"no state type {name!r}; known: {known}")

    def event_type(self, name: str) -> str:
        if name in registry.events:
            return registry.events[name]._pt_type_name
        matches = list(dict.fromkeys(c for c in registry.events.values() if c.__name__ == name))
        if len(matches) == 1:
            return matches[0]._pt_type_name
        if matches:
            names = ", ".join(sorted(c._pt_type_name for c in matches))
            raise ApiError(400, f"{name!r} names several event types: {names}")
        known = ", ".join(sorted(registry.events)) or "none (start it with --app MODULE)"
        raise ApiError(400, f"no event type {name!r}; known: {known}")

    def key(self, type_name: str, state_id: str | None) -> tuple[type[State], StateKey]:
        cls = self.state_class(type_name)
        if state_id is None and not issubclass(cls, SingletonState):
            raise ApiError(400, f"{cls._pt_type_name} needs an id: /states/TYPE/ID")
        try:
            value = parse_state_id(cls, state_id)
        except ValueError as exc:
            raise ApiError(400, str(exc)) from None
        return cls, key_of(cls, value)

    def _mask(self, cls: type, data: dict[str, Any]) -> dict[str, Any]:
        for name in _personal_fields(cls):
            if name in data and data[name] != FORGOTTEN and not self.show_personal:
                data[name] = PERSONAL_MASK
        return data

    def event_dict(self, event: Event) -> dict[str, Any]:
        cls = type(event)
        return {
            "position": event.id,
            "type": cls._pt_type_name,
            "fired_at": event.fired_at.isoformat() if event.fired_at else None,
            "caused_by": event.caused_by,
            "correlation": event.correlation,
            "metadata": event.metadata or None,
            "data": self._mask(cls, converter.unstructure(event)),
        }

    # -------------------------------------------------------------- resources

    def events(self, params: Mapping[str, str], types: list[str]) -> dict[str, Any]:
        allowed = {"after", "limit", "type", "state", "correlation"}
        unknown = sorted(set(params) - allowed)
        if unknown:
            raise ApiError(400, f"unknown parameter(s) {unknown}; use {sorted(allowed)}")
        after = _int_param(params, "after", 0, 0, 2**62)
        limit = _int_param(params, "limit", 50, 1, MAX_LIMIT)
        names = [self.event_type(t) for t in types if t]
        state = None
        text = params.get("state")
        if text:
            type_name, sep, ident = text.partition(":")
            if not sep or not type_name:
                raise ApiError(
                    400, f"state must be TYPE:ID (or TYPE: for a singleton), not {text!r}"
                )
            cls, _ = self.key(type_name, ident or None)
            state = (cls, parse_state_id(cls, ident or None))
        correlation = params.get("correlation") or None
        with self._engine() as engine:
            head = engine.head()
            found = [
                self.event_dict(e)
                for e in engine.log.events(
                    after=after,
                    types=names or None,
                    state=state,
                    correlation=correlation,
                    limit=limit,
                )
            ]
        more = len(found) == limit and found[-1]["position"] < head
        return {
            "events": found,
            "head": head,
            "next_after": found[-1]["position"] if more else None,
        }

    def event(self, position_text: str) -> dict[str, Any]:
        try:
            position = int(position_text)
        except ValueError:
            raise ApiError(400, f"an event position is an integer, not {position_text!r}") from None
        with self._engine() as engine:
            head = engine.head()
            if not 1 <= position <= head:
                raise ApiError(404, f"no event at position {position} (the log holds 1..{head})")
            event = engine.log.event(position)
            causes = [self.event_dict(e) for e in engine.log.causes(position)]
            effects = [self.event_dict(e) for e in engine.log.effects(position)]
        out = self.event_dict(event)
        out["causes"] = causes
        out["effects"] = _tree(position, effects)
        return out

    def state(self, type_name: str, state_id: str | None) -> dict[str, Any]:
        cls, key = self.key(type_name, state_id)
        with self._engine() as engine:
            info = engine.states.info(cls, _id(key))  # NotFoundError: never touched
            value = engine.load(cls, _id(key), at=engine.head())
        completed = info.completed
        return {
            "type": key.type,
            "id": readable_id(key) or None,
            "label": label(key),
            "value": self._mask(cls, converter.unstructure(value)),
            "info": {
                "created_position": info.created_position,
                "created_at": None if info.created_at is None else info.created_at.isoformat(),
                "last_position": info.last_position,
                "last_at": None if info.last_at is None else info.last_at.isoformat(),
                "events": info.events,
                "archived_until": info.archived_until,
                "snapshot_position": info.snapshot_position,
                "value_position": info.value_position,
            },
            "completed": None
            if completed is None
            else {"position": completed.position, "event_type": completed.event_type},
            "can_complete": cls._pt_completable,
        }

    def history(self, type_name: str, state_id: str | None) -> dict[str, Any]:
        cls, key = self.key(type_name, state_id)
        with self._engine() as engine:
            engine.states.info(cls, _id(key))
            found = engine.log.history(cls, _id(key))
        data = found.to_dict()
        data["id"] = readable_id(key) or None
        data["start"] = self._mask(cls, data["start"])
        data["value"] = self._mask(cls, data["value"])
        personal = set(_personal_fields(cls))
        for entry, item in zip(found.entries, data["events"], strict=True):
            item["data"] = self._mask(type(entry.event), item["data"])
            for change in item["changes"]:
                if change["field"].split(".")[0] in personal and not self.show_personal:
                    for side in ("before", "after"):
                        if change[side] not in (FORGOTTEN, "", None):
                            change[side] = PERSONAL_MASK
        return data

    def plan(self, type_name: str, state_id: str | None, at_text: str | None) -> dict[str, Any]:
        cls, key = self.key(type_name, state_id)
        with self._engine() as engine:
            at = None
            if at_text:
                at = _int_param({"at": at_text}, "at", 0, 0, engine.head())
            plan = engine.explain(cls, _id(key), at=at)
            firsts = sorted({min(p) for p in plan.edges.values()})
            with engine.store.reader() as reader:
                names = {row.position: row.type for row in reader.events(firsts)}
        data = plan.to_dict(names)
        data["text"] = plan.explain()
        return data

    def followers(self) -> dict[str, Any]:
        with self._engine() as engine:
            rows = engine.followers()
        return {
            "followers": [
                {
                    "name": f.name,
                    "position": f.position,
                    "lag": f.lag,
                    "updated_at": f.updated_at.isoformat(),
                }
                for f in rows
            ]
        }

    def schedule(self) -> dict[str, Any]:
        with self._engine() as engine, engine.store.reader() as reader:
            pending = [ScheduledEvent.from_record(r) for r in reader.schedules("pending")]
            failed = [ScheduledEvent.from_record(r) for r in reader.schedules("failed")]

        def row(r: ScheduledEvent) -> dict[str, Any]:
            return {
                "id": r.id,
                "type": r.event_type,
                "due_at": r.due_at.isoformat(),
                "status": r.status,
                "error": r.error,
                "created_at": r.created_at.isoformat(),
            }

        return {"pending": [row(r) for r in pending], "failed": [row(r) for r in failed]}

    def graph(self) -> dict[str, Any]:
        return coupling_graph(modules=self.modules or None).to_dict()

    def verify(self) -> dict[str, Any]:
        with self._engine() as engine:
            report = engine.admin.verify(subprocess_replay=False, time_budget=30.0)
        return {"ok": report.ok, "text": str(report)}


def _id(key: StateKey) -> Any:
    from .._model import decode_id

    return decode_id(key.id)


def _tree(root: int, effects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The effects (in position order) as a tree under ``root``: each with its ``effects``."""
    children: dict[int, list[dict[str, Any]]] = {}
    for e in effects:
        children.setdefault(e["caused_by"], []).append(e)

    def grow(position: int) -> list[dict[str, Any]]:
        out = []
        for e in children.get(position, []):
            out.append({**e, "effects": grow(e["position"])})
        return out

    return grow(root)


#: Errors a read can raise that are the request's fault or the store's state, with status.
REFUSALS: tuple[tuple[type[Exception], int], ...] = (
    (NotFoundError, 404),
    (ArchivedRangeError, 409),
    (UnknownTypeError, 409),
    (DecodeError, 409),
    (PlaythroughError, 409),
)
