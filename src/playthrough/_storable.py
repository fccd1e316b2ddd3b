"""Which field types survive the store's JSON unchanged, checked when a class is defined.

A value the library writes must read back equal. JSON object keys are always
strings, so a ``dict`` whose key type does not come back from a string (``bool``,
``float``, tuples, enums with non-string values...) would silently change, or make
a state unloadable after its own snapshot. Such fields are refused at class
definition, naming the field; ``int`` keys are decoded back to ints by
``_serialization``. A ``State`` inside an event or another state is refused too:
it would be a second, aliased copy of a state that only its own events may change.
Fields typed ``object``/``Any`` cannot be checked here; snapshot writes check
those values at run time.
"""

from __future__ import annotations

import collections.abc
import enum
import inspect
import sys
import types
import typing
import uuid
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import attrs

_KEY_TYPES: tuple[type, ...] = (str, int, uuid.UUID, Decimal, date, datetime)
_MAPPINGS = (dict, collections.abc.Mapping, collections.abc.MutableMapping)
_KEY_HELP = (
    "JSON object keys are strings and this type would not come back equal; use str, int, "
    "UUID, Decimal, date, datetime or an Enum with str values as dict keys"
)


def storable_problem(owner: type, name: str, annotation: Any) -> str | None:
    """Why a field of this annotation cannot round-trip through the store, or None."""
    return _problem(annotation, set())


def _key_ok(key: Any) -> bool:
    key = getattr(key, "__supertype__", key)  # NewType
    if key is Any or key is bool:
        return key is Any
    if typing.get_origin(key) is typing.Literal:
        return all(isinstance(v, str) for v in typing.get_args(key))
    if isinstance(key, type) and issubclass(key, enum.Enum):
        return all(isinstance(m.value, str) for m in key)
    return isinstance(key, type) and key in _KEY_TYPES


def _problem(t: Any, seen: set[type]) -> str | None:
    from ._model import State

    origin = typing.get_origin(t)
    args = typing.get_args(t)
    if origin is typing.Annotated:
        return _problem(args[0], seen)
    if origin in _MAPPINGS:
        key, value = args if len(args) == 2 else (Any, Any)
        if not _key_ok(key):
            return f"dict key type {_name(key)} cannot be stored: {_KEY_HELP}"
        return _problem(value, seen)
    if origin is not None and origin is not typing.Literal:
        for arg in args:
            if arg is not Ellipsis:
                found = _problem(arg, seen)
                if found:
                    return found
        return None
    if isinstance(t, types.UnionType):
        for arg in args:
            found = _problem(arg, seen)
            if found:
                return found
        return None
    if isinstance(t, type) and issubclass(t, State):
        return (
            f"holds a State ({t.__qualname__}): a state inside another object would be an "
            "aliased copy that its events never update; store its id (state_id) instead"
        )
    if isinstance(t, type) and attrs.has(t) and t not in seen:
        seen.add(t)
        try:
            hints = typing.get_type_hints(t)
        except Exception:  # noqa: BLE001 - unresolvable nested hints: checked at run time
            return None
        for field in attrs.fields(t):
            found = _problem(hints.get(field.name, Any), seen)
            if found:
                return f"{t.__qualname__}.{field.name}: {found}"
    return None


def _name(t: Any) -> str:
    return getattr(t, "__qualname__", None) or repr(t)


def own_annotations(cls: type, localns: dict[str, Any]) -> dict[str, Any]:
    """The class's own field annotations, resolved where possible (strings left unresolved)."""
    raw = inspect.get_annotations(cls)
    module = sys.modules.get(cls.__module__)
    globalns = dict(vars(module)) if module is not None else {}
    out: dict[str, Any] = {}
    for name, ann in raw.items():
        if isinstance(ann, str):
            try:
                ann = eval(ann, globalns, localns)
            except Exception:  # noqa: BLE001 - unresolvable: not checkable at definition
                continue
        if ann is typing.ClassVar or typing.get_origin(ann) is typing.ClassVar:  # type: ignore[comparison-overlap]
            continue
        out[name] = ann
    return out


_EXACT_LEAVES: tuple[type, ...] = (str, int, float, bool, uuid.UUID, Decimal, date, datetime)
_RUNTIME: dict[type, bool] = {}


def needs_runtime_check(cls: type) -> bool:
    """Whether some field's type cannot promise an equal read-back (``Any``, ``object``,
    an unresolvable annotation, a class cattrs does not know): then every value
    written is decoded again and compared (see ``encode_state_checked``)."""
    found = _RUNTIME.get(cls)
    if found is None:
        try:
            hints = typing.get_type_hints(cls)
            found = any(_unsure(hints.get(f.name, Any), set()) for f in attrs.fields(cls))
        except Exception:  # noqa: BLE001 - unresolvable: check at run time
            found = True
        _RUNTIME[cls] = found
    return found


def _unsure(t: Any, seen: set[type]) -> bool:
    origin = typing.get_origin(t)
    args = typing.get_args(t)
    if t is type(None):
        return False
    if origin is typing.Annotated:
        return _unsure(args[0], seen)
    if origin is typing.Literal:
        return False
    if origin is not None or isinstance(t, types.UnionType):
        return not args or any(_unsure(a, seen) for a in args if a is not Ellipsis)
    if not isinstance(t, type) or t is object:
        return True  # Any, a TypeVar, a string...
    if t in _EXACT_LEAVES or issubclass(t, enum.Enum):
        return False
    if attrs.has(t):
        if t in seen:
            return False
        seen.add(t)
        try:
            hints = typing.get_type_hints(t)
        except Exception:  # noqa: BLE001
            return True
        return any(_unsure(hints.get(f.name, Any), seen) for f in attrs.fields(t))
    return True
