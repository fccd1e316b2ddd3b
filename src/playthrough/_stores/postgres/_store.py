"""The PostgreSQL store: the log (``_log``) over the database (``_datastore``), with
the lifecycle (completions, schedules, subject keys, pending handlers) and maintenance."""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime

import psycopg

from ..._errors import StaleForgetError, StoreError
from ..._keys import StateKey
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
    stale_forget_message,
    transfer_writes,
)
from .._forget import TOUCHED, archive_personal, forget, import_event_keys, import_keys
from . import _sql as q
from ._log import PostgresLog, snapshot_arrays
from ._reader import PostgresReader, PostgresTransaction, key_arrays
from ._sql import Conn


class PostgresStore(PostgresLog, Store):
    """PostgreSQL store in one schema of one database.

    ``url`` is a libpq URL (``postgresql://user:password@host:5432/db``); the
    schema is ``schema=`` or ``?schema=NAME`` in the URL (default ``public``),
    created with its tables on first use. ``min_size``/``max_size`` size the
    connection pool; ``connect_timeout`` (seconds) bounds each connection attempt
    and ``pool_timeout`` the wait for a pooled connection.
    """

    def rearm_schedule(self, schedule_id: str, due_at: str) -> bool:
        with self._transaction("rescheduling", "committing a reschedule") as conn:
            self.statements += 1
            done = conn.execute(self._sql(q.SHARED.REARM), (due_at, schedule_id)).rowcount
        return bool(done == 1)

    def ensure_subject_keys(self, subjects: Mapping[str, bytes]) -> dict[str, bytes]:
        if not subjects:
            return {}
        with self._transaction("storing subject keys", "committing subject keys") as conn:
            self.statements += 2
            encoded = [base64.b64encode(k).decode() for k in subjects.values()]
            conn.execute(self._sql(q.SHARED.SUBJECT_KEYS_WRITE), (list(subjects), encoded))
            rows = conn.execute(self._sql(q.SUBJECT_KEYS), (list(subjects),)).fetchall()
        return {s: base64.b64decode(k) for s, k in rows}

    def forget_subject(self, subject: str, reveal: Reveal) -> bool:
        with self._transaction("forgetting a subject", "committing it") as conn:
            # Under the append lock: no commit interleaves, so one that read the old
            # forget epoch is refused by its own append statement.
            conn.execute(self._sql(q.LOCK), (q.LOCK_APPEND, self._lock_key))

            gone = forget(self._runner(conn), subject, reveal)
        if gone:
            self._vacuum_forgotten()
        return gone

    def _vacuum_forgotten(self) -> None:
        """After a forget: dead tuples (the key, the dropped values) stay in the table
        files until VACUUM; run it now, outside the transaction (it cannot run in one)."""
        for table in TOUCHED:
            self._single(f"VACUUM {{s}}.{table}", ())

    def claim_due(self, now: str, lease_until: str, owner: str, limit: int) -> list[ScheduleRecord]:
        with self._transaction("claiming scheduled events", "committing a claim") as conn:
            self.statements += 1
            rows = conn.execute(
                self._sql(q.CLAIM),
                {"owner": owner, "until": lease_until, "now": now, "limit": limit},
            ).fetchall()
        return sorted((ScheduleRecord(*r) for r in rows), key=lambda r: (r.due_at, r.id))

    def finish_schedule(self, schedule_id: str, owner: str, status: str, error: str | None) -> bool:
        with self._transaction("updating a scheduled event", "committing it") as conn:
            self.statements += 1
            finish = self._sql(q.SHARED.FINISH)
            done = conn.execute(finish, (status, error, schedule_id, owner)).rowcount
        return bool(done == 1)

    def rebuild_heads(self) -> int:
        with self._transaction("rebuilding heads", "committing rebuilt heads") as conn:
            self.statements += 2
            conn.execute(self._sql(q.LOCK), (q.LOCK_APPEND, self._lock_key))  # no append meanwhile
            return sum(conn.execute(self._sql(q)).rowcount for q in q.SHARED.REBUILD_HEADS)

    def mark_handled(self, positions: Sequence[int]) -> None:
        if not positions:
            return
        with self._transaction(
            "recording completed handlers", "committing completed handlers"
        ) as conn:
            self.statements += 1
            conn.execute(self._sql(q.MARK_HANDLED), (list(positions),))

    def import_events(
        self,
        events: Iterable[ImportedEvent],
        after: int,
        tables: Callable[[StoreReader], TransferTables] | None = None,
        *,
        reveal: Reveal | None = None,
    ) -> int:
        pages = event_pages(events, after, q.IMPORT_BATCH)
        return self.import_pages(pages, after, tables, reveal=reveal)

    def import_pages(
        self,
        pages: Iterable[ImportPage],
        after: int,
        tables: Callable[[StoreReader], TransferTables] | None = None,
        *,
        reveal: Reveal | None = None,
    ) -> int:
        expected = after + 1
        with self._transaction("import", "committing an import") as conn:
            # The append lock: no commit can interleave with the imported positions.
            self.statements += 2
            conn.execute(self._sql(q.LOCK), (q.LOCK_APPEND, self._lock_key))
            head = int(conn.execute(self._sql(q.HEAD)).fetchone()[0])  # type: ignore[index]
            if head != after:
                raise StoreError(
                    f"import refused, nothing was written: the store's head is {head}, "
                    f"the events continue after {after}"
                )
            for page in pages:
                expected = page_follows(page, expected)
                self._import_batch(conn, page)
            count = expected - after - 1
            self.statements += 1
            conn.execute(self._sql(q.SHARED.IMPORT_HEADS), (after,))
            forgot = False
            if tables is not None:
                carried = tables(PostgresReader(self, conn))
                forgot = self._write_tables(conn, carried, after, after + count, reveal)
        if forgot:
            self._vacuum_forgotten()
        return count

    def _write_tables(
        self, conn: Conn, tables: TransferTables, after: int, until: int, reveal: Reveal | None
    ) -> bool:
        """Write the carried tables; True if a forget the file carries deleted a key here."""
        for statement, rows in transfer_writes(tables, "{s}."):
            self.statements += 1
            text = self._sql(statement).replace("?", "%s")
            if rows:
                with conn.cursor() as cursor:
                    cursor.executemany(text, rows)
            else:
                conn.execute(text)
        run = self._runner(conn)
        import_event_keys(run, tables.event_keys or (), after, until)
        return import_keys(run, tables.subject_keys or (), tables.forgotten or (), reveal)

    def archive(
        self,
        until: int,
        base: Sequence[SnapshotRecord],
        meta: Mapping[str, str] | None,
        check: Callable[[LogReader], None],
    ) -> int:
        with self._transaction("archiving", "committing an archive") as conn:
            self.statements += 1
            conn.execute(self._sql(q.LOCK), (q.LOCK_APPEND, self._lock_key))
            check(PostgresReader(self, conn))
            if base:
                self.statements += 1
                conn.execute(self._sql(q.SHARED.SNAPSHOTS_WRITE), snapshot_arrays(base))
            self.statements += 1
            archive_personal(self._runner(conn), until)
            self.statements += 1
            conn.execute(self._sql(q.SHARED.ARCHIVE_KEYS), (until,))
            counts = []
            for statement in q.SHARED.ARCHIVE_DELETE:
                self.statements += 1
                counts.append(conn.execute(self._sql(statement), (until,)).rowcount)
            written = {ARCHIVED_UNTIL: str(until), **(meta or {})}
            self.statements += 1
            conn.execute(self._sql(q.SHARED.META_SET), (list(written), list(written.values())))
        return int(counts[-1])

    def _import_batch(self, conn: Conn, page: ImportPage) -> None:
        if not page.events:
            return
        self.statements += 2
        with conn.cursor() as cursor:
            with cursor.copy(self._sql(q.COPY_EVENTS)) as copy:
                for row in page.events:
                    copy.write_row(row)
            with cursor.copy(self._sql(q.COPY_LINKS)) as copy:
                for row in page.links:
                    copy.write_row(row)

    def write_snapshots(
        self,
        records: Sequence[SnapshotRecord],
        keep: int,
        meta: Mapping[str, str | None] | None = None,
        epoch: int | None = None,
    ) -> None:
        if not records and not meta:
            return
        latest = {(r.key, r.position): r for r in records}  # one row per key and position
        rows = sorted(latest.values(), key=lambda r: (r.key, r.position))
        keys = list(dict.fromkeys(r.key for r in rows))
        with self._transaction("writing snapshots", "committing snapshots") as conn:
            if epoch is not None:
                # Under the append lock, which forget takes too: the check holds until COMMIT.
                self.statements += 2
                conn.execute(self._sql(q.LOCK), (q.LOCK_APPEND, self._lock_key))
                (now,) = conn.execute(self._sql(f"SELECT {q.SHARED.EPOCH}")).fetchone() or (0,)
                if now != epoch:
                    raise StaleForgetError(stale_forget_message())
            if meta:
                self.statements += 1
                conn.execute(
                    self._sql(q.META_WRITE),
                    (
                        [k for k, v in meta.items() if v is None],
                        [k for k, v in meta.items() if v is not None],
                        [v for v in meta.values() if v is not None],
                    ),
                )
            if rows:
                self.statements += 2
                conn.execute(self._sql(q.SHARED.SNAPSHOTS_WRITE), snapshot_arrays(rows))
                conn.execute(self._sql(q.SNAPSHOTS_TRIM), (*key_arrays(keys), keep))

    def drop_snapshots(self, keys: Iterable[StateKey] | None = None) -> int:
        with self._transaction("dropping snapshots", "committing dropped snapshots") as conn:
            self.statements += 1  # one statement: the snapshots and the heads values
            if keys is None:
                return conn.execute(self._sql(q.SNAPSHOTS_DROP_ALL)).rowcount
            wanted = list(dict.fromkeys(keys))
            return conn.execute(self._sql(q.SNAPSHOTS_DROP), key_arrays(wanted)).rowcount

    @contextmanager
    def follow(self, name: str, limit: int) -> Iterator[FollowerBatch | None]:
        # The follower's row is locked (NOWAIT) for the whole batch: a second
        # process with the same follower gets None instead of waiting, and
        # never sees a position this batch has not committed. READ COMMITTED:
        # the events query sees every append committed before it, a prefix of
        # the log (appends become visible in position order).
        with self._transaction(
            f"a batch of follower {name!r}", f"committing a batch of follower {name!r}"
        ) as conn:
            self.statements += 2
            # Unqualified table names in the follower's SQL live in the store's schema.
            conn.execute(f"SET LOCAL search_path TO {self._quoted}")
            row = None
            for _ in range(2):
                try:
                    row = conn.execute(self._sql(q.FOLLOWER_LOCK), (name,)).fetchone()
                except psycopg.errors.LockNotAvailable:
                    row = None
                    break
                if row is not None:
                    break
                # A new follower: its row is created and committed on its own,
                # so a second process never waits on an uncommitted insert.
                assert self._pool is not None
                with self._pool.connection() as other:
                    other.execute(
                        self._sql(q.SHARED.FOLLOWER_CREATE), (name, datetime.now(UTC).isoformat())
                    )
            if row is None:  # another process holds the follower
                conn.execute("ROLLBACK")
                yield None
                return
            self.statements += 1
            rows = conn.execute(self._sql(q.SHARED.EVENTS_AFTER), (row[0], limit)).fetchall()

            def keys(subjects: Iterable[str]) -> dict[str, bytes]:
                wanted = list(dict.fromkeys(subjects))
                found = conn.execute(self._sql(q.SUBJECT_KEYS), (wanted,)).fetchall()
                return {k: base64.b64decode(v) for k, v in found}

            events = [StoredEvent(*r) for r in rows]  # sealed: the follower opens them
            self.statements += 1
            forgotten = [
                SubjectForgotten(int(q), str(subject), int(p))
                for q, subject, p in conn.execute(self._sql(q.SHARED.FOLLOWER_FORGOTTEN), (name,))
            ]
            batch = FollowerBatch(
                name, int(row[0]), events, PostgresTransaction(conn), forgotten, keys
            )
            yield batch
            self.statements += 1
            conn.execute(
                self._sql(q.SHARED.FOLLOWER_ADVANCE),
                (batch.position, datetime.now(UTC).isoformat(), batch.forgotten_seq, name),
            )

    def vacuum(self) -> tuple[int, int]:
        tables = ("pt_events", "pt_links", "pt_snapshots", "pt_heads")
        names = [f"{self._quoted}.{t}" for t in tables]
        size = "SELECT sum(pg_total_relation_size(t::regclass)) FROM unnest(%s::text[]) t"
        try:  # VACUUM cannot run in a transaction: its own autocommit connection
            with psycopg.connect(self._conninfo, **self._connect_kwargs) as conn:
                before = conn.execute(size, (names,)).fetchone()
                conn.execute(f"VACUUM (ANALYZE) {', '.join(names)}")
                after = conn.execute(size, (names,)).fetchone()
        except psycopg.Error as exc:
            raise self._failure("VACUUM", exc) from exc
        assert before is not None and after is not None
        return int(before[0]), int(after[0])
