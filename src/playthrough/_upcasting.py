"""Schema evolution: class versions, upcasters, aliases, strict decoding, snapshot fingerprints.

A class declares ``version=N`` (default 1); every event row and snapshot row
stores the version of the class that wrote it. Reading a row of version
``k < N`` runs the class's ``upcast_vk``, ``upcast_v(k+1)``, ... on the JSON
payload (a dict) before decoding. Decoding is strict: a payload key the class
has no field for is an :class:`UnknownKeysError` naming the type, the position
and the keys; a missing key takes the field's default.

Events must be readable forever, so an Event of version N needs every step
``upcast_v1 .. upcast_v(N-1)`` (checked when the class is defined). A snapshot
is only a shortcut: a State's chain may start anywhere (or be empty), and a
snapshot that cannot be brought to the current version, whose recorded
*fingerprint* (a hash of the class's field names and types) differs while the
version is the same, or whose record of the event classes that made it differs
from today's (see ``value_mark``), is not used: the planner plans as if it did
not exist.

The hot path (a row at the class's current version) does not come here: the
reconstitutor compares one int and decodes with the cached cattrs hook.
"""

from __future__ import annotations

import hashlib
import json
import json.scanner
from collections.abc import Collection
from typing import Any, cast

import cattrs

from ._errors import DecodeError, UnknownKeysError
from ._model import Event, State, StateKey, decode_id, registry, touched_keys
from ._records import SnapshotRecord, StoredEvent
from ._serialization import converter
from ._slots import mark_state
from ._versions import fingerprint, shape, upcasters

_scan = json.scanner.make_scanner(cast(Any, json.JSONDecoder()))

# --------------------------------------------------------------------------- reading


def _upcast(cls: type, data: Any, stored: int, current: int, what: str) -> Any:
    for k in range(stored, current):
        step = getattr(cls, f"upcast_v{k}", None)
        if step is None:
            raise DecodeError(
                f"cannot decode {what}: it is version {stored} and {cls.__qualname__} "
                f"(version {current}) has no upcast_v{k}"
            )
        try:
            data = step(data)
        except Exception as exc:
            raise DecodeError(
                f"cannot decode {what}: {cls.__qualname__}.upcast_v{k} raised {exc!r} "
                f"on the version-{k} payload"
            ) from exc
        if not isinstance(data, dict):
            raise DecodeError(
                f"cannot decode {what}: {cls.__qualname__}.upcast_v{k} returned "
                f"{type(data).__name__}, not a dict"
            )
    return data


def _extra_keys(exc: BaseException, path: str = "") -> list[str]:
    """The unknown keys cattrs found, as dotted paths (``inner.y`` for a nested class)."""
    out: list[str] = []
    if isinstance(exc, cattrs.ForbiddenExtraKeysError):
        out.extend(path + key for key in sorted(exc.extra_fields))
    elif isinstance(exc, BaseExceptionGroup):
        for sub in exc.exceptions:
            note = next((n for n in getattr(sub, "__notes__", ()) if " @ " in n), "")
            where = note.rpartition(" @ ")[2]
            step = where.split(" ", 1)[1] if " " in where else ""
            out.extend(_extra_keys(sub, f"{path}{step}." if step else path))
    return out


def _structure(cls: type, data: Any, type_name: str, position: int, what: str, version: int) -> Any:
    try:
        return converter.structure(data, cls)
    except Exception as exc:
        extra = _extra_keys(exc)
        if extra:
            keys = ", ".join(repr(k) for k in extra)
            current: int = getattr(cls, "_pt_version", 1)
            raise UnknownKeysError(
                f"cannot decode {what}: unknown key(s) {keys}: {cls.__qualname__} "
                f"(version {current}) has no such field (stored payload version {version}). "
                f"A field was renamed or removed: bump to version={current + 1} and add "
                f"upcast_v{current} mapping the old payload to the new fields",
                type_name=type_name,
                position=position,
                keys=tuple(extra),
            ) from exc
        detail: Any = exc
        if isinstance(exc, cattrs.BaseValidationError):
            detail = "; ".join(cattrs.transform_error(exc))
        raise DecodeError(f"cannot decode {what}: {detail}") from exc


def load_json(text: str, what: str) -> Any:
    """A stored payload parsed; DecodeError when it is not JSON or nests too deeply to parse."""
    try:
        return json.loads(text)
    except ValueError as exc:
        raise DecodeError(f"cannot decode {what}: the stored payload is not JSON ({exc})") from exc
    except RecursionError:
        raise DecodeError(
            f"cannot decode {what}: the stored payload nests arrays or objects too deeply "
            "to be read"
        ) from None


def read_event(
    stored: StoredEvent, linked: Collection[StateKey] | None = None
) -> tuple[Event, bool]:
    """Decode a stored event on the slow path: upcast, strict, errors naming type and position.

    Returns the event and whether its payload was upcast (its stored JSON is
    then not the current encoding).
    """
    where = f" at position {stored.position}"
    cls = registry.event_class(stored.type, where)
    what = f"event {stored.type!r}{where}"
    data = load_json(stored.data, what)
    current = cls._pt_version
    version = stored.version
    if version > current:
        raise DecodeError(
            f"cannot decode {what}: it is version {version}, written by newer code; "
            f"{cls.__qualname__} here is version {current}"
        )
    if version < current:
        data = _upcast(cls, data, version, current, what)
    event: Event = _structure(cls, data, stored.type, stored.position, what, version)
    if linked is not None and version != current:
        extra = [k for k in touched_keys(event) if k not in linked]
        if extra:
            raise DecodeError(
                f"cannot decode {what}: upcast from version {version}, it touches "
                f"{', '.join(map(str, extra[:5]))}, which it did not touch when it was "
                "written; the store links each event to its states once, at commit, so "
                "loads of those states would never see it. An upcaster must not make an "
                "old event touch other states (see docs/schema-evolution.md, split a state)"
            )
    return event, version != current


