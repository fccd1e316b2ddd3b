"""The SQLite store's reads, inside a transaction its store opened (or a single statement)."""

from __future__ import annotations

import base64
import sqlite3
from collections.abc import Iterable, Iterator, Mapping, Sequence
from operator import itemgetter
from typing import TYPE_CHECKING, Any

from ..._errors import StoreError
from ..._keys import StateKey
from .._base import (
    HEADS_VALUE,
    Completion,
    Condition,
    EventQuery,
    FollowerRow,
    FollowerTransaction,
    HeadRow,
    HeadRows,
    Link,
    Order,
    ScheduleRecord,
    SnapshotRecord,
    StateInfoRow,
    StoredEvent,
    StoreReader,
    TypeVersions,
    chunks,
    coupled,
    event_query_sql,
    linked_keys,
    transfer_select,
)
from .._json_sql import SQLiteFilter
from . import _sql as q

# A NamedTuple made without its __new__ frame (one per link row read): the same value.
_new = tuple.__new__

if TYPE_CHECKING:
    from ._datastore import SQLiteDatastore

# Items per statement; also bounded by the connection's variable limit, which
# builds before SQLite 3.32 default to 999 (and a build or a program may lower).
KEYS_PER_STATEMENT = 400  # 2 parameters each
_RANGES_PER_STATEMENT = 300  # 4 parameters each
_POSITIONS_PER_STATEMENT = 500


def _values(n: int, width: int) -> str:
    """A VALUES list of ``n`` rows of ``width`` parameters."""
    row = "(" + ",".join("?" for _ in range(width)) + ")"
    return ",".join(row for _ in range(n))


def _marks(n: int) -> str:
    return ",".join("?" for _ in range(n))


#: ``STATE_HEADS_AND_HEAD`` and ``HEADS`` for n keys, rendered once per n.
_HEADS_AND_HEAD: dict[int, str] = {}
_HEADS: dict[int, str] = {}


