"""Reading the log: events by filter (streamed in pages), by position, causes and effects.

Also what ``fire`` stores besides an event's fields: its metadata (a JSON
object) and its correlation id.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ._errors import NotFoundError, PlaythroughError
from ._model import Event, State, key_of, registry
from ._personal import unseal_steps
from ._serialization import decode_event, dumps
from ._steps import Read, Steps, call, run_reader, run_sync
from ._stores import EventQuery
from ._stores._base import (
    StoredEvent,
    archived_until_steps,
    check_archived,
    refuse_archived_steps,
)

if TYPE_CHECKING:
    from ._stores import Store

StateRefArg = tuple[type[State], Any]

PAGE = 500  # events per page of ``events()``


def new_id() -> str:
    """A random version-4 UUID's 32 hex digits (commit and correlation ids).

    The same digits as ``uuid.uuid4().hex``, without building a ``UUID`` object
    on every commit.
    """
    n = int.from_bytes(os.urandom(16), "big") & _UUID4_CLEAR | _UUID4_SET
    return f"{n:032x}"


_UUID4_CLEAR = ~((0xF000 << 64) | (0xC000 << 48))
_UUID4_SET = (0x4000 << 64) | (0x8000 << 48)


def new_correlation() -> str:
    return new_id()


def encode_metadata(
    outer: Mapping[str, Any], given: Mapping[str, Any] | None
) -> dict[str, Any] | None:
    """The metadata stored with an event: the enclosing blocks' merged with the given dict.

    Refused (TypeError) unless it is a dict with str keys that JSON can hold.
    """
    if given is not None and not isinstance(given, Mapping):
        raise TypeError(f"metadata must be a dict, not {type(given).__name__}")
    merged = {**outer, **(given or {})}
    if not merged:
        return None
    bad = [k for k in merged if not isinstance(k, str)]
    if bad:
        raise TypeError(f"metadata keys must be strings, not {bad[0]!r}")
    try:
        dumps(merged)
    except (TypeError, ValueError) as exc:
        raise TypeError(
            f"metadata must be JSON (str, int, float, bool, None, lists, dicts): {exc}"
        ) from exc
    return merged


def metadata_text(event: Event) -> str | None:
    value = getattr(event, "_pt_metadata", None)
    return None if not value else dumps(value)


def type_names(types: Iterable[type[Event] | str]) -> tuple[str, ...]:
    names = []
    for t in types:
        if isinstance(t, str):
            registry.event_class(t)  # an unknown name is a clear error, not an empty answer
            names.append(t)
        elif isinstance(t, type) and issubclass(t, Event) and t is not Event:
            names.append(t._pt_type_name)
        else:
            raise TypeError(f"types= takes Event subclasses or their type names, not {t!r}")
    return tuple(names)


class EventPager:
    """The pages of ``events()``, without I/O: the first query, then one per page read."""

    def __init__(
        self,
        after: int,
        types: Sequence[type[Event] | str] | None,
        state: StateRefArg | None,
        caused_by: int | None,
        correlation: str | None,
        limit: int | None,
        page_size: int,
    ) -> None:
        if limit is not None and limit < 0:
            raise ValueError(f"limit must be >= 0, not {limit}")
        if page_size < 1:
            raise ValueError(f"page_size must be >= 1, not {page_size}")
        if state is not None:
            if not (isinstance(state, tuple) and len(state) == 2):
                raise TypeError(f"state= takes (StateClass, id), not {state!r}")
            key = key_of(state[0], state[1])
        else:
            key = None
        self._names = None if types is None else type_names(types)
        self._key = key
        self._after = after
        self._caused_by = caused_by
        self._correlation = correlation
        self._remaining = limit
        self._page_size = page_size
        self.size = page_size if limit is None else min(page_size, limit)

    def start_steps(self) -> Steps[EventQuery | None]:
        """In one read: the archive check and the head the stream ends at."""
        after = self._after
        yield from refuse_archived_steps(after, "engine.log.events()")  # never skip archived events
        upto = yield call("head")  # the stream ends at the head when it starts
        query = EventQuery(after, upto, self._names, self._key, self._caused_by, self._correlation)
        self._query = query
        return query if self.size > 0 else None

    def page_steps(self, query: EventQuery) -> Steps[list[StoredEvent]]:
        """In one read: the page of ``query``, its personal values opened."""
        rows = yield call("find_events", query, self.size)
        return (yield from unseal_steps(rows))

    def decode(self, rows: Sequence[StoredEvent]) -> Iterator[Event]:
        for row in rows:
            yield decode_event(row)

    def next_query(self, rows: Sequence[StoredEvent]) -> EventQuery | None:
        """The query of the next page after ``rows`` (None: the stream is done)."""
        if len(rows) < self.size:
            return None
        if self._remaining is not None:
            self._remaining -= len(rows)
            self.size = min(self._page_size, self._remaining)
            if self.size <= 0:
                return None
        self._after = rows[-1].position
        return self._query._replace(after=self._after)


class EventLog:
    """The read side of the log over one store (``engine.log.events`` and friends)."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def events(
        self,
        *,
        after: int = 0,
        types: Sequence[type[Event] | str] | None = None,
        state: StateRefArg | None = None,
        caused_by: int | None = None,
        correlation: str | None = None,
        limit: int | None = None,
        page_size: int = PAGE,
    ) -> Iterator[Event]:
        pager = EventPager(after, types, state, caused_by, correlation, limit, page_size)
        store = self._store
        with store.reader() as reader:
            query = run_reader(pager.start_steps(), reader)
        while query is not None:
            # One short read transaction per page: nothing is held open between
            # pages, so the caller may fire and commit while iterating.
            with store.reader() as reader:
                rows = run_reader(pager.page_steps(query), reader)
            yield from pager.decode(rows)
            query = pager.next_query(rows)

    def event(self, position: int) -> Event:
        """The committed event at ``position`` (``NotFoundError`` outside the log)."""
        return run_sync(event_steps(position), self._store)

    def causes(self, position: int) -> list[Event]:
        """The events that led to this one, root first (empty for a root event)."""
        return run_sync(causes_steps(position), self._store)

    def effects(self, position: int) -> list[Event]:
        """Every event this one caused, directly or not, in position order."""
        return run_sync(effects_steps(position), self._store)


