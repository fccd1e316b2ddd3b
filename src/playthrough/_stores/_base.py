"""The store contract: a globally ordered event log, state-event links, snapshots.

A store knows nothing of attrs classes: it moves type names, JSON text and
:class:`StateKey` pairs. Every store passes :class:`playthrough.testing.StoreContract`.

Tables (names are the same in every store):

- events: position (strictly increasing, in commit order), type, data, caused_by, fired_at
- links: (state type, state id, position, group): which states an event touched;
  states with the same group number in one event are coupled by an ``apply`` hook
- heads: (state type, state id) -> position of the last event that touched it;
  the optimistic-concurrency check compares against this row, inside the
  database transaction that appends. Since schema version 2 the row also holds
  the state's canonical JSON ``value`` and the position it is exact at
  (``value_position``): written by the commit itself, in the same statement,
  and *fresh* when ``value_position = last_position``. An older value is still
  an exact snapshot at ``value_position``, so readers offer any value as a
  snapshot candidate.
- snapshots: (state type, state id, position) -> last_event_id, data; a short
  history per state so a load can rewind to an older one
- commits (schema 5): commit id -> first and last position of the events one
  append wrote, in the same transaction, so "was this commit written?" has a
  certain answer after a connection died mid-commit
- events.event_key (schema 5): an optional idempotency key, unique in the log
- archived_keys (schema 8): the keys of archived events (key -> position), moved
  there by the archive's transaction: a key stays refused after its event left
  the log, and ``event_keys`` answers from both tables
- pending_handlers (schema 5): positions of committed events whose ``handle``
  hooks have not completed; inserted by the append that stores the event,
  deleted in the transaction that stores what the handler fired (or alone), by
  a checked delete that refuses the whole commit if another runner got there first

Schema versions: a store is created at version 1 and brought up to
``SCHEMA_VERSION`` by the migration steps each backend lists (one ordered list
of ``(version, statements)``), inside one transaction, on open. A fresh store
and an upgraded one run the same steps, so they cannot differ.
- snapshots: (state type, state id, position) -> last_event_id, data, version,
  fingerprint; a short history per state so a load can rewind to an older one
- events, snapshots and heads values carry the ``version`` of the class that
  wrote them, snapshots and heads values its ``fingerprint`` (schema evolution,
  see _upcasting; since schema version 3)
- followers: name -> position of the last event a follower processed

Schema version 4 (a migration step, see ``MIGRATIONS``) adds ``metadata`` and
``correlation`` to events, indexes on ``caused_by`` and ``correlation``, and the
followers table.
- completed (schema 6): (state type, state id) -> position and type of the event
  that completed the state; written with that event, in the append transaction
- schedule (schema 6): events to fire later (id, due_at, type, data, status,
  position of the fired event, error, lease); a due row is fired by the append
  that marks it ``fired`` (refused there if it is no longer ``pending``)

"""

from __future__ import annotations

import abc
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

from .._errors import (
    ArchivedRangeError,
    CancelRefused,
    CorruptionError,
    DuplicateEvent,
    HandledElsewhere,
    StoreError,
)
from .._model import StateKey
from .._steps import Call, Steps

if TYPE_CHECKING:
    from .._engine import Engine

SCHEMA_VERSION = 9

