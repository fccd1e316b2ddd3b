"""The rows a store takes and returns, and the checks and messages both stores share.

A store knows nothing of attrs classes: it moves type names, JSON text and
:class:`StateKey` pairs. This module does no I/O and sits outside the
``_stores`` package, so the core reads these types without loading a backend
(``_stores`` re-exports them for store code).
"""

from __future__ import annotations

import abc
import operator
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

from ._errors import (
    CancelRefused,
    CorruptionError,
    DuplicateEvent,
    HandledElsewhere,
    StoreError,
)
from ._keys import StateKey

if TYPE_CHECKING:
    from ._stores._base import LogReader

_T = TypeVar("_T")
_new = tuple.__new__
_first = operator.itemgetter(0)

#: pt_meta key: how many forgets the store has seen (absent: none). An engine
#: remembers the value it loaded its states at; a write from an older one is refused.
FORGET_EPOCH = "forget_epoch"


class NoStoreError(StoreError):
    """Opened with ``create=False`` where no playthrough store exists (nothing was created)."""


def missing_event(position: int, where: str) -> CorruptionError:
    """The error for an event row that should be there and is not."""
    return CorruptionError(
        f"the log is corrupt: no event at position {position} ({where}); positions are "
        "gap-free by construction, so a row was deleted or lost; restore it from a backup",
        position,
    )


def check_consecutive(events: Sequence[StoredEvent], after: int, where: str) -> None:
    """Raise CorruptionError unless the events' positions are after+1, after+2, ..."""
    expected = after + 1
    for e in events:
        if e.position != expected:
            raise missing_event(expected, where)
        expected += 1


def linked_keys(rows: Iterable[Sequence[Any]]) -> dict[int, list[StateKey]]:
    """(position, state type, state id) rows as each position's keys, in row order."""
    touched: dict[int, list[StateKey]] = {}
    get = touched.get
    for p, t, i in rows:
        key = _new(StateKey, (t, i))  # a StateKey without NamedTuple's __new__ frame
        keys = get(p)
        if keys is None:
            touched[p] = [key]
        else:
            keys.append(key)
    return touched


def coupled(links: Sequence[Link]) -> list[Link]:
    """The links whose (position, group) holds two or more states, in their order."""
    count: dict[tuple[int, int], int] = {}
    for link in links:
        count[link.position, link.group] = count.get((link.position, link.group), 0) + 1
    return [link for link in links if count[link.position, link.group] > 1]


def chunks(items: Sequence[_T], size: int) -> Iterator[Sequence[_T]]:
    """Consecutive slices of at most ``size`` items (one statement's worth of parameters)."""
    for i in range(0, len(items), size):
        yield items[i : i + size]


def gap_free(events: Iterable[ImportedEvent], after: int) -> Iterator[ImportedEvent]:
    """The events, refusing (StoreError) any whose position does not follow the last."""
    expected = after + 1
    for event in events:
        if event.position != expected:
            raise StoreError(
                f"import refused, nothing was written: event at position {event.position} "
                f"where {expected} was expected (an import continues the log without a gap)"
            )
        expected += 1
        yield event


def event_pages(events: Iterable[ImportedEvent], after: int, size: int) -> Iterator[ImportPage]:
    """ImportedEvents (gap-checked, see :func:`gap_free`) as pages of at most ``size`` rows."""
    page = ImportPage([], [])
    for e in gap_free(events, after):
        page.events.append((*e[:5], e.version, e.metadata, e.correlation))
        page.links.extend((k.type, k.id, e.position, g) for k, g in e.links)
        if len(page.events) >= size:
            yield page
            page = ImportPage([], [])
    if page.events:
        yield page


