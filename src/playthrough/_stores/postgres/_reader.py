"""The PostgreSQL store's reads, inside a read transaction on one pooled connection."""

from __future__ import annotations

import base64
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import psycopg

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
from .._json_sql import PostgresFilter
from . import _sql as q
from ._sql import Conn

# A NamedTuple made without its __new__ frame (one per link row read): the same value.
_new = tuple.__new__

if TYPE_CHECKING:
    from ._datastore import PostgresDatastore


def key_arrays(keys: Sequence[StateKey]) -> tuple[list[str], list[str]]:
    return [k.type for k in keys], [k.id for k in keys]


class PostgresReader(StoreReader):
    def __init__(self, store: PostgresDatastore, conn: Conn) -> None:
        self._store = store
        self._conn = conn

    def _q(self, template: str, params: Sequence[Any] | None = None) -> list[tuple[Any, ...]]:
        self._store.statements += 1
        try:
            return self._conn.execute(self._store._sql(template), params).fetchall()
        except psycopg.Error as exc:
            raise self._store._failure("read", exc) from exc

    def head(self) -> int:
        return int(self._q(q.HEAD)[0][0])

    def state_heads(self, keys: Iterable[StateKey]) -> dict[StateKey, int]:
        out: dict[StateKey, int] = {}
        for chunk in chunks(list(dict.fromkeys(keys)), q.CHUNK):
            for t, i, p in self._q(q.STATE_HEADS, key_arrays(chunk)):
                out[StateKey(t, i)] = p
        return out

    def snapshots(
        self, keys: Iterable[StateKey], at_most: int
    ) -> dict[StateKey, list[SnapshotRecord]]:
        out: dict[StateKey, list[SnapshotRecord]] = {}
        for chunk in chunks(list(dict.fromkeys(keys)), q.CHUNK):
            arrays = key_arrays(chunk)
            rows = self._q(q.SNAPSHOTS, [*arrays, at_most, *arrays, at_most])
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
        for chunk in chunks(list(dict.fromkeys(keys)), q.CHUNK):
            head_rows(self._q(q.HEADS, key_arrays(chunk)), out)
        return out

    def links(self, ranges: Mapping[StateKey, tuple[int, int]]) -> list[Link]:
        items = [(k, lo, hi) for k, (lo, hi) in ranges.items() if hi > lo]
        if not items:
            return []
        rows = self._q(
            q.LINKS,
            (
                [k.type for k, _, _ in items],
                [k.id for k, _, _ in items],
                [lo for _, lo, _ in items],
                [hi for _, _, hi in items],
            ),
        )
        return [_new(Link, (p, _new(StateKey, (t, i)), g)) for p, t, i, g in rows]

    def events(self, positions: Sequence[int]) -> Iterator[StoredEvent]:
        for chunk in chunks(positions, q.CHUNK):
            yield from [StoredEvent(*row) for row in self._q(q.EVENTS, (list(chunk),))]

    def events_after(self, after: int, limit: int) -> list[StoredEvent]:
        rows = self._q(q.SHARED.EVENTS_AFTER, (after, limit))
        return [_new(StoredEvent, row) for row in rows]  # a row holds every field

    def transfer_rows(self, table: str) -> list[tuple[Any, ...]]:
        return self._q(transfer_select(table, "{s}."))

    def subject_keys(self, subjects: Iterable[str]) -> dict[str, bytes]:
        wanted = list(dict.fromkeys(subjects))
        return {s: base64.b64decode(k) for s, k in self._q(q.SUBJECT_KEYS, (wanted,))}

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
        rows = self._q(q.SHARED.META, (key,))
        return str(rows[0][0]) if rows else None

    def completions(self, keys: Iterable[StateKey]) -> dict[StateKey, Completion]:
        wanted = list(dict.fromkeys(keys))
        out: dict[StateKey, Completion] = {}
        for chunk in chunks(wanted, q.CHUNK):
            for t, i, p, e in self._q(q.COMPLETIONS, key_arrays(chunk)):
                key = StateKey(t, i)
                out[key] = Completion(key, p, e)
        return out

    def schedule(self, schedule_id: str) -> ScheduleRecord | None:
        rows = self._q(q.SHARED.SCHEDULE, (schedule_id,))
        return ScheduleRecord(*rows[0]) if rows else None

    def schedules(self, status: str | None = None) -> list[ScheduleRecord]:
        if status is None:
            return [ScheduleRecord(*r) for r in self._q(q.SHARED.SCHEDULES)]
        return [ScheduleRecord(*r) for r in self._q(q.SHARED.SCHEDULES_BY_STATUS, (status,))]

    def commit_positions(self, commit_id: str) -> tuple[int, int] | None:
        rows = self._q(q.SHARED.COMMIT_POSITIONS, (commit_id,))
        return (int(rows[0][0]), int(rows[0][1])) if rows else None

    def event_keys(self, keys: Sequence[str]) -> dict[str, int]:
        out: dict[str, int] = {}
        for chunk in chunks(list(dict.fromkeys(keys)), q.CHUNK):
            for key, position in self._q(q.EVENT_KEYS, (list(chunk), list(chunk))):
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

    # ---------------------------------------------------------------- read side

    def _raw(self, text: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        self._store.statements += 1
        try:
            return self._conn.execute(self._store._sql(text), params).fetchall()
        except psycopg.Error as exc:
            raise self._store._failure("read", exc) from exc

    def find_events(self, query: EventQuery, limit: int) -> list[StoredEvent]:
        found = event_query_sql(
            query,
            tables="{s}.",
            placeholder="%s",
            types_condition=lambda types: ("e.type = ANY(%s::text[])", [list(types)]),
        )
        if found is None:
            return []
        sql, params = found
        rows = self._raw(sql, [*params, limit])
        return [StoredEvent(*row) for row in rows]

    def state_info(self, key: StateKey) -> StateInfoRow | None:
        rows = self._q(q.SHARED.STATE_INFO, (key.type, key.id))
        if not rows:
            return None
        last, value_position, first, count, snap = rows[0]
        times = dict(self._q(q.FIRED_AT, ([first, last],)))
        return StateInfoRow(
            key, first, times.get(first), last, times.get(last), count, snap, value_position
        )

    def stale_states(
        self, state_type: str, limit: int, shape: tuple[int, str] | None = None
    ) -> list[tuple[StateKey, int]]:
        version, fingerprint = shape if shape is not None else (None, None)
        rows = self._q(q.STALE_STATES, (state_type, version, version, fingerprint, limit))
        return [(StateKey(state_type, i), p) for i, p in rows]

    def query_states(
        self,
        state_type: str,
        conditions: Sequence[Condition],
        order: Sequence[Order],
        limit: int | None,
    ) -> list[tuple[str, str, int]]:
        f = PostgresFilter()
        where = f.where(conditions)
        order_sql = f.order(order)
        rows = self._filtered(
            "SELECT h.state_id, h.value, h.value_position FROM ",
            f" WHERE {where} ORDER BY {order_sql} LIMIT %s",
            [state_type, *f.params, limit],
        )
        return [(i, v, p) for i, v, p in rows]

    def count_states(self, state_type: str, conditions: Sequence[Condition]) -> int:
        f = PostgresFilter()
        where = f.where(conditions)
        rows = self._filtered("SELECT count(*) FROM ", f" WHERE {where}", [state_type, *f.params])
        return int(rows[0][0])

    def _filtered(self, head: str, tail: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        """A statement over the heads values of one type; ``tail`` (the rendered filter)
        is sent as it is: the dict keys it quotes are data, never templates (a key
        ``{s}`` stays ``{s}``), and it does not enter the store's statement cache."""
        self._store.statements += 1
        text = head + self._store._sql(q.HEADS_JSON) + tail
        try:
            return self._conn.execute(text, params).fetchall()
        except psycopg.Error as exc:
            raise self._store._failure("read", exc) from exc

    def followers(self) -> list[FollowerRow]:
        return [FollowerRow(*row) for row in self._q(q.SHARED.FOLLOWERS)]

    def event_versions(self) -> list[TypeVersions]:
        return [TypeVersions(t, v, None, n) for t, v, n in self._q(q.SHARED.EVENT_VERSIONS)]

    def snapshot_versions(self) -> list[TypeVersions]:
        return [TypeVersions(t, v, f, n) for t, v, f, n in self._q(q.SHARED.SNAPSHOT_VERSIONS)]

    def iter_snapshots(self) -> Iterator[SnapshotRecord]:
        after: tuple[str, str, int, int] = ("", "", -(1 << 62), 0)
        while True:  # a heads value at a snapshot's position comes too: both are checked
            rows = self._q(q.ITER_SNAPSHOTS, (*after, q.PAGE))
            for t, i, p, last, data, src, version, mark in rows:
                source = HEADS_VALUE if src else "snapshot"
                yield SnapshotRecord(StateKey(t, i), p, last, data, version, mark, source)
            if len(rows) < q.PAGE:
                return
            last_row = rows[-1]
            after = (last_row[0], last_row[1], last_row[2], last_row[5])


class PostgresTransaction(FollowerTransaction):
    dialect = "postgresql"

    def __init__(self, conn: Conn) -> None:
        self.connection = conn
        self._conn = conn

    def execute(self, sql: str, params: Sequence[object] = ()) -> list[tuple[object, ...]]:
        cur = self._conn.execute(_placeholders(sql), params)
        return cur.fetchall() if cur.description is not None else []

    def executemany(self, sql: str, params: Iterable[Sequence[object]]) -> None:
        # psycopg sends the rows in one pipeline: one round trip, not one per row.
        with self._conn.cursor() as cur:
            cur.executemany(_placeholders(sql), params)


def _placeholders(sql: str) -> str:
    """``?`` placeholders, as on SQLite; a literal % must reach psycopg doubled."""
    return sql.replace("%", "%%").replace("?", "%s")


def head_rows(rows: Iterable[Sequence[Any]], out: HeadRows) -> HeadRows:
    """Heads rows into ``out``; the row without a state carries the forget epoch."""
    for t, i, p, *rest in rows:
        if t is None:
            if out.epoch is None:
                out.epoch = int(p)
        else:
            out[StateKey(t, i)] = HeadRow(p, *rest)
    return out
