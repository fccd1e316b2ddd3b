"""JSON (de)serialisation of events and states through cattrs.

cattrs turns attrs instances into plain dicts and back using the field types,
so nested attrs classes, lists, dicts, enums and optional fields work without
per-class code. Only JSON is ever written (never pickle), and the text is
canonical (sorted keys, no spaces) so two equal states give equal bytes.
"""

from __future__ import annotations

import collections.abc
import json
import math
import typing
import uuid
from collections.abc import Callable, Collection, Iterable, Mapping
from datetime import date, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, TypeVar, cast

import attrs
import cattrs
from cattrs.gen import make_dict_structure_fn

from ._canonical import dumps as dumps
from ._errors import DecodeError, DefinitionError, EventRejected, PlaythroughError
from ._model import Event, State, StateKey, decode_id, registry
from ._slots import fired_data, mark_decoded, mark_record, mark_state, mark_stored, set_data
from ._storable import needs_runtime_check

if TYPE_CHECKING:
    from ._records import SnapshotRecord, StoredEvent

T = TypeVar("T")

# Strict: a stored key the class has no field for is an error (a renamed field would
# otherwise decode as its default, silently); a missing key takes the field's default.
converter = cattrs.Converter(forbid_extra_keys=True)


# Strict scalars: cattrs would otherwise coerce (int(1.5) == 1, str(5) == "5"), which
# would let an event's live values differ silently from what its replays decode.
def _strict_int(value: Any, _: type) -> int:
    if type(value) is not int:
        raise TypeError(f"expected an int, got {type(value).__name__} {value!r}")
    return value


def _strict_float(value: Any, _: type) -> float:
    if type(value) not in (int, float):
        raise TypeError(f"expected a float, got {type(value).__name__} {value!r}")
    return float(value)


def _strict_str(value: Any, _: type) -> str:
    if type(value) is not str:
        raise TypeError(f"expected a str, got {type(value).__name__} {value!r}")
    return value


def _strict_bool(value: Any, _: type) -> bool:
    if type(value) is not bool:
        raise TypeError(f"expected a bool, got {type(value).__name__} {value!r}")
    return value


converter.register_structure_hook(int, _strict_int)
converter.register_structure_hook(float, _strict_float)
converter.register_structure_hook(str, _strict_str)
converter.register_structure_hook(bool, _strict_bool)
converter.register_unstructure_hook(datetime, lambda v: v.isoformat())
converter.register_structure_hook(datetime, lambda v, _: datetime.fromisoformat(v))
converter.register_unstructure_hook(date, lambda v: v.isoformat())
converter.register_structure_hook(date, lambda v, _: date.fromisoformat(v))
converter.register_unstructure_hook(uuid.UUID, str)
converter.register_structure_hook(uuid.UUID, lambda v, _: uuid.UUID(v))
converter.register_unstructure_hook(Decimal, str)
converter.register_structure_hook(Decimal, lambda v, _: Decimal(v))
# Sets have no order; a sorted list keeps canonical JSON stable across runs.
converter.register_unstructure_hook(set, lambda v: sorted(converter.unstructure(x) for x in v))
converter.register_unstructure_hook(
    frozenset, lambda v: sorted(converter.unstructure(x) for x in v)
)


def _is_set_type(t: Any) -> bool:
    return typing.get_origin(t) in (
        set,
        frozenset,
        collections.abc.Set,
        collections.abc.MutableSet,
    )


def _set_unstructure_hook(t: Any) -> Callable[[Any], list[Any]]:
    """A declared ``set[X]`` field: its items unstructured as X, sorted (as for bare sets)."""
    args = typing.get_args(t)
    item = converter.get_unstructure_hook(args[0]) if args else converter.unstructure
    return lambda v: sorted(item(x) for x in v)


converter.register_unstructure_hook_factory(_is_set_type, _set_unstructure_hook)


# JSON object keys are strings: ``{7: 1}`` is written ``{"7": 1}``. A dict with
# int keys decodes them back (only the canonical decimal text: "07" is refused).
def _int_key(key: Any) -> int:
    if type(key) is int:
        return key
    if type(key) is str:
        try:
            value = int(key)
        except ValueError:
            value = None
        if value is not None and str(value) == key:
            return value
    raise TypeError(f"expected an int dict key, got {type(key).__name__} {key!r}")


def _is_int_key_dict(t: Any) -> bool:
    origin = typing.get_origin(t)
    args = typing.get_args(t)
    return origin in (dict, collections.abc.Mapping, collections.abc.MutableMapping) and (
        len(args) == 2 and args[0] is int
    )


def _int_key_dict_hook(t: Any) -> Any:
    value_type = typing.get_args(t)[1]

    def structure(value: Any, _: type) -> dict[int, Any]:
        if not isinstance(value, dict):
            raise TypeError(f"expected an object, got {type(value).__name__}")
        hook = converter.get_structure_hook(value_type)
        return {_int_key(k): hook(v, value_type) for k, v in value.items()}

    return structure