def page_follows(page: ImportPage, expected: int) -> int:
    """The position after the page; StoreError unless its events are ``expected``, +1, ...

    One comparison of two lists: cheap per event, and a page whose positions skip
    one, repeat one or run backwards is refused like :func:`gap_free` refuses it.
    """
    positions = list(map(_first, page.events))
    end = expected + len(positions)
    if positions != list(range(expected, end)):
        at = next(n for n, p in enumerate(positions) if p != expected + n)
        raise StoreError(
            f"import refused, nothing was written: event at position {positions[at]} "
            f"where {expected + at} was expected (an import continues the log without a gap)"
        )
    return end


def reader_epoch(reader: LogReader) -> int:
    """The store's forget epoch (0: nobody was ever forgotten)."""
    value = reader.meta(FORGET_EPOCH)
    return int(value) if value else 0


def stale_message(stale: Sequence[tuple[Any, Any, Any]]) -> str:
    """The ConcurrencyError text for (state key, known last event, store's last event) rows."""
    return (
        "commit refused, states changed by another writer since this engine loaded them: "
        + ", ".join(
            f"{key} (known last event {want}, store has {have})" for key, want, have in stale[:10]
        )
        + (f" and {len(stale) - 10} more" if len(stale) > 10 else "")
    )


def stale_forget_message() -> str:
    """The StaleForgetError text."""
    return (
        "commit refused: a data subject was forgotten since this engine loaded its "
        "states, which may hold their personal data; the engine dropped every state "
        "from memory, retry to work on the store's truth"
    )


class NewEvent(NamedTuple):
    """An event to append; ``links`` pairs each touched state with its coupling group."""

    type: str
    data: str
    links: tuple[tuple[StateKey, int], ...]
    caused_by: int | None
    fired_at: str
    key: str | None = None  # idempotency key (unique in the log), see Engine.fire
    needs_handling: bool = False  # has handle hooks: recorded as pending until they complete
    version: int = 1  # the event class's version= when it was written
    metadata: str | None = None  # JSON object, None: no metadata
    correlation: str | None = None


# Rows read back are NamedTuples: loads build thousands of them, and a tuple is
# several times cheaper to create than an attrs instance.


class StoredEvent(NamedTuple):
    position: int
    type: str
    data: str
    caused_by: int | None
    fired_at: str
    version: int = 1
    metadata: str | None = None
    correlation: str | None = None


class SealedEvent(NamedTuple):
    """An event row as stored: personal values still sealed (see _personal), never decoded."""

    position: int
    type: str
    data: str
    caused_by: int | None
    fired_at: str
    version: int = 1
    metadata: str | None = None
    correlation: str | None = None


class Link(NamedTuple):
    position: int
    key: StateKey
    group: int


class SnapshotRecord(NamedTuple):
    key: StateKey
    position: int
    last_event_id: int | None
    data: str
    version: int = 1
    # A hash of the state class's fields and types when written (None: unknown,
    # such a snapshot is never used); see _versions.fingerprint.
    fingerprint: str | None = None
    # What the record is: a row of the snapshots table, or a heads row's value
    # (``HEADS_VALUE``, from ``iter_snapshots``); reports name it.
    source: str = "snapshot"


HEADS_VALUE = "heads value"
"""``SnapshotRecord.source`` of a heads row's value."""


class TypeVersions(NamedTuple):
    """How many rows of one stored type and version there are (``playthrough schema``)."""

    type: str
    version: int
    fingerprint: str | None  # snapshots only
    rows: int


class HeadValue(NamedTuple):
    """A state's value for its heads row, with its class's version and fingerprint."""

    data: str
    version: int = 1
    fingerprint: str | None = None


def head_value(value: str | HeadValue) -> HeadValue:
    """A plain JSON string is a value of version 1 without a fingerprint (never used)."""
    return value if isinstance(value, HeadValue) else HeadValue(value)


class HeadRow(NamedTuple):
    """A heads row: the last event, and the stored value with the position it is exact at."""

    last_position: int
    value: str | None
    value_position: int | None
    value_version: int = 1
    value_fingerprint: str | None = None

    @property
    def fresh(self) -> bool:
        """The value is the state's current one (no event touched it since)."""
        return self.value is not None and self.value_position == self.last_position


