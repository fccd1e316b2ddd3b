"""The store contract: a globally ordered event log, state-event links, snapshots.

Every store passes :class:`playthrough.testing.StoreContract`. The reads by capability
are in ``_readers``, the tables in ``_tables``, the rows a store takes and returns in
``_records``, the SQL both backends share in ``_dialect``. This module re-exports all
of them (the names store code has always imported from here).
"""

from __future__ import annotations

import abc
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import TypeVar

from .._archived import (
    archived_until,
    archived_until_steps,
    check_archived,
    refuse_archived,
    refuse_archived_steps,
)
from .._errors import StoreError
from .._keys import StateKey
from .._records import (
    HEADS_VALUE,
    LOOKUPS,
    CommitExtras,
    CommitRecord,
    Completion,
    Condition,
    EventQuery,
    FollowerBatch,
    FollowerRow,
    FollowerTransaction,
    HeadRow,
    HeadRows,
    HeadValue,
    ImportedEvent,
    ImportPage,
    Link,
    LinkedEntry,
    LogEntry,
    NewEvent,
    NoStoreError,
    Order,
    ScheduleRecord,
    ScheduleRow,
    SealedEvent,
    SnapshotRecord,
    StateInfoRow,
    StoredEvent,
    SubjectForgotten,
    TransferTables,
    TypeVersions,
    batch_keys,
    cancel_refused,
    check_consecutive,
    chunks,
    coupled,
    duplicate_message,
    event_pages,
    fired_refused,
    gap_free,
    handled_refused,
    head_value,
    key_conflicts,
    linked_keys,
    missing_event,
    page_follows,
    reader_epoch,
    stale_forget_message,
    stale_message,
)
from .._sealed import Reveal
from ._dialect import (
    event_query_sql,
    transfer_select,
    transfer_writes,
)
from ._readers import (
    LifecycleReader,
    LogReader,
    MaintenanceReader,
    ReadSideReader,
    StoreReader,
)
from ._tables import (
    ARCHIVED_CHAIN,
    ARCHIVED_UNTIL,
    EVENT_COLUMNS,
    FORGET_EPOCH,
    MIGRATIONS,
    SCHEDULE_COLUMNS,
    SCHEMA_VERSION,
    TRANSFER_TABLES,
    parse_schema_version,
)

_L = TypeVar("_L")  # what a log page carries of its links


# Looked up on the reader itself: a view over it (unsealing) forwards to the store's own.
def _linked_keys(reader: LogReader, after: int, upto: int) -> dict[int, list[StateKey]]:
    return reader.linked_keys_between(after, upto)


def _links(reader: LogReader, after: int, upto: int) -> list[Link]:
    return reader.links_between(after, upto)


# Store code imports the tables, the rows and the shared SQL from here.
__all__ = [
    "ARCHIVED_CHAIN",
    "ARCHIVED_UNTIL",
    "EVENT_COLUMNS",
    "FORGET_EPOCH",
    "HEADS_VALUE",
    "LOOKUPS",
    "MIGRATIONS",
    "SCHEDULE_COLUMNS",
    "SCHEMA_VERSION",
    "TRANSFER_TABLES",
    "CommitExtras",
    "CommitRecord",
    "Completion",
    "Condition",
    "EventQuery",
    "FollowerBatch",
    "FollowerRow",
    "FollowerTransaction",
    "HeadRow",
    "HeadRows",
    "HeadValue",
    "ImportPage",
    "ImportedEvent",
    "LifecycleReader",
    "Link",
    "LinkedEntry",
    "LogEntry",
    "LogReader",
    "MaintenanceReader",
    "NewEvent",
    "NoStoreError",
    "Order",
    "ReadSideReader",
    "ScheduleRecord",
    "ScheduleRow",
    "SealedEvent",
    "SnapshotRecord",
    "StateInfoRow",
    "Store",
    "StoreReader",
    "StoredEvent",
    "SubjectForgotten",
    "TransferTables",
    "TypeVersions",
    "archived_until",
    "archived_until_steps",
    "batch_keys",
    "cancel_refused",
    "check_archived",
    "check_consecutive",
    "chunks",
    "coupled",
    "duplicate_message",
    "event_pages",
    "event_query_sql",
    "fired_refused",
    "gap_free",
    "handled_refused",
    "head_value",
    "key_conflicts",
    "linked_keys",
    "missing_event",
    "page_follows",
    "parse_schema_version",
    "reader_epoch",
    "refuse_archived",
    "refuse_archived_steps",
    "stale_forget_message",
    "stale_message",
    "transfer_select",
    "transfer_writes",
]