converter.register_structure_hook_factory(_is_int_key_dict, _int_key_dict_hook)

# allow_nan=False: JSON has no infinity or NaN. Python would write ``Infinity``,
# which neither SQLite's nor PostgreSQL's JSON functions read (every filtered
# query of the type would fail), so such a value is refused where it is made.


#: How deep a value in an event may nest (lists, dicts, attrs classes), counted from
#: the field: reading a row much deeper exhausts Python's stack (a RecursionError in
#: replay and verify), so ``fire`` refuses it.
MAX_JSON_DEPTH = 200


def _depth_beyond(value: Any, limit: int) -> bool:
    """Whether ``value`` nests deeper than ``limit`` levels (iterative: any depth is safe)."""
    todo: list[tuple[Any, int]] = [(value, 1)]
    while todo:
        item, depth = todo.pop()
        if isinstance(item, (str, bytes, int, float)) or item is None:
            continue
        if isinstance(item, Mapping):
            children: Any = item.values()
        elif isinstance(item, (list, tuple, set, frozenset)):
            children = item
        elif attrs.has(type(item)):
            children = [getattr(item, a.name) for a in attrs.fields(type(item))]
        else:
            continue
        if depth > limit:
            return True
        todo.extend((child, depth + 1) for child in children)
    return False


def check_depth(event: Event, data: str | None) -> None:
    """Refuse an event with a field nesting deeper than MAX_JSON_DEPTH, naming the field.

    ``data`` is the event's JSON when it could be encoded: with no more brackets
    than the limit it cannot nest deeper, and nothing is walked (the common case).
    """
    if data is not None and data.count("[") + data.count("{") <= MAX_JSON_DEPTH:
        return
    for a in attrs.fields(cast(Any, type(event))):
        if _depth_beyond(getattr(event, a.name), MAX_JSON_DEPTH):
            raise PlaythroughError(
                f"{type(event).__qualname__}.{a.name} nests deeper than {MAX_JSON_DEPTH} "
                "levels (lists, dicts or classes inside each other), the most an event may "
                "hold: a row that deep could not be read back; flatten the value"
            )


def non_finite(value: Any, path: str = "") -> tuple[str, float] | None:
    """The dotted path and value of the first infinity or NaN in unstructured data."""
    if isinstance(value, float):
        return None if math.isfinite(value) else (path, value)
    if isinstance(value, dict):
        items: Iterable[tuple[Any, Any]] = value.items()
    elif isinstance(value, (list, tuple)):
        items = enumerate(value)
    else:
        return None
    for k, v in items:
        found = non_finite(v, f"{path}.{k}" if path else str(k))
        if found is not None:
            return found
    return None


def _non_finite_message(data: Any) -> str | None:
    found = non_finite(data)
    if found is None:
        return None
    return (
        f"field {found[0]!r} holds {found[1]!r}: stored values hold only finite floats "
        "(JSON has no infinity or NaN)"
    )


# ---------------------------------------------------------------- flat classes

#: Per class: its compiled encoder, or None when it has none (see ``_flat_encoder``).
_FLAT: dict[type, Callable[[Any], str | None] | None] = {}
_FLAT_TYPES = (int, str, bool)


def _flat_encoder(cls: type) -> Callable[[Any], str | None] | None:
    """An encoder writing, for a class whose fields are all declared ``int``, ``str`` or
    ``bool``, the bytes ``dumps(converter.unstructure(obj))`` writes, without building
    the dict or a JSON encoder: keys sorted, no spaces, strings through the ``json``
    module's own ``encode_basestring`` (``ensure_ascii=False``), ints as ``int.__repr__``
    (the C encoder's text), ``true``/``false``. It returns None for an object whose
    values are not of exactly those types (an int in a bool field, a float in an
    int field...): the caller then takes the general path, which also raises what
    that path raises. None for any other class (the general path always)."""
    try:
        fields = attrs.fields(cls)
        hints = typing.get_type_hints(cls, include_extras=True)
    except Exception:  # noqa: BLE001 - not an attrs class, unresolvable hints
        return None
    named = []
    for a in fields:
        t = hints.get(a.name)
        if not a.init or t not in _FLAT_TYPES or a.metadata.get("personal"):
            return None  # cattrs leaves init=False fields out; personal ones are sealed
        named.append((a.name, t))
    if not named:
        return None
    named.sort()
    lines = ["def encode(o, _s=_s, _r=_r):"]
    checks = []
    parts = []
    for n, (name, t) in enumerate(named):
        lines.append(f"    v{n} = o.{name}")
        checks.append(f"type(v{n}) is not {t.__name__}")
        key = ("{" if n == 0 else ",") + dumps(name) + ":"
        if t is str:
            value = f"_s(v{n})"
        elif t is int:
            value = f"_r(v{n})"
        else:
            value = f"('true' if v{n} else 'false')"
        parts.append(f"{key!r} + {value}")
    lines.append(f"    if {' or '.join(checks)}:")
    lines.append("        return None")
    lines.append(f"    return {' + '.join(parts)} + '}}'")
    space: dict[str, Any] = {"_s": json.encoder.encode_basestring, "_r": int.__repr__}
    exec("\n".join(lines), space)  # the text is built above, from field names only
    return cast(Callable[[Any], str | None], space["encode"])