#: Upgrade steps, in order: (the version a step brings a store to, statements).
#: A new store is created at version 1 and brought up through every step, so an
#: old store and a new one end with the same tables. ``{s}`` is the PostgreSQL
#: schema and a dot (empty for SQLite). Add a step per schema change; never edit one.
MIGRATIONS: tuple[tuple[int, tuple[str, ...]], ...] = (
    (
        2,
        (
            "ALTER TABLE {s}pt_heads ADD COLUMN value TEXT",
            "ALTER TABLE {s}pt_heads ADD COLUMN value_position BIGINT",
        ),
    ),
    (
        3,  # schema evolution: the writing class's version (and shape) on every row
        (
            "ALTER TABLE {s}pt_events ADD COLUMN version INTEGER NOT NULL DEFAULT 1",
            "ALTER TABLE {s}pt_snapshots ADD COLUMN version INTEGER NOT NULL DEFAULT 1",
            "ALTER TABLE {s}pt_snapshots ADD COLUMN fingerprint TEXT",
            "ALTER TABLE {s}pt_heads ADD COLUMN value_version INTEGER NOT NULL DEFAULT 1",
            "ALTER TABLE {s}pt_heads ADD COLUMN value_fingerprint TEXT",
        ),
    ),
    (
        4,  # the read side: what the log stores with an event, followers
        (
            "ALTER TABLE {s}pt_events ADD COLUMN metadata TEXT",
            "ALTER TABLE {s}pt_events ADD COLUMN correlation TEXT",
            "CREATE INDEX pt_events_by_cause ON {s}pt_events (caused_by) "
            "WHERE caused_by IS NOT NULL",
            "CREATE INDEX pt_events_by_correlation ON {s}pt_events (correlation) "
            "WHERE correlation IS NOT NULL",
            "CREATE TABLE {s}pt_followers (name TEXT PRIMARY KEY, "
            "position BIGINT NOT NULL, updated_at TEXT NOT NULL)",
        ),
    ),
    (
        5,  # issue 9: commit ids, idempotency keys, pending handlers
        (
            "CREATE TABLE {s}pt_commits (commit_id TEXT PRIMARY KEY, "
            "first_position BIGINT NOT NULL, last_position BIGINT NOT NULL)",
            "ALTER TABLE {s}pt_events ADD COLUMN event_key TEXT",
            "CREATE UNIQUE INDEX pt_events_by_key ON {s}pt_events (event_key) "
            "WHERE event_key IS NOT NULL",
            "CREATE TABLE {s}pt_pending_handlers (position BIGINT PRIMARY KEY)",
        ),
    ),
    (
        6,
        (
            """CREATE TABLE IF NOT EXISTS {s}pt_completed (
                state_type TEXT NOT NULL,
                state_id TEXT NOT NULL,
                position BIGINT NOT NULL,
                event_type TEXT NOT NULL,
                PRIMARY KEY (state_type, state_id)
            )""",
            """CREATE TABLE IF NOT EXISTS {s}pt_schedule (
                id TEXT PRIMARY KEY,
                due_at TEXT NOT NULL,
                type TEXT NOT NULL,
                data TEXT NOT NULL,
                status TEXT NOT NULL,
                position BIGINT,
                error TEXT,
                created_at TEXT NOT NULL,
                lease_owner TEXT,
                lease_until TEXT,
                version INTEGER NOT NULL DEFAULT 1
            )""",
            "CREATE INDEX IF NOT EXISTS pt_schedule_due ON {s}pt_schedule (status, due_at)",
        ),
    ),
    (
        7,
        (
            """CREATE TABLE IF NOT EXISTS {s}pt_subject_keys (
                subject TEXT PRIMARY KEY,
                key TEXT NOT NULL
            )""",
        ),
    ),
    (
        8,  # archive keeps the idempotency keys of the events it moves out of the log
        (
            """CREATE TABLE IF NOT EXISTS {s}pt_archived_keys (
                event_key TEXT PRIMARY KEY,
                position BIGINT NOT NULL
            )""",
        ),
    ),
    (
        9,  # forgetting: what followers are told, personal values the archive took away
        (
            "CREATE TABLE IF NOT EXISTS {s}pt_forgotten (seq BIGINT PRIMARY KEY, "
            "subject TEXT NOT NULL, position BIGINT NOT NULL)",
            "ALTER TABLE {s}pt_followers ADD COLUMN forgotten BIGINT NOT NULL DEFAULT 0",
            "CREATE TABLE IF NOT EXISTS {s}pt_archived_personal (subject TEXT NOT NULL, "
            "state_type TEXT NOT NULL, state_id TEXT NOT NULL, type TEXT NOT NULL, "
            "data TEXT NOT NULL)",
            "CREATE INDEX IF NOT EXISTS pt_archived_personal_by_subject "
            "ON {s}pt_archived_personal (subject)",
        ),
    ),
)


