"""The field types a commit writes: each touched state's values must match its class.

An ``apply`` hook that stores ``0.3`` in an ``int`` field would otherwise be
committed: the live state and the heads value hold a float, a replay of the log
may not, and only ``verify`` would notice. At commit, before anything is
written, every state the batch touched is checked against its declared field
types; a mismatch refuses the commit with :class:`StateTypeError` naming the
state, the field, the expected and the found type.

The rules (strict where JSON would change the value, lenient where it would not):

- ``int``, ``str``, ``bool``, ``bytes``, ``Decimal``, ``UUID``, ``date``,
  ``datetime``: that exact type (``True`` in an ``int`` field is refused: ``bool``
  is a subclass of ``int``, but it is stored as ``true``; a ``datetime`` in a
  ``date`` field is refused too).
- ``float``: a float, or an int (``5`` is stored as ``5`` and loaded as ``5.0``,
  an equal value); not a bool.
- ``X | None``, unions: any alternative; ``Literal``: one of its values;
  enums: a member.
- ``list[X]``, ``set[X]``, ``frozenset[X]``, ``tuple[X, ...]``, ``tuple[X, Y]``,
  ``dict[K, V]``: that container (abstract ones such as ``Sequence`` accept any
  of their kind), and every item.
- a nested attrs class: an instance of it, field by field.
- ``Any``, ``object``, an unannotated or unresolvable field, or a class this
  module does not know: not checked (``encode_state_checked`` still refuses a
  value that would not read back equal).

A checker is compiled once per class (a tuple of per-field predicates); the
common case, a state of plain scalars, costs one ``type(v) is t`` per field.
The description of a failure is worked out only when a predicate fails.
"""

from __future__ import annotations

import collections.abc
import enum
import inspect
import sys
import types
import typing
import uuid
from collections.abc import Callable
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import attrs

from ._errors import StateTypeError

__all__ = ["StateTypeError", "check_state_types", "type_problem"]

Pred = Callable[[Any], bool]


_EXACT: tuple[type, ...] = (int, str, bool, bytes, Decimal, uuid.UUID, date, datetime)
_SEQUENCES: dict[Any, type] = {list: list, set: set, frozenset: frozenset}
_ABSTRACT: dict[Any, tuple[type, ...]] = {
    collections.abc.Sequence: (list, tuple),
    collections.abc.MutableSequence: (list,),
    collections.abc.Set: (set, frozenset),
    collections.abc.MutableSet: (set,),
    collections.abc.Collection: (list, tuple, set, frozenset),
    collections.abc.Iterable: (list, tuple, set, frozenset),
}
_MAPPINGS = (dict, collections.abc.Mapping, collections.abc.MutableMapping)
_ITERABLES = (list, tuple, set, frozenset)
_CONTAINERS = (*_ITERABLES, dict)


def _any(_: Any) -> bool:
    return True


def _float(v: Any) -> bool:
    t = type(v)
    return t is float or t is int


def _exact(t: type) -> Pred:
    return lambda v: type(v) is t


_Checker = tuple[tuple[str, Pred, Any], ...]  # (field, predicate, annotation)
_CHECKERS: dict[type, _Checker] = {}
_ATTRS_PREDS: dict[type, Pred] = {}


def _hints(cls: type) -> dict[str, Any]:
    """The resolved annotation of each field; one that cannot be resolved is left out."""
    try:
        return typing.get_type_hints(cls, include_extras=True)
    except Exception:  # noqa: BLE001 - resolve field by field, skip what fails
        pass
    out: dict[str, Any] = {}
    for klass in reversed(cls.__mro__):
        module = sys.modules.get(klass.__module__)
        globalns = dict(vars(module)) if module is not None else {}
        for name, ann in inspect.get_annotations(klass).items():
            if isinstance(ann, str):
                try:
                    ann = eval(ann, globalns, dict(vars(klass)))
                except Exception:  # noqa: BLE001 - unresolvable: unchecked
                    out.pop(name, None)
                    continue
            out[name] = ann
    return out


def _checker(cls: type) -> _Checker:
    found = _CHECKERS.get(cls)
    if found is None:
        hints = _hints(cls)
        fields = []
        for a in attrs.fields(cls):
            ann = hints.get(a.name, Any)
            pred = _compile(ann)
            if pred is not _any:
                fields.append((a.name, pred, ann))
        found = _CHECKERS[cls] = tuple(fields)
    return found


