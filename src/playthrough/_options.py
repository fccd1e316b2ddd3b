"""Every option of an engine or a store is checked here, in one place.

A wrong value is a :class:`ConfigurationError` naming the option, the value
given and the values it takes, raised before anything is opened or written:
a setting that silently meant something else (``synchronous="ful"`` meaning
``NORMAL``, an empty path meaning memory) could lose data.
"""

from __future__ import annotations

import math
from typing import Any

from ._errors import ConfigurationError

#: SQLite's ``PRAGMA synchronous`` levels (any case).
SYNCHRONOUS = ("OFF", "NORMAL", "FULL", "EXTRA")


def _number(name: str, value: Any, *, integer: bool, text: bool = False) -> float:
    kinds = (int,) if integer else (int, float)
    if text and isinstance(value, str):  # from a URL
        try:
            value = int(value) if integer else float(value)
        except ValueError:
            value = None
    if isinstance(value, bool) or not isinstance(value, kinds) or not math.isfinite(value):
        what = "an integer" if integer else "a number"
        raise ConfigurationError(f"{name} must be {what}, not {value!r}")
    return value


def at_least(name: str, value: Any, minimum: float, *, integer: bool = True, unit: str = "") -> Any:
    """``value`` if it is a number >= ``minimum``, else a ConfigurationError naming ``name``."""
    number = _number(name, value, integer=integer)
    if number < minimum:
        raise ConfigurationError(f"{name} must be at least {minimum:g}{unit}, not {value!r}")
    return number


def positive(
    name: str, value: Any, *, integer: bool = False, unit: str = "", text: bool = False
) -> Any:
    """``value`` if it is a number > 0, else a ConfigurationError naming ``name``.

    ``text``: the value comes from a URL and may be the number written out.
    """
    number = _number(name, value, integer=integer, text=text)
    if not number > 0:
        raise ConfigurationError(f"{name} must be greater than 0{unit}, not {value!r}")
    return number


def optional_at_least(name: str, value: Any, minimum: int) -> int | None:
    """Like :func:`at_least` for an integer option where None means "off"."""
    if value is None:
        return None
    return int(at_least(name, value, minimum, unit=" (or None)"))


def synchronous(value: Any) -> str:
    """SQLite's synchronous level, upper-cased; anything else is a ConfigurationError."""
    if isinstance(value, str) and value.strip().upper() in SYNCHRONOUS:
        return value.strip().upper()
    raise ConfigurationError(
        f"synchronous must be one of {', '.join(SYNCHRONOUS)} (any case), not {value!r}"
    )


def sqlite_path(path: Any) -> str:
    """A SQLite file name or ``":memory:"``; an empty one is a ConfigurationError.

    SQLite reads an empty name as a private temporary database: the events
    committed to it vanish with the connection.
    """
    if not isinstance(path, str) or not path.strip():
        raise ConfigurationError(
            f"empty SQLite path {path!r} (an unset variable in the URL?): name a file, "
            'as in "sqlite:///app.db", or ask for memory with "sqlite://"'
        )
    return path


def schema_name(value: Any) -> str | None:
    """A PostgreSQL schema name (None: ``public``); empty or too long is a ConfigurationError."""
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ConfigurationError(
            f"empty schema name {value!r} (an unset variable in ?schema=?): name a schema, "
            "or leave the option out for public"
        )
    if "\x00" in value or len(value.encode()) > 63:
        raise ConfigurationError(f"bad schema name {value!r}: at most 63 bytes, no NUL")
    return value


def unknown(kind: str, given: list[str], valid: tuple[str, ...]) -> None:
    """Refuse URL query options the store does not take, listing those it does."""
    if given:
        raise ConfigurationError(
            f"unknown {kind} URL option{'s' if len(given) > 1 else ''}: "
            f"{', '.join(sorted(given))}; it takes: {', '.join(valid)}"
        )


def engine(
    *,
    snapshot_every: Any,
    snapshot_after_events: Any,
    snapshot_history: Any,
    max_states: Any,
    max_event_bytes: Any,
) -> None:
    """Check an Engine's options (see ``Engine.__init__``).

    An engine is built per request over one store, nearly always with the same
    options: a combination found good is remembered (by type and value, so
    ``True`` or ``3.0`` is still checked, and refused, where ``1`` or ``3`` passed).
    """
    key: tuple[Any, ...] | None = (
        (type(snapshot_every), snapshot_every),
        (type(snapshot_after_events), snapshot_after_events),
        (type(snapshot_history), snapshot_history),
        (type(max_states), max_states),
        (type(max_event_bytes), max_event_bytes),
    )
    try:
        if key in _GOOD_ENGINE_OPTIONS:
            return
    except TypeError:  # an unhashable value: not remembered, checked (and refused) below
        key = None
    optional_at_least("snapshot_every", snapshot_every, 1)
    optional_at_least("snapshot_after_events", snapshot_after_events, 0)
    at_least("snapshot_history", snapshot_history, 1)
    optional_at_least("max_states", max_states, 1)
    at_least("max_event_bytes", max_event_bytes, 1, unit=" byte")
    if key is not None and len(_GOOD_ENGINE_OPTIONS) < _GOOD_ENGINE_OPTIONS_KEPT:
        _GOOD_ENGINE_OPTIONS.add(key)


#: Engine option combinations already found good (a few: not one per value ever tried).
_GOOD_ENGINE_OPTIONS: set[tuple[Any, ...]] = set()
_GOOD_ENGINE_OPTIONS_KEPT = 64


def postgres(
    *,
    min_size: Any,
    max_size: Any,
    connect_timeout: Any,
    pool_timeout: Any,
    lock_timeout: Any,
) -> None:
    """Check a PostgresStore's options (the schema: :func:`schema_name`)."""
    at_least("min_size", min_size, 0)
    at_least("max_size", max_size, 1)
    if max(min_size, 1) > max_size:
        raise ConfigurationError(
            f"bad pool size: min_size={min_size} is larger than max_size={max_size}"
        )
    positive("connect_timeout", connect_timeout, integer=True, unit=" seconds (0 waits forever)")
    positive("pool_timeout", pool_timeout, unit=" seconds")
    positive("lock_timeout", lock_timeout, unit=" seconds")
