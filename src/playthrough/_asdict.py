"""``playthrough.asdict``: a state (or an event) as a JSON-able dict, for web responses."""

from __future__ import annotations

import json
import uuid
from typing import Any

from ._model import Event, State
from ._serialization import encode_event, encode_state


def asdict(value: State | Event) -> dict[str, Any]:
    """A state or an event as a dict that ``json.dumps`` takes as it is.

    The fields are exactly what the store holds for it (its canonical JSON read
    back: nested attrs classes become dicts, datetimes ISO strings, UUIDs and
    Decimals strings, enums their values; a personal value is what the state
    holds: clear, or ``FORGOTTEN``), plus ``"id"``: a state's id (``None`` for
    a singleton; a UUID as its string) or an event's position (``None`` before
    its commit). A field named ``id`` cannot exist: the name is reserved.
    """
    if isinstance(value, State):
        data: dict[str, Any] = json.loads(encode_state(value))
        ident = value.id
        data["id"] = str(ident) if isinstance(ident, uuid.UUID) else ident
        return data
    if isinstance(value, Event):
        fields: dict[str, Any] = json.loads(encode_event(value))
        fields["id"] = value.id
        return fields
    raise TypeError(f"asdict() takes a State or an Event, not {type(value).__name__}")
