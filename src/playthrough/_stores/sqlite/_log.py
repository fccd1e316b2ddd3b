"""The SQLite store's log: reads, the append, heads values and snapshots."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from ..._errors import (
    CommitOutcomeUnknown,
    ConcurrencyError,
    DuplicateEvent,
    StaleForgetError,
    StoreError,
)
from ..._keys import StateKey
from .._base import (
    CommitExtras,
    CommitRecord,
    HeadRows,
    NewEvent,
    SnapshotRecord,
    StoreReader,
    batch_keys,
    cancel_refused,
    chunks,
    duplicate_message,
    fired_refused,
    handled_refused,
    head_value,
    stale_forget_message,
    stale_message,
)
from . import _sql as q
from ._datastore import SQLiteDatastore, check_epoch, check_epoch_and_head
from ._reader import KEYS_PER_STATEMENT, SQLiteReader, _values

_SNAPSHOTS_PER_STATEMENT = 140  # 7 parameters each, under the 999 of older builds
_VALUES_PER_STATEMENT = 160  # 6 parameters each
_UPDATE_FROM = sqlite3.sqlite_version_info >= (3, 33, 0)


def snapshot_rows(records: Iterable[SnapshotRecord]) -> list[tuple[Any, ...]]:
    """The rows of ``SNAPSHOTS_WRITE``."""
    return [
        (r.key.type, r.key.id, r.position, r.last_event_id, r.data, r.version, r.fingerprint)
        for r in records
    ]


def check_epoch_value(conn: sqlite3.Connection) -> int:
    """The store's forget epoch, read in the open transaction."""
    return int(conn.execute(f"SELECT {q.SHARED.EPOCH}").fetchone()[0])