def _event_read_steps(position: int) -> Steps[Event]:
    rows = yield call("find_events", EventQuery(after=position - 1, upto=position), 1)
    rows = yield from unseal_steps(rows)
    head = yield call("head")
    if not rows and 0 < position:
        check_archived(
            (yield from archived_until_steps()), position - 1, f"engine.log.event({position})"
        )
    if not rows:
        raise NotFoundError(f"no event at position {position} (the log holds 1..{head})")
    return decode_event(rows[0])


def event_steps(position: int) -> Steps[Event]:
    """The event at ``position``, in one read (both engines' ``log.event``)."""
    if isinstance(position, bool) or not isinstance(position, int):
        raise TypeError(f"an event position is an int, not {position!r}")
    event: Event = yield Read(_event_read_steps(position))
    return event


def causes_steps(position: int) -> Steps[list[Event]]:
    """The events that led to the one at ``position``, root first (``log.causes``)."""
    chain: list[Event] = []
    event = yield from event_steps(position)
    seen = {position}
    while event.caused_by is not None:
        if event.caused_by in seen:
            raise PlaythroughError(f"the log's causes loop at position {event.caused_by}")
        seen.add(event.caused_by)
        event = yield from event_steps(event.caused_by)
        chain.append(event)
    chain.reverse()
    return chain


def pages_steps(pager: EventPager) -> Steps[list[Event]]:
    """Every event ``pager`` selects, one read per page, as a list."""
    found: list[Event] = []
    query: EventQuery | None = yield Read(pager.start_steps())
    while query is not None:
        rows = yield Read(pager.page_steps(query))
        found.extend(pager.decode(rows))
        query = pager.next_query(rows)
    return found


def effects_steps(position: int) -> Steps[list[Event]]:
    """Every event the one at ``position`` caused, directly or not, in position order."""
    yield from event_steps(position)  # NotFoundError for a position outside the log
    found: list[Event] = []
    frontier = [position]
    while frontier:
        nxt = []
        for cause in frontier:
            pager = EventPager(cause, None, None, cause, None, None, PAGE)
            for e in (yield from pages_steps(pager)):
                found.append(e)
                assert e.id is not None
                nxt.append(e.id)
        frontier = nxt
    found.sort(key=lambda e: e.id or 0)
    return found