def parse_schema_version(value: object, where: str) -> int:
    """The stored schema version as an int, or a StoreError naming what was found."""
    try:
        return int(str(value))
    except ValueError:
        raise StoreError(
            f"{where}: pt_meta.schema_version is {value!r}, not a version number; "
            "this is not a playthrough store, or it was tampered with"
        ) from None


#: pt_meta key: the log's events at positions <= this were moved to an archive.
ARCHIVED_UNTIL = "archived_until"
#: pt_meta key: the running hash of the log up to ``ARCHIVED_UNTIL`` (see _transfer.chain),
#: so a store whose first events are archived can still say which log it continues.
ARCHIVED_CHAIN = "archived_chain"

#: pt_meta key: how many forgets the store has seen (absent: none). An engine
#: remembers the value it loaded its states at; a write from an older one is refused.
FORGET_EPOCH = "forget_epoch"

_T = TypeVar("_T")


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


def archived_until(reader: StoreReader) -> int:
    """The last archived position (0: nothing archived)."""
    value = reader.meta(ARCHIVED_UNTIL)
    return int(value) if value else 0


def archived_until_steps() -> Steps[int]:
    """The last archived position (0: nothing archived), as a reader request."""
    value = yield Call("meta", (ARCHIVED_UNTIL,))
    return int(value) if value else 0


def refuse_archived_steps(at: int, doing: str) -> Steps[None]:
    """``refuse_archived`` as reader requests."""
    check_archived((yield from archived_until_steps()), at, doing)


def reader_epoch(reader: StoreReader) -> int:
    """The store's forget epoch (0: nobody was ever forgotten)."""
    value = reader.meta(FORGET_EPOCH)
    return int(value) if value else 0


def refuse_archived(reader: StoreReader, at: int, doing: str) -> None:
    """ArchivedRangeError when the log as of ``at`` needs archived events (``at`` < the cut)."""
    check_archived(archived_until(reader), at, doing)


def check_archived(until: int, at: int, doing: str) -> None:
    """ArchivedRangeError when ``at`` is before the cut ``until``."""
    if at < until:
        raise ArchivedRangeError(
            f"{doing} needs the log from position {at}, but positions 1..{until} were "
            "archived: open the engine with archive=FILE (--archive FILE) to read them"
        )


def check_archive_cut(reader: StoreReader, until: int, base: Sequence[SnapshotRecord]) -> None:
    """StoreError unless ``until`` is a valid next cut and ``base`` all sits at it."""
    previous = archived_until(reader)
    head = reader.head()
    if not previous < until < head:
        raise StoreError(
            f"cannot archive up to position {until}: the cut must be after the archived "
            f"positions (1..{previous}) and before the head ({head}), which stays in the log"
        )
    wrong = [r for r in base if r.position != until]
    if wrong:
        raise StoreError(f"base snapshot of {wrong[0].key} at {wrong[0].position}, not {until}")


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


SCHEDULE_COLUMNS = (
    "id, due_at, type, data, status, position, error, created_at, lease_owner, lease_until, version"
)

#: The tables an export carries besides the log, in the order of the file (the
#: subject keys last, so that an operator can strip them), with the columns
#: ``StoreReader.transfer_rows`` reads and ``Store.import_events`` writes.
TRANSFER_TABLES: dict[str, tuple[str, str]] = {
    # table: (columns, ORDER BY)
    "schedule": (SCHEDULE_COLUMNS, "id"),
    "pending_handlers": ("position", "position"),
    "completed": ("state_type, state_id, position, event_type", "state_type, state_id"),
    "followers": ("name, position, updated_at", "name"),
    "subject_keys": ("subject, key", "subject"),
}


