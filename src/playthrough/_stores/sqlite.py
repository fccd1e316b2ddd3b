"""The embedded SQLite store: a file in WAL mode with durable commits, or memory.

Writers take SQLite's write lock up front (``BEGIN IMMEDIATE``), so the check
of the heads table and the append happen under one lock, across processes too;
positions are assigned inside that transaction, so commit order is position
order. Every transaction goes through :meth:`SQLiteStore._transaction`.

One store is shared by every engine of a process: a lock serialises its
transactions (a read transaction, an append, a snapshot write), so threads can
share it; SQLite runs one statement at a time per connection anyway, and one
connection keeps an in-memory database one database.
"""

from __future__ import annotations

import base64
import os
import sqlite3
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from operator import itemgetter
from time import monotonic, sleep
from typing import Any, Literal
from urllib.parse import quote

from .. import _options
from .._errors import (
    CommitOutcomeUnknown,
    ConcurrencyError,
    DuplicateEvent,
    SchemaVersionError,
    StaleForgetError,
    StoreError,
)
from .._model import StateKey
from .._personal import unseal
from ._base import (
    ARCHIVED_UNTIL,
    EVENT_COLUMNS,
    FORGET_EPOCH,
    HEADS_VALUE,
    MIGRATIONS,
    SCHEDULE_COLUMNS,
    SCHEMA_VERSION,
    CommitExtras,
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
    Link,
    NewEvent,
    NoStoreError,
    Order,
    ScheduleRecord,
    SealedEvent,
    SnapshotRecord,
    StateInfoRow,
    Store,
    StoredEvent,
    StoreReader,
    SubjectForgotten,
    TransferTables,
    TypeVersions,
    batch_keys,
    cancel_refused,
    check_archive_cut,
    chunks,
    duplicate_message,
    event_query_sql,
    fired_refused,
    gap_free,
    handled_refused,
    head_value,
    parse_schema_version,
    stale_forget_message,
    stale_message,
    transfer_select,
    transfer_writes,
)
from ._forget import archive_personal, forget, import_event_keys, import_keys
from ._json_sql import SQLiteFilter

_SCHEMA = """
CREATE TABLE IF NOT EXISTS pt_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS pt_events (
    position INTEGER PRIMARY KEY AUTOINCREMENT,
    type TEXT NOT NULL,
    data TEXT NOT NULL,
    caused_by INTEGER,
    fired_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS pt_links (
    state_type TEXT NOT NULL,
    state_id TEXT NOT NULL,
    position INTEGER NOT NULL,
    grp INTEGER NOT NULL,
    PRIMARY KEY (state_type, state_id, position)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS pt_links_by_position ON pt_links (position);
CREATE TABLE IF NOT EXISTS pt_heads (
    state_type TEXT NOT NULL,
    state_id TEXT NOT NULL,
    last_position INTEGER NOT NULL,
    PRIMARY KEY (state_type, state_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS pt_snapshots (
    state_type TEXT NOT NULL,
    state_id TEXT NOT NULL,
    position INTEGER NOT NULL,
    last_event_id INTEGER,
    data TEXT NOT NULL,
    PRIMARY KEY (state_type, state_id, position)
) WITHOUT ROWID;
"""

# The store's forget epoch (0: never forgot anyone).
_EPOCH = (
    f"(SELECT coalesce(max(CAST(value AS INTEGER)), 0) FROM pt_meta WHERE key = '{FORGET_EPOCH}')"
)


def _check_epoch(conn: sqlite3.Connection, epoch: int | None) -> None:
    """StaleForgetError if a subject was forgotten since ``epoch`` (None: not checked)."""
    if epoch is None:
        return
    (now,) = conn.execute(f"SELECT {_EPOCH}").fetchone()
    if now != epoch:
        raise StaleForgetError(stale_forget_message())


# verify's checks of heads rows and snapshot metadata against the links, and repair.
# Linear: each heads row looks up its links' maximum on the links' primary key,
# and each linked state without a heads row is found by a lookup on the heads'
# (a FULL OUTER JOIN against a grouped subquery runs as a nested loop in SQLite).
_HEADS_DISAGREE = """SELECT t, i, have, want FROM (
    SELECT h.state_type AS t, h.state_id AS i, h.last_position AS have,
           (SELECT max(l.position) FROM pt_links l
            WHERE l.state_type = h.state_type AND l.state_id = h.state_id) AS want
    FROM pt_heads h
    UNION ALL
    SELECT l.state_type, l.state_id, NULL, max(l.position) FROM pt_links l
    WHERE NOT EXISTS (SELECT 1 FROM pt_heads h
                      WHERE h.state_type = l.state_type AND h.state_id = l.state_id)
    GROUP BY l.state_type, l.state_id
) WHERE have IS NOT want
  AND NOT (want IS NULL AND have <= (
    SELECT coalesce(CAST(max(value) AS BIGINT), 0) FROM pt_meta
    WHERE key = 'archived_until'))
ORDER BY 1, 2 LIMIT ?"""
_SNAPSHOTS_DISAGREE = """SELECT x.state_type, x.state_id, x.position, x.last_event_id, x.want FROM (
    SELECT s.state_type, s.state_id, s.position, s.last_event_id,
           (SELECT max(l.position) FROM pt_links l WHERE l.state_type = s.state_type
            AND l.state_id = s.state_id AND l.position <= s.position) AS want
    FROM pt_snapshots s
) x WHERE x.last_event_id IS NOT x.want
  AND NOT (x.want IS NULL AND x.last_event_id <= (
    SELECT coalesce(CAST(max(value) AS BIGINT), 0) FROM pt_meta
    WHERE key = 'archived_until'))
ORDER BY 1, 2, 3 LIMIT ?"""
_REBUILD_HEADS = (
    """DELETE FROM pt_heads WHERE last_position > (
    SELECT coalesce(CAST(max(value) AS BIGINT), 0) FROM pt_meta
    WHERE key = 'archived_until')
    AND NOT EXISTS (SELECT 1 FROM pt_links l
    WHERE l.state_type = pt_heads.state_type AND l.state_id = pt_heads.state_id)""",
    """INSERT INTO pt_heads (state_type, state_id, last_position)
    SELECT state_type, state_id, max(position) FROM pt_links WHERE true
    GROUP BY state_type, state_id
    ON CONFLICT (state_type, state_id) DO UPDATE SET last_position = excluded.last_position,
        value = NULL, value_position = NULL
    WHERE pt_heads.last_position IS NOT excluded.last_position""",
)