def _flat(obj: Any) -> str | None:
    """``obj``'s JSON through its class's compiled encoder, or None (the general path)."""
    cls = type(obj)
    try:
        encode = _FLAT[cls]
    except KeyError:
        encode = _flat_encoder(cls)
        if encode is not None:  # first use: it must write what the general path writes
            try:
                same = encode(obj) in (None, dumps(converter.unstructure(obj)))
            except Exception:  # noqa: BLE001 - the general path raises it again, clearly
                same = False
            encode = encode if same else None
        _FLAT[cls] = encode
    if encode is None:
        return None
    try:
        return encode(obj)
    except ValueError:  # an int past the str conversion limit: the general path says so
        return None


def encode_event(event: Event) -> str:
    """The event's canonical JSON (cached once the event is fired: fired events are immutable).

    EventRejected (naming the field) for an infinity or NaN, TypeError for a value
    JSON cannot hold at all."""
    cached = fired_data(event)
    if cached is not None:
        return cached
    flat = _flat(event)
    if flat is not None:
        return flat
    data: Any = None
    try:
        data = converter.unstructure(event)
        return dumps(data)
    except RecursionError:
        check_depth(event, None)  # names the field that nests too deep
        raise
    except (TypeError, ValueError) as exc:
        problem = _non_finite_message(data)
        if problem is not None:
            raise EventRejected(
                f"cannot fire {type(event).__qualname__} ({type(event)._pt_type_name}): {problem}"
            ) from None
        raise TypeError(
            f"cannot encode {type(event).__qualname__} as JSON: {exc}; give its fields types "
            "playthrough can store (attrs classes, lists, dicts, str, int, float, bool, None, "
            "datetime, date, UUID, Decimal, enums)"
        ) from exc


def encode_state(state: State) -> str:
    flat = _flat(state)
    if flat is not None:
        return flat
    data: Any = None
    try:
        data = converter.unstructure(state)
        return dumps(data)
    except (TypeError, ValueError) as exc:  # e.g. an int past the str conversion limit
        key = f"{type(state)._pt_type_name}({state.id!r})"
        problem = _non_finite_message(data) or str(exc)
        raise PlaythroughError(f"cannot encode state {key} as JSON: {problem}") from exc


def _int_as_float(mine: object, read: object) -> bool:
    """An int in a float field reads back as the equal float: allowed (see ``_typecheck``)."""
    return type(mine) is int and type(read) is float and mine == read


def encode_state_checked(state: State, what: object) -> str:
    """The state's JSON for a snapshot, refused unless it reads back equal.

    ``what`` names the state in an error (its ``str``, built only then).

    Field types are checked at class definition (``_storable``); this catches
    what a type cannot promise (``object``/``Any`` fields, custom classes), so
    the library never writes a snapshot that would load as another value.
    """
    cls = type(state)
    try:
        data = encode_state(state)
    except PlaythroughError as exc:
        raise PlaythroughError(f"cannot store {what}: {exc}") from exc
    if not needs_runtime_check(cls):
        return data  # every field's type was checked when the class was defined
    try:
        back = decode(cls, data, str(what))
    except DecodeError as exc:
        raise PlaythroughError(f"cannot store {what}: it would not read back: {exc}") from exc
    for a in attrs.fields(cast(Any, cls)):
        mine, read = getattr(state, a.name), getattr(back, a.name)
        if (type(mine) is not type(read) or mine != read) and not _int_as_float(mine, read):
            raise PlaythroughError(
                f"cannot store {what}: field {a.name!r} would read back as {read!r} "
                f"({type(read).__name__}), not {mine!r} ({type(mine).__name__}); give it a "
                "type that JSON carries unchanged"
            )
    return data


def decode(cls: type[T], text: str | bytes | Any, what: str) -> T:
    try:
        data = json.loads(text) if isinstance(text, (str, bytes)) else text
        return converter.structure(data, cls)
    except Exception as exc:
        detail = exc
        if isinstance(exc, cattrs.BaseValidationError):
            detail = cattrs.transform_error(exc)  # type: ignore[assignment]
        raise DecodeError(f"cannot decode {what}: {detail}") from exc


