"""``given_state``: a state put in a known value for a test, stored as a marked event.

The value is written as one event of the type ``playthrough.testing.given:<state
type>`` whose ``apply`` sets every field of the state to the value given: the log
holds it like any other event, so loads, replays, snapshots and ``verify`` read it
back exactly, and anyone reading the log sees the state was given, not earned. No
real history has such an event, so it is refused on any store but a throwaway one:
in-memory SQLite, or an engine declared with :func:`throwaway` (the
``playthrough_engine`` fixture's engines are).

The event classes are made here, one per state type, on first use, and registered
like any event class: the core never imports this module.
"""

# No ``from __future__ import annotations``: the hook and field annotations of the
# classes made below must be the classes themselves, not names to resolve.

import uuid
import weakref
from typing import Any, TypeVar, cast

import attrs

from .. import state_id
from .._engine import Engine
from .._errors import DecodeError, PlaythroughError
from .._model import Event, SingletonState, State, key_of, registry
from .._serialization import decode, encode_state_checked
from .._stores import parse_store_url

S = TypeVar("S", bound=State)

#: The type name of a given state's event is this prefix and the state's type name.
GIVEN = "playthrough.testing.given:"

_THROWAWAY: "weakref.WeakSet[object]" = weakref.WeakSet()


def throwaway(engine: Engine) -> Engine:
    """Declare ``engine``'s store a throwaway (a test's own file or schema), where
    :func:`given_state` may write; returns the engine."""
    if not isinstance(engine, Engine):
        raise TypeError(f"throwaway() takes an Engine, not {type(engine).__name__}")
    _THROWAWAY.add(engine.store)
    return engine


def is_throwaway(engine: Engine) -> bool:
    """Whether ``given_state`` may write to ``engine``'s store."""
    if engine.store in _THROWAWAY:
        return True
    try:
        return parse_store_url(engine.store.url).is_memory
    except Exception:  # noqa: BLE001 - a store whose URL names no known backend: not memory
        return False


def given_state(engine: Engine, state_class: type[S], state_id: Any = None, **values: Any) -> S:
    """Put a state in a known value, committed, without the events that would make it.

    ``given_state(engine, Account, 1, balance=100)``: the state as the engine
    loads it now (blank if no event touched it), with the fields named changed,
    is stored as one marked event (``playthrough.testing.given:<state type>``)
    and committed; returns the state as loaded after it. Refused on a store that
    is not a throwaway (see :func:`throwaway`), with pending events, for a name
    that is not a field, or a value that would not read back equal.
    """
    give(engine, state_class, state_id, values)
    return engine.load(state_class, state_id)


def give(engine: Engine, state_class: type[State], state_id: Any, values: dict[str, Any]) -> Event:
    """``given_state``'s write: the marked event, committed (returned with its position)."""
    if not isinstance(engine, Engine):
        raise TypeError(
            f"given_state() takes an Engine (the sync one), not {type(engine).__name__}"
        )
    key = key_of(state_class, state_id)  # checks the class and the id
    if not is_throwaway(engine):
        raise PlaythroughError(
            f"given_state({state_class.__qualname__}) writes a {GIVEN}... event that no real "
            f"history has: it is only for throwaway stores, and {engine.store.url} is not "
            "one. Use in-memory SQLite (sqlite://), the playthrough_engine fixture, or "
            "declare a test's own store with playthrough.testing.throwaway(engine)"
        )
    if engine.pending:
        raise PlaythroughError("commit or discard pending events before given_state()")
    names = {a.name for a in attrs.fields(cast(Any, state_class))}
    unknown = sorted(set(values) - names)
    if unknown:
        raise TypeError(
            f"given_state({state_class.__qualname__}): no field {', '.join(map(repr, unknown))}; "
            f"its fields are {', '.join(sorted(names)) or 'none'}"
        )
    current = engine.load(state_class, state_id)
    wanted = state_class(**{n: getattr(current, n) for n in names} | values)
    what = f"the given value of {key}"
    data = encode_state_checked(wanted, what)
    back = decode(state_class, data, what)
    for n in sorted(names):  # checked whatever the field types promise: a test's typo
        if getattr(back, n) != getattr(wanted, n):
            raise PlaythroughError(
                f"cannot store {what}: field {n!r} would read back as {getattr(back, n)!r}, "
                f"not {getattr(wanted, n)!r}"
            )
    cls = _given_class(state_class, None if state_id is None else type(state_id))
    fields: dict[str, Any] = {"value": data, "version": state_class._pt_version}
    if state_id is not None:
        fields["given_id"] = state_id
    event = engine.fire(cls(**fields))
    engine.commit().raise_for_failures()
    return event


def _given_class(state_class: type[State], id_type: type | None) -> type[Event]:
    """The event class of a given ``state_class`` (made and registered on first use)."""
    name = GIVEN + state_class._pt_type_name
    found = registry.events.get(name)
    if found is not None:
        held = getattr(found, "_pt_given_id_type", None)
        if getattr(found, "_pt_given_state", None) is state_class and held is id_type:
            return found
        if getattr(found, "_pt_given_state", None) is state_class:
            raise TypeError(
                f"given_state({state_class.__qualname__}): ids of one state type have one "
                f"type; this process gave it {_name(held)} ids already, not {_name(id_type)}"
            )
    if id_type not in (None, int, str, uuid.UUID):
        raise TypeError(f"a state id is an int, str or UUID, not {_name(id_type)}")
    cls = _make(state_class, id_type, name)
    cls._pt_given_state = state_class  # type: ignore[attr-defined]
    cls._pt_given_id_type = id_type  # type: ignore[attr-defined]
    return cls


def _name(t: type | None) -> str:
    return "no (singleton)" if t is None else t.__name__


def _set_fields(event: Any, state: State) -> None:
    """The ``apply`` of a given state's event: every field takes the given value."""
    cls = type(state)
    if event.version != cls._pt_version:
        raise DecodeError(
            f"{GIVEN}{cls._pt_type_name} was stored at version {event.version} of "
            f"{cls.__qualname__}, which is at version {cls._pt_version} now (a given state "
            "is for throwaway stores; give it again)"
        )
    value = decode(cls, event.value, f"the given value of {cls.__qualname__}")
    for a in attrs.fields(cast(Any, cls)):
        setattr(state, a.name, getattr(value, a.name))


def _make(state_class: type[State], id_type: type | None, name: str) -> type[Event]:
    qualname = f"given[{state_class.__qualname__}]"  # one per state type, for the registry
    if id_type is None:
        assert issubclass(state_class, SingletonState)

        @attrs.define
        class GivenSingleton(Event, type_name=name):
            __qualname__ = qualname
            value: str
            version: int
            touches_completed = True

            def apply(self, state: state_class) -> None:  # type: ignore[valid-type]
                _set_fields(self, state)

        made: type[Event] = GivenSingleton
    else:

        @attrs.define
        class Given(Event, type_name=name):
            __qualname__ = qualname
            given_id: id_type = state_id(state_class)  # type: ignore[valid-type]
            value: str = ""
            version: int = 1
            touches_completed = True

            def apply(self, state: state_class) -> None:  # type: ignore[valid-type]
                _set_fields(self, state)

        made = Given
    return made
