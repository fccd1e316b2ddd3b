"""The SQLite store: the log (``_log``) over the database (``_datastore``), with the
lifecycle (completions, schedules, subject keys, pending handlers) and maintenance."""

from __future__ import annotations

import base64
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from ..._errors import StoreError
from ..._sealed import Reveal
from .._base import (
    ARCHIVED_UNTIL,
    FollowerBatch,
    ImportedEvent,
    ImportPage,
    LogReader,
    ScheduleRecord,
    SnapshotRecord,
    Store,
    StoredEvent,
    StoreReader,
    SubjectForgotten,
    TransferTables,
    event_pages,
    page_follows,
    transfer_writes,
)
from .._forget import archive_personal, forget, import_event_keys, import_keys
from . import _sql as q
from ._log import SQLiteLog, snapshot_rows
from ._reader import SQLiteReader, SQLiteTransaction

_IMPORT_BATCH = 5000  # events per executemany of an import


class SQLiteStore(SQLiteLog, Store):
    """SQLite store. ``path`` is a file name or ``":memory:"``.

    ``synchronous`` is SQLite's setting for the file (``"FULL"`` by default:
    a commit is on disk when ``commit()`` returns). ``create=False`` opens a
    store that exists and changes nothing to do so (no file, table or journal
    mode is created; a missing one is ``NoStoreError``); a file the process may
    not write (read-only file or directory) opens that way, for reading.
    """

    def rebuild_heads(self) -> int:
        with self._lock:
            self._writing("rebuild heads")
            with self._transaction("BEGIN IMMEDIATE", "rebuilding heads") as conn:
                self.statements += 2
                return sum(int(conn.execute(s).rowcount) for s in q.SHARED.REBUILD_HEADS)

    def mark_handled(self, positions: Sequence[int]) -> None:
        if not positions:
            return
        with self._lock:
            self._writing("record completed handlers")
            with self._transaction("BEGIN IMMEDIATE", "recording completed handlers") as conn:
                self.statements += 1
                conn.executemany(q.HANDLED, [(p,) for p in positions])

    def rearm_schedule(self, schedule_id: str, due_at: str) -> bool:
        with self._lock:
            self._writing("reschedule")
            with self._transaction("BEGIN IMMEDIATE", "rescheduling failed") as conn:
                self.statements += 1
                done = conn.execute(q.SHARED.REARM, (due_at, schedule_id)).rowcount
        return bool(done == 1)

    def ensure_subject_keys(self, subjects: Mapping[str, bytes]) -> dict[str, bytes]:
        if not subjects:
            return {}
        self._writing("store keys")
        with self._transaction("BEGIN IMMEDIATE", "storing subject keys failed") as conn:
            self.statements += 2
            conn.executemany(
                q.SHARED.SUBJECT_KEYS_WRITE,
                [(s, base64.b64encode(k).decode()) for s, k in subjects.items()],
            )
            return SQLiteReader(self).subject_keys(subjects)

    def forget_subject(self, subject: str, reveal: Reveal) -> bool:
        with self._lock:
            self._writing("forget")
            with self._transaction("BEGIN IMMEDIATE", "forgetting failed") as conn:

                def run(sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
                    self.statements += 1
                    return conn.execute(sql, params).fetchall()

                gone = forget(run, subject, reveal)
            if gone:
                self._checkpoint(f"{subject!r} was forgotten")
        return gone

    def _checkpoint(self, what: str) -> None:
        """After a forget: secure_delete zeroed the deleted bytes in the pages, but the
        WAL still holds older copies of those pages until a checkpoint copies the new
        ones into the database file and truncates it."""
        if self._path == ":memory:":
            return
        try:
            self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
        except sqlite3.Error as exc:  # pragma: no cover - a reader elsewhere
            raise StoreError(
                f"{what}, but the WAL checkpoint that removes old page copies from "
                f"{self._path}-wal failed: {exc}; run PRAGMA wal_checkpoint(TRUNCATE) "
                "once other connections close"
            ) from exc

    def claim_due(self, now: str, lease_until: str, owner: str, limit: int) -> list[ScheduleRecord]:
        self._writing("claim scheduled events")
        with self._transaction("BEGIN IMMEDIATE", "claiming scheduled events failed") as conn:
            self.statements += 2
            rows = conn.execute(q.CLAIM, (now, now, limit)).fetchall()
            conn.executemany(
                q.LEASE,
                [(owner, lease_until, r[0]) for r in rows],
            )
        return [
            ScheduleRecord(*r)._replace(lease_owner=owner, lease_until=lease_until) for r in rows
        ]

    def finish_schedule(self, schedule_id: str, owner: str, status: str, error: str | None) -> bool:
        self._writing("update a scheduled event")
        with self._transaction("BEGIN IMMEDIATE", "updating a scheduled event failed") as conn:
            self.statements += 1
            done = conn.execute(q.SHARED.FINISH, (status, error, schedule_id, owner)).rowcount
        return bool(done == 1)

    def import_events(
        self,
        events: Iterable[ImportedEvent],
        after: int,
        tables: Callable[[StoreReader], TransferTables] | None = None,
        *,
        reveal: Reveal | None = None,
    ) -> int:
        pages = event_pages(events, after, _IMPORT_BATCH)
        return self.import_pages(pages, after, tables, reveal=reveal)

    def import_pages(
        self,
        pages: Iterable[ImportPage],
        after: int,
        tables: Callable[[StoreReader], TransferTables] | None = None,
        *,
        reveal: Reveal | None = None,
    ) -> int:
        self._writing("import")
        expected = after + 1
        with self._transaction("BEGIN IMMEDIATE", "import failed, nothing was written") as conn:
            head = SQLiteReader(self).head()
            if head != after:
                raise StoreError(
                    f"import refused, nothing was written: the store's head is {head}, "
                    f"the events continue after {after}"
                )
            for page in pages:
                expected = page_follows(page, expected)
                if page.events:
                    self._import_page(conn, page)
            count = expected - after - 1
            self.statements += 1
            conn.execute(q.SHARED.IMPORT_HEADS, (after,))
            forgot = False
            if tables is not None:
                carried = tables(SQLiteReader(self))
                forgot = self._write_tables(conn, carried, after, after + count, reveal)
        if forgot:
            self._checkpoint("the import forgot a data subject")
        return count

    def _write_tables(
        self,
        conn: sqlite3.Connection,
        tables: TransferTables,
        after: int,
        until: int,
        reveal: Reveal | None,
    ) -> bool:
        """Write the carried tables; True if a forget the file carries deleted a key here."""
        for sql, rows in transfer_writes(tables, ""):
            self.statements += 1
            if rows:
                conn.executemany(sql, rows)
            else:
                conn.execute(sql)

        def run(sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
            self.statements += 1
            return conn.execute(sql, params).fetchall()

        import_event_keys(run, tables.event_keys or (), after, until)
        return import_keys(run, tables.subject_keys or (), tables.forgotten or (), reveal)

    def archive(
        self,
        until: int,
        base: Sequence[SnapshotRecord],
        meta: Mapping[str, str] | None,
        check: Callable[[LogReader], None],
    ) -> int:
        self._writing("archive")
        with self._transaction("BEGIN IMMEDIATE", "archive failed, nothing was deleted") as conn:
            reader = SQLiteReader(self)
            check(reader)
            self.statements += 6
            conn.executemany(q.SHARED.SNAPSHOTS_WRITE, snapshot_rows(base))
            conn.execute(q.SHARED.ARCHIVE_KEYS, (until,))
            archive_personal(lambda sql, p: conn.execute(sql, p).fetchall(), until)
            snapshots, links, events = q.SHARED.ARCHIVE_DELETE
            conn.execute(snapshots, (until,))
            conn.execute(links, (until,))
            deleted = conn.execute(events, (until,)).rowcount
            written = [(ARCHIVED_UNTIL, str(until)), *(meta or {}).items()]
            conn.executemany(q.SHARED.META_SET, written)
        return int(deleted)

    def _import_page(self, conn: sqlite3.Connection, page: ImportPage) -> None:
        # Columns left out default to NULL: a None bound costs the driver an adapter
        # lookup (an AttributeError raised and caught, ~3,300 instructions), and most
        # events have no cause and no metadata.
        alone: list[tuple[Any, ...]] = []  # no cause, metadata, correlation
        correlated: list[tuple[Any, ...]] = []  # a correlation only
        other: list[tuple[Any, ...]] = []
        for row in page.events:
            p, t, d, c, f, v, m, r = row
            if c is None and m is None:
                if r is None:
                    alone.append((p, t, d, f, v))
                else:
                    correlated.append((p, t, d, f, v, r))
            else:
                other.append(row)
        for sql, rows in (
            (q.IMPORT_CORRELATED_EVENTS, correlated),
            (q.IMPORT_EVENTS, other),
            (q.IMPORT_PLAIN_EVENTS, alone),
        ):
            if rows:
                self.statements += 1
                conn.executemany(sql, rows)
        self.statements += 1
        conn.executemany(q.LINKS_WRITE, page.links)

    @contextmanager
    def follow(self, name: str, limit: int) -> Iterator[FollowerBatch | None]:
        # BEGIN IMMEDIATE takes SQLite's write lock: no other process can run
        # a batch of this (or any) follower, or append, until this one commits.
        self._writing("run a follower")
        with self._transaction("BEGIN IMMEDIATE", f"a batch of follower {name!r} failed") as conn:
            self.statements += 3
            conn.execute(q.SHARED.FOLLOWER_CREATE, (name, datetime.now(UTC).isoformat()))
            (position,) = conn.execute(q.FOLLOWER_POSITION, (name,)).fetchone()
            rows = conn.execute(q.SHARED.EVENTS_AFTER, (position, limit)).fetchall()
            events = [StoredEvent(*r) for r in rows]  # sealed: the follower opens them
            told = conn.execute(q.SHARED.FOLLOWER_FORGOTTEN, (name,)).fetchall()
            forgotten = [SubjectForgotten(*r) for r in told]
            keys = SQLiteReader(self).subject_keys  # in this transaction
            batch = FollowerBatch(name, position, events, SQLiteTransaction(conn), forgotten, keys)
            yield batch
            conn.execute(
                q.SHARED.FOLLOWER_ADVANCE,
                (batch.position, datetime.now(UTC).isoformat(), batch.forgotten_seq, name),
            )

    def vacuum(self) -> tuple[int, int]:
        with self._lock:
            self._writing("vacuum")

            def size() -> int:
                pages = self._conn.execute("PRAGMA page_count").fetchone()[0]
                return int(pages) * int(self._conn.execute("PRAGMA page_size").fetchone()[0])

            try:
                before = size()
                self._conn.execute("VACUUM")
                self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                return before, size()
            except sqlite3.Error as exc:
                raise StoreError(f"VACUUM of {self.url} failed, nothing was lost: {exc}") from exc
