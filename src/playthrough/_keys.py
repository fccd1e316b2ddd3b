"""A state's key and the id codec: what the stores, the core and the engine all name
states by. No I/O and no other playthrough module but the errors, so the stores and
the personal-data codec need no import of the model."""

from __future__ import annotations

import uuid
from typing import NamedTuple

from ._errors import DecodeError

StateIdValue = int | str | uuid.UUID


class StateKey(NamedTuple):
    """Identifies one state in the store: its registered type name and encoded id."""

    type: str
    id: str

    def __str__(self) -> str:
        if not self.id:
            return self.type
        try:
            return f"{self.type}({decode_id(self.id)!r})"
        except DecodeError:
            return f"{self.type}[state_id {self.id!r}]"  # a malformed stored id, shown raw


def encode_id(value: object) -> str:
    """Encode a state id as text that sorts and compares unambiguously.

    ints stay decimal, strings get an ``s:`` prefix, UUIDs ``u:``; a singleton
    (id ``None``) is the empty string.
    """
    if value is None:
        return ""
    if isinstance(value, bool):
        raise TypeError(f"a state id must be an int, str or UUID, not bool ({value!r})")
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return "s:" + value
    if isinstance(value, uuid.UUID):
        return "u:" + str(value)
    raise TypeError(
        f"a state id must be an int, str or UUID, not {type(value).__name__} ({value!r})"
    )


def decode_id(text: str) -> StateIdValue | None:
    """The id an encoded (stored) state id names; DecodeError naming the text if malformed."""
    if text == "":
        return None
    if text.startswith("s:"):
        return text[2:]
    try:
        if text.startswith("u:"):
            return uuid.UUID(text[2:])
        if text.strip() != text or str(int(text)) != text:
            raise ValueError("not canonical")
        return int(text)
    except (ValueError, TypeError) as exc:
        raise DecodeError(
            f"stored state id {text!r} (column state_id) is malformed: expected an int, "
            f"'s:' and a string or 'u:' and a UUID ({exc})"
        ) from None