def transfer_select(table: str, prefix: str) -> str:
    """The SELECT of one carried table's rows (``prefix``: the schema and a dot, or empty)."""
    if table not in TRANSFER_TABLES:
        raise ValueError(
            f"{table!r} is not a table an export carries ({', '.join(TRANSFER_TABLES)})"
        )
    columns, order = TRANSFER_TABLES[table]
    return f"SELECT {columns} FROM {prefix}pt_{table} ORDER BY {order}"


class TransferTables(NamedTuple):
    """What an import writes besides the events, in the same transaction.

    ``None``: the file does not carry that table, the store's rows stay as they
    are. A carried table replaces the store's rows (the file is the newer
    truth: an append brings a copy up to its source), except ``subject_keys``
    (subject, key as base64 text), which are added; a subject that already has
    another key is refused.
    """

    schedule: tuple[ScheduleRecord, ...] | None = None
    pending_handlers: tuple[int, ...] | None = None
    completed: tuple[Completion, ...] | None = None
    followers: tuple[FollowerRow, ...] | None = None
    subject_keys: tuple[tuple[str, str], ...] | None = None


def transfer_writes(tables: TransferTables, prefix: str) -> list[tuple[str, list[tuple[Any, ...]]]]:
    """The statements (``?`` placeholders) and rows that write ``tables`` (keys aside).

    A DELETE comes with no rows (run it once), an INSERT with its rows (run it for each).
    """
    out: list[tuple[str, list[tuple[Any, ...]]]] = []
    rows: dict[str, Sequence[tuple[Any, ...]] | None] = {
        "schedule": tables.schedule,
        "pending_handlers": None
        if tables.pending_handlers is None
        else [(p,) for p in tables.pending_handlers],
        "completed": None
        if tables.completed is None
        else [(c.key.type, c.key.id, c.position, c.event_type) for c in tables.completed],
        "followers": tables.followers,
    }
    for table, carried in rows.items():
        if carried is None:
            continue
        columns = TRANSFER_TABLES[table][0]
        marks = ", ".join("?" for _ in columns.split(","))
        out.append((f"DELETE FROM {prefix}pt_{table}", []))
        if carried:
            insert = f"INSERT INTO {prefix}pt_{table} ({columns}) VALUES ({marks})"
            out.append((insert, [tuple(r) for r in carried]))
    return out


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


class StoreReader(abc.ABC):
    """Reads inside one consistent read transaction (see :meth:`Store.reader`)."""

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
        """The events at these positions (sorted ascending), in order, read lazily in chunks."""

    @abc.abstractmethod
    def events_after(self, after: int, limit: int) -> list[StoredEvent]:
        """Up to ``limit`` events with position > after, in order."""

    @abc.abstractmethod
    def events_after_sealed(self, after: int, limit: int) -> list[SealedEvent]:
        """:meth:`events_after` as stored: personal values stay sealed (export, archive)."""

    @abc.abstractmethod
    def transfer_rows(self, table: str) -> list[tuple[Any, ...]]:
        """Every row of one table of :data:`TRANSFER_TABLES`, its columns in that order."""

    def transfer_tables(self, tables: Iterable[str] = TRANSFER_TABLES) -> TransferTables:
        """The rows of these carried tables (the others None), in this reader's snapshot."""
        wanted = set(tables)
        rows = {t: self.transfer_rows(t) for t in TRANSFER_TABLES if t in wanted}
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
        return out

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

    @abc.abstractmethod
    def meta(self, key: str) -> str | None:
        """A value of the store's small key-value table (None when absent)."""

    # ---------------------------------------------------------------- read side

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
    def commit_positions(self, commit_id: str) -> tuple[int, int] | None:
        """(first, last) position written by the commit with this id; None if not in the log."""

    @abc.abstractmethod
    def event_keys(self, keys: Sequence[str]) -> dict[str, int]:
        """The position of the stored event carrying each of these idempotency keys."""

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
    def pending_handlers(self, limit: int) -> list[int]:
        """Up to ``limit`` positions of events whose handlers have not completed, ascending."""

    @abc.abstractmethod
    def event_versions(self) -> list[TypeVersions]:
        """Per stored event type and version, the number of events (fingerprint None)."""

    @abc.abstractmethod
    def snapshot_versions(self) -> list[TypeVersions]:
        """Per state type, version and fingerprint, the number of snapshots and heads values."""


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