def _type_in(types: tuple[str, ...]) -> tuple[str, list[Any]]:
    return f"e.type IN ({','.join('?' for _ in types)})", list(types)


# Items per statement; also bounded by the connection's variable limit, which
# builds before SQLite 3.32 default to 999 (and a build or a program may lower).
_KEYS_PER_STATEMENT = 400  # 2 parameters each
_RANGES_PER_STATEMENT = 300  # 4 parameters each
_POSITIONS_PER_STATEMENT = 500
_IMPORT_BATCH = 5000  # events per executemany of an import

# The base snapshots of an archived log (at pt_meta's archived_until) are never
# trimmed or dropped: they stand for the archived events.
_NOT_BASE = (
    f"position <> coalesce((SELECT CAST(value AS INTEGER) FROM pt_meta "
    f"WHERE key = '{ARCHIVED_UNTIL}'), -1)"
)


class _SQLiteReader(StoreReader):
    def __init__(self, store: SQLiteStore) -> None:
        self._store = store

    def _q(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        self._store.statements += 1
        try:
            return self._store._conn.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise StoreError(f"reading {self._store.url} failed: {exc}") from exc

    def _size(self, cap: int, per_item: int, extra: int = 0) -> int:
        """Items per statement so that bound variables stay under the runtime's limit."""
        limit = self._store._conn.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
        return max(1, min(cap, (limit - extra) // per_item))

    def head(self) -> int:
        row = self._q("SELECT seq FROM sqlite_sequence WHERE name = 'pt_events'")
        return int(row[0][0]) if row else 0

    def state_heads(self, keys: Iterable[StateKey]) -> dict[StateKey, int]:
        out: dict[StateKey, int] = {}
        for chunk in chunks(list(dict.fromkeys(keys)), self._size(_KEYS_PER_STATEMENT, 2)):
            values = ",".join("(?,?)" for _ in chunk)
            rows = self._q(
                f"WITH want(t, i) AS (VALUES {values}) "
                "SELECT h.state_type, h.state_id, h.last_position FROM want w "
                "JOIN pt_heads h ON h.state_type = w.t AND h.state_id = w.i",
                [v for k in chunk for v in k],
            )
            for t, i, p in rows:
                out[StateKey(t, i)] = p
        return out

    def snapshots(
        self, keys: Iterable[StateKey], at_most: int
    ) -> dict[StateKey, list[SnapshotRecord]]:
        out: dict[StateKey, list[SnapshotRecord]] = {}
        for chunk in chunks(list(dict.fromkeys(keys)), self._size(_KEYS_PER_STATEMENT, 2, 1)):
            values = ",".join("(?,?)" for _ in chunk)
            n = 2 * len(chunk) + 1  # the number of the at_most parameter
            rows = self._q(
                f"WITH want(t, i) AS (VALUES {values}) "
                "SELECT s.state_type, s.state_id, s.position, s.last_event_id, s.data, "
                "s.version, s.fingerprint "
                "FROM want w JOIN pt_snapshots s ON s.state_type = w.t AND s.state_id = w.i "
                f"AND s.position <= ?{n} UNION ALL "
                "SELECT h.state_type, h.state_id, h.value_position, h.value_position, h.value, "
                "h.value_version, h.value_fingerprint "
                "FROM want w JOIN pt_heads h ON h.state_type = w.t AND h.state_id = w.i "
                f"AND h.value IS NOT NULL AND h.value_position <= ?{n} "
                "ORDER BY 1, 2, 3 DESC",
                [*(v for k in chunk for v in k), at_most],
            )
            for t, i, p, last, data, version, mark in rows:
                key = StateKey(t, i)
                history = out.get(key)
                record = SnapshotRecord(key, p, last, data, version, mark)
                if history is None:
                    out[key] = [record]
                elif history[-1].position != p:  # a heads value where a snapshot is too
                    history.append(record)
        return out

    def heads(self, keys: Iterable[StateKey]) -> HeadRows:
        out = HeadRows()
        for chunk in chunks(list(dict.fromkeys(keys)), self._size(_KEYS_PER_STATEMENT, 2)):
            values = ",".join("(?,?)" for _ in chunk)
            rows = self._q(
                f"WITH want(t, i) AS (VALUES {values}) "
                "SELECT h.state_type, h.state_id, h.last_position, h.value, h.value_position, "
                "h.value_version, h.value_fingerprint "
                "FROM want w JOIN pt_heads h ON h.state_type = w.t AND h.state_id = w.i "
                f"UNION ALL SELECT NULL, NULL, {_EPOCH}, NULL, NULL, NULL, NULL",
                [v for k in chunk for v in k],
            )
            for t, i, p, value, vp, version, mark in rows:
                if t is None:  # the forget epoch, read in the same statement
                    if out.epoch is None:
                        out.epoch = int(p)
                else:
                    out[StateKey(t, i)] = HeadRow(p, value, vp, version, mark)
        return out

    def links(self, ranges: Mapping[StateKey, tuple[int, int]]) -> list[Link]:
        items = [(k, lo, hi) for k, (lo, hi) in ranges.items() if hi > lo]
        out: dict[tuple[int, StateKey], Link] = {}
        for chunk in chunks(items, self._size(_RANGES_PER_STATEMENT, 4)):
            values = ",".join("(?,?,?,?)" for _ in chunk)
            params = [v for k, lo, hi in chunk for v in (k.type, k.id, lo, hi)]
            rows = self._q(
                f"WITH want(t, i, lo, hi) AS (VALUES {values}), "
                "hit AS (SELECT DISTINCT l.position FROM want w JOIN pt_links l "
                "ON l.state_type = w.t AND l.state_id = w.i "
                "AND l.position > w.lo AND l.position <= w.hi) "
                "SELECT l.position, l.state_type, l.state_id, l.grp FROM hit "
                "JOIN pt_links l ON l.position = hit.position",
                params,
            )
            for p, t, i, g in rows:
                key = StateKey(t, i)
                out[(p, key)] = Link(p, key, g)
        return sorted(out.values(), key=itemgetter(0))

    def events(self, positions: Sequence[int]) -> Iterator[StoredEvent]:
        for chunk in chunks(positions, self._size(_POSITIONS_PER_STATEMENT, 1)):
            marks = ",".join("?" for _ in chunk)
            rows = self._q(
                f"SELECT {EVENT_COLUMNS} FROM pt_events "
                f"WHERE position IN ({marks}) ORDER BY position",
                list(chunk),
            )
            yield from unseal([StoredEvent(*row) for row in rows], self.subject_keys)

    def events_after(self, after: int, limit: int) -> list[StoredEvent]:
        rows = self._q(
            f"SELECT {EVENT_COLUMNS} FROM pt_events WHERE position > ? ORDER BY position LIMIT ?",
            (after, limit),
        )
        return unseal([StoredEvent(*row) for row in rows], self.subject_keys)

    def events_after_sealed(self, after: int, limit: int) -> list[SealedEvent]:
        rows = self._q(
            f"SELECT {EVENT_COLUMNS} FROM pt_events WHERE position > ? ORDER BY position LIMIT ?",
            (after, limit),
        )
        return [SealedEvent(*row) for row in rows]

    def transfer_rows(self, table: str) -> list[tuple[Any, ...]]:
        return [tuple(r) for r in self._q(transfer_select(table, ""))]

    def subject_keys(self, subjects: Iterable[str]) -> dict[str, bytes]:
        out: dict[str, bytes] = {}
        for chunk in chunks(list(dict.fromkeys(subjects)), _POSITIONS_PER_STATEMENT):
            marks = ",".join("?" for _ in chunk)
            rows = self._q(
                f"SELECT subject, key FROM pt_subject_keys WHERE subject IN ({marks})", list(chunk)
            )
            out.update((s, base64.b64decode(k)) for s, k in rows)
        return out

    def keys_between(self, after: int, upto: int) -> list[tuple[int, str]]:
        rows = self._q(
            "SELECT position, event_key FROM pt_events WHERE position > ? AND position <= ? "
            "AND event_key IS NOT NULL ORDER BY position",
            (after, upto),
        )
        return [(int(p), str(k)) for p, k in rows]

    def links_between(self, after: int, upto: int) -> list[Link]:
        rows = self._q(
            "SELECT position, state_type, state_id, grp FROM pt_links "
            "WHERE position > ? AND position <= ? ORDER BY position",
            (after, upto),
        )
        return [Link(p, StateKey(t, i), g) for p, t, i, g in rows]

    def meta(self, key: str) -> str | None:
        row = self._q("SELECT value FROM pt_meta WHERE key = ?", (key,))
        return str(row[0][0]) if row else None

    def completions(self, keys: Iterable[StateKey]) -> dict[StateKey, Completion]:
        out: dict[StateKey, Completion] = {}
        for chunk in chunks(list(dict.fromkeys(keys)), _KEYS_PER_STATEMENT):
            values = ",".join("(?,?)" for _ in chunk)
            rows = self._q(
                f"WITH want(t, i) AS (VALUES {values}) "
                "SELECT c.state_type, c.state_id, c.position, c.event_type FROM want w "
                "JOIN pt_completed c ON c.state_type = w.t AND c.state_id = w.i",
                [v for k in chunk for v in k],
            )
            for t, i, p, e in rows:
                key = StateKey(t, i)
                out[key] = Completion(key, p, e)
        return out

    def schedule(self, schedule_id: str) -> ScheduleRecord | None:
        rows = self._q(f"SELECT {SCHEDULE_COLUMNS} FROM pt_schedule WHERE id = ?", (schedule_id,))
        return ScheduleRecord(*rows[0]) if rows else None

    def schedules(self, status: str | None = None) -> list[ScheduleRecord]:
        if status is None:
            rows = self._q(f"SELECT {SCHEDULE_COLUMNS} FROM pt_schedule ORDER BY due_at, id")
        else:
            rows = self._q(
                f"SELECT {SCHEDULE_COLUMNS} FROM pt_schedule WHERE status = ? ORDER BY due_at, id",
                (status,),
            )
        return [ScheduleRecord(*r) for r in rows]

    def commit_positions(self, commit_id: str) -> tuple[int, int] | None:
        row = self._q(
            "SELECT first_position, last_position FROM pt_commits WHERE commit_id = ?",
            (commit_id,),
        )
        return (int(row[0][0]), int(row[0][1])) if row else None

    def event_keys(self, keys: Sequence[str]) -> dict[str, int]:
        out: dict[str, int] = {}
        for chunk in chunks(list(dict.fromkeys(keys)), self._size(_POSITIONS_PER_STATEMENT, 1)):
            marks = ",".join("?" for _ in chunk)
            for key, position in self._q(
                f"SELECT event_key, position FROM pt_events WHERE event_key IN ({marks}) "
                f"UNION ALL SELECT event_key, position FROM pt_archived_keys "
                f"WHERE event_key IN ({marks})",
                list(chunk) * 2,
            ):
                out[key] = int(position)
        return out

    def heads_disagreements(self, limit: int) -> list[tuple[StateKey, int | None, int | None]]:
        rows = self._q(_HEADS_DISAGREE, (limit,))
        return [(StateKey(t, i), have, want) for t, i, have, want in rows]

    def snapshot_disagreements(
        self, limit: int
    ) -> list[tuple[StateKey, int, int | None, int | None]]:
        rows = self._q(_SNAPSHOTS_DISAGREE, (limit,))
        return [(StateKey(t, i), p, last, want) for t, i, p, last, want in rows]

    def pending_handlers(self, limit: int) -> list[int]:
        rows = self._q(
            "SELECT position FROM pt_pending_handlers ORDER BY position LIMIT ?", (limit,)
        )
        return [int(r[0]) for r in rows]

    def iter_snapshots(self) -> Iterator[SnapshotRecord]:
        rows = self._q(
            "SELECT state_type, state_id, position, last_event_id, data, version, fingerprint, "
            "0 FROM pt_snapshots UNION ALL SELECT state_type, state_id, value_position, "
            "value_position, value, value_version, value_fingerprint, 1 "
            "FROM pt_heads WHERE value IS NOT NULL ORDER BY 1, 2, 3, 8"
        )
        for t, i, p, last, data, version, mark, src in rows:
            source = HEADS_VALUE if src else "snapshot"
            yield SnapshotRecord(StateKey(t, i), p, last, data, version, mark, source)

    def event_versions(self) -> list[TypeVersions]:
        rows = self._q(
            "SELECT type, version, count(*) FROM pt_events GROUP BY type, version "
            "ORDER BY type, version"
        )
        return [TypeVersions(t, v, None, n) for t, v, n in rows]

    def snapshot_versions(self) -> list[TypeVersions]:
        rows = self._q(
            "SELECT t, v, f, count(*) FROM (SELECT state_type AS t, version AS v, "
            "fingerprint AS f FROM pt_snapshots UNION ALL SELECT state_type, value_version, "
            "value_fingerprint FROM pt_heads WHERE value IS NOT NULL) "
            "GROUP BY t, v, f ORDER BY t, v, f"
        )
        return [TypeVersions(t, v, f, n) for t, v, f, n in rows]

    # ---------------------------------------------------------------- read side

    def find_events(self, query: EventQuery, limit: int) -> list[StoredEvent]:
        found = event_query_sql(
            query,
            tables="",
            placeholder="?",
            types_condition=lambda types: (
                f"e.type IN ({','.join('?' for _ in types)})",
                list(types),
            ),
        )
        if found is None:
            return []
        sql, params = found
        rows = self._q(sql, [*params, limit])
        return unseal([StoredEvent(*row) for row in rows], self.subject_keys)

    def state_info(self, key: StateKey) -> StateInfoRow | None:
        rows = self._q(
            "SELECT h.last_position, h.value_position, "
            "(SELECT min(position) FROM pt_links l WHERE l.state_type = h.state_type "
            "AND l.state_id = h.state_id), "
            "(SELECT count(*) FROM pt_links l WHERE l.state_type = h.state_type "
            "AND l.state_id = h.state_id), "
            "(SELECT max(position) FROM pt_snapshots s WHERE s.state_type = h.state_type "
            "AND s.state_id = h.state_id) "
            "FROM pt_heads h WHERE h.state_type = ? AND h.state_id = ?",
            (key.type, key.id),
        )
        if not rows:
            return None
        last, value_position, first, count, snap = rows[0]
        times = dict(
            self._q(
                "SELECT position, fired_at FROM pt_events WHERE position IN (?, ?)", (first, last)
            )
        )
        return StateInfoRow(
            key, first, times[first], last, times[last], count, snap, value_position
        )

    def stale_states(
        self, state_type: str, limit: int, shape: tuple[int, str] | None = None
    ) -> list[tuple[StateKey, int]]:
        other_shape = ""
        params: list[Any] = [state_type]
        if shape is not None:
            other_shape = " OR value_version IS NOT ? OR value_fingerprint IS NOT ?"
            params += list(shape)
        rows = self._q(
            "SELECT state_id, last_position FROM pt_heads WHERE state_type = ? "
            f"AND (value_position IS NULL OR value_position <> last_position{other_shape}) "
            "ORDER BY state_id LIMIT ?",
            [*params, limit],
        )
        return [(StateKey(state_type, i), p) for i, p in rows]

    def query_states(
        self,
        state_type: str,
        conditions: Sequence[Condition],
        order: Sequence[Order],
        limit: int | None,
    ) -> list[tuple[str, str, int]]:
        f = SQLiteFilter()
        where = f.where(conditions)
        order_sql = f.order(order)
        return self._q(
            "SELECT h.state_id, h.value, h.value_position FROM pt_heads h "
            f"WHERE h.state_type = ? AND {where} ORDER BY {order_sql} LIMIT ?",
            [state_type, *f.params, -1 if limit is None else limit],
        )

    def count_states(self, state_type: str, conditions: Sequence[Condition]) -> int:
        f = SQLiteFilter()
        where = f.where(conditions)
        rows = self._q(
            f"SELECT count(*) FROM pt_heads h WHERE h.state_type = ? AND {where}",
            [state_type, *f.params],
        )
        return int(rows[0][0])

    def followers(self) -> list[FollowerRow]:
        rows = self._q("SELECT name, position, updated_at FROM pt_followers ORDER BY name")
        return [FollowerRow(*row) for row in rows]


class _SQLiteTransaction(FollowerTransaction):
    dialect = "sqlite"

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.connection = conn
        self._conn = conn

    def execute(self, sql: str, params: Sequence[object] = ()) -> list[tuple[object, ...]]:
        return self._conn.execute(sql, params).fetchall()


def _file_uri(path: str, query: str) -> str:
    """The URI of ``path`` with ``query``; ``mode=rw`` never creates the file, and opens
    it read-only if the OS says so."""
    return f"file:{quote(os.path.abspath(path))}?{query}"


class SQLiteStore(Store):
    """SQLite store. ``path`` is a file name or ``":memory:"``.

    ``synchronous`` is SQLite's setting for the file (``"FULL"`` by default:
    a commit is on disk when ``commit()`` returns). ``create=False`` opens a
    store that exists and changes nothing to do so (no file, table or journal
    mode is created; a missing one is ``NoStoreError``); a file the process may
    not write (read-only file or directory) opens that way, for reading.
    """

    def __init__(
        self,
        path: str = ":memory:",
        *,
        synchronous: str = "FULL",
        busy_timeout: float = 30.0,
        create: bool = True,
    ) -> None:
        self._path = _options.sqlite_path(path)
        level = _options.synchronous(synchronous)
        busy_timeout = _options.at_least("busy_timeout", busy_timeout, 0, integer=False, unit=" s")
        self.statements = 0
        self._lock = threading.RLock()  # one transaction at a time, across threads
        memory = path == ":memory:"
        try:
            self._conn = sqlite3.connect(
                path if create or memory else _file_uri(path, "mode=rw"),
                isolation_level=None,
                timeout=busy_timeout,
                check_same_thread=False,
                uri=not (create or memory),
            )
        except sqlite3.Error as exc:
            if not create and not os.path.exists(path):
                raise NoStoreError(
                    f"no playthrough store in {path!r}: no such file (nothing was created)"
                ) from exc
            raise StoreError(f"cannot open SQLite database {path!r}: {exc}") from exc
        self._reading = False
        #: Opened for reading only: the process may not write the file (or its directory).
        self.read_only = False
        try:
            if create and not memory:
                self._switch_to_wal(busy_timeout)
            elif not memory:  # a store that exists is in WAL mode already: change nothing
                self._readable(path, busy_timeout)
            if not self.read_only:
                self._conn.execute(f"PRAGMA synchronous={level}")
            self._conn.execute("PRAGMA foreign_keys=OFF")
            # Deleted content (a forgotten subject's key and values) is overwritten
            # with zeros, not left in free space: forgetting must be final on disk.
            self._conn.execute("PRAGMA secure_delete=ON")
            self._migrate(create)
        except StoreError:
            self._conn.close()
            raise
        except sqlite3.DatabaseError as exc:
            self._conn.close()
            hint = ""
            if "readonly" in str(exc) and create:
                hint = " (a read-only file or directory opens with create=False, to read)"
            raise StoreError(
                f"cannot use {path!r} as a playthrough SQLite store: {exc}{hint}"
            ) from exc

    def _readable(self, path: str, busy_timeout: float) -> None:
        """Make sure the file can be read; reopen it read-only if this process may not write it.

        Reading a WAL file needs its ``-shm`` index, which SQLite creates next
        to the file: in a directory this process may not write, even a read
        fails ("attempt to write a readonly database"). Then the file is
        reopened with ``mode=ro``; when no ``-wal`` file exists either (no
        writer has it open) and neither the file nor its directory is writable,
        with ``immutable=1``: SQLite reads it without any index or lock.
        """
        try:
            self._conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
            return
        except sqlite3.OperationalError as exc:
            if "readonly" not in str(exc):
                raise
        self._conn.close()
        folder = os.path.dirname(os.path.abspath(path))
        immutable = (
            not os.path.exists(path + "-wal")
            and not os.access(path, os.W_OK)
            and not os.access(folder, os.W_OK)
        )
        self._conn = sqlite3.connect(
            _file_uri(path, "mode=ro&immutable=1" if immutable else "mode=ro"),
            isolation_level=None,
            timeout=busy_timeout,
            check_same_thread=False,
            uri=True,
        )
        self.read_only = True
        self._conn.execute("SELECT count(*) FROM sqlite_master").fetchone()

    def _switch_to_wal(self, busy_timeout: float) -> None:
        """``PRAGMA journal_mode=WAL``, retried until ``busy_timeout`` like any other write.

        SQLite does not call its busy handler for a journal mode change: when
        another process holds the new file (creating it too), the switch fails
        at once with "database is locked", or leaves the mode unchanged. Two
        processes opening a fresh file at once then failed about 3 times in 10.
        """
        deadline = monotonic() + busy_timeout
        pause = 0.001
        while True:
            try:
                row = self._conn.execute("PRAGMA journal_mode=WAL").fetchone()
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) and "busy" not in str(exc):
                    raise
                row = None
            if row is not None and str(row[0]).lower() == "wal":
                return
            if monotonic() >= deadline:
                found = "database is locked" if row is None else f"journal mode {row[0]}"
                raise StoreError(
                    f"cannot switch {self._path!r} to WAL mode within the busy timeout "
                    f"({busy_timeout:g} s): {found}"
                )
            sleep(pause)
            pause = min(pause * 2, 0.05)

    @property
    def url(self) -> str:
        from . import sqlite_url

        return sqlite_url(self._path)

    @contextmanager
    def _transaction(
        self, begin: Literal["BEGIN", "BEGIN IMMEDIATE"], failure: str | None = None
    ) -> Iterator[sqlite3.Connection]:
        """One transaction: COMMIT when the block ends, ROLLBACK when it raises.

        ``BEGIN IMMEDIATE`` takes the write lock before the first read. With
        ``failure``, SQLite errors become StoreError(``failure: cause``).
        """
        with self._lock:
            yield from self._locked_transaction(begin, failure)

    def _locked_transaction(
        self, begin: Literal["BEGIN", "BEGIN IMMEDIATE"], failure: str | None
    ) -> Iterator[sqlite3.Connection]:
        conn = self._conn
        try:
            conn.execute(begin)
        except sqlite3.Error as exc:
            self._rollback()
            if failure is None:
                raise
            raise StoreError(
                f"{failure}: cannot start a write transaction on {self.url}: {exc}"
            ) from exc
        try:
            yield conn
            conn.execute("COMMIT")
        except BaseException as exc:
            self._rollback()
            if failure is not None and isinstance(exc, sqlite3.Error):
                raise StoreError(f"{failure}: {exc}") from exc
            raise

    def _rollback(self) -> None:
        """Roll back whatever is open; a failed or already ended transaction is not an error."""
        if self._conn.in_transaction:
            try:
                self._conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass  # SQLite already rolled it back (e.g. after an I/O error)

    def _writing(self, what: str) -> None:
        if self._reading:
            raise StoreError(f"cannot {what} inside a read transaction")

    def _migrate(self, create: bool = True) -> None:
        """Create or upgrade the tables; with ``create=False`` only check (read-only use)."""
        try:  # an up-to-date store needs no write lock to open
            row = self._conn.execute(
                "SELECT value FROM pt_meta WHERE key = 'schema_version'"
            ).fetchone()
        except sqlite3.OperationalError:
            row = None  # no pt_meta yet
        if row is not None and row[0] == str(SCHEMA_VERSION):
            return
        if not create:
            if row is None:
                raise NoStoreError(f"no playthrough store in {self._path!r} (nothing was created)")
            if parse_schema_version(row[0], repr(self._path)) > SCHEMA_VERSION:
                raise SchemaVersionError(
                    f"{self._path!r} holds schema version {row[0]}, written by a newer "
                    f"playthrough; this one reads up to version {SCHEMA_VERSION}"
                )
            raise StoreError(  # a reader never migrates: the writer's job
                f"{self._path!r} holds schema version {row[0]}, older than this "
                f"playthrough's {SCHEMA_VERSION}: open it once with a writer (Engine.open) "
                "to upgrade it; nothing was changed"
            )
        with self._transaction("BEGIN IMMEDIATE") as conn:
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)
            row = conn.execute("SELECT value FROM pt_meta WHERE key = 'schema_version'").fetchone()
            # New tables are those of version 1.
            version = 1 if row is None else parse_schema_version(row[0], repr(self._path))
            if version > SCHEMA_VERSION:
                raise SchemaVersionError(
                    f"{self._path!r} holds schema version {version}, written by a newer "
                    f"playthrough; this one reads up to version {SCHEMA_VERSION}"
                )
            for target, statements in MIGRATIONS:
                if version < target:
                    for statement in statements:
                        conn.execute(statement.replace("{s}", ""))
                    version = target
            conn.execute(
                "INSERT INTO pt_meta VALUES ('schema_version', ?) ON CONFLICT (key) "
                "DO UPDATE SET value = excluded.value",
                (str(version),),
            )

    @contextmanager
    def reader(self) -> Iterator[StoreReader]:
        with self._lock:  # another thread's reader is waited for, not mistaken for nesting
            if self._reading:
                raise StoreError("a reader is already open on this store: readers do not nest")
            self._reading = True
            try:
                with self._transaction("BEGIN"):
                    yield _SQLiteReader(self)
            finally:
                self._reading = False

    def heads(self, keys: Iterable[StateKey]) -> HeadRows:
        wanted = list(dict.fromkeys(keys))
        if len(wanted) <= _SQLiteReader(self)._size(_KEYS_PER_STATEMENT, 2):
            with self._lock:  # one statement: atomic on its own, no transaction needed
                return _SQLiteReader(self).heads(wanted)
        with self.reader() as reader:  # several statements: one consistent view
            return HeadRows.of(reader.heads(wanted))

    def write_values(self, records: Sequence[SnapshotRecord], epoch: int | None = None) -> int:
        if not records:
            return 0
        with self._lock:
            self._writing("write values")
            with self._transaction("BEGIN IMMEDIATE", "writing values failed") as conn:
                self.statements += 1
                if epoch is not None and conn.execute(f"SELECT {_EPOCH}").fetchone()[0] != epoch:
                    return 0  # a subject was forgotten since these were computed
                return int(
                    conn.executemany(
                        "UPDATE pt_heads SET value = ?1, value_position = ?2, value_version = ?5, "
                        "value_fingerprint = ?6 "
                        "WHERE state_type = ?3 AND state_id = ?4 AND last_position = ?2 "
                        "AND (value_position IS NOT ?2 OR value IS NULL "
                        "OR value_version IS NOT ?5 OR value_fingerprint IS NOT ?6)",
                        [
                            (r.data, r.position, r.key.type, r.key.id, r.version, r.fingerprint)
                            for r in records
                        ],
                    ).rowcount
                )

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
        if not events and not handled and (extras is None or extras.empty):
            return []
        with self._lock:
            return self._append(events, expected, values or {}, commit_id, handled, extras, epoch)

    def _append(
        self,
        events: Sequence[NewEvent],
        expected: Mapping[StateKey, int | None],
        values: Mapping[StateKey, str | HeadValue],
        commit_id: str | None,
        handled: Sequence[int],
        extras: CommitExtras | None,
        epoch: int | None = None,
    ) -> list[int]:
        self._writing("append")
        commit_id = commit_id or uuid.uuid4().hex
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
            reader = _SQLiteReader(self)
            if handled:  # checked first: a handler completed elsewhere is not a conflict
                self.statements += 1
                gone = [
                    p
                    for p in dict.fromkeys(handled)
                    if conn.execute(
                        "DELETE FROM pt_pending_handlers WHERE position = ?", (p,)
                    ).rowcount
                    != 1
                ]
                if gone:
                    raise handled_refused(gone)
            if event_keys:
                taken = reader.event_keys(event_keys)
                if taken:
                    dup, at = next(iter(taken.items()))
                    raise DuplicateEvent(duplicate_message(dup, at), dup, at)
            current = reader.state_heads(expected)
            stale = [
                (key, want, current.get(key))
                for key, want in expected.items()
                if current.get(key) != want
            ]
            if stale:
                raise ConcurrencyError(stale_message(stale))
            _check_epoch(conn, epoch)
            base = reader.head()
            positions = list(range(base + 1, base + 1 + len(events)))
            self.statements += 4
            conn.executemany(
                f"INSERT INTO pt_events ({EVENT_COLUMNS}, event_key) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
            conn.executemany("INSERT INTO pt_links VALUES (?, ?, ?, ?)", link_rows)
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
            conn.executemany(
                "INSERT INTO pt_heads (state_type, state_id, last_position, value, "
                "value_position, value_version, value_fingerprint) VALUES (?1, ?2, ?3, ?4, "
                "CASE WHEN ?4 IS NULL THEN NULL ELSE ?3 END, ?5, ?6) "
                "ON CONFLICT (state_type, state_id) DO UPDATE SET "
                "last_position = excluded.last_position, "
                "value_version = CASE WHEN excluded.value IS NULL THEN value_version "
                "ELSE excluded.value_version END, "
                "value_fingerprint = CASE WHEN excluded.value IS NULL THEN value_fingerprint "
                "ELSE excluded.value_fingerprint END, "
                "value = coalesce(excluded.value, value), "
                "value_position = coalesce(excluded.value_position, value_position)",
                head_rows,
            )
            if extras is not None and not extras.empty:
                self._write_extras(conn, extras, positions, events)
            # A commit of no events (schedule changes, a handler that fired
            # nothing) has an empty range, so its outcome is learnt the same way.
            conn.execute(
                "INSERT INTO pt_commits VALUES (?, ?, ?)",
                (commit_id, base + 1, base + len(events)),
            )
            conn.executemany(
                "INSERT INTO pt_pending_handlers VALUES (?)",
                [(p,) for p, e in zip(positions, events, strict=True) if e.needs_handling],
            )
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
            found = _SQLiteReader(self).commit_positions(commit_id)
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

    def rebuild_heads(self) -> int:
        with self._lock:
            self._writing("rebuild heads")
            with self._transaction("BEGIN IMMEDIATE", "rebuilding heads") as conn:
                self.statements += 2
                return sum(int(conn.execute(q).rowcount) for q in _REBUILD_HEADS)

    def mark_handled(self, positions: Sequence[int]) -> None:
        if not positions:
            return
        with self._lock:
            self._writing("record completed handlers")
            with self._transaction("BEGIN IMMEDIATE", "recording completed handlers") as conn:
                self.statements += 1
                conn.executemany(
                    "DELETE FROM pt_pending_handlers WHERE position = ?", [(p,) for p in positions]
                )

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
                if conn.execute(
                    "UPDATE pt_schedule SET status = 'fired', position = ?, lease_owner = NULL, "
                    "lease_until = NULL WHERE id = ? AND status = 'pending'",
                    (positions[n], sid),
                ).rowcount
                != 1
            ]
            if taken:
                raise ConcurrencyError(fired_refused(taken))
        conn.executemany(
            "INSERT INTO pt_completed VALUES (?, ?, ?, ?) ON CONFLICT (state_type, state_id) "
            "DO UPDATE SET position = excluded.position, event_type = excluded.event_type",
            [(k.type, k.id, positions[n], events[n].type) for k, n in extras.completed],
        )
        conn.executemany(
            "DELETE FROM pt_completed WHERE state_type = ? AND state_id = ?",
            [(k.type, k.id) for k in extras.reopened],
        )
        conn.executemany(
            "INSERT INTO pt_schedule (id, due_at, type, data, status, created_at, version) "
            "VALUES (?, ?, ?, ?, 'pending', ?, ?)",
            [tuple(r) for r in extras.schedule],
        )
        refused = []
        for sid in dict.fromkeys(extras.cancel):  # checked: never "cancelled" and "fired"
            if conn.execute(
                "UPDATE pt_schedule SET status = 'cancelled', lease_owner = NULL, "
                "lease_until = NULL WHERE id = ? AND status = 'pending'",
                (sid,),
            ).rowcount:
                continue
            row = conn.execute("SELECT status FROM pt_schedule WHERE id = ?", (sid,)).fetchone()
            if row is None or row[0] != "cancelled":
                refused.append((sid, "missing" if row is None else str(row[0])))
        if refused:
            raise cancel_refused(refused)

    def rearm_schedule(self, schedule_id: str, due_at: str) -> bool:
        with self._lock:
            self._writing("reschedule")
            with self._transaction("BEGIN IMMEDIATE", "rescheduling failed") as conn:
                self.statements += 1
                done = conn.execute(
                    "UPDATE pt_schedule SET status = 'pending', due_at = ?, error = NULL, "
                    "lease_owner = NULL, lease_until = NULL "
                    "WHERE id = ? AND status IN ('pending', 'failed')",
                    (due_at, schedule_id),
                ).rowcount
        return bool(done == 1)

    def ensure_subject_keys(self, subjects: Mapping[str, bytes]) -> dict[str, bytes]:
        if not subjects:
            return {}
        self._writing("store keys")
        with self._transaction("BEGIN IMMEDIATE", "storing subject keys failed") as conn:
            self.statements += 2
            conn.executemany(
                "INSERT INTO pt_subject_keys VALUES (?, ?) ON CONFLICT (subject) DO NOTHING",
                [(s, base64.b64encode(k).decode()) for s, k in subjects.items()],
            )
            return _SQLiteReader(self).subject_keys(subjects)

    def forget_subject(self, subject: str) -> bool:
        with self._lock:
            self._writing("forget")
            with self._transaction("BEGIN IMMEDIATE", "forgetting failed") as conn:

                def run(sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
                    self.statements += 1
                    return conn.execute(sql, params).fetchall()

                gone = forget(run, subject)
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
            rows = conn.execute(
                f"SELECT {SCHEDULE_COLUMNS} FROM pt_schedule WHERE status = 'pending' "
                "AND due_at <= ? AND (lease_until IS NULL OR lease_until <= ?) "
                "ORDER BY due_at, id LIMIT ?",
                (now, now, limit),
            ).fetchall()
            conn.executemany(
                "UPDATE pt_schedule SET lease_owner = ?, lease_until = ? WHERE id = ?",
                [(owner, lease_until, r[0]) for r in rows],
            )
        return [
            ScheduleRecord(*r)._replace(lease_owner=owner, lease_until=lease_until) for r in rows
        ]

    def finish_schedule(self, schedule_id: str, owner: str, status: str, error: str | None) -> bool:
        self._writing("update a scheduled event")
        with self._transaction("BEGIN IMMEDIATE", "updating a scheduled event failed") as conn:
            self.statements += 1
            done = conn.execute(
                "UPDATE pt_schedule SET status = ?, error = ?, lease_owner = NULL, "
                "lease_until = NULL WHERE id = ? AND status = 'pending' AND lease_owner = ?",
                (status, error, schedule_id, owner),
            ).rowcount
        return bool(done == 1)

    def import_events(
        self,
        events: Iterable[ImportedEvent],
        after: int,
        tables: Callable[[StoreReader], TransferTables] | None = None,
    ) -> int:
        self._writing("import")
        count = 0
        with self._transaction("BEGIN IMMEDIATE", "import failed, nothing was written") as conn:
            head = _SQLiteReader(self).head()
            if head != after:
                raise StoreError(
                    f"import refused, nothing was written: the store's head is {head}, "
                    f"the events continue after {after}"
                )
            batch: list[ImportedEvent] = []
            for event in gap_free(events, after):
                batch.append(event)
                if len(batch) >= _IMPORT_BATCH:
                    self._import_batch(conn, batch)
                    count += len(batch)
                    batch = []
            self._import_batch(conn, batch)
            count += len(batch)
            self.statements += 1
            conn.execute(
                "INSERT INTO pt_heads (state_type, state_id, last_position) "
                "SELECT state_type, state_id, max(position) FROM pt_links "
                "WHERE position > ? GROUP BY state_type, state_id "
                "ON CONFLICT (state_type, state_id) "
                "DO UPDATE SET last_position = excluded.last_position",
                (after,),
            )
            forgot = False
            if tables is not None:
                forgot = self._write_tables(conn, tables(_SQLiteReader(self)), after, after + count)
        if forgot:
            self._checkpoint("the import forgot a data subject")
        return count

    def _write_tables(
        self, conn: sqlite3.Connection, tables: TransferTables, after: int, until: int
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
        return import_keys(run, tables.subject_keys or (), tables.forgotten or ())

    def archive(
        self,
        until: int,
        base: Sequence[SnapshotRecord],
        meta: Mapping[str, str] | None = None,
    ) -> int:
        self._writing("archive")
        with self._transaction("BEGIN IMMEDIATE", "archive failed, nothing was deleted") as conn:
            reader = _SQLiteReader(self)
            check_archive_cut(reader, until, base)
            self.statements += 6
            conn.executemany(
                "INSERT INTO pt_snapshots (state_type, state_id, position, last_event_id, data, "
                "version, fingerprint) VALUES (?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (state_type, state_id, position) DO UPDATE SET "
                "last_event_id = excluded.last_event_id, data = excluded.data, "
                "version = excluded.version, fingerprint = excluded.fingerprint",
                [
                    (
                        r.key.type,
                        r.key.id,
                        r.position,
                        r.last_event_id,
                        r.data,
                        r.version,
                        r.fingerprint,
                    )
                    for r in base
                ],
            )
            conn.execute(
                "INSERT INTO pt_archived_keys (event_key, position) SELECT event_key, position "
                "FROM pt_events WHERE position <= ? AND event_key IS NOT NULL",
                (until,),
            )
            archive_personal(lambda sql, p: conn.execute(sql, p).fetchall(), until)
            conn.execute("DELETE FROM pt_snapshots WHERE position < ?", (until,))
            conn.execute("DELETE FROM pt_links WHERE position <= ?", (until,))
            deleted = conn.execute("DELETE FROM pt_events WHERE position <= ?", (until,)).rowcount
            conn.executemany(
                "INSERT INTO pt_meta VALUES (?, ?) ON CONFLICT (key) "
                "DO UPDATE SET value = excluded.value",
                [(ARCHIVED_UNTIL, str(until)), *(meta or {}).items()],
            )
        return int(deleted)

    def _import_batch(self, conn: sqlite3.Connection, batch: Sequence[ImportedEvent]) -> None:
        if not batch:
            return
        self.statements += 2
        conn.executemany(
            f"INSERT INTO pt_events ({EVENT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [(*e[:5], e.version, e.metadata, e.correlation) for e in batch],
        )
        conn.executemany(
            "INSERT INTO pt_links VALUES (?, ?, ?, ?)",
            [(k.type, k.id, e.position, g) for e in batch for k, g in e.links],
        )

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
            _check_epoch(conn, epoch)
            for key, value in (meta or {}).items():
                if value is None:
                    conn.execute("DELETE FROM pt_meta WHERE key = ?", (key,))
                else:
                    conn.execute(
                        "INSERT INTO pt_meta VALUES (?, ?) ON CONFLICT (key) "
                        "DO UPDATE SET value = excluded.value",
                        (key, value),
                    )
            self.statements += 2
            conn.executemany(
                "INSERT INTO pt_snapshots (state_type, state_id, position, last_event_id, data, "
                "version, fingerprint) VALUES (?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (state_type, state_id, position) DO UPDATE SET "
                "last_event_id = excluded.last_event_id, data = excluded.data, "
                "version = excluded.version, fingerprint = excluded.fingerprint",
                [
                    (
                        r.key.type,
                        r.key.id,
                        r.position,
                        r.last_event_id,
                        r.data,
                        r.version,
                        r.fingerprint,
                    )
                    for r in records
                ],
            )
            conn.executemany(
                "DELETE FROM pt_snapshots WHERE state_type = ? AND state_id = ? AND position < "
                "(SELECT MIN(position) FROM (SELECT position FROM pt_snapshots "
                f"WHERE state_type = ? AND state_id = ? ORDER BY position DESC LIMIT ?)) "
                f"AND {_NOT_BASE}",
                [(k.type, k.id, k.type, k.id, keep) for k in dict.fromkeys(r.key for r in records)],
            )

    def drop_snapshots(self, keys: Iterable[StateKey] | None = None) -> int:
        with self._lock:
            self._writing("write")
            with self._transaction("BEGIN IMMEDIATE", "dropping snapshots") as conn:
                self.statements += 2
                if keys is None:
                    conn.execute(
                        "UPDATE pt_heads SET value = NULL, value_position = NULL "
                        "WHERE value IS NOT NULL"
                    )
                    return int(conn.execute(f"DELETE FROM pt_snapshots WHERE {_NOT_BASE}").rowcount)
                count = 0
                for k in dict.fromkeys(keys):
                    conn.execute(
                        "UPDATE pt_heads SET value = NULL, value_position = NULL "
                        "WHERE state_type = ? AND state_id = ?",
                        (k.type, k.id),
                    )
                    count += conn.execute(
                        f"DELETE FROM pt_snapshots WHERE state_type = ? AND state_id = ? "
                        f"AND {_NOT_BASE}",
                        (k.type, k.id),
                    ).rowcount
                return count

    @contextmanager
    def follow(self, name: str, limit: int) -> Iterator[FollowerBatch | None]:
        # BEGIN IMMEDIATE takes SQLite's write lock: no other process can run
        # a batch of this (or any) follower, or append, until this one commits.
        self._writing("run a follower")
        with self._transaction("BEGIN IMMEDIATE", f"a batch of follower {name!r} failed") as conn:
            self.statements += 3
            conn.execute(
                "INSERT INTO pt_followers (name, position, updated_at) VALUES (?, 0, ?) "
                "ON CONFLICT (name) DO NOTHING",
                (name, datetime.now(UTC).isoformat()),
            )
            (position,) = conn.execute(
                "SELECT position FROM pt_followers WHERE name = ?", (name,)
            ).fetchone()
            rows = conn.execute(
                f"SELECT {EVENT_COLUMNS} FROM pt_events WHERE position > ? "
                "ORDER BY position LIMIT ?",
                (position, limit),
            ).fetchall()
            events = unseal([StoredEvent(*r) for r in rows], _SQLiteReader(self).subject_keys)
            forgotten = [
                SubjectForgotten(*r)
                for r in conn.execute(
                    "SELECT f.seq, f.subject, f.position FROM pt_forgotten f "
                    "JOIN pt_followers w ON w.name = ? WHERE f.seq > w.forgotten ORDER BY f.seq",
                    (name,),
                ).fetchall()
            ]
            batch = FollowerBatch(name, position, events, _SQLiteTransaction(conn), forgotten)
            yield batch
            conn.execute(
                "UPDATE pt_followers SET position = ?, updated_at = ?, "
                "forgotten = max(forgotten, ?) WHERE name = ?",
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

    def close(self) -> None:
        with self._lock:
            self._conn.close()