# --------------------------------------------------------------------------- snapshots
#
# A snapshot or heads value is a cache of "the events up to P, applied by the
# code that wrote it". Its *mark* records that code: the state class's
# fingerprint, then a fingerprint over the type name, version and shape of
# every event class that can touch the state type ("<state>:<events>"). A value
# whose mark differs from the current one was made by other code: loads plan as
# if it were absent, and ``playthrough snapshot`` rebuilds it from the log.

_MARKS: dict[type, tuple[int, str]] = {}


def events_fingerprint(state_type: str) -> str:
    """A short hash over the event classes that can touch ``state_type``: each one's
    type name, version and field shape (an upcaster or a field change moves it)."""
    parts = sorted(
        f"{cls._pt_type_name}@{cls._pt_version}:{shape(cls)}"
        for cls in set(registry.events.values())
        if any(f.state_class._pt_type_name == state_type for f in cls._pt_spec.fields)
        or state_type in {k.type for k in cls._pt_spec.singleton_keys}
    )
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


def value_mark(cls: type[State]) -> str:
    """The mark a snapshot or heads value of ``cls`` is written with, and must carry to
    be used: the state's fingerprint and the fingerprint of the events that touch it.

    Computed once per set of registered classes (a class defined later, in a module
    imported late, moves it: import every event module before serving loads).
    """
    cached = _MARKS.get(cls)
    if cached is not None and cached[0] == registry.generation:
        return cached[1]
    mark = f"{fingerprint(cls)}:{events_fingerprint(cls._pt_type_name)}"
    _MARKS[cls] = (registry.generation, mark)
    return mark


def current_value_shape(cls: type[State]) -> tuple[int, str]:
    """The version and mark of the values this code writes for ``cls``."""
    return cls._pt_version, value_mark(cls)


def snapshot_problem(record: SnapshotRecord) -> str | None:
    """Why a load must not use this snapshot, or None when it can.

    An unknown state type is not a reason here: decoding it raises
    UnknownTypeError, loudly.
    """
    cls = registry.states.get(record.key.type)
    if cls is None:
        return None
    current = cls._pt_version
    mark = record.fingerprint
    if record.version == current and mark == value_mark(cls):
        return None
    if mark is None:
        return (
            "written without a class fingerprint (by an older playthrough): its shape "
            "cannot be checked"
        )
    if ":" not in mark:
        return (
            "written without a record of the event classes that made it (by an older "
            "playthrough): whether today's events would give the same value cannot be checked"
        )
    if mark.partition(":")[2] != value_mark(cls).partition(":")[2]:
        return (
            f"the event classes that can touch {cls.__qualname__} changed since it was "
            "written (a version, an upcaster or a field): the value was made by other "
            "code, so it is rebuilt from the log"
        )
    if record.version == current:
        return (
            f"the fields of {cls.__qualname__} changed since it was written, without a "
            f"version bump (still version {current}); bump version= to mark the change"
        )
    if record.version > current:
        return (
            f"version {record.version}, written by newer code ({cls.__qualname__} here is "
            f"version {current})"
        )
    steps = upcasters(cls)
    missing = [k for k in range(record.version, current) if k not in steps]
    if missing:
        return (
            f"version {record.version}, and {cls.__qualname__} (version {current}) has no "
            f"upcast_v{missing[0]}"
        )
    return None


def read_snapshot(record: SnapshotRecord) -> State:
    """Decode a snapshot, upcasting an older version (only call it on a usable record)."""
    cls = registry.states.get(record.key.type)
    if cls is not None and record.version == cls._pt_version:
        # Hot path (replays restart states from their sets): the same parse and
        # structure as below, without building the error messages first; any failure
        # takes the slow path, which raises the error naming the snapshot.
        try:
            data, end = _scan(record.data, 0)  # json.loads without its three Python calls
            if end != len(record.data):
                raise ValueError("not one JSON value")
            state: State = converter.structure(data, cls)
        except Exception:  # noqa: BLE001 - decoded again below for the clear error
            pass
        else:
            mark_state(state, id=decode_id(record.key.id), last_event_id=record.last_event_id)
            return state
    return _read_snapshot(record)


def _read_snapshot(record: SnapshotRecord) -> State:
    where = f" (snapshot at position {record.position})"
    cls = registry.state_class(record.key.type, where)
    what = f"snapshot of {record.key} at position {record.position}"
    data = load_json(record.data, what)
    if record.version < cls._pt_version:
        data = _upcast(cls, data, record.version, cls._pt_version, what)
    elif record.version > cls._pt_version:
        raise DecodeError(
            f"cannot decode {what}: it is version {record.version}, written by newer code; "
            f"{cls.__qualname__} here is version {cls._pt_version}"
        )
    state: State = _structure(cls, data, record.key.type, record.position, what, record.version)
    mark_state(state, id=decode_id(record.key.id), last_event_id=record.last_event_id)
    return state


def snapshot_record(key: Any, position: int, state: State, data: str) -> SnapshotRecord:
    """The row for a snapshot of ``state``, at its class's current version and fingerprint."""
    cls = type(state)
    version, mark = current_value_shape(cls)
    return SnapshotRecord(key, position, state.last_event_id, data, version, mark)