class Store(abc.ABC):
    """Where events, links and snapshots live.

    A store is opened once per process and shared: engines (one per request or
    thread) borrow it and never close it. Both stores are safe to share across
    threads (SQLite serialises its transactions on a lock, PostgreSQL gives
    each thread's read transaction a pooled connection of its own).
    """

    #: Counts statements sent to the server; tests use it to bound round trips.
    statements: int = 0

    def read_log(
        self, after: int = 0, until: int | None = None, chunk: int = 1000
    ) -> Iterator[list[LogEntry]]:
        """The log after ``after`` (up to ``until``; no bound: to the head), page by page.

        The one way long passes over the log (full replay, verification, the
        testing kit, export) read it: each page is read in its own short read
        transaction, so a pass never holds one open for the whole log and may
        write between pages. Positions are gap-free and only grow, so the pages
        together are exactly the log up to the bound.
        """
        for page, links in self._log_pages(after, until, chunk):
            touched: dict[int, list[StateKey]] = {}
            for link in links:
                touched.setdefault(link.position, []).append(link.key)
            yield [LogEntry(e, touched.get(e.position, [])) for e in page]

    def read_linked_log(
        self, after: int = 0, until: int | None = None, chunk: int = 1000
    ) -> Iterator[list[LinkedEntry]]:
        """:meth:`read_log` with each event's links (coupling groups included)."""
        for page, links in self._log_pages(after, until, chunk):
            by_position: dict[int, list[Link]] = {}
            for link in links:
                by_position.setdefault(link.position, []).append(link)
            yield [LinkedEntry(e, by_position.get(e.position, [])) for e in page]

    def _log_pages(
        self, after: int, until: int | None, chunk: int
    ) -> Iterator[tuple[list[StoredEvent], list[Link]]]:
        """The pager behind :meth:`read_log`: (events, their links) per short read transaction."""
        if chunk < 1:
            raise ValueError(f"chunk must be at least 1, not {chunk}")
        position = after
        first = True
        while until is None or position < until:
            limit = chunk if until is None else min(chunk, until - position)
            with self.reader() as reader:
                if first:
                    refuse_archived(reader, after, "reading the log")
                    first = False
                page = [
                    e
                    for e in reader.events_after(position, limit)
                    if until is None or e.position <= until
                ]
                if not page:
                    # A link past the last event points at an event that is gone.
                    orphans = reader.links_between(position, until or reader.head() + 1)
                    if orphans:
                        raise missing_event(orphans[0].position, "a link points at it")
                    return
                check_consecutive(page, position, "reading the log")
                links = reader.links_between(position, page[-1].position)
            yield page, links
            position = page[-1].position

    def engine(self, **options: Any) -> Engine:
        """A new engine over this store (cheap: no connection, no schema check).

        Use one per request or thread; ``with store.engine() as engine:``
        commits on a clean exit and discards on an error, and closing it
        leaves this store open. ``options`` are those of :class:`Engine`.
        """
        from .._engine import Engine

        return Engine(self, **options)

    @abc.abstractmethod
    def reader(self) -> AbstractContextManager[StoreReader]:
        """A consistent view of the store for the duration of the block."""

    @abc.abstractmethod
    def append(
        self,
        events: Sequence[NewEvent],
        expected: Mapping[StateKey, int | None],
        values: Mapping[StateKey, str | HeadValue] | None = None,
        commit_id: str | None = None,
        handled: Sequence[int] = (),
        extras: CommitExtras | None = None,
        epoch: int | None = None,
    ) -> list[int]:
        """Append atomically and return the positions given, in order.

        ``epoch`` (None: not checked) is the forget epoch the writer loaded its
        states at; if a subject was forgotten since, raise StaleForgetError
        (a ConcurrencyError) and write nothing: the writer may hold their data.

        ``expected`` maps every state the batch touches to the position of the
        last event this writer knows touched it (``None``: never touched). If
        any differs from the store's, raise ConcurrencyError and write nothing.
        An event key already in the log (or twice in the batch) raises
        DuplicateEvent and writes nothing.

        ``commit_id`` (a fresh one when None) is stored with the events in the
        same transaction. An error that says nothing was written must be
        certain of it; when the outcome cannot be learnt (the connection died
        after COMMIT may have reached the server and the store cannot find out),
        raise CommitOutcomeUnknown carrying the commit id.

        Events with ``needs_handling`` are recorded as pending handlers; the
        positions in ``handled`` (events whose handlers fired this batch) stop
        being pending, in the same transaction: a checked delete, done before
        anything is written. If any of them is no longer pending (another
        runner completed it), raise HandledElsewhere and write nothing, so a
        handler's events are stored once however many runners ran it.

        ``values`` gives touched states' canonical JSON after the batch; it is
        written to their heads rows (exact at the state's last event of the
        batch) in the same statement. A touched state without one keeps its old
        value, which is then no longer fresh.
        ``extras`` (completions, schedules) are written in the same transaction;
        an append of no events with extras (or ``handled``) writes only those.
        A cancel in ``extras`` is checked: a row that is neither pending nor
        already cancelled (it was fired meanwhile) raises CancelRefused and
        nothing is written.
        """

    @abc.abstractmethod
    def heads(self, keys: Iterable[StateKey]) -> dict[StateKey, HeadRow]:
        """The heads rows of these keys (keys never touched are absent), in one statement.

        Runs on its own, as one consistent statement (not inside :meth:`reader`).
        """

    @abc.abstractmethod
    def write_values(self, records: Sequence[SnapshotRecord], epoch: int | None = None) -> int:
        """Store heads values where they are exact; return how many were written.

        With ``epoch``, nothing is written if a subject was forgotten since then.

        Each record is a state's value as of its last event ``record.position``;
        it is written only where the heads row's ``last_position`` still equals
        it (a state changed since is left alone) and the value is not already
        fresh. Never waits on rows a writer holds (those are skipped).
        """

    @abc.abstractmethod
    def ensure_subject_keys(self, subjects: Mapping[str, bytes]) -> dict[str, bytes]:
        """The key of each subject, storing the given new key where it has none yet."""

    @abc.abstractmethod
    def forget_subject(self, subject: str) -> bool:
        """Forget a data subject in one transaction; False if it had no key.

        Finds the subject's events (in the log and those an archive took
        away), drops the snapshots and heads values of the states they touched
        only, scrubs their clear values out of archive base snapshots and
        schedule error texts, deletes the key, bumps the forget epoch and
        records the forget for followers. Then makes the deletion final on disk
        (SQLite: secure_delete and a WAL checkpoint; PostgreSQL: VACUUM).
        """

    @abc.abstractmethod
    def claim_due(self, now: str, lease_until: str, owner: str, limit: int) -> list[ScheduleRecord]:
        """Lease up to ``limit`` pending scheduled events due at ``now`` or earlier.

        Rows leased by another owner until after ``now`` are skipped, so
        concurrent workers claim disjoint rows (PostgreSQL: ``FOR UPDATE SKIP
        LOCKED``; SQLite: under the write lock). Oldest due first.
        """

    @abc.abstractmethod
    def finish_schedule(self, schedule_id: str, owner: str, status: str, error: str | None) -> bool:
        """Record the outcome of a leased pending row that was not fired (rejected,
        failed), or give the lease back (status ``pending``). False: not ours any more."""

    @abc.abstractmethod
    def rearm_schedule(self, schedule_id: str, due_at: str) -> bool:
        """Make a ``failed`` (or ``pending``) scheduled row pending again, due at ``due_at``.

        Its error and lease are cleared. False when no row has that id or its
        status is another (fired, cancelled, rejected): nothing changed then.
        """

    @abc.abstractmethod
    def rebuild_heads(self) -> int:
        """Make every heads row say what the links say; return how many rows changed.

        A changed row loses its heads value (it may no longer be exact).
        """

    @abc.abstractmethod
    def mark_handled(self, positions: Sequence[int]) -> None:
        """Record that the handlers of these events completed (they stop being pending).

        Unchecked (positions already gone are fine): for events that have no
        handler to run. A handler's completion goes through :meth:`append`'s
        ``handled``, which is checked."""

    @abc.abstractmethod
    def import_events(
        self,
        events: Iterable[ImportedEvent],
        after: int,
        tables: Callable[[StoreReader], TransferTables] | None = None,
    ) -> int:
        """Insert events and their links at the positions they carry, in one transaction.

        ``tables``, called once the events are written with a reader inside the
        import's transaction (it sees them), gives the rows of the other tables
        to write in the same transaction (see :class:`TransferTables`); it may
        raise to refuse the import, which then writes nothing.

        The store's head must be ``after`` and the positions must run on from
        it without a gap (``after + 1``, ``after + 2``, ...); the heads of the
        states touched move to their last imported event. ``events`` is read
        lazily inside the transaction, so an import of any size holds a chunk
        in memory; if anything fails (a gap, a store error, or the iterator
        raising, as a checksum mismatch does) nothing is written. Returns how
        many events were imported. Raises StoreError naming the problem.
        """

    @abc.abstractmethod
    def archive(
        self,
        until: int,
        base: Sequence[SnapshotRecord],
        meta: Mapping[str, str] | None = None,
    ) -> int:
        """Move the log up to ``until`` out, in one transaction; return the events deleted.

        ``meta`` entries are written in the same transaction (the log's chain at the cut).

        Writes ``base`` (snapshots at ``until`` of every state touched at or
        before it), deletes the events and links at positions <= ``until`` and
        every snapshot older than ``until``, and records ``until`` in meta
        (:data:`ARCHIVED_UNTIL`). From then on the snapshots at ``until`` are
        the log's truth for the archived range: trimming the history and
        ``drop_snapshots`` keep them. ``until`` must be past the previous
        archived position and before the head (the hot log keeps its last
        event, so positions keep counting). StoreError otherwise.
        """

    @abc.abstractmethod
    def write_snapshots(
        self,
        records: Sequence[SnapshotRecord],
        keep: int,
        meta: Mapping[str, str | None] | None = None,
        epoch: int | None = None,
    ) -> None:
        """Store snapshots in one transaction, keeping the newest ``keep`` per state.

        ``meta`` entries are written (None: deleted) in the same transaction.
        With ``epoch``, raise StaleForgetError (nothing written) if a subject was
        forgotten since then: the states may hold their data.
        """

    @abc.abstractmethod
    def drop_snapshots(self, keys: Iterable[StateKey] | None = None) -> int:
        """Delete the snapshots and heads values of these states (all when None).

        Returns how many snapshots (``pt_snapshots`` rows) were deleted.

        The base snapshots of an archived log (at :data:`ARCHIVED_UNTIL`) stay.
        """

    @abc.abstractmethod
    def follow(self, name: str, limit: int) -> AbstractContextManager[FollowerBatch | None]:
        """A write transaction holding follower ``name``'s lock, with its next events.

        ``None`` when another process holds the lock. The follower's position
        (created at 0) and up to ``limit`` events after it are read inside the
        transaction; the position set with ``batch.advance`` is written, with
        whatever was done through ``batch.tx``, when the block exits cleanly.
        If the block raises, everything is rolled back.
        """

    def vacuum(self) -> tuple[int, int]:
        """Give the space of deleted rows back (after ``archive``); (bytes before, after).

        SQLite: ``VACUUM`` rewrites the file (it needs that much free disk and
        holds the write lock while it runs), then the WAL is truncated.
        PostgreSQL: ``VACUUM`` of the log's tables, which makes the space
        reusable by new rows without locking writers out; the sizes are those
        of the tables.
        """
        raise StoreError(f"{type(self).__name__} cannot reclaim space")

    @abc.abstractmethod
    def close(self) -> None: ...

    @property
    @abc.abstractmethod
    def url(self) -> str:
        """Where this store lives, without credentials."""


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