class HeadRows(dict[StateKey, HeadRow]):
    """What ``Store.heads`` returns: the rows, and the store's forget epoch read in the
    same statement (``epoch``; None where a store does not say)."""

    epoch: int | None = None

    @staticmethod
    def of(rows: Mapping[StateKey, HeadRow]) -> HeadRows:
        """``rows`` as HeadRows (the same object when it is one)."""
        return rows if isinstance(rows, HeadRows) else HeadRows(rows)


class Completion(NamedTuple):
    """A completed state: the position and type of the event that completed it."""

    key: StateKey
    position: int
    event_type: str


class ScheduleRow(NamedTuple):
    """A scheduled event to store; ``due_at`` and ``created_at`` are ISO 8601 in UTC."""

    id: str
    due_at: str
    type: str
    data: str
    created_at: str
    version: int = 1  # of the event class that scheduled it (upcast when fired)


class ScheduleRecord(NamedTuple):
    """A stored scheduled event. ``status``: pending, fired, cancelled, rejected or failed."""

    id: str
    due_at: str
    type: str
    data: str
    status: str
    position: int | None
    error: str | None
    created_at: str
    lease_owner: str | None
    lease_until: str | None
    version: int = 1


class TransferTables(NamedTuple):
    """What an import writes besides the events, in the same transaction.

    ``None``: the file does not carry that table, the store's rows stay as they
    are. A carried table replaces the store's rows (the file is the newer
    truth: an append brings a copy up to its source), except ``subject_keys``
    (subject, key as base64 text), which are added; a subject that already has
    another key is refused; ``forgotten`` ((subject, id of the deleted key or
    None: whatever key the store holds other than the file's)), forgotten in the
    store first when it holds that key, recorded otherwise; and ``event_keys``
    ((position, idempotency key) of events the import wrote), set on them.
    """

    schedule: tuple[ScheduleRecord, ...] | None = None
    pending_handlers: tuple[int, ...] | None = None
    completed: tuple[Completion, ...] | None = None
    followers: tuple[FollowerRow, ...] | None = None
    subject_keys: tuple[tuple[str, str], ...] | None = None
    forgotten: tuple[tuple[str, str | None], ...] | None = None
    event_keys: tuple[tuple[int, str], ...] | None = None


def key_conflicts(wanted: Sequence[tuple[str, str]], stored: Mapping[str, bytes]) -> None:
    """StoreError if a subject of ``wanted`` (subject, base64 key) has another key in the store."""
    import base64

    for subject, key in wanted:
        have = stored.get(subject)
        if have is not None and have != base64.b64decode(key):
            raise StoreError(
                f"import refused, nothing was written: data subject {subject!r} already has "
                "another key in this store (the file comes from another store's log)"
            )


class CommitExtras(NamedTuple):
    """What an append writes besides events, in the same transaction.

    Events are named by their index in the appended batch (0-based).

    - ``completed``: (state, index of the event that completed it)
    - ``reopened``: states an event allowed to touch completed states reopened
    - ``schedule``: scheduled events to store; ``cancel``: schedule ids to cancel
      (only pending ones change)
    - ``fired``: (schedule id, index of the event firing it): the row must still
      be pending, or the whole append is refused with ConcurrencyError
    """

    completed: tuple[tuple[StateKey, int], ...] = ()
    reopened: tuple[StateKey, ...] = ()
    schedule: tuple[ScheduleRow, ...] = ()
    cancel: tuple[str, ...] = ()
    fired: tuple[tuple[str, int], ...] = ()

    @property
    def empty(self) -> bool:
        return not (self.completed or self.reopened or self.schedule or self.cancel or self.fired)


