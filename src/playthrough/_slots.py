"""The private slots playthrough keeps on states and events; the only module that writes them.

States carry ``_pt_id`` and ``_pt_last_event_id``; events carry ``_pt_position``,
``_pt_data`` (their canonical JSON once fired), ``_pt_fired_at``,
``_pt_caused_by``, ``_pt_correlation``, ``_pt_metadata`` (a dict or None),
``_pt_key`` (the idempotency key), ``_pt_binding`` (the cached :class:`Binding`) and
``_pt_links`` (the touched keys with their coupling groups, kept by fire). Users see
them through read-only properties; everything that sets them goes through here.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._keys import StateKey
    from ._model import Binding, Event, State

_UNSET: Any = object()
_set = object.__setattr__


def mark_state(state: State, *, id: Any = _UNSET, last_event_id: int | None = _UNSET) -> None:
    """Set a state's id and/or the position of the last event that touched it."""
    if id is not _UNSET:
        _set(state, "_pt_id", id)
    if last_event_id is not _UNSET:
        _set(state, "_pt_last_event_id", last_event_id)


def set_last_event_id(state: State, position: int | None) -> None:
    _set(state, "_pt_last_event_id", position)


def set_position(event: Event, position: int | None) -> None:
    _set(event, "_pt_position", position)


def set_binding(event: Event, binding: Binding) -> None:
    _set(event, "_pt_binding", binding)


def set_data(event: Event, data: str | None) -> None:
    _set(event, "_pt_data", data)


def set_key(event: Event, key: str | None) -> None:
    """The idempotency key given to ``fire(event, key=...)``."""
    _set(event, "_pt_key", key)


def forget_binding(event: Event) -> None:
    """Drop a cached Binding (and links) computed from values since normalised."""
    _set(event, "_pt_binding", None)
    _set(event, "_pt_links", None)


def set_links(event: Event, links: tuple[tuple[StateKey, int], ...]) -> None:
    """The event's touched keys and coupling groups, as fire computed them."""
    _set(event, "_pt_links", links)


def fired_data(event: Event) -> str | None:
    """The event's JSON if it was fired or decoded, else ``None``."""
    data: str | None = getattr(event, "_pt_data", None)
    return data


def mark_fired(event: Event, *, fired_at: datetime | None, caused_by: int | None) -> None:
    _set(event, "_pt_fired_at", fired_at)
    _set(event, "_pt_caused_by", caused_by)


def mark_record(event: Event, *, correlation: str | None, metadata: dict[str, Any] | None) -> None:
    """What the log stores with an event besides its fields."""
    _set(event, "_pt_correlation", correlation)
    _set(event, "_pt_metadata", metadata)


def mark_stored(
    event: Event, *, position: int, data: str, caused_by: int | None, fired_at: datetime
) -> None:
    """Everything a decoded stored event knows about itself."""
    _set(event, "_pt_position", position)
    _set(event, "_pt_data", data)
    _set(event, "_pt_caused_by", caused_by)
    _set(event, "_pt_fired_at", fired_at)


def mark_decoded(
    event: Event,
    position: int,
    data: str,
    caused_by: int | None,
    fired_at: datetime,
    correlation: str | None,
    metadata: dict[str, Any] | None,
) -> None:
    """:func:`mark_stored` and :func:`mark_record` in one call (the replay's hot path)."""
    _set(event, "_pt_position", position)
    _set(event, "_pt_data", data)
    _set(event, "_pt_caused_by", caused_by)
    _set(event, "_pt_fired_at", fired_at)
    _set(event, "_pt_correlation", correlation)
    _set(event, "_pt_metadata", metadata)


def unfire(event: Event) -> None:
    """Forget what fire() recorded on an event that was rejected, failed or discarded."""
    for slot in (
        "_pt_data",
        "_pt_binding",
        "_pt_links",
        "_pt_fired_at",
        "_pt_caused_by",
        "_pt_correlation",
        "_pt_metadata",
        "_pt_key",
    ):
        _set(event, slot, None)
