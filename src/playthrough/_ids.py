"""State ids as people read and type them.

Stored ids are encoded (``7``, ``s:o13``, ``u:<uuid>``, see ``_model.encode_id``)
so that they sort and compare unambiguously. People write ``o13`` and ``7``.
Every tool that prints or parses an id goes through here:

- :func:`readable_id` and :func:`label` print an id as the user wrote it
  (``Order(o13)``, ``Account(7)``, ``Ledger``);
- :func:`natural_key` orders keys as people expect (``o2`` before ``o10``);
- :func:`parse_state_id` reads an id typed on a command line or in a URL. The
  state type's *declared* id type decides: the annotations of the event fields
  that ``state_id(TheState)`` declares (``order_id: str = state_id(Order)``).
  So ``Order 13`` is the string ``"13"`` when order ids are strings, without
  the ``s:`` prefix (still accepted). A type whose fields disagree, or that no
  event declares, reads an int-looking id as an int.
"""

from __future__ import annotations

import re
import types
import typing
import uuid
from typing import Any

from ._errors import DecodeError
from ._model import Event, SingletonState, State, StateIdValue, StateKey, decode_id, registry

__all__ = ["declared_id_type", "label", "natural_key", "parse_state_id", "readable_id"]

_DIGITS = re.compile(r"(\d+)")
_ID_TYPES: tuple[type, ...] = (int, str, uuid.UUID)


def readable_id(key: StateKey) -> str:
    """The id as the user wrote it (``o13``, ``7``); empty for a singleton."""
    try:
        value = decode_id(key.id)
    except DecodeError:
        return key.id  # a malformed stored id, shown raw
    return "" if value is None else str(value)


def label(key: StateKey) -> str:
    """``Order(o13)``, ``Account(7)``; a singleton is its type name."""
    if not key.id:
        return key.type
    return f"{key.type}({readable_id(key)})"


def natural_key(key: StateKey) -> tuple[Any, ...]:
    """Sorts keys by type, then by id with digit runs compared as numbers (o2 < o10)."""
    text = readable_id(key)
    parts = tuple(
        (0, int(part), "") if i % 2 else (1, 0, part)
        for i, part in enumerate(_DIGITS.split(text))
        if part
    )
    return (key.type, parts)


def _id_types_of(annotation: Any) -> set[type]:
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _id_types_of(typing.get_args(annotation)[0])
    if origin in (list, tuple, set, frozenset, typing.Union, types.UnionType):
        found: set[type] = set()
        for arg in typing.get_args(annotation):
            if arg is not type(None) and arg is not Ellipsis:
                found |= _id_types_of(arg)
        return found
    if isinstance(annotation, type) and annotation in _ID_TYPES:
        return {annotation}
    return set()


def declared_id_type(cls: type[State]) -> type | None:
    """The id type the event fields naming ``cls`` declare (int, str, UUID), or None."""
    found: set[type] = set()
    seen: set[type[Event]] = set()
    for event_class in list(registry.events.values()):
        if event_class in seen:
            continue
        seen.add(event_class)
        fields = [f for f in event_class._pt_spec.fields if f.state_class is cls]
        if not fields:
            continue
        try:
            hints = typing.get_type_hints(event_class)
        except Exception:  # noqa: BLE001 - an unresolvable annotation tells nothing
            continue
        for f in fields:
            found |= _id_types_of(hints.get(f.name))
    return found.pop() if len(found) == 1 else None


def parse_state_id(cls: type[State], text: str | None) -> StateIdValue | None:
    """The id ``text`` names for a state of type ``cls``; ValueError saying why not."""
    name = cls._pt_type_name
    if issubclass(cls, SingletonState):
        if text:
            raise ValueError(f"{name} is a singleton: it has no id (got {text!r})")
        return None
    if not text:
        raise ValueError(f"{name} needs an id")
    if text.startswith("s:"):
        return text[2:]
    kind = declared_id_type(cls)
    if text.startswith("u:") and kind in (None, uuid.UUID):
        text = text[2:]
        kind = uuid.UUID
    if kind is str:
        return text
    if kind is uuid.UUID:
        try:
            return uuid.UUID(text)
        except ValueError:
            raise ValueError(f"{name} ids are UUIDs, and {text!r} is not one") from None
    try:
        return int(text)
    except ValueError:
        if kind is int:
            raise ValueError(f"{name} ids are ints, and {text!r} is not one") from None
        return text
