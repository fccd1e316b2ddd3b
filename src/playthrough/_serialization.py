"""JSON (de)serialisation of events and states through cattrs.

cattrs turns attrs instances into plain dicts and back using the field types,
so nested attrs classes, lists, dicts, enums and optional fields work without
per-class code. Only JSON is ever written (never pickle), and the text is
canonical (sorted keys, no spaces) so two equal states give equal bytes.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Collection
from datetime import date, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, TypeVar, cast

import attrs
import cattrs
from cattrs.gen import make_dict_structure_fn

from ._errors import DecodeError, DefinitionError
from ._model import Event, State, StateKey, decode_id, registry
from ._slots import fired_data, mark_record, mark_state, mark_stored, set_data

if TYPE_CHECKING:
    from ._stores import SnapshotRecord, StoredEvent

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

_encoder = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def dumps(value: Any) -> str:
    return _encoder.encode(value)


def encode_event(event: Event) -> str:
    """The event's canonical JSON (cached once the event is fired: fired events are immutable)."""
    cached = fired_data(event)
    if cached is not None:
        return cached
    try:
        return dumps(converter.unstructure(event))
    except (TypeError, ValueError) as exc:
        raise TypeError(
            f"cannot encode {type(event).__qualname__} as JSON: {exc}; give its fields types "
            "playthrough can store (attrs classes, lists, dicts, str, int, float, bool, None, "
            "datetime, date, UUID, Decimal, enums)"
        ) from exc


def encode_state(state: State) -> str:
    return dumps(converter.unstructure(state))


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
    cls = registry.events.get(stored.type)
    fast = _FAST.get(cls)  # type: ignore[arg-type]
    if fast is None and cls is not None:
        fast = _fast_hook(cls)
    if fast is not None and stored.version == fast[2]:
        try:
            data = json.loads(stored.data)
            if data.keys() <= fast[1]:  # strict: an unknown key takes the slow path
                event: Event = fast[0](data, cls)  # type: ignore[arg-type]
                mark_stored(
                    event,
                    position=stored.position,
                    data=stored.data,
                    caused_by=stored.caused_by,
                    fired_at=datetime.fromisoformat(stored.fired_at),
                )
                _mark_record(event, stored)
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
        fired_at=datetime.fromisoformat(stored.fired_at),
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
            metadata=None if stored.metadata is None else json.loads(stored.metadata),
        )


_FAST: dict[type, _Fast] = {}


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
