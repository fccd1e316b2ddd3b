"""Clocks: where the engine reads the time (``fired_at``, due scheduled events).

The engine takes any object with a ``now()`` method returning an aware
datetime. :class:`SystemClock` (the default) reads the wall clock;
:class:`ManualClock` moves only when told to, so tests can say "15 minutes
pass" without sleeping.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    """Anything with ``now() -> datetime`` (timezone-aware)."""

    def now(self) -> datetime: ...


class SystemClock:
    """The wall clock, in UTC."""

    def now(self) -> datetime:
        return datetime.now(UTC)


class ManualClock:
    """A clock that stands still until :meth:`advance` or :meth:`set` moves it."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = aware(start) if start is not None else datetime(2000, 1, 1, tzinfo=UTC)

    def now(self) -> datetime:
        return self._now

    def advance(self, delta: timedelta | None = None, **units: float) -> datetime:
        """Move forward by ``delta`` or by ``minutes=15``-style units; return the new time."""
        step = (delta or timedelta()) + timedelta(**units)
        if step < timedelta():
            raise ValueError(f"a clock does not go back ({step})")
        self._now += step
        return self._now

    def set(self, when: datetime) -> None:
        """Jump to ``when`` (not earlier than now)."""
        when = aware(when)
        if when < self._now:
            raise ValueError(f"a clock does not go back (from {self._now} to {when})")
        self._now = when


def aware(when: datetime) -> datetime:
    """``when`` in UTC; a naive datetime is refused (its zone would be a guess)."""
    if not isinstance(when, datetime):
        raise TypeError(f"expected a datetime, not {type(when).__name__}")
    if when.tzinfo is None or when.utcoffset() is None:
        raise ValueError(f"{when!r} has no time zone; give an aware datetime (e.g. tzinfo=UTC)")
    return when.astimezone(UTC)


def stamp(when: datetime) -> str:
    """Fixed-width ISO 8601 in UTC: text order is time order (the store compares text)."""
    return aware(when).isoformat(timespec="microseconds")