class CommitRecord(NamedTuple):
    """One commit as a store writes it: what ``Store.append`` was given, normalised.

    ``commit_id`` is set (a fresh one when the caller gave none), ``values`` is a
    mapping, ``extras`` is None when it holds nothing, and the record is never
    empty (no events, nothing handled, no extras: ``append`` returns before).
    """

    events: Sequence[NewEvent]
    expected: Mapping[StateKey, int | None]
    values: Mapping[StateKey, str | HeadValue]
    commit_id: str
    handled: Sequence[int]
    extras: CommitExtras | None
    epoch: int | None


def handled_refused(positions: Iterable[int]) -> HandledElsewhere:
    """The error for a handler completion whose pending-handler rows are already gone."""
    shown = sorted(set(positions))
    return HandledElsewhere(
        "commit refused, nothing was written: the handlers of the event(s) at position(s) "
        + ", ".join(map(str, shown[:10]))
        + (f" and {len(shown) - 10} more" if len(shown) > 10 else "")
        + " were completed by another runner meanwhile"
    )


def cancel_refused(rows: Iterable[tuple[str, str]]) -> CancelRefused:
    """The error for a commit cancelling scheduled events that are no longer pending:
    (schedule id, its status)."""
    shown = sorted(rows)
    return CancelRefused(
        "commit refused, nothing was written: cannot cancel scheduled event(s) "
        + ", ".join(f"{sid} (now {status})" for sid, status in shown[:10])
        + (f" and {len(shown) - 10} more" if len(shown) > 10 else "")
        + ", no longer pending"
    )


def fired_refused(ids: Iterable[str]) -> str:
    return (
        "commit refused: scheduled event(s) "
        + ", ".join(sorted(ids))
        + " were fired or cancelled by another worker meanwhile"
    )


class LogEntry(NamedTuple):
    """One event of the log with the states it touched (from its links)."""

    event: StoredEvent
    keys: list[StateKey]


class LinkedEntry(NamedTuple):
    """One event of the log with its links (states and coupling groups), for export."""

    event: StoredEvent
    links: list[Link]


class ImportedEvent(NamedTuple):
    """An event to import at the position it had in the log it comes from."""

    position: int
    type: str
    data: str
    caused_by: int | None
    fired_at: str
    links: tuple[tuple[StateKey, int], ...]
    version: int = 1  # the event class's version when it was written
    metadata: str | None = None
    correlation: str | None = None


class ImportPage(NamedTuple):
    """A page of events to import, as the rows the store writes.

    ``events``: ``(position, type, data, caused_by, fired_at, version, metadata,
    correlation)`` per event, positions consecutive; ``links``: ``(state type,
    state id, position, coupling group)`` per state an event of the page touched.
    An import reads a file into these directly: no object per event or link.
    """

    events: list[tuple[Any, ...]]
    links: list[tuple[Any, ...]]

    def imported(self) -> list[ImportedEvent]:
        """The page as ImportedEvents (for a store that only takes those)."""
        links: dict[Any, list[tuple[StateKey, int]]] = {}
        for state_type, state_id, position, group in self.links:
            links.setdefault(position, []).append((StateKey(state_type, state_id), group))
        return [
            ImportedEvent(p, t, d, c, f, tuple(links.get(p, ())), v, m, r)
            for p, t, d, c, f, v, m, r in self.events
        ]


def batch_keys(events: Sequence[NewEvent]) -> list[str]:
    """The idempotency keys of a batch; a key given twice is refused before anything is sent."""
    seen: set[str] = set()
    for e in events:
        if e.key is not None:
            if e.key in seen:
                raise DuplicateEvent(
                    f"event key {e.key!r} is given to two events of one commit; nothing was "
                    "written",
                    e.key,
                    None,
                )
            seen.add(e.key)
    return list(seen)


def duplicate_message(key: str, position: int) -> str:
    return (
        f"event key {key!r} is already in the log (event at position {position}); "
        "nothing of this commit was written"
    )


# --------------------------------------------------------------------------- read side