class SQLiteLog(SQLiteDatastore):
    """The log's writes and reads over the SQLite database (see :class:`SQLiteStore`)."""

    @contextmanager
    def reader(self) -> Iterator[StoreReader]:
        with self._lock:  # another thread's reader is waited for, not mistaken for nesting
            if self._reading:
                raise StoreError("a reader is already open on this store: readers do not nest")
            self._reading = True
            try:
                with self._transaction("BEGIN"):
                    yield SQLiteReader(self)
            finally:
                self._reading = False

    def heads(self, keys: Iterable[StateKey]) -> HeadRows:
        wanted = list(dict.fromkeys(keys))
        one = SQLiteReader(self)
        size = one.size(KEYS_PER_STATEMENT, 2)
        if len(wanted) <= size:
            with self._lock:  # one statement: atomic on its own, no transaction needed
                return one.heads_of(wanted, size)
        with self.reader() as reader:  # several statements: one consistent view
            return HeadRows.of(reader.heads(wanted))

    def write_values(self, records: Sequence[SnapshotRecord], epoch: int | None = None) -> int:
        if not records:
            return 0
        with self._lock:
            self._writing("write values")
            with self._transaction("BEGIN IMMEDIATE", "writing values failed") as conn:
                self.statements += 1
                if epoch is not None and epoch != check_epoch_value(conn):
                    return 0  # a subject was forgotten since these were computed
                rows = [
                    (r.data, r.position, r.key.type, r.key.id, r.version, r.fingerprint)
                    for r in records
                ]
                if not _UPDATE_FROM or len({r.key for r in records}) < len(records):
                    # Row by row: before SQLite 3.33, or a state given twice (its rows
                    # then apply one after the other).
                    return int(conn.executemany(q.VALUES_WRITE, rows).rowcount)
                before = conn.total_changes  # a statement led by WITH reports no rowcount
                for chunk in chunks(rows, SQLiteReader(self).size(_VALUES_PER_STATEMENT, 6)):
                    self.statements += 1
                    conn.execute(
                        q.VALUES_WRITE_MANY.format(values=_values(len(chunk), 6)),
                        [v for row in chunk for v in row],
                    )
                return conn.total_changes - before

    def write_commit(self, commit: CommitRecord) -> list[int]:
        with self._lock:
            return self._append(commit)

    def _append(self, commit: CommitRecord) -> list[int]:
        events, expected, values, commit_id, handled, extras, epoch = commit
        self._writing("append")
        event_keys = batch_keys(events)
        conn = self._conn
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            self._rollback()
            raise StoreError(
                f"cannot start a write transaction on {self.url}, nothing was written: {exc}"
            ) from exc
        try:
            reader = SQLiteReader(self)
            if handled:  # checked first: a handler completed elsewhere is not a conflict
                self.statements += 1
                gone = [
                    p for p in dict.fromkeys(handled) if conn.execute(q.HANDLED, (p,)).rowcount != 1
                ]
                if gone:
                    raise handled_refused(gone)
            if event_keys:
                taken = reader.event_keys(event_keys)
                if taken:
                    dup, at = next(iter(taken.items()))
                    raise DuplicateEvent(duplicate_message(dup, at), dup, at)
            # The heads check, the forget epoch and the head: one statement
            # unless the keys take several.
            together = reader.state_heads_and_head(list(expected)) if expected else None
            current = together[0] if together is not None else reader.state_heads(expected)
            stale = [
                (key, want, current.get(key))
                for key, want in expected.items()
                if current.get(key) != want
            ]
            if stale:
                raise ConcurrencyError(stale_message(stale))
            if together is not None:
                base = together[2]
                if epoch is not None and together[1] != epoch:
                    raise StaleForgetError(stale_forget_message())
            elif epoch is None:
                base = reader.head()
            else:  # the forget epoch and the head in one statement
                self.statements += 1
                base = check_epoch_and_head(conn, epoch)
            positions = list(range(base + 1, base + 1 + len(events)))
            self.statements += 4
            conn.executemany(
                q.EVENTS_WRITE,
                [
                    (
                        p,
                        e.type,
                        e.data,
                        e.caused_by,
                        e.fired_at,
                        e.version,
                        e.metadata,
                        e.correlation,
                        e.key,
                    )
                    for p, e in zip(positions, events, strict=True)
                ],
            )
            heads: dict[StateKey, int] = {}
            link_rows = []
            for p, e in zip(positions, events, strict=True):
                for key, group in e.links:
                    link_rows.append((key.type, key.id, p, group))
                    heads[key] = p
            conn.executemany(q.LINKS_WRITE, link_rows)
            # The value rides in the heads statement; a state without one keeps
            # its old value (exact at its old value_position, no longer fresh).
            head_rows = []
            for k, p in heads.items():
                given = values.get(k)
                v = None if given is None else head_value(given)
                head_rows.append(
                    (k.type, k.id, p)
                    + ((None, 1, None) if v is None else (v.data, v.version, v.fingerprint))
                )
            conn.executemany(q.HEADS_WRITE, head_rows)
            if extras is not None and not extras.empty:
                self._write_extras(conn, extras, positions, events)
            # A commit of no events (schedule changes, a handler that fired
            # nothing) has an empty range, so its outcome is learnt the same way.
            conn.execute(q.COMMIT_WRITE, (commit_id, base + 1, base + len(events)))
            pending = [(p,) for p, e in zip(positions, events, strict=True) if e.needs_handling]
            if pending:  # most commits have no handlers to run: no statement
                self.statements += 1
                conn.executemany(q.PENDING_WRITE, pending)
        except BaseException as exc:
            self._rollback()
            if isinstance(exc, sqlite3.Error):  # COMMIT was never sent: certain
                raise StoreError(
                    f"append to {self.url} failed, nothing was written: {exc}"
                ) from exc
            raise
        try:
            conn.execute("COMMIT")
        except BaseException as exc:  # noqa: BLE001 - resolved below, or re-raised
            # SQLite either committed or not; once the transaction is closed the
            # pt_commits row tells which, for certain.
            self._rollback()
            return self._resolve(commit_id, len(events), exc)
        return positions

    def _resolve(self, commit_id: str, count: int, exc: BaseException) -> list[int]:
        """After COMMIT raised: the positions if the commit is stored, else a certain error."""
        try:
            found = SQLiteReader(self).commit_positions(commit_id)
        except StoreError as lookup:
            raise CommitOutcomeUnknown(
                f"COMMIT on {self.url} failed ({exc}) and the store could not be asked whether "
                f"commit {commit_id} was written ({lookup}); ask engine.was_committed("
                f"{commit_id!r}) once it is reachable",
                commit_id,
            ) from exc
        if found is None:
            if isinstance(exc, sqlite3.Error):
                raise StoreError(
                    f"append to {self.url} failed at COMMIT, nothing was written: {exc}"
                ) from exc
            raise exc
        first, last = found
        if last - first + 1 != count:  # pragma: no cover - a commit id is unique
            raise StoreError(f"commit {commit_id} holds {last - first + 1} events, not {count}")
        return list(range(first, last + 1))

    def _write_extras(
        self,
        conn: sqlite3.Connection,
        extras: CommitExtras,
        positions: Sequence[int],
        events: Sequence[NewEvent],
    ) -> None:
        """Completions and schedules, inside the append's transaction (under the write lock)."""
        self.statements += 5
        if extras.fired:
            taken = [
                sid
                for sid, n in extras.fired
                if conn.execute(q.FIRED, (positions[n], sid)).rowcount != 1
            ]
            if taken:
                raise ConcurrencyError(fired_refused(taken))
        conn.executemany(
            q.COMPLETED_WRITE,
            [(k.type, k.id, positions[n], events[n].type) for k, n in extras.completed],
        )
        conn.executemany(q.REOPENED, [(k.type, k.id) for k in extras.reopened])
        conn.executemany(q.SCHEDULE_WRITE, [tuple(r) for r in extras.schedule])
        refused = []
        for sid in dict.fromkeys(extras.cancel):  # checked: never "cancelled" and "fired"
            if conn.execute(q.CANCEL, (sid,)).rowcount:
                continue
            row = conn.execute(q.STATUS, (sid,)).fetchone()
            if row is None or row[0] != "cancelled":
                refused.append((sid, "missing" if row is None else str(row[0])))
        if refused:
            raise cancel_refused(refused)

    def write_snapshots(
        self,
        records: Sequence[SnapshotRecord],
        keep: int,
        meta: Mapping[str, str | None] | None = None,
        epoch: int | None = None,
    ) -> None:
        if not records and not meta:
            return
        with self._lock:
            self._write_snapshots(records, keep, meta, epoch)

    def _write_snapshots(
        self,
        records: Sequence[SnapshotRecord],
        keep: int,
        meta: Mapping[str, str | None] | None,
        epoch: int | None = None,
    ) -> None:
        self._writing("write")
        with self._transaction("BEGIN IMMEDIATE", "writing snapshots") as conn:
            check_epoch(conn, epoch)
            for key, value in (meta or {}).items():
                if value is None:
                    conn.execute(q.SHARED.META_DELETE, (key,))
                else:
                    conn.execute(q.SHARED.META_SET, (key, value))
            self.statements += len(meta or {})
            reader = SQLiteReader(self)
            rows = snapshot_rows(records)
            for chunk in chunks(rows, reader.size(_SNAPSHOTS_PER_STATEMENT, 7)):
                self.statements += 1
                conn.execute(
                    q.SNAPSHOTS_WRITE_MANY.format(rows=_values(len(chunk), 7)),
                    [v for row in chunk for v in row],
                )
            # With keep < 1 no bound is found and every snapshot stays, as before.
            keys = list(dict.fromkeys(r.key for r in records)) if keep >= 1 else []
            for part in chunks(keys, reader.size(KEYS_PER_STATEMENT, 2, 1)):
                self.statements += 1
                conn.execute(
                    q.SNAPSHOTS_TRIM_MANY.format(values=_values(len(part), 2)),
                    [*(v for k in part for v in k), keep - 1],
                )

    def drop_snapshots(self, keys: Iterable[StateKey] | None = None) -> int:
        with self._lock:
            self._writing("write")
            with self._transaction("BEGIN IMMEDIATE", "dropping snapshots") as conn:
                self.statements += 2
                if keys is None:
                    conn.execute(q.VALUES_DROP_ALL)
                    return int(conn.execute(q.SNAPSHOTS_DROP_ALL).rowcount)
                count = 0
                for k in dict.fromkeys(keys):
                    conn.execute(q.VALUES_DROP, (k.type, k.id))
                    count += conn.execute(q.SNAPSHOTS_DROP, (k.type, k.id)).rowcount
                return count