#: The columns of an event row, in ``StoredEvent``'s order (both stores select these).
EVENT_COLUMNS = "position, type, data, caused_by, fired_at, version, metadata, correlation"


class EventQuery(NamedTuple):
    """Which events ``StoreReader.find_events`` returns: every filter given must hold."""

    after: int = 0
    upto: int | None = None
    types: tuple[str, ...] | None = None
    key: StateKey | None = None
    caused_by: int | None = None
    correlation: str | None = None
    version: int | None = None  # the stored payload version (``playthrough schema`` samples)


def event_query_sql(
    query: EventQuery,
    *,
    tables: str,
    placeholder: str,
    types_condition: Callable[[tuple[str, ...]], tuple[str, list[Any]]],
) -> tuple[str, list[Any]] | None:
    """The SELECT behind ``find_events`` in one store's dialect, and its parameters.

    ``tables`` prefixes the table names (a schema), ``placeholder`` is the
    driver's parameter marker, ``types_condition`` renders "type is one of".
    The last parameter is the LIMIT, which the caller appends. None: the query
    can match nothing (an empty ``types``).
    """
    ph = placeholder
    where = [f"e.position > {ph}"]
    params: list[Any] = [query.after]
    if query.upto is not None:
        where.append(f"e.position <= {ph}")
        params.append(query.upto)
    if query.types is not None:
        if not query.types:
            return None
        condition, values = types_condition(query.types)
        where.append(condition)
        params.extend(values)
    if query.caused_by is not None:
        where.append(f"e.caused_by = {ph}")
        params.append(query.caused_by)
    if query.correlation is not None:
        where.append(f"e.correlation = {ph}")
        params.append(query.correlation)
    if query.version is not None:
        where.append(f"e.version = {ph}")
        params.append(query.version)
    source = f"{tables}pt_events e"
    if query.key is not None:
        source = (
            f"{tables}pt_links l JOIN {tables}pt_events e ON e.position = l.position "
            f"AND l.state_type = {ph} AND l.state_id = {ph}"
        )
        params = [query.key.type, query.key.id, *params]
        where[0] = f"l.position > {ph}"
    columns = ", ".join("e." + c.strip() for c in EVENT_COLUMNS.split(","))
    sql = (
        f"SELECT {columns} FROM {source} WHERE {' AND '.join(where)} ORDER BY e.position LIMIT {ph}"
    )
    return sql, params


class StateInfoRow(NamedTuple):
    key: StateKey
    created_position: int
    created_at: str
    last_position: int
    last_at: str
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
    ) -> None:
        self.name = name
        self.start = position
        self.position = position
        self.events = events
        self.tx = tx
        self.forgotten = list(forgotten)
        self.forgotten_seq = 0  # the last forget the follower was told of, this batch

    def told(self, seq: int) -> None:
        """Record that the follower handled the forget ``seq`` (written with the position)."""
        self.forgotten_seq = max(self.forgotten_seq, seq)

    def advance(self, position: int) -> None:
        """Set the position written when the batch commits."""
        self.position = position