class LogRecorder(abc.ABC):
    """The log: the append (with the heads check), heads values and snapshots, reads.

    Every store has it; the other capabilities are optional (see ``_capabilities``).
    """

    #: Counts statements sent to the server; tests use it to bound round trips.
    statements: int = 0

    def read_log(
        self,
        after: int = 0,
        until: int | None = None,
        chunk: int = 1000,
        view: Callable[[LogReader], LogReader] | None = None,
    ) -> Iterator[list[LogEntry]]:
        """The log after ``after`` (up to ``until``; no bound: to the head), page by page.

        The one way long passes over the log (full replay, verification, the
        testing kit, export) read it: each page is read in its own short read
        transaction, so a pass never holds one open for the whole log and may
        write between pages. Positions are gap-free and only grow, so the pages
        together are exactly the log up to the bound.

        The events are as stored, their personal values sealed; ``view`` is
        put over each page's reader (the core passes ``_personal.unsealing``
        to read them opened).
        """
        pages = self._log_pages(after, until, chunk, view, _linked_keys)
        for page, touched in pages:
            get, new = touched.get, tuple.__new__  # LogEntry without its __new__ frame
            yield [new(LogEntry, (e, get(e.position, []))) for e in page]

    def read_linked_log(
        self,
        after: int = 0,
        until: int | None = None,
        chunk: int = 1000,
        view: Callable[[LogReader], LogReader] | None = None,
    ) -> Iterator[list[LinkedEntry]]:
        """:meth:`read_log` with each event's links (coupling groups included)."""
        for page, links in self._log_pages(after, until, chunk, view, _links):
            by_position: dict[int, list[Link]] = {}
            for link in links:
                by_position.setdefault(link.position, []).append(link)
            yield [LinkedEntry(e, by_position.get(e.position, [])) for e in page]

    def _log_pages(
        self,
        after: int,
        until: int | None,
        chunk: int,
        view: Callable[[LogReader], LogReader] | None,
        links: Callable[[LogReader, int, int], _L],
    ) -> Iterator[tuple[list[StoredEvent], _L]]:
        """The pager behind :meth:`read_log`: (events, ``links(reader, after, upto)``) per
        short read transaction."""
        if chunk < 1:
            raise ValueError(f"chunk must be at least 1, not {chunk}")
        position = after
        first = True
        while until is None or position < until:
            limit = chunk if until is None else min(chunk, until - position)
            with self.reader() as opened:
                reader = opened if view is None else view(opened)
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
                linked = links(reader, position, page[-1].position)
            yield page, linked
            position = page[-1].position

    @abc.abstractmethod
    def reader(self) -> AbstractContextManager[LogReader]:
        """A read transaction: one consistent view of the store until it ends."""

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
        if extras is not None and extras.empty:
            extras = None
        if not events and not handled and extras is None:
            return []
        commit = CommitRecord(
            events, expected, values or {}, commit_id or uuid.uuid4().hex, handled, extras, epoch
        )
        return self.write_commit(commit)

    @abc.abstractmethod
    def write_commit(self, commit: CommitRecord) -> list[int]:
        """Write one commit atomically, as :meth:`append` says; ``commit`` is never empty."""

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
    def close(self) -> None: ...

    def reopen(self) -> Store | None:
        """A new handle on the same data with connections of its own (another process
        opens one to share the work: a parallel replay); None when the data cannot be
        reached from another handle (an in-memory database). Never creates or migrates."""
        return None

    @property
    @abc.abstractmethod
    def url(self) -> str:
        """Where this store lives, without credentials."""


class ReadSideRecorder(abc.ABC):
    """The read side's writes: followers' batches, in the store's own transaction."""

    @abc.abstractmethod
    def follow(self, name: str, limit: int) -> AbstractContextManager[FollowerBatch | None]:
        """A write transaction holding follower ``name``'s lock, with its next events.

        ``None`` when another process holds the lock. The follower's position
        (created at 0) and up to ``limit`` events after it are read inside the
        transaction; the position set with ``batch.advance`` is written, with
        whatever was done through ``batch.tx``, when the block exits cleanly.
        If the block raises, everything is rolled back.
        """