def _compile(t: Any) -> Pred:
    """A predicate that is true when a value fits annotation ``t``."""
    t = getattr(t, "__supertype__", t)  # NewType
    origin = typing.get_origin(t)
    args = typing.get_args(t)
    if origin is typing.Annotated:
        return _compile(args[0])
    if t is Any or t is object or isinstance(t, typing.TypeVar):
        return _any
    if t is None or t is type(None):
        return lambda v: v is None
    if t is float:
        return _float
    if isinstance(t, type) and origin is None:
        if t in _EXACT:
            return _exact(t)
        if issubclass(t, enum.Enum):
            return lambda v: type(v) is t
        if attrs.has(t):
            return _attrs_pred(t)
        if t in _CONTAINERS:  # bare list, dict...: the container, items unchecked
            return _exact(t)
        return _any  # a class this module does not know: left to encode_state_checked
    if origin is typing.Literal:
        allowed = tuple(args)
        return lambda v: any(v == a and type(v) is type(a) for a in allowed)
    if origin is typing.Union or isinstance(t, types.UnionType):
        preds = tuple(_compile(a) for a in args)
        if any(p is _any for p in preds):
            return _any
        return lambda v: any(p(v) for p in preds)
    if origin in _MAPPINGS:
        key, value = args if len(args) == 2 else (Any, Any)
        kp, vp = _compile(key), _compile(value)
        kind: tuple[type, ...] = (dict,)
        if kp is _any and vp is _any:
            return lambda v: type(v) in kind
        return lambda v: type(v) in kind and all(kp(k) and vp(x) for k, x in v.items())
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            item = _compile(args[0])
            return lambda v: type(v) is tuple and all(item(x) for x in v)
        if not args or args == ((),):  # tuple[()] (bare tuple has no origin)
            return lambda v: v == () and type(v) is tuple
        items = tuple(_compile(a) for a in args)
        return lambda v: (
            type(v) is tuple
            and len(v) == len(items)
            and all(p(x) for p, x in zip(items, v, strict=True))
        )
    container = _SEQUENCES.get(origin)
    kinds: tuple[type, ...] | None = (
        (container,) if container is not None else _ABSTRACT.get(origin)
    )
    if kinds is not None:
        item = _compile(args[0]) if args else _any
        if item is _any:
            return lambda v: type(v) in kinds
        leaves = _leaf_types(args[0])
        if leaves is not None:  # the items' types, tested in one pass at C speed
            return lambda v: type(v) in kinds and set(map(type, v)) <= leaves
        return lambda v: type(v) in kinds and all(item(x) for x in v)
    return _any


def _leaf_types(t: Any) -> frozenset[type] | None:
    """The exact types a scalar annotation accepts (``float``: float and int), else None."""
    t = getattr(t, "__supertype__", t)
    if t is float:
        return frozenset((float, int))
    if isinstance(t, type) and typing.get_origin(t) is None:
        if t in _EXACT or issubclass(t, enum.Enum):
            return frozenset((t,))
    return None


def _attrs_pred(cls: type) -> Pred:
    found = _ATTRS_PREDS.get(cls)
    if found is None:
        # Recursive classes: the predicate looks its checker up when called.
        def pred(v: Any) -> bool:
            return type(v) is cls and all(p(getattr(v, n)) for n, p, _ in _checker(cls))

        found = _ATTRS_PREDS[cls] = pred
    return found


_FITS: dict[type, Pred] = {}


def _compile_fits(cls: type) -> Pred:
    """One function testing every checked field of ``cls``: ``type(s.n) is int and ...``.

    Generated once per class: a plain-scalar field costs one attribute read and one
    identity test, with no call; other fields call their compiled predicate.
    """
    checks = _checker(cls)
    if not checks:
        return _any
    names: dict[str, Any] = {}
    terms = []
    for i, (name, pred, ann) in enumerate(checks):
        if not name.isidentifier():  # pragma: no cover - attrs names are identifiers
            return lambda s: all(p(getattr(s, n)) for n, p, _ in checks)
        value = f"s.{name}"
        if ann in _EXACT:
            names[f"t{i}"] = ann
            terms.append(f"type({value}) is t{i}")
        elif ann is float:
            terms.append(f"type({value}) in _FLOATS")
        else:
            names[f"p{i}"] = pred
            terms.append(f"p{i}({value})")
    names["_FLOATS"] = frozenset((float, int))
    source = "def fits(s):\n    return " + " and ".join(terms) + "\n"
    exec(source, names)  # built from the class's own field names
    fits: Pred = names["fits"]
    return fits