class EventQuery(NamedTuple):
    """Which events ``StoreReader.find_events`` returns: every filter given must hold."""

    after: int = 0
    upto: int | None = None
    types: tuple[str, ...] | None = None
    key: StateKey | None = None
    caused_by: int | None = None
    correlation: str | None = None
    version: int | None = None  # the stored payload version (``playthrough schema`` samples)


class StateInfoRow(NamedTuple):
    """A state's heads and links summary; after an archive the positions it names may be
    archived: their times are then None (and with no link left, so is the first position)."""

    key: StateKey
    created_position: int | None
    created_at: str | None
    last_position: int
    last_at: str | None
    events: int
    snapshot_position: int | None
    value_position: int | None


LOOKUPS = ("eq", "ne", "gt", "gte", "lt", "lte", "in", "contains", "isnull")


class Condition(NamedTuple):
    """One filter on a state's JSON value: ``path`` (field names), a lookup, a JSON-able value.

    ``in``: a list of values; ``contains``: a list of scalars (for a list field)
    or a dict (every key equal); ``isnull``: a bool; range lookups: a number or a str.
    """

    path: tuple[str, ...]
    lookup: str
    value: object


class Order(NamedTuple):
    path: tuple[str, ...]
    descending: bool = False


class FollowerRow(NamedTuple):
    name: str
    position: int
    updated_at: str


class FollowerTransaction(abc.ABC):
    """The store's own transaction, lent to a follower for its writes (same database).

    ``execute`` takes ``?`` placeholders on every store; ``connection`` is the
    driver's connection (sqlite3 or psycopg) for anything else.
    """

    dialect: str
    connection: object

    @abc.abstractmethod
    def execute(self, sql: str, params: Sequence[object] = ()) -> list[tuple[object, ...]]:
        """Run one statement; returns its rows (empty for statements without any)."""

    def executemany(self, sql: str, params: Iterable[Sequence[object]]) -> None:
        """Run one statement once per parameter row (the driver's ``executemany``)."""
        for row in params:
            self.execute(sql, row)


FollowerTransaction.__module__ = "playthrough"


class SubjectForgotten(NamedTuple):
    """A forget, as followers are told of it: ``Projection.on_forgotten(subject, tx)``.

    ``seq`` numbers forgets in the store; ``position`` is the log's head when the
    subject was forgotten (a follower is told once it has handled the events up to it).
    """

    seq: int
    subject: str
    position: int


class FollowerBatch:
    """What ``Store.follow`` yields: the follower's position, its next events, the transaction,
    and the forgets it was not told of yet (``forgotten``; ``told`` records those it was)."""

    def __init__(
        self,
        name: str,
        position: int,
        events: list[StoredEvent],
        tx: FollowerTransaction,
        forgotten: Sequence[SubjectForgotten] = (),
        subject_keys: Callable[[Iterable[str]], dict[str, bytes]] | None = None,
    ) -> None:
        self.name = name
        self.start = position
        self.position = position
        self.events = events
        self.tx = tx
        self.forgotten = list(forgotten)
        self._subject_keys = subject_keys
        self.forgotten_seq = 0  # the last forget the follower was told of, this batch

    def subject_keys(self, subjects: Iterable[str]) -> dict[str, bytes]:
        """The keys of these data subjects, read in the batch's transaction (the
        events come sealed: the follower opens them with these)."""
        if self._subject_keys is None:
            raise StoreError(
                f"follower {self.name!r}: an event holds sealed personal values and the "
                "store's batch reads no subject keys (pass subject_keys to FollowerBatch)"
            )
        return self._subject_keys(subjects)

    def told(self, seq: int) -> None:
        """Record that the follower handled the forget ``seq`` (written with the position)."""
        self.forgotten_seq = max(self.forgotten_seq, seq)

    def advance(self, position: int) -> None:
        """Set the position written when the batch commits."""
        self.position = position
