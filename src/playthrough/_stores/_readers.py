"""The store's reads by capability: the log, the read side, the lifecycle, maintenance.

Each capability's reads run inside one consistent read transaction
(:meth:`playthrough.stores.LogRecorder.reader`); :class:`StoreReader` has them all.
"""

from __future__ import annotations

import abc
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from .._keys import StateKey
from .._records import (
    Completion,
    Condition,
    EventQuery,
    FollowerRow,
    HeadRow,
    Link,
    Order,
    ScheduleRecord,
    SealedEvent,
    SnapshotRecord,
    StateInfoRow,
    StoredEvent,
    TransferTables,
    TypeVersions,
    check_consecutive,
    coupled,
)
from ._tables import (
    LOG_TABLES,
    TRANSFER_TABLES,
)


class LogReader(abc.ABC):
    """The log's reads, inside one consistent read transaction (see :meth:`LogRecorder.reader`)."""

    @abc.abstractmethod
    def head(self) -> int:
        """The largest committed position, 0 for an empty log."""

    @abc.abstractmethod
    def state_heads(self, keys: Iterable[StateKey]) -> dict[StateKey, int]:
        """Position of the last event that touched each key (keys never touched are absent)."""

    @abc.abstractmethod
    def snapshots(
        self, keys: Iterable[StateKey], at_most: int
    ) -> dict[StateKey, list[SnapshotRecord]]:
        """The stored snapshots of each key at positions <= at_most, newest first.

        The state's heads value, when there is one at or before ``at_most``, is
        one of them (at ``value_position``): it is exact there.
        """

    def heads(self, keys: Iterable[StateKey]) -> dict[StateKey, HeadRow]:
        """The heads rows of these keys with their values (keys never touched are absent).

        This default knows no values (a reader that hides them, like one that
        ignores snapshots); the stores read them with the heads.
        """
        return {k: HeadRow(p, None, None) for k, p in self.state_heads(keys).items()}

    @abc.abstractmethod
    def links(self, ranges: Mapping[StateKey, tuple[int, int]]) -> list[Link]:
        """Every link of every event that touches a key at a position in its (lo, hi]."""

    @abc.abstractmethod
    def events(self, positions: Sequence[int]) -> Iterator[StoredEvent]:
        """The events at these positions (sorted ascending), in order, read lazily in chunks.

        Events come as stored: personal values sealed (the core opens them,
        ``_personal.unsealing``), as from every event read of a store."""

    @abc.abstractmethod
    def events_after(self, after: int, limit: int) -> list[StoredEvent]:
        """Up to ``limit`` events with position > after, in order (sealed, as stored)."""

    def events_after_sealed(self, after: int, limit: int) -> list[SealedEvent]:
        """:meth:`events_after` as :class:`SealedEvent` rows (export, archive): every
        event read of a store returns events as stored, personal values sealed."""
        return [SealedEvent(*e) for e in self.events_after(after, limit)]

    def iter_events(
        self, after: int = 0, until: int | None = None, chunk: int = 1000
    ) -> Iterator[StoredEvent]:
        """Every event with after < position <= until (no bound: to the head), in order.

        Pages through :meth:`events_after` ``chunk`` events per statement, inside
        this reader's transaction, so the events are those of one snapshot.
        """
        if chunk < 1:
            raise ValueError(f"chunk must be at least 1, not {chunk}")
        position = after
        while until is None or position < until:
            # Positions strictly increase, so (position, until] holds at most
            # until - position events: never fetch past the bound.
            limit = chunk if until is None else min(chunk, until - position)
            page = self.events_after(position, limit)
            check_consecutive(page, position, "reading the log")
            for event in page:
                if until is not None and event.position > until:
                    return
                yield event
            if len(page) < limit:
                return
            position = page[-1].position

    @abc.abstractmethod
    def iter_snapshots(self) -> Iterator[SnapshotRecord]:
        """Every stored snapshot and heads value, ordered by state and position.

        A heads value at the position of a snapshot comes too: both are checked.
        """

    @abc.abstractmethod
    def links_between(self, after: int, upto: int) -> list[Link]:
        """Every link of the events with after < position <= upto."""

    def coupled_links_between(self, after: int, upto: int) -> list[Link]:
        """The links of the events with after < position <= upto whose group holds two or
        more states (an ``apply`` hook couples them), in position order."""
        return coupled(self.links_between(after, upto))

    def linked_keys_between(self, after: int, upto: int) -> dict[int, list[StateKey]]:
        """The states each event with after < position <= upto touched, by position
        (events without links are absent): :meth:`links_between` without the groups,
        which the stores read from their links' position index alone."""
        touched: dict[int, list[StateKey]] = {}
        for link in self.links_between(after, upto):
            touched.setdefault(link.position, []).append(link.key)
        return touched

    @abc.abstractmethod
    def keys_between(self, after: int, upto: int) -> list[tuple[int, str]]:
        """(position, idempotency key) of the events with after < position <= upto that
        have one, in position order."""

    @abc.abstractmethod
    def meta(self, key: str) -> str | None:
        """A value of the store's small key-value table (None when absent)."""

    @abc.abstractmethod
    def commit_positions(self, commit_id: str) -> tuple[int, int] | None:
        """(first, last) position written by the commit with this id; None if not in the log."""

    @abc.abstractmethod
    def event_keys(self, keys: Sequence[str]) -> dict[str, int]:
        """The position of the stored event carrying each of these idempotency keys."""