class SQLiteReader(StoreReader):
    def __init__(self, store: SQLiteDatastore) -> None:
        self._store = store

    def _q(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        self._store.statements += 1
        try:
            return self._store._conn.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise StoreError(f"reading {self._store.url} failed: {exc}") from exc

    def size(self, cap: int, per_item: int, extra: int = 0) -> int:
        """Items per statement so that bound variables stay under the runtime's limit."""
        limit = self._store._conn.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
        return max(1, min(cap, (limit - extra) // per_item))

    def head(self) -> int:
        row = self._q(q.HEAD)
        return int(row[0][0]) if row else 0

    def state_heads(self, keys: Iterable[StateKey]) -> dict[StateKey, int]:
        out: dict[StateKey, int] = {}
        for chunk in chunks(list(dict.fromkeys(keys)), self.size(KEYS_PER_STATEMENT, 2)):
            rows = self._q(
                q.STATE_HEADS.format(values=_values(len(chunk), 2)),
                [v for k in chunk for v in k],
            )
            for t, i, p in rows:
                out[StateKey(t, i)] = p
        return out

    def state_heads_and_head(
        self, keys: Sequence[StateKey]
    ) -> tuple[dict[StateKey, int], int, int] | None:
        """``state_heads(keys)``, the forget epoch and the log's head in one statement;
        None when the keys take more than one statement (the caller reads them apart)."""
        n = len(keys)
        if n > self.size(KEYS_PER_STATEMENT, 2):
            return None
        sql = _HEADS_AND_HEAD.get(n)
        if sql is None:
            sql = _HEADS_AND_HEAD[n] = q.STATE_HEADS_AND_HEAD.format(values=_values(n, 2))
        out: dict[StateKey, int] = {}
        epoch = head = 0
        for t, i, p in self._q(sql, [v for k in keys for v in k]):
            if t is None:
                epoch, head = int(i), int(p)
            else:
                out[StateKey(t, i)] = p
        return out, epoch, head

    def snapshots(
        self, keys: Iterable[StateKey], at_most: int
    ) -> dict[StateKey, list[SnapshotRecord]]:
        out: dict[StateKey, list[SnapshotRecord]] = {}
        for chunk in chunks(list(dict.fromkeys(keys)), self.size(KEYS_PER_STATEMENT, 2, 1)):
            n = 2 * len(chunk) + 1  # the number of the at_most parameter
            rows = self._q(
                q.SNAPSHOTS.format(values=_values(len(chunk), 2), n=n),
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
        wanted = list(dict.fromkeys(keys))
        return self.heads_of(wanted, self.size(KEYS_PER_STATEMENT, 2))

    def heads_of(self, wanted: Sequence[StateKey], size: int) -> HeadRows:
        """:meth:`heads` of distinct keys, ``size`` per statement (one statement, the
        statement's text rendered once per number of keys, when they fit)."""
        out = HeadRows()
        if not wanted:
            return out  # no statement (as before: the epoch stays unknown)
        for chunk in (wanted,) if len(wanted) <= size else chunks(wanted, size):
            sql = _HEADS.get(len(chunk))
            if sql is None:
                sql = _HEADS[len(chunk)] = q.HEADS.format(values=_values(len(chunk), 2))
            for t, i, p, value, vp, version, mark in self._q(sql, [v for k in chunk for v in k]):
                if t is None:  # the forget epoch, read in the same statement
                    if out.epoch is None:
                        out.epoch = int(p)
                else:
                    out[_new(StateKey, (t, i))] = _new(HeadRow, (p, value, vp, version, mark))
        return out

    def links(self, ranges: Mapping[StateKey, tuple[int, int]]) -> list[Link]:
        items = [(k, lo, hi) for k, (lo, hi) in ranges.items() if hi > lo]
        out: dict[tuple[int, StateKey], Link] = {}
        for chunk in chunks(items, self.size(_RANGES_PER_STATEMENT, 4)):
            params = [v for k, lo, hi in chunk for v in (k.type, k.id, lo, hi)]
            rows = self._q(q.LINKS.format(values=_values(len(chunk), 4)), params)
            for p, t, i, g in rows:
                key = StateKey(t, i)
                out[(p, key)] = Link(p, key, g)
        return sorted(out.values(), key=itemgetter(0))

    def events(self, positions: Sequence[int]) -> Iterator[StoredEvent]:
        for chunk in chunks(positions, self.size(_POSITIONS_PER_STATEMENT, 1)):
            rows = self._q(q.EVENTS.format(marks=_marks(len(chunk))), list(chunk))
            yield from [StoredEvent(*row) for row in rows]

    def events_after(self, after: int, limit: int) -> list[StoredEvent]:
        rows = self._q(q.SHARED.EVENTS_AFTER, (after, limit))
        return [_new(StoredEvent, row) for row in rows]  # a row holds every field

    def transfer_rows(self, table: str) -> list[tuple[Any, ...]]:
        return [tuple(r) for r in self._q(transfer_select(table, ""))]

    def subject_keys(self, subjects: Iterable[str]) -> dict[str, bytes]:
        out: dict[str, bytes] = {}
        for chunk in chunks(list(dict.fromkeys(subjects)), _POSITIONS_PER_STATEMENT):
            rows = self._q(q.SUBJECT_KEYS.format(marks=_marks(len(chunk))), list(chunk))
            out.update((s, base64.b64decode(k)) for s, k in rows)
        return out

    def keys_between(self, after: int, upto: int) -> list[tuple[int, str]]:
        return [(int(p), str(k)) for p, k in self._q(q.SHARED.KEYS_BETWEEN, (after, upto))]

    def links_between(self, after: int, upto: int) -> list[Link]:
        rows = self._q(q.SHARED.LINKS_BETWEEN, (after, upto))
        return [_new(Link, (p, _new(StateKey, (t, i)), g)) for p, t, i, g in rows]

    def coupled_links_between(self, after: int, upto: int) -> list[Link]:
        rows = self._q(q.SHARED.MULTI_LINKS_BETWEEN, (after, upto))
        return coupled([_new(Link, (p, _new(StateKey, (t, i)), g)) for p, t, i, g in rows])

    def linked_keys_between(self, after: int, upto: int) -> dict[int, list[StateKey]]:
        return linked_keys(self._q(q.SHARED.LINKED_KEYS_BETWEEN, (after, upto)))

    def meta(self, key: str) -> str | None:
        row = self._q(q.SHARED.META, (key,))
        return str(row[0][0]) if row else None

    def completions(self, keys: Iterable[StateKey]) -> dict[StateKey, Completion]:
        out: dict[StateKey, Completion] = {}
        for chunk in chunks(list(dict.fromkeys(keys)), KEYS_PER_STATEMENT):
            rows = self._q(
                q.COMPLETIONS.format(values=_values(len(chunk), 2)),
                [v for k in chunk for v in k],
            )
            for t, i, p, e in rows:
                key = StateKey(t, i)
                out[key] = Completion(key, p, e)
        return out

    def schedule(self, schedule_id: str) -> ScheduleRecord | None:
        rows = self._q(q.SHARED.SCHEDULE, (schedule_id,))
        return ScheduleRecord(*rows[0]) if rows else None

    def schedules(self, status: str | None = None) -> list[ScheduleRecord]:
        if status is None:
            rows = self._q(q.SHARED.SCHEDULES)
        else:
            rows = self._q(q.SHARED.SCHEDULES_BY_STATUS, (status,))
        return [ScheduleRecord(*r) for r in rows]

    def commit_positions(self, commit_id: str) -> tuple[int, int] | None:
        row = self._q(q.SHARED.COMMIT_POSITIONS, (commit_id,))
        return (int(row[0][0]), int(row[0][1])) if row else None

    def event_keys(self, keys: Sequence[str]) -> dict[str, int]:
        out: dict[str, int] = {}
        for chunk in chunks(list(dict.fromkeys(keys)), self.size(_POSITIONS_PER_STATEMENT, 1)):
            text = q.EVENT_KEYS.format(marks=_marks(len(chunk)))
            for key, position in self._q(text, list(chunk) * 2):
                out[key] = int(position)
        return out

    def heads_disagreements(self, limit: int) -> list[tuple[StateKey, int | None, int | None]]:
        rows = self._q(q.SHARED.HEADS_DISAGREE, (limit,))
        return [(StateKey(t, i), have, want) for t, i, have, want in rows]

    def snapshot_disagreements(
        self, limit: int
    ) -> list[tuple[StateKey, int, int | None, int | None]]:
        rows = self._q(q.SHARED.SNAPSHOTS_DISAGREE, (limit,))
        return [(StateKey(t, i), p, last, want) for t, i, p, last, want in rows]

    def pending_handlers(self, limit: int) -> list[int]:
        return [int(r[0]) for r in self._q(q.SHARED.PENDING_HANDLERS, (limit,))]

    def iter_snapshots(self) -> Iterator[SnapshotRecord]:
        for t, i, p, last, data, version, mark, src in self._q(q.ITER_SNAPSHOTS):
            source = HEADS_VALUE if src else "snapshot"
            yield SnapshotRecord(StateKey(t, i), p, last, data, version, mark, source)

    def event_versions(self) -> list[TypeVersions]:
        return [TypeVersions(t, v, None, n) for t, v, n in self._q(q.SHARED.EVENT_VERSIONS)]

    def snapshot_versions(self) -> list[TypeVersions]:
        return [TypeVersions(t, v, f, n) for t, v, f, n in self._q(q.SHARED.SNAPSHOT_VERSIONS)]

    # ---------------------------------------------------------------- read side

    def find_events(self, query: EventQuery, limit: int) -> list[StoredEvent]:
        found = event_query_sql(
            query,
            tables="",
            placeholder="?",
            types_condition=lambda types: (f"e.type IN ({_marks(len(types))})", list(types)),
        )
        if found is None:
            return []
        sql, params = found
        rows = self._q(sql, [*params, limit])
        return [StoredEvent(*row) for row in rows]

    def state_info(self, key: StateKey) -> StateInfoRow | None:
        rows = self._q(q.SHARED.STATE_INFO, (key.type, key.id))
        if not rows:
            return None
        last, value_position, first, count, snap = rows[0]
        times = dict(self._q(q.FIRED_AT, (first, last)))
        return StateInfoRow(
            key, first, times.get(first), last, times.get(last), count, snap, value_position
        )

    def stale_states(
        self, state_type: str, limit: int, shape: tuple[int, str] | None = None
    ) -> list[tuple[StateKey, int]]:
        other_shape = ""
        params: list[Any] = [state_type]
        if shape is not None:
            other_shape = q.STALE_SHAPE
            params += list(shape)
        rows = self._q(q.STALE_STATES.format(other_shape=other_shape), [*params, limit])
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
            f"{q.QUERY_STATES}{where} ORDER BY {order_sql} LIMIT ?",
            [state_type, *f.params, -1 if limit is None else limit],
        )

    def count_states(self, state_type: str, conditions: Sequence[Condition]) -> int:
        f = SQLiteFilter()
        where = f.where(conditions)
        rows = self._q(q.COUNT_STATES + where, [state_type, *f.params])
        return int(rows[0][0])

    def followers(self) -> list[FollowerRow]:
        return [FollowerRow(*row) for row in self._q(q.SHARED.FOLLOWERS)]


class SQLiteTransaction(FollowerTransaction):
    dialect = "sqlite"

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.connection = conn
        self._conn = conn

    def execute(self, sql: str, params: Sequence[object] = ()) -> list[tuple[object, ...]]:
        return self._conn.execute(sql, params).fetchall()

    def executemany(self, sql: str, params: Iterable[Sequence[object]]) -> None:
        self._conn.executemany(sql, params)