def blank_state(cls: type[State], state_id: object) -> State:
    """A state no event has touched: every field at its default (the one place blanks are made)."""
    try:
        state = cls()
    except TypeError as exc:
        raise DefinitionError(
            f"{cls.__qualname__} cannot be created blank ({exc}); give every field a default"
        ) from exc
    mark_state(state, id=state_id, last_event_id=None)
    return state


def blank_for(key: StateKey) -> State:
    """The blank state a key names."""
    return blank_state(registry.state_class(key.type), decode_id(key.id))


def decode_event(stored: StoredEvent, linked: Collection[StateKey] | None = None) -> Event:
    """A stored event as an object, with its position, JSON, cause and time.

    Hot path: a row at its class's current version decodes with the cached hook.
    Anything else (an older version, an unknown type, a failure) takes the slow
    path in ``_upcasting``, which runs the upcasters and raises errors naming the
    type, the position and the keys. ``linked``: every state the store linked the
    event to when it was written; an upcast event that touches another one is refused
    (its links cannot change, so loads of that state would never see it).
    """
    try:
        fired_at = datetime.fromisoformat(stored.fired_at)
    except (TypeError, ValueError):
        raise DecodeError(
            f"event {stored.type} at position {stored.position}: column fired_at holds "
            f"{stored.fired_at!r}, not an ISO 8601 timestamp"
        ) from None
    if stored.caused_by is not None and type(stored.caused_by) is not int:
        raise DecodeError(
            f"event {stored.type} at position {stored.position}: column caused_by holds "
            f"{stored.caused_by!r}, not a position"
        )
    cls = registry.events.get(stored.type)
    fast = _FAST.get(cls)  # type: ignore[arg-type]
    if fast is None and cls is not None:
        fast = _fast_hook(cls)
    if fast is not None and stored.version == fast[2]:
        try:
            text = stored.data
            # The C scanner behind json.loads, without its two Python frames and
            # whitespace matches: a stored row is one canonical JSON object, and
            # anything else (whitespace, bytes, trailing text) takes the slow path, as
            # does an unknown key (strict).
            data, end = _scan(text, 0)
            if end == len(text) and data.keys() <= fast[1]:
                event: Event = fast[0](data, cls)  # type: ignore[arg-type]
                mark_decoded(
                    event,
                    stored.position,
                    text,
                    stored.caused_by,
                    fired_at,
                    stored.correlation,
                    None if stored.metadata is None else _metadata(stored),
                )
                return event
        except Exception:  # noqa: BLE001 - decoded again below for the clear error
            pass
    from ._upcasting import read_event  # it imports this module

    event, upcast = read_event(stored, linked)
    mark_stored(
        event,
        position=stored.position,
        data=stored.data,
        caused_by=stored.caused_by,
        fired_at=fired_at,
    )
    _mark_record(event, stored)
    if upcast:
        set_data(event, None)  # the stored JSON is an older shape: encode it afresh
    return event


_Fast = tuple[Callable[[Any, type], Any], frozenset[str], int]


def _mark_record(event: Event, stored: StoredEvent) -> None:
    """What the log stores with an event besides its fields (metadata, correlation)."""
    if stored.correlation is not None or stored.metadata is not None:
        mark_record(
            event,
            correlation=stored.correlation,
            metadata=None if stored.metadata is None else _metadata(stored),
        )


def _metadata(stored: StoredEvent) -> Any:
    from ._upcasting import load_json  # it imports this module

    assert stored.metadata is not None
    return load_json(stored.metadata, f"the metadata of event {stored.type} at {stored.position}")


_FAST: dict[type, _Fast] = {}
_scan: Callable[[str, int], tuple[Any, int]] = json.JSONDecoder().scan_once  # type: ignore[attr-defined]


def _fast_hook(cls: type[Event]) -> _Fast:
    """The hot path's structure hook for an event class, its field names and version.

    The hook checks nested classes strictly (through ``converter``) but not the
    top level: the caller tests ``data.keys() <= fields`` inline, which costs
    less than cattrs' check (a set built and subtracted per event).
    """
    found = _FAST.get(cls)
    if found is None:
        hook: Callable[[Any, type], Any] = make_dict_structure_fn(
            cls, converter, _cattrs_forbid_extra_keys=False
        )
        fields = frozenset(a.name for a in attrs.fields(cast(Any, cls)) if a.init)
        found = _FAST[cls] = (hook, fields, cls._pt_version)
    return found


def state_from_snapshot(record: SnapshotRecord) -> State:
    """The state a snapshot record holds, with its id and last_event_id.

    Only for a snapshot loads may use (``_upcasting.snapshot_problem`` is None);
    an older version is upcast first.
    """
    from ._upcasting import read_snapshot  # it imports this module

    return read_snapshot(record)