class ReadSideReader(abc.ABC):
    """The read side's reads: events by filter, states by value, followers."""

    @abc.abstractmethod
    def find_events(self, query: EventQuery, limit: int) -> list[StoredEvent]:
        """Up to ``limit`` events matching ``query``, in position order, with metadata."""

    @abc.abstractmethod
    def state_info(self, key: StateKey) -> StateInfoRow | None:
        """What the log and the snapshots know of one state (None: never touched)."""

    @abc.abstractmethod
    def stale_states(
        self, state_type: str, limit: int, shape: tuple[int, str] | None = None
    ) -> list[tuple[StateKey, int]]:
        """States of a type whose stored value is missing or behind their last event.

        With ``shape`` (the class's current version and fingerprint), also those
        whose value another version or shape of the class wrote. Pairs each
        with its last position; at most ``limit`` of them.
        """

    @abc.abstractmethod
    def query_states(
        self,
        state_type: str,
        conditions: Sequence[Condition],
        order: Sequence[Order],
        limit: int | None,
    ) -> list[tuple[str, str, int]]:
        """(encoded id, value, value_position) of the states whose stored value matches.

        Ordered by ``order`` then by encoded id. Callers make the values fresh first.
        """

    @abc.abstractmethod
    def count_states(self, state_type: str, conditions: Sequence[Condition]) -> int:
        """How many states of the type have a stored value matching every condition."""

    @abc.abstractmethod
    def followers(self) -> list[FollowerRow]:
        """Every follower's stored position, by name."""


class LifecycleReader(abc.ABC):
    """The lifecycle's reads: completions, subject keys, the schedule, pending handlers."""

    @abc.abstractmethod
    def completions(self, keys: Iterable[StateKey]) -> dict[StateKey, Completion]:
        """The completion rows of these states (states not completed are absent)."""

    @abc.abstractmethod
    def subject_keys(self, subjects: Iterable[str]) -> dict[str, bytes]:
        """The keys of these data subjects (forgotten or unknown ones are absent)."""

    @abc.abstractmethod
    def schedule(self, schedule_id: str) -> ScheduleRecord | None:
        """One scheduled event by id."""

    @abc.abstractmethod
    def schedules(self, status: str | None = None) -> list[ScheduleRecord]:
        """Scheduled events (all, or those with this status), by due time then id."""

    @abc.abstractmethod
    def pending_handlers(self, limit: int) -> list[int]:
        """Up to ``limit`` positions of events whose handlers have not completed, ascending."""


class MaintenanceReader(abc.ABC):
    """The reads of export, verify and ``playthrough schema``."""

    @abc.abstractmethod
    def transfer_rows(self, table: str) -> list[tuple[Any, ...]]:
        """Every row of one table of :data:`TRANSFER_TABLES`, its columns in that order."""

    def transfer_tables(self, tables: Iterable[str] = TRANSFER_TABLES) -> TransferTables:
        """The rows of these carried tables (the others None), in this reader's snapshot."""
        wanted = set(tables)
        rows = {t: self.transfer_rows(t) for t in (*TRANSFER_TABLES, *LOG_TABLES) if t in wanted}
        out = TransferTables()
        if "schedule" in rows:
            out = out._replace(schedule=tuple(ScheduleRecord(*r) for r in rows["schedule"]))
        if "pending_handlers" in rows:
            out = out._replace(pending_handlers=tuple(int(r[0]) for r in rows["pending_handlers"]))
        if "completed" in rows:
            out = out._replace(
                completed=tuple(
                    Completion(StateKey(t, i), int(p), e) for t, i, p, e in rows["completed"]
                )
            )
        if "followers" in rows:
            out = out._replace(
                followers=tuple(FollowerRow(n, int(p), str(u)) for n, p, u in rows["followers"])
            )
        if "subject_keys" in rows:
            out = out._replace(subject_keys=tuple((s, str(k)) for s, k in rows["subject_keys"]))
        if "forgotten" in rows:
            seen = dict.fromkeys(
                (str(s), None if k is None else str(k)) for s, k in rows["forgotten"]
            )
            out = out._replace(forgotten=tuple(seen))
        return out

    @abc.abstractmethod
    def heads_disagreements(self, limit: int) -> list[tuple[StateKey, int | None, int | None]]:
        """Up to ``limit`` states whose heads row disagrees with their links.

        Each is (key, the heads row's last position or None if it has none, the
        last position its links name or None if none do).
        """

    @abc.abstractmethod
    def snapshot_disagreements(
        self, limit: int
    ) -> list[tuple[StateKey, int, int | None, int | None]]:
        """Up to ``limit`` snapshots whose ``last_event_id`` is not what their links say.

        Each is (key, snapshot position, stored last_event_id, the last position
        at or before the snapshot that its links name, or None).
        """

    @abc.abstractmethod
    def event_versions(self) -> list[TypeVersions]:
        """Per stored event type and version, the number of events (fingerprint None)."""

    @abc.abstractmethod
    def snapshot_versions(self) -> list[TypeVersions]:
        """Per state type, version and fingerprint, the number of snapshots and heads values."""


class StoreReader(LogReader, ReadSideReader, LifecycleReader, MaintenanceReader):
    """Reads inside one consistent read transaction (see :meth:`Store.reader`): every
    capability's reads."""
