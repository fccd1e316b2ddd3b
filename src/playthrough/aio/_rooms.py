"""The async engine's rooms: ``engine.log``, ``engine.states`` (and, as they come, the others).

Each method drives the same steps as the sync room of the same name
(``playthrough._rooms``), awaiting the async store where that one calls the
sync store: the names, arguments, results and errors are the sync engine's.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from .._history import History, history_steps
from .._log import PAGE, EventPager, causes_steps, effects_steps, event_steps
from .._model import Event, State, key_of
from .._query import StateInfo, _completed_check, completion_steps
from .._stores._base import Completion, EventQuery

if TYPE_CHECKING:
    from ._engine import AsyncEngine

S = TypeVar("S", bound=State)


class AsyncLog:
    """``engine.log`` of the async engine: the committed log, read (``engine.log`` of the
    sync engine, awaited; ``events`` is an async iterator)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    def __repr__(self) -> str:
        return f"<Log of {self._engine.store.url}>"

    async def events(
        self,
        *,
        after: int = 0,
        types: Sequence[type[Event] | str] | None = None,
        state: tuple[type[State], Any] | None = None,
        caused_by: int | None = None,
        correlation: str | None = None,
        limit: int | None = None,
        page_size: int = PAGE,
    ) -> AsyncIterator[Event]:
        """Committed events after ``after``, in order, one short read per page (nothing is
        held open between pages: the caller may fire and commit while iterating)."""
        store = self._engine.store
        pager = EventPager(after, types, state, caused_by, correlation, limit, page_size)
        query: EventQuery | None = await store.read(pager.start_steps())
        while query is not None:
            rows = await store.read(pager.page_steps(query))
            for event in pager.decode(rows):
                yield event
            query = pager.next_query(rows)

    async def event(self, position: int) -> Event:
        """The committed event at ``position`` (``NotFoundError`` outside the log)."""
        return await self._engine._drive(event_steps(position))

    async def causes(self, position: int) -> list[Event]:
        """The events that led to this one, root first (empty for a root event)."""
        return await self._engine._drive(causes_steps(position))

    async def effects(self, position: int) -> list[Event]:
        """Every event this one caused, directly or not, in position order."""
        return await self._engine._drive(effects_steps(position))

    async def history(
        self, state_class: type[State], state_id: Any = None, *, at: int | None = None
    ) -> History:
        """Every event that touched this state up to ``at`` (default: the head), oldest
        first, with the fields each changed (``engine.log.history``)."""
        key = key_of(state_class, state_id)
        return await self._engine._drive(history_steps(self._engine.core.reconstitutor, key, at))


class AsyncStates:
    """``engine.states`` of the async engine: the stored states, found by their values, and
    what the store knows of each (``engine.states`` of the sync engine, awaited; ``find``
    returns a list)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    def __repr__(self) -> str:
        return f"<States of {self._engine.store.url}>"

    async def find(
        self,
        state_class: type[S],
        *,
        limit: int | None = None,
        order_by: str | Sequence[str] | None = None,
        completed: bool | None = None,
        **filters: Any,
    ) -> list[S]:
        """Stored states of a type whose values match, as of the store's head, as a list
        (``engine.states.find``: the same filters, ordering, checks and errors)."""
        drive = self._engine._drive
        queries = self._engine.core.states.queries
        if completed is None:
            return await drive(queries.find_steps(state_class, filters, limit, order_by))
        _completed_check(state_class, limit, completed)
        found = await drive(queries.find_steps(state_class, filters, None, order_by))
        kept = [s for s in found if s.is_complete() == completed]
        return kept if limit is None else kept[:limit]

    async def count(self, state_class: type[State], **filters: Any) -> int:
        """How many stored states of a type match (counted by the database)."""
        queries = self._engine.core.states.queries
        return await self._engine._drive(queries.count_steps(state_class, filters))

    async def info(self, state_class: type[State], state_id: Any = None) -> StateInfo:
        """When a state was created and last changed, how many events, its newest snapshot."""
        queries = self._engine.core.states.queries
        return await self._engine._drive(queries.info_steps(state_class, state_id))

    async def completion(self, state_class: type[State], state_id: Any = None) -> Completion | None:
        """Whether the store records this state completed: the position and type of the
        event that completed it, or None."""
        return await self._engine._drive(completion_steps(key_of(state_class, state_id)))