class LifecycleRecorder(abc.ABC):
    """The lifecycle's writes: subject keys, the schedule, handlers completed on their own.

    (Completions, schedule rows and handled marks written with a commit ride in
    :meth:`LogRecorder.append`'s ``extras`` and ``handled``.)
    """

    @abc.abstractmethod
    def ensure_subject_keys(self, subjects: Mapping[str, bytes]) -> dict[str, bytes]:
        """The key of each subject, storing the given new key where it has none yet."""

    @abc.abstractmethod
    def forget_subject(self, subject: str, reveal: Reveal) -> bool:
        """Forget a data subject in one transaction; False if it had no key.

        ``reveal`` (the core's ``_personal.clear_values``) opens the subject's
        sealed values with its key, so that they can be scrubbed: the store
        itself never decrypts.

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
    def mark_handled(self, positions: Sequence[int]) -> None:
        """Record that the handlers of these events completed (they stop being pending).

        Unchecked (positions already gone are fine): for events that have no
        handler to run. A handler's completion goes through :meth:`append`'s
        ``handled``, which is checked."""


class MaintenanceRecorder(abc.ABC):
    """Maintenance: import, archive, repair of the heads, reclaiming space."""

    @abc.abstractmethod
    def import_events(
        self,
        events: Iterable[ImportedEvent],
        after: int,
        tables: Callable[[StoreReader], TransferTables] | None = None,
        *,
        reveal: Reveal | None = None,
    ) -> int:
        """Insert events and their links at the positions they carry, in one transaction.

        ``tables``, called once the events are written with a reader inside the
        import's transaction (it sees them), gives the rows of the other tables
        to write in the same transaction (see :class:`TransferTables`); it may
        raise to refuse the import, which then writes nothing. A forget the tables
        carry for a key this store holds is applied with ``reveal`` (see
        :meth:`forget_subject`); without one, the import is refused.

        The store's head must be ``after`` and the positions must run on from
        it without a gap (``after + 1``, ``after + 2``, ...); the heads of the
        states touched move to their last imported event. ``events`` is read
        lazily inside the transaction, so an import of any size holds a chunk
        in memory; if anything fails (a gap, a store error, or the iterator
        raising, as a checksum mismatch does) nothing is written. Returns how
        many events were imported. Raises StoreError naming the problem.
        """

    def import_pages(
        self,
        pages: Iterable[ImportPage],
        after: int,
        tables: Callable[[StoreReader], TransferTables] | None = None,
        *,
        reveal: Reveal | None = None,
    ) -> int:
        """:meth:`import_events` fed pages of rows (see :class:`ImportPage`), as an
        import reads them from a file: the same checks, transaction and result.

        This default turns each page into ImportedEvents; the stores write the
        rows as they come."""
        events = (e for page in pages for e in page.imported())
        return self.import_events(events, after, tables, reveal=reveal)

    @abc.abstractmethod
    def archive(
        self,
        until: int,
        base: Sequence[SnapshotRecord],
        meta: Mapping[str, str] | None,
        check: Callable[[LogReader], None],
    ) -> int:
        """Move the log up to ``until`` out, in one transaction; return the events deleted.

        ``check`` runs first, inside that transaction (no append interleaves),
        and refuses the archive by raising: the archive module's guard
        (``_archive.check_cut``) decides what a valid cut is. ``meta`` entries
        are written in the same transaction (the log's chain at the cut).

        Writes ``base`` (snapshots at ``until`` of every state touched at or
        before it), deletes the events and links at positions <= ``until`` and
        every snapshot older than ``until``, and records ``until`` in meta
        (:data:`ARCHIVED_UNTIL`). From then on the snapshots at ``until`` are
        the log's truth for the archived range: trimming the history and
        ``drop_snapshots`` keep them. ``until`` must be past the previous
        archived position and before the head (the hot log keeps its last
        event, so positions keep counting): ``check`` refuses it otherwise.
        """

    @abc.abstractmethod
    def rebuild_heads(self) -> int:
        """Make every heads row say what the links say; return how many rows changed.

        A changed row loses its heads value (it may no longer be exact).
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


class Store(LogRecorder, ReadSideRecorder, LifecycleRecorder, MaintenanceRecorder):
    """Where events, links and snapshots live.

    A store is opened once per process and shared: engines (one per request or
    thread) borrow it and never close it. Both stores are safe to share across
    threads (SQLite serialises its transactions on a lock, PostgreSQL gives
    each thread's read transaction a pooled connection of its own).
    """

    @abc.abstractmethod
    def reader(self) -> AbstractContextManager[StoreReader]:
        """A read transaction with every capability's reads."""