def type_problem(state: object) -> str | None:
    """Why ``state``'s fields do not match their declared types, or None when they do."""
    for name, pred, ann in _checker(type(state)):
        value = getattr(state, name)
        if not pred(value):
            return f"field {name!r}: {_describe(value, ann, name)}"
    return None


def check_state_types(what: object, state: object) -> None:
    """Raise :class:`StateTypeError` unless ``state``'s fields match their declared types.

    ``what`` names the state in the message (its key)."""
    fits = _FITS.get(type(state))
    if fits is None:
        fits = _FITS[type(state)] = _compile_fits(type(state))
    if fits(state):
        return
    problem = type_problem(state)
    if problem is not None:
        raise StateTypeError(
            f"cannot commit: {what}, {problem}; a replay of the log would not give this "
            "value back. Store a value of the declared type in the apply hook (or declare "
            "the type it stores)"
        )


def _name(t: Any) -> str:
    if t is None or t is type(None):
        return "None"
    origin = typing.get_origin(t)
    args = typing.get_args(t)
    if isinstance(t, type) and origin is None:
        return t.__qualname__
    if origin is typing.Union or isinstance(t, types.UnionType):
        return " | ".join(_name(a) for a in args)
    if origin is typing.Annotated:
        return _name(args[0])
    if origin is tuple and (not args or args == ((),)):
        return "tuple[()]"
    if isinstance(origin, type) and args:
        inner = ", ".join("..." if a is Ellipsis else _name(a) for a in args)
        return f"{origin.__qualname__}[{inner}]"
    return repr(t).replace("typing.", "")


def _outer_fits(value: Any, t: Any) -> bool:
    """Whether ``value`` is of the outer kind of ``t`` (its class or container)."""
    origin = typing.get_origin(t)
    if origin is None:
        return isinstance(t, type) and attrs.has(t) and type(value) is t
    if origin in _MAPPINGS:
        return type(value) is dict
    if origin is tuple:
        return type(value) is tuple
    kinds = _ABSTRACT.get(origin) or ((origin,) if origin in _SEQUENCES else ())
    return type(value) in kinds


def _found(value: Any) -> str:
    shown = repr(value)
    if len(shown) > 60:
        shown = shown[:57] + "..."
    return f"{shown} ({type(value).__qualname__})"


def _describe(value: Any, ann: Any, where: str) -> str:
    """Where inside ``value`` the first mismatch with ``ann`` is, as a sentence part."""
    ann = getattr(ann, "__supertype__", ann)
    origin = typing.get_origin(ann)
    args = typing.get_args(ann)
    if origin is typing.Annotated:
        return _describe(value, args[0], where)
    expected = f"expected {_name(ann)}"
    if origin is typing.Union or isinstance(ann, types.UnionType):
        near = [a for a in args if _outer_fits(value, a)]
        if len(near) == 1:  # the alternative it was meant to be: say where inside it
            return _describe(value, near[0], where)
    if origin in _MAPPINGS and type(value) is dict and len(args) == 2:
        kp, vp = _compile(args[0]), _compile(args[1])
        for k, x in value.items():
            if not kp(k):
                return f"key {k!r}: expected {_name(args[0])}, found {_found(k)}"
            if not vp(x):
                return _at(where, f"[{k!r}]", x, args[1])
    elif origin is tuple and type(value) is tuple and args:
        item_types = (
            [args[0]] * len(value) if len(args) == 2 and args[1] is Ellipsis else list(args)
        )
        if len(item_types) == len(value):
            for i, (x, t) in enumerate(zip(value, item_types, strict=True)):
                if not _compile(t)(x):
                    return _at(where, f"[{i}]", x, t)
    elif (origin in _SEQUENCES or origin in _ABSTRACT) and args and type(value) in _ITERABLES:
        item = _compile(args[0])
        for i, x in enumerate(value):
            if not item(x):
                return _at(where, f"[{i}]", x, args[0])
    elif isinstance(ann, type) and attrs.has(ann) and type(value) is ann:
        for name, pred, field_ann in _checker(ann):
            x = getattr(value, name)
            if not pred(x):
                return _at(where, f".{name}", x, field_ann)
    return f"{expected}, found {_found(value)}"


def _at(where: str, step: str, value: Any, ann: Any) -> str:
    inner = _describe(value, ann, where + step)
    return inner if inner.startswith("at ") else f"at {where}{step}: {inner}"
