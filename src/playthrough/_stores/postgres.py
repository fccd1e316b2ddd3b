"""The PostgreSQL store: psycopg 3 over a small connection pool, one schema per store.

Commit order is position order. Every append takes a transaction-level
advisory lock private to the store's schema; then one statement (a new READ
COMMITTED snapshot, which holds every earlier append) numbers the events after
the largest position, checks and moves the heads and inserts events and links.
The lock, that statement and the COMMIT travel in one pipelined round trip, and
PostgreSQL releases the lock only once the commit is visible, so appends become
visible in position order: a reader's snapshot always holds a prefix of the log,
and a follower paging through ``events_after`` never skips an event that
commits later with a smaller position. See design/postgres.md for the
alternatives and the measured cost.

The optimistic-concurrency check is done by the database: known states are
updated only where ``last_position`` still holds the expected value, new states
are inserted and rely on the primary key (``ON CONFLICT DO NOTHING``); a state
neither updated nor inserted is stale, and ``pt_refuse()`` raises, which aborts
the whole transaction (the COMMIT behind it does nothing).

Readers are ``REPEATABLE READ, READ ONLY`` transactions on one pooled
connection, so every query of a load sees one snapshot. Keys, ranges and
positions travel as binary arrays (``unnest``/``ANY``), so the number of
statements a load or a commit sends does not grow with the number of states or
events.
``statements`` counts queries sent; transaction control (BEGIN/COMMIT) is not
counted, as in the SQLite store.

Heads rows carry each state's value (schema version 2): the append statement
writes it with the head, and ``heads()`` reads the values of any number of
states in one autocommit statement, the whole of a load whose values are
current. A store is shared by the threads of a process: each thread's read
transaction holds a pooled connection of its own (size the pool to the threads).
"""

from __future__ import annotations

import base64
import json
import re
import threading
import uuid
import zlib
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import attrs
import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict
from psycopg.pq import TransactionStatus
from psycopg.rows import TupleRow
from psycopg_pool import ConnectionPool, PoolTimeout

from .. import _options
from .._errors import (
    CommitOutcomeUnknown,
    ConcurrencyError,
    DuplicateEvent,
    PlaythroughError,
    SchemaVersionError,
    StaleForgetError,
    StoreError,
)
from .._model import StateKey
from .._personal import unseal
from . import parse_store_url
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
from ._forget import TOUCHED, archive_personal, forget, import_event_keys, import_keys
from ._json_sql import PostgresFilter

Conn = psycopg.Connection[TupleRow]

_CHUNK = 10_000  # positions or keys per statement
_PAGE = 10_000  # snapshots per page of iter_snapshots

# Advisory lock classes (first int of the two-int key); the second int is a
# hash of the schema name, so stores in different schemas never wait for each other.
_LOCK_APPEND = 0x70740001
_LOCK_MIGRATE = 0x70740002

_STALE = "PT409"  # SQLSTATE of pt_refuse()
RENDERED_MAX = 256  # statement texts kept with the schema substituted (least recently used go)
_READ = "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY"
_WRITE = "BEGIN ISOLATION LEVEL READ COMMITTED, READ WRITE"

_SCHEMA = [
    "CREATE SCHEMA IF NOT EXISTS {s}",
    """CREATE TABLE IF NOT EXISTS {s}.pt_meta (
        key text COLLATE "C" PRIMARY KEY,
        value text NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS {s}.pt_events (
        position bigint PRIMARY KEY,
        type text NOT NULL,
        data text NOT NULL,
        caused_by bigint,
        fired_at text NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS {s}.pt_links (
        state_type text COLLATE "C" NOT NULL,
        state_id text COLLATE "C" NOT NULL,
        position bigint NOT NULL,
        grp integer NOT NULL,
        PRIMARY KEY (state_type, state_id, position)
    )""",
    "CREATE INDEX IF NOT EXISTS pt_links_by_position ON {s}.pt_links (position)",
    """CREATE TABLE IF NOT EXISTS {s}.pt_heads (
        state_type text COLLATE "C" NOT NULL,
        state_id text COLLATE "C" NOT NULL,
        last_position bigint NOT NULL,
        PRIMARY KEY (state_type, state_id)
    )""",
    """CREATE TABLE IF NOT EXISTS {s}.pt_snapshots (
        state_type text COLLATE "C" NOT NULL,
        state_id text COLLATE "C" NOT NULL,
        position bigint NOT NULL,
        last_event_id bigint,
        data text NOT NULL,
        PRIMARY KEY (state_type, state_id, position)
    )""",
    # Raised by the append statement when a state's head moved: the whole
    # transaction fails, so the COMMIT sent after it in the same round trip
    # does nothing. DETAIL carries the stale states as JSON.
    f"""CREATE OR REPLACE FUNCTION {{s}}.pt_refuse(stale text) RETURNS integer
    LANGUAGE plpgsql VOLATILE AS $$
    BEGIN
        IF stale IS NOT NULL THEN
            RAISE EXCEPTION 'playthrough: states changed by another writer'
                USING ERRCODE = '{_STALE}', DETAIL = stale;
        END IF;
        RETURN 0;
    END $$""",
]

_SUBJECT_KEYS = "SELECT subject, key FROM {s}.pt_subject_keys WHERE subject = ANY(%b::text[])"
_SUBJECT_KEYS_WRITE = (
    "INSERT INTO {s}.pt_subject_keys (subject, key) "
    "SELECT * FROM unnest(%b::text[], %b::text[]) ON CONFLICT (subject) DO NOTHING"
)
_FORGET = "DELETE FROM {s}.pt_subject_keys WHERE subject = %s"
_VALUES_DROP_ALL = (
    "UPDATE {s}.pt_heads SET value = NULL, value_position = NULL WHERE value IS NOT NULL"
)
_UNIQUE_VIOLATION = "23505"
_LOCK_NOT_AVAILABLE = "55P03"
# Batches whose payload is larger than this are not pipelined (see _send_append).
_PIPELINE_BYTES = 1 << 20
# Bounds the wait for the append lock, for this transaction only.
_LOCK_TIMEOUT = "SELECT set_config('lock_timeout', %s, true)"

_KEYS = "SELECT * FROM unnest(%b::text[], %b::text[])"

_COMPLETIONS = (
    "SELECT state_type, state_id, position, event_type FROM {s}.pt_completed "
    f"WHERE (state_type, state_id) IN ({_KEYS})"
)

_SCHEDULE = f"SELECT {SCHEDULE_COLUMNS} FROM {{s}}.pt_schedule WHERE id = %s"
_SCHEDULES = f"SELECT {SCHEDULE_COLUMNS} FROM {{s}}.pt_schedule ORDER BY due_at, id"
_SCHEDULES_BY_STATUS = (
    f"SELECT {SCHEDULE_COLUMNS} FROM {{s}}.pt_schedule WHERE status = %s ORDER BY due_at, id"
)

# Workers lease disjoint rows: a row another transaction is claiming is skipped,
# not waited for, and a lease still running is left alone.
_CLAIM = (
    "UPDATE {s}.pt_schedule s SET lease_owner = %(owner)s, lease_until = %(until)s "
    "FROM (SELECT id FROM {s}.pt_schedule WHERE status = 'pending' AND due_at <= %(now)s "
    "AND (lease_until IS NULL OR lease_until <= %(now)s) ORDER BY due_at, id LIMIT %(limit)s "
    "FOR UPDATE SKIP LOCKED) c WHERE s.id = c.id "
    f"RETURNING {', '.join('s.' + c.strip() for c in SCHEDULE_COLUMNS.split(','))}"
)

_FINISH = (
    "UPDATE {s}.pt_schedule SET status = %s, error = %s, lease_owner = NULL, "
    "lease_until = NULL WHERE id = %s AND status = 'pending' AND lease_owner = %s"
)

_FIRED = (
    "UPDATE {s}.pt_schedule s SET status = 'fired', position = f.p, lease_owner = NULL, "
    "lease_until = NULL FROM unnest(%b::text[], %b::bigint[]) AS f(id, p) "
    "WHERE s.id = f.id AND s.status = 'pending' RETURNING s.id"
)

_COMPLETED_WRITE = (
    "INSERT INTO {s}.pt_completed (state_type, state_id, position, event_type) "
    "SELECT * FROM unnest(%b::text[], %b::text[], %b::bigint[], %b::text[]) "
    "ON CONFLICT (state_type, state_id) DO UPDATE SET position = excluded.position, "
    "event_type = excluded.event_type"
)

_REOPENED = f"DELETE FROM {{s}}.pt_completed WHERE (state_type, state_id) IN ({_KEYS})"

_SCHEDULE_WRITE = (
    "INSERT INTO {s}.pt_schedule (id, due_at, type, data, status, created_at, version) "
    "SELECT i, d, t, x, 'pending', c, v FROM unnest(%b::text[], %b::text[], %b::text[], "
    "%b::text[], %b::text[], %b::int[]) AS r(i, d, t, x, c, v)"
)

_CANCEL = (
    "UPDATE {s}.pt_schedule SET status = 'cancelled', lease_owner = NULL, lease_until = NULL "
    "WHERE id = ANY(%b::text[]) AND status = 'pending' RETURNING id"
)
_STATUSES = "SELECT id, status FROM {s}.pt_schedule WHERE id = ANY(%b::text[])"

_REARM = (
    "UPDATE {s}.pt_schedule SET status = 'pending', due_at = %s, error = NULL, "
    "lease_owner = NULL, lease_until = NULL WHERE id = %s AND status IN ('pending', 'failed')"
)

# A handler's completion: checked (the rows another runner deleted are missing).
_HANDLED = (
    "DELETE FROM {s}.pt_pending_handlers WHERE position = ANY(%b::bigint[]) RETURNING position"
)

# The commit row of a commit that appends no events (an empty range).
_EMPTY_COMMIT = (
    "INSERT INTO {s}.pt_commits (commit_id, first_position, last_position) "
    "SELECT %s, coalesce(max(position), 0) + 1, coalesce(max(position), 0) FROM {s}.pt_events"
)

_HEAD = "SELECT coalesce(max(position), 0) FROM {s}.pt_events"

_STATE_HEADS = (
    "SELECT state_type, state_id, last_position FROM {s}.pt_heads "
    f"WHERE (state_type, state_id) IN ({_KEYS})"
)

# A state's heads value is one of its snapshots (exact at value_position).
_SNAPSHOTS = (
    "SELECT state_type, state_id, position, last_event_id, data, version, fingerprint "
    "FROM {s}.pt_snapshots "
    f"WHERE (state_type, state_id) IN ({_KEYS}) AND position <= %s UNION ALL "
    "SELECT state_type, state_id, value_position, value_position, value, value_version, "
    "value_fingerprint FROM {s}.pt_heads "
    f"WHERE (state_type, state_id) IN ({_KEYS}) AND value IS NOT NULL "
    "AND value_position <= %s ORDER BY 1, 2, 3 DESC"
)

# The store's forget epoch (0: nobody forgotten), as a scalar subquery.
_EPOCH = f"(SELECT coalesce(max(value::bigint), 0) FROM {{s}}.pt_meta WHERE key = '{FORGET_EPOCH}')"

# The heads rows, and one more row (no state) carrying the forget epoch.
_HEADS = (
    "SELECT state_type, state_id, last_position, value, value_position, value_version, "
    "value_fingerprint FROM {s}.pt_heads "
    f"WHERE (state_type, state_id) IN ({_KEYS}) "
    f"UNION ALL SELECT NULL, NULL, {_EPOCH}, NULL, NULL, NULL, NULL"
)

# Values are written only where still exact, and never wait for a row a writer
# holds (SKIP LOCKED): a load's write-back cannot slow down or deadlock a commit.
_VALUES_WRITE = (
    "WITH fe AS (SELECT %s::bigint AS e), "
    "v AS (SELECT * FROM unnest(%b::text[], %b::text[], %b::bigint[], %b::text[], "
    "%b::integer[], %b::text[]) AS v(t, i, p, value, version, mark)), "
    "mine AS (SELECT h.state_type, h.state_id FROM {s}.pt_heads h "
    "JOIN v ON h.state_type = v.t AND h.state_id = v.i AND h.last_position = v.p "
    "WHERE (h.value IS NULL OR h.value_position IS DISTINCT FROM v.p "
    "OR h.value_version IS DISTINCT FROM v.version "
    "OR h.value_fingerprint IS DISTINCT FROM v.mark) "
    f"AND ((SELECT e FROM fe) IS NULL OR (SELECT e FROM fe) = {_EPOCH}) "
    "FOR UPDATE OF h SKIP LOCKED) "
    "UPDATE {s}.pt_heads h SET value = v.value, value_position = v.p, "
    "value_version = v.version, value_fingerprint = v.mark FROM mine, v "
    "WHERE h.state_type = mine.state_type AND h.state_id = mine.state_id "
    "AND v.t = mine.state_type AND v.i = mine.state_id AND h.last_position = v.p"
)

_LINKS = (
    "WITH want AS (SELECT * FROM unnest(%b::text[], %b::text[], %b::bigint[], %b::bigint[]) "
    "AS w(t, i, lo, hi)), "
    "hit AS (SELECT DISTINCT l.position FROM want w JOIN {s}.pt_links l "
    "ON l.state_type = w.t AND l.state_id = w.i AND l.position > w.lo AND l.position <= w.hi) "
    "SELECT l.position, l.state_type, l.state_id, l.grp FROM hit "
    "JOIN {s}.pt_links l ON l.position = hit.position ORDER BY l.position"
)

# Every reader of events selects EVENT_COLUMNS: an apply hook reads self.metadata,
# so a load that dropped it would differ from firing and from a replay.
_EVENTS = (
    f"SELECT {EVENT_COLUMNS} FROM {{s}}.pt_events "
    "WHERE position = ANY(%b::bigint[]) ORDER BY position"
)

_EVENTS_AFTER = (
    f"SELECT {EVENT_COLUMNS} FROM {{s}}.pt_events WHERE position > %s ORDER BY position LIMIT %s"
)

_KEYS_BETWEEN = (
    "SELECT position, event_key FROM {s}.pt_events WHERE position > %s AND position <= %s "
    "AND event_key IS NOT NULL ORDER BY position"
)
_LINKS_BETWEEN = (
    "SELECT position, state_type, state_id, grp FROM {s}.pt_links "
    "WHERE position > %s AND position <= %s ORDER BY position"
)

_META = "SELECT value FROM {s}.pt_meta WHERE key = %s"

_EVENT_VERSIONS = (
    "SELECT type, version, count(*) FROM {s}.pt_events GROUP BY type, version "
    "ORDER BY type, version"
)

_SNAPSHOT_VERSIONS = (
    "SELECT t, v, f, count(*) FROM (SELECT state_type AS t, version AS v, fingerprint AS f "
    "FROM {s}.pt_snapshots UNION ALL SELECT state_type, value_version, value_fingerprint "
    "FROM {s}.pt_heads WHERE value IS NOT NULL) x GROUP BY t, v, f ORDER BY t, v, f"
)

_ITER_SNAPSHOTS = (
    "SELECT * FROM (SELECT state_type, state_id, position, last_event_id, data, 0 AS src, "
    "version, fingerprint "
    "FROM {s}.pt_snapshots UNION ALL SELECT state_type, state_id, value_position, "
    "value_position, value, 1, value_version, value_fingerprint "
    "FROM {s}.pt_heads WHERE value IS NOT NULL) x "
    "WHERE (state_type, state_id, position, src) > (%s, %s, %s, %s) "
    "ORDER BY state_type, state_id, position, src LIMIT %s"
)

_LOCK = "SELECT pg_advisory_xact_lock(%s, %s)"

_COMMIT_POSITIONS = "SELECT first_position, last_position FROM {s}.pt_commits WHERE commit_id = %s"

_EVENT_KEYS = (
    "SELECT event_key, position FROM {s}.pt_events WHERE event_key = ANY(%b::text[]) "
    "UNION ALL SELECT event_key, position FROM {s}.pt_archived_keys "
    "WHERE event_key = ANY(%b::text[])"
)
# Sent after the append lock when a batch carries keys: re-inserting an archived key
# violates pt_archived_keys' primary key, which aborts the append like a live duplicate.
_ARCHIVED_KEYS_CHECK = (
    "INSERT INTO {s}.pt_archived_keys (event_key, position) "
    "SELECT event_key, position FROM {s}.pt_archived_keys WHERE event_key = ANY(%(ek)s::text[])"
)
_ARCHIVE_KEYS = (
    "INSERT INTO {s}.pt_archived_keys (event_key, position) SELECT event_key, position "
    "FROM {s}.pt_events WHERE position <= %(until)s AND event_key IS NOT NULL"
)
_DUPLICATE_CONSTRAINTS = ("pt_events_by_key", "pt_archived_keys_pkey")

# verify's checks of heads rows and snapshot metadata against the links, and repair.
_HEADS_DISAGREE = """SELECT coalesce(h.state_type, l.state_type), coalesce(h.state_id, l.state_id),
       h.last_position, l.maxp
FROM {s}.pt_heads h FULL OUTER JOIN (
    SELECT state_type, state_id, max(position) AS maxp FROM {s}.pt_links
    GROUP BY state_type, state_id
) l ON h.state_type = l.state_type AND h.state_id = l.state_id
WHERE h.last_position IS DISTINCT FROM l.maxp
  AND NOT (l.maxp IS NULL AND h.last_position <= (
    SELECT coalesce(CAST(max(value) AS BIGINT), 0) FROM {s}.pt_meta
    WHERE key = 'archived_until'))
ORDER BY 1, 2 LIMIT %s"""
_SNAPSHOTS_DISAGREE = """SELECT x.state_type, x.state_id, x.position, x.last_event_id, x.want FROM (
    SELECT s.state_type, s.state_id, s.position, s.last_event_id,
           (SELECT max(l.position) FROM {s}.pt_links l WHERE l.state_type = s.state_type
            AND l.state_id = s.state_id AND l.position <= s.position) AS want
    FROM {s}.pt_snapshots s
) x WHERE x.last_event_id IS DISTINCT FROM x.want
  AND NOT (x.want IS NULL AND x.last_event_id <= (
    SELECT coalesce(CAST(max(value) AS BIGINT), 0) FROM {s}.pt_meta
    WHERE key = 'archived_until'))
ORDER BY 1, 2, 3 LIMIT %s"""
_REBUILD_HEADS = (
    """DELETE FROM {s}.pt_heads WHERE last_position > (
    SELECT coalesce(CAST(max(value) AS BIGINT), 0) FROM {s}.pt_meta
    WHERE key = 'archived_until')
    AND NOT EXISTS (SELECT 1 FROM {s}.pt_links l
    WHERE l.state_type = {s}.pt_heads.state_type AND l.state_id = {s}.pt_heads.state_id)""",
    """INSERT INTO {s}.pt_heads (state_type, state_id, last_position)
    SELECT state_type, state_id, max(position) FROM {s}.pt_links WHERE true
    GROUP BY state_type, state_id
    ON CONFLICT (state_type, state_id) DO UPDATE SET last_position = excluded.last_position,
        value = NULL, value_position = NULL
    WHERE {s}.pt_heads.last_position IS DISTINCT FROM excluded.last_position""",
)

_PENDING_HANDLERS = "SELECT position FROM {s}.pt_pending_handlers ORDER BY position LIMIT %s"

_MARK_HANDLED = "DELETE FROM {s}.pt_pending_handlers WHERE position = ANY(%b::bigint[])"

# Ends the backend of a connection that failed mid-append and waits (up to
# 10 s) until it is gone: then its transaction is committed or rolled back for
# good, and pt_commits answers for certain.
_TERMINATE = (
    "SELECT pg_terminate_backend(pid, 10000) FROM pg_stat_activity "
    "WHERE pid = %s AND usename = current_user"
)
# The read side: states' stored values, followers.
_STATE_INFO = (
    "SELECT h.last_position, h.value_position, "
    "(SELECT min(position) FROM {s}.pt_links l WHERE l.state_type = h.state_type "
    "AND l.state_id = h.state_id), "
    "(SELECT count(*) FROM {s}.pt_links l WHERE l.state_type = h.state_type "
    "AND l.state_id = h.state_id), "
    "(SELECT max(position) FROM {s}.pt_snapshots s WHERE s.state_type = h.state_type "
    "AND s.state_id = h.state_id) "
    "FROM {s}.pt_heads h WHERE h.state_type = %s AND h.state_id = %s"
)
_FIRED_AT = "SELECT position, fired_at FROM {s}.pt_events WHERE position = ANY(%b::bigint[])"
_STALE_STATES = (
    "SELECT state_id, last_position FROM {s}.pt_heads WHERE state_type = %s "
    "AND (value_position IS NULL OR value_position <> last_position "
    "OR (%s::integer IS NOT NULL AND (value_version IS DISTINCT FROM %s::integer "
    "OR value_fingerprint IS DISTINCT FROM %s::text))) "
    "ORDER BY state_id LIMIT %s"
)
# The subquery casts each value to jsonb once (OFFSET 0 keeps PostgreSQL from
# inlining it and casting again in every condition).
_HEADS_JSON = (
    "(SELECT state_id, value, value_position, value::jsonb AS j FROM {s}.pt_heads "
    "WHERE state_type = %s OFFSET 0) h"
)
_FOLLOWERS = "SELECT name, position, updated_at FROM {s}.pt_followers ORDER BY name"
_FOLLOWER_CREATE = (
    "INSERT INTO {s}.pt_followers (name, position, updated_at) VALUES (%s, 0, %s) "
    "ON CONFLICT (name) DO NOTHING"
)
_FOLLOWER_LOCK = "SELECT position FROM {s}.pt_followers WHERE name = %s FOR UPDATE NOWAIT"
_FOLLOWER_EVENTS = (
    f"SELECT {EVENT_COLUMNS} FROM {{s}}.pt_events WHERE position > %s ORDER BY position LIMIT %s"
)
_FOLLOWER_ADVANCE = (
    "UPDATE {s}.pt_followers SET position = %s, updated_at = %s, "
    "forgotten = greatest(forgotten, %s) WHERE name = %s"
)
_FOLLOWER_FORGOTTEN = (
    "SELECT f.seq, f.subject, f.position FROM {s}.pt_forgotten f "
    "JOIN {s}.pt_followers w ON w.name = %s WHERE f.seq > w.forgotten ORDER BY f.seq"
)

# One statement, run under the append lock (so its snapshot holds every
# earlier append): number the events after the current head, check and
# move the heads, insert events and links, and report the stale states.
# want.mode: 'u' known state (update where last_position = expected),
# 'i' new state touched here (insert, the primary key refuses a taken one),
# 'n' new state not touched here (must still be absent), 'f' touched but
# not in ``expected`` (written unchecked, as the SQLite store does).
_APPEND = """
WITH base AS (SELECT coalesce(max(position), 0) AS b FROM {s}.pt_events),
fe AS (SELECT coalesce(max(value::bigint), 0) AS e FROM {s}.pt_meta
       WHERE key = 'forget_epoch'),
want AS (
    SELECT * FROM unnest(%(wt)b::text[], %(wi)b::text[], %(we)b::bigint[],
                         %(wn)b::bigint[], %(wm)b::text[], %(wv)b::text[],
                         %(wvv)b::integer[], %(wvf)b::text[])
                  AS w(t, i, expected, n, mode, v, vv, vf)
),
upd AS (
    UPDATE {s}.pt_heads h SET last_position = coalesce(base.b + w.n, h.last_position),
        value = coalesce(w.v, h.value),
        value_position = CASE WHEN w.v IS NULL THEN h.value_position ELSE base.b + w.n END,
        value_version = CASE WHEN w.v IS NULL THEN h.value_version ELSE w.vv END,
        value_fingerprint = CASE WHEN w.v IS NULL THEN h.value_fingerprint ELSE w.vf END
    FROM want w, base
    WHERE w.mode = 'u' AND h.state_type = w.t AND h.state_id = w.i
      AND h.last_position = w.expected
    RETURNING h.state_type AS t, h.state_id AS i
),
ins AS (
    INSERT INTO {s}.pt_heads (state_type, state_id, last_position, value, value_position,
                              value_version, value_fingerprint)
    SELECT w.t, w.i, base.b + w.n, w.v, CASE WHEN w.v IS NULL THEN NULL ELSE base.b + w.n END,
           w.vv, w.vf
    FROM want w, base WHERE w.mode = 'i'
    ON CONFLICT DO NOTHING
    RETURNING state_type AS t, state_id AS i
),
ups AS (
    INSERT INTO {s}.pt_heads AS h0 (state_type, state_id, last_position, value, value_position,
                                    value_version, value_fingerprint)
    SELECT w.t, w.i, base.b + w.n, w.v, CASE WHEN w.v IS NULL THEN NULL ELSE base.b + w.n END,
           w.vv, w.vf
    FROM want w, base WHERE w.mode = 'f'
    ON CONFLICT (state_type, state_id) DO UPDATE SET last_position = excluded.last_position,
        value_version = CASE WHEN excluded.value IS NULL THEN h0.value_version
                        ELSE excluded.value_version END,
        value_fingerprint = CASE WHEN excluded.value IS NULL THEN h0.value_fingerprint
                            ELSE excluded.value_fingerprint END,
        value = coalesce(excluded.value, h0.value),
        value_position = coalesce(excluded.value_position, h0.value_position)
),
ev AS (
    INSERT INTO {s}.pt_events (position, type, data, caused_by, fired_at, version, metadata,
                               correlation, event_key)
    SELECT base.b + e.n, e.type, e.data, e.caused_by, e.fired_at, e.version, e.metadata,
           e.correlation, e.k
    FROM base, unnest(%(et)b::text[], %(ed)b::text[], %(ec)b::bigint[], %(ef)b::text[],
                      %(ev)b::integer[], %(em)b::text[], %(eo)b::text[], %(ek)b::text[])
         WITH ORDINALITY AS e(type, data, caused_by, fired_at, version, metadata, correlation,
                              k, n)
),
cm AS (
    INSERT INTO {s}.pt_commits (commit_id, first_position, last_position)
    SELECT %(cid)s, base.b + 1, base.b + %(cn)s FROM base
),
ph AS (
    INSERT INTO {s}.pt_pending_handlers (position)
    SELECT base.b + h.n FROM base, unnest(%(hn)b::bigint[]) AS h(n)
),
lk AS (
    INSERT INTO {s}.pt_links (state_type, state_id, position, grp)
    SELECT l.t, l.i, base.b + l.n, l.g
    FROM base, unnest(%(lt)b::text[], %(li)b::text[], %(ln)b::bigint[], %(lg)b::integer[])
         AS l(t, i, n, g)
),
stale AS (
    SELECT w.t, w.i, w.expected, h.last_position AS have
    FROM want w LEFT JOIN {s}.pt_heads h ON h.state_type = w.t AND h.state_id = w.i
    WHERE w.mode <> 'f'
      AND NOT EXISTS (SELECT 1 FROM upd WHERE upd.t = w.t AND upd.i = w.i)
      AND NOT EXISTS (SELECT 1 FROM ins WHERE ins.t = w.t AND ins.i = w.i)
      AND NOT (w.mode = 'n' AND h.last_position IS NULL)
    UNION ALL
    SELECT '$forget_epoch', '', %(fe)s::bigint, (SELECT e FROM fe)
    FROM fe WHERE %(fe)s::bigint IS NOT NULL AND %(fe)s::bigint <> fe.e
)
SELECT base.b, {s}.pt_refuse(
    (SELECT json_agg(json_build_array(t, i, expected, have))::text FROM stale)
) FROM base
"""

_COPY_EVENTS = (
    "COPY {s}.pt_events (position, type, data, caused_by, fired_at, version, metadata, "
    "correlation) FROM STDIN"
)
_COPY_LINKS = "COPY {s}.pt_links (state_type, state_id, position, grp) FROM STDIN"
_IMPORT_HEADS = (
    "INSERT INTO {s}.pt_heads (state_type, state_id, last_position) "
    "SELECT state_type, state_id, max(position) FROM {s}.pt_links WHERE position > %s "
    "GROUP BY state_type, state_id "
    "ON CONFLICT (state_type, state_id) DO UPDATE SET last_position = excluded.last_position"
)
_IMPORT_BATCH = 10_000  # events per COPY of an import

_META_WRITE = (
    "WITH d AS (DELETE FROM {s}.pt_meta WHERE key = ANY(%b::text[])) "
    "INSERT INTO {s}.pt_meta (key, value) SELECT * FROM unnest(%b::text[], %b::text[]) "
    "ON CONFLICT (key) DO UPDATE SET value = excluded.value"
)

_SNAPSHOTS_WRITE = (
    "INSERT INTO {s}.pt_snapshots (state_type, state_id, position, last_event_id, data, "
    "version, fingerprint) "
    "SELECT * FROM unnest(%b::text[], %b::text[], %b::bigint[], %b::bigint[], %b::text[], "
    "%b::integer[], %b::text[]) "
    "ON CONFLICT (state_type, state_id, position) DO UPDATE SET "
    "last_event_id = excluded.last_event_id, data = excluded.data, "
    "version = excluded.version, fingerprint = excluded.fingerprint"
)

_SNAPSHOTS_TRIM = (
    "DELETE FROM {s}.pt_snapshots s USING ("
    "SELECT x.state_type, x.state_id, x.position FROM ("
    "SELECT p.state_type, p.state_id, p.position, row_number() OVER ("
    "PARTITION BY p.state_type, p.state_id ORDER BY p.position DESC) AS rn "
    "FROM {s}.pt_snapshots p JOIN unnest(%b::text[], %b::text[]) AS k(t, i) "
    "ON p.state_type = k.t AND p.state_id = k.i) x WHERE x.rn > %s) old "
    "WHERE s.state_type = old.state_type AND s.state_id = old.state_id "
    "AND s.position = old.position AND {not_base}"
)

# The base snapshots of an archived log (at pt_meta's archived_until) are never
# trimmed or dropped: they stand for the archived events.
_NOT_BASE = (
    "position <> coalesce((SELECT value::bigint FROM {s}.pt_meta "
    f"WHERE key = '{ARCHIVED_UNTIL}'), -1)"
)
_SNAPSHOTS_TRIM = _SNAPSHOTS_TRIM.replace("{not_base}", "s." + _NOT_BASE)

# Dropping snapshots forgets the heads values too (they are the newest snapshots).
_SNAPSHOTS_DROP_ALL = (
    "WITH v AS (UPDATE {s}.pt_heads SET value = NULL, value_position = NULL "
    f"WHERE value IS NOT NULL) DELETE FROM {{s}}.pt_snapshots WHERE {_NOT_BASE}"
)

_SNAPSHOTS_DROP = (
    "WITH k AS (SELECT * FROM unnest(%b::text[], %b::text[]) AS k(t, i)), "
    "v AS (UPDATE {s}.pt_heads h SET value = NULL, value_position = NULL FROM k "
    "WHERE h.state_type = k.t AND h.state_id = k.i) "
    "DELETE FROM {s}.pt_snapshots s USING k WHERE s.state_type = k.t AND s.state_id = k.i "
    f"AND s.{_NOT_BASE}"
)

_ARCHIVE_DELETE = [
    "DELETE FROM {s}.pt_snapshots WHERE position < %(until)s",
    "DELETE FROM {s}.pt_links WHERE position <= %(until)s",
    "DELETE FROM {s}.pt_events WHERE position <= %(until)s",
    "INSERT INTO {s}.pt_meta (key, value) VALUES (%(key)s, %(value)s) "
    "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
]


def _key_arrays(keys: Sequence[StateKey]) -> tuple[list[str], list[str]]:
    return [k.type for k in keys], [k.id for k in keys]


def _int32(value: int) -> int:
    return value - (1 << 32) if value >= (1 << 31) else value


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


class _PostgresReader(StoreReader):
    def __init__(self, store: PostgresStore, conn: Conn) -> None:
        self._store = store
        self._conn = conn

    def _q(self, template: str, params: Sequence[Any] | None = None) -> list[tuple[Any, ...]]:
        self._store.statements += 1
        try:
            return self._conn.execute(self._store._sql(template), params).fetchall()
        except psycopg.Error as exc:
            raise self._store._failure("read", exc) from exc

    def head(self) -> int:
        return int(self._q(_HEAD)[0][0])

    def state_heads(self, keys: Iterable[StateKey]) -> dict[StateKey, int]:
        out: dict[StateKey, int] = {}
        for chunk in chunks(list(dict.fromkeys(keys)), _CHUNK):
            for t, i, p in self._q(_STATE_HEADS, _key_arrays(chunk)):
                out[StateKey(t, i)] = p
        return out

    def snapshots(
        self, keys: Iterable[StateKey], at_most: int
    ) -> dict[StateKey, list[SnapshotRecord]]:
        out: dict[StateKey, list[SnapshotRecord]] = {}
        for chunk in chunks(list(dict.fromkeys(keys)), _CHUNK):
            arrays = _key_arrays(chunk)
            rows = self._q(_SNAPSHOTS, [*arrays, at_most, *arrays, at_most])
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
        for chunk in chunks(list(dict.fromkeys(keys)), _CHUNK):
            _head_rows(self._q(_HEADS, _key_arrays(chunk)), out)
        return out

    def links(self, ranges: Mapping[StateKey, tuple[int, int]]) -> list[Link]:
        items = [(k, lo, hi) for k, (lo, hi) in ranges.items() if hi > lo]
        if not items:
            return []
        rows = self._q(
            _LINKS,
            (
                [k.type for k, _, _ in items],
                [k.id for k, _, _ in items],
                [lo for _, lo, _ in items],
                [hi for _, _, hi in items],
            ),
        )
        return [Link(p, StateKey(t, i), g) for p, t, i, g in rows]

    def events(self, positions: Sequence[int]) -> Iterator[StoredEvent]:
        for chunk in chunks(positions, _CHUNK):
            rows = [StoredEvent(*row) for row in self._q(_EVENTS, (list(chunk),))]
            yield from unseal(rows, self.subject_keys)

    def events_after(self, after: int, limit: int) -> list[StoredEvent]:
        rows = [StoredEvent(*row) for row in self._q(_EVENTS_AFTER, (after, limit))]
        return unseal(rows, self.subject_keys)

    def events_after_sealed(self, after: int, limit: int) -> list[SealedEvent]:
        return [SealedEvent(*row) for row in self._q(_EVENTS_AFTER, (after, limit))]

    def transfer_rows(self, table: str) -> list[tuple[Any, ...]]:
        return self._q(transfer_select(table, "{s}."))

    def subject_keys(self, subjects: Iterable[str]) -> dict[str, bytes]:
        wanted = list(dict.fromkeys(subjects))
        return {s: base64.b64decode(k) for s, k in self._q(_SUBJECT_KEYS, (wanted,))}

    def keys_between(self, after: int, upto: int) -> list[tuple[int, str]]:
        return [(int(p), str(k)) for p, k in self._q(_KEYS_BETWEEN, (after, upto))]

    def links_between(self, after: int, upto: int) -> list[Link]:
        rows = self._q(_LINKS_BETWEEN, (after, upto))
        return [Link(p, StateKey(t, i), g) for p, t, i, g in rows]

    def meta(self, key: str) -> str | None:
        rows = self._q(_META, (key,))
        return str(rows[0][0]) if rows else None

    def completions(self, keys: Iterable[StateKey]) -> dict[StateKey, Completion]:
        wanted = list(dict.fromkeys(keys))
        out: dict[StateKey, Completion] = {}
        for chunk in chunks(wanted, _CHUNK):
            for t, i, p, e in self._q(_COMPLETIONS, _key_arrays(chunk)):
                key = StateKey(t, i)
                out[key] = Completion(key, p, e)
        return out

    def schedule(self, schedule_id: str) -> ScheduleRecord | None:
        rows = self._q(_SCHEDULE, (schedule_id,))
        return ScheduleRecord(*rows[0]) if rows else None

    def schedules(self, status: str | None = None) -> list[ScheduleRecord]:
        if status is None:
            return [ScheduleRecord(*r) for r in self._q(_SCHEDULES)]
        return [ScheduleRecord(*r) for r in self._q(_SCHEDULES_BY_STATUS, (status,))]

    def commit_positions(self, commit_id: str) -> tuple[int, int] | None:
        rows = self._q(_COMMIT_POSITIONS, (commit_id,))
        return (int(rows[0][0]), int(rows[0][1])) if rows else None

    def event_keys(self, keys: Sequence[str]) -> dict[str, int]:
        out: dict[str, int] = {}
        for chunk in chunks(list(dict.fromkeys(keys)), _CHUNK):
            for key, position in self._q(_EVENT_KEYS, (list(chunk), list(chunk))):
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
        return [int(r[0]) for r in self._q(_PENDING_HANDLERS, (limit,))]

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
        return unseal([StoredEvent(*row) for row in rows], self.subject_keys)

    def state_info(self, key: StateKey) -> StateInfoRow | None:
        rows = self._q(_STATE_INFO, (key.type, key.id))
        if not rows:
            return None
        last, value_position, first, count, snap = rows[0]
        times = dict(self._q(_FIRED_AT, ([first, last],)))
        return StateInfoRow(
            key, first, times[first], last, times[last], count, snap, value_position
        )

    def stale_states(
        self, state_type: str, limit: int, shape: tuple[int, str] | None = None
    ) -> list[tuple[StateKey, int]]:
        version, fingerprint = shape if shape is not None else (None, None)
        rows = self._q(_STALE_STATES, (state_type, version, version, fingerprint, limit))
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
        text = head + self._store._sql(_HEADS_JSON) + tail
        try:
            return self._conn.execute(text, params).fetchall()
        except psycopg.Error as exc:
            raise self._store._failure("read", exc) from exc

    def followers(self) -> list[FollowerRow]:
        return [FollowerRow(*row) for row in self._q(_FOLLOWERS)]

    def event_versions(self) -> list[TypeVersions]:
        return [TypeVersions(t, v, None, n) for t, v, n in self._q(_EVENT_VERSIONS)]

    def snapshot_versions(self) -> list[TypeVersions]:
        return [TypeVersions(t, v, f, n) for t, v, f, n in self._q(_SNAPSHOT_VERSIONS)]

    def iter_snapshots(self) -> Iterator[SnapshotRecord]:
        after: tuple[str, str, int, int] = ("", "", -(1 << 62), 0)
        while True:  # a heads value at a snapshot's position comes too: both are checked
            rows = self._q(_ITER_SNAPSHOTS, (*after, _PAGE))
            for t, i, p, last, data, src, version, mark in rows:
                source = HEADS_VALUE if src else "snapshot"
                yield SnapshotRecord(StateKey(t, i), p, last, data, version, mark, source)
            if len(rows) < _PAGE:
                return
            last_row = rows[-1]
            after = (last_row[0], last_row[1], last_row[2], last_row[5])


class _PostgresTransaction(FollowerTransaction):
    dialect = "postgresql"

    def __init__(self, conn: Conn) -> None:
        self.connection = conn
        self._conn = conn

    def execute(self, sql: str, params: Sequence[object] = ()) -> list[tuple[object, ...]]:
        # ``?`` placeholders, as on SQLite; a literal % must reach psycopg doubled.
        cur = self._conn.execute(sql.replace("%", "%%").replace("?", "%s"), params)
        return cur.fetchall() if cur.description is not None else []


class PostgresStore(Store):
    """PostgreSQL store in one schema of one database.

    ``url`` is a libpq URL (``postgresql://user:password@host:5432/db``); the
    schema is ``schema=`` or ``?schema=NAME`` in the URL (default ``public``),
    created with its tables on first use. ``min_size``/``max_size`` size the
    connection pool; ``connect_timeout`` (seconds) bounds each connection attempt
    and ``pool_timeout`` the wait for a pooled connection.

    Opening is three steps: :func:`_settings` reads the URL and options,
    :meth:`_migrate` creates or checks the schema over a first direct
    connection, :meth:`_open_pool` opens the pool the store then uses.
    """

    def __init__(
        self,
        url: str,
        *,
        schema: str | None = None,
        min_size: int = 1,
        max_size: int = 2,
        connect_timeout: int = 5,
        pool_timeout: float = 30.0,
        create: bool = True,
        lock_timeout: float = 60.0,
    ) -> None:
        _options.postgres(
            min_size=min_size,
            max_size=max_size,
            connect_timeout=connect_timeout,
            pool_timeout=pool_timeout,
            lock_timeout=lock_timeout,
        )
        self.statements = 0
        self._local = threading.local()  # per thread: is a read transaction open
        self._pool: ConnectionPool[Conn] | None = None
        settings = _settings(url, schema, min_size, max_size, connect_timeout)
        self.schema = settings.schema
        self._url = settings.url
        self._password = settings.password
        self._where = settings.where
        self._max_size = max_size
        self._quoted = sql.Identifier(self.schema).as_string()
        self._rendered: OrderedDict[str, str] = OrderedDict()
        self._lock_key = _int32(zlib.crc32(self.schema.encode()))
        self._conninfo = settings.conninfo
        self._connect_kwargs = settings.connect_kwargs
        self._lock_timeout_ms = str(max(1, round(lock_timeout * 1000)))

        # A direct first connection: its error names the cause (refused,
        # unknown database, bad password), where a pool would only time out.
        try:
            first = psycopg.connect(settings.conninfo, **settings.connect_kwargs)
        except psycopg.Error as exc:
            raise StoreError(f"cannot connect to {self._where}: {self._clean(exc)}") from exc
        try:
            if create:
                self._migrate(first)
            else:
                self._check_exists(first)
        finally:
            first.close()
        self._pool = self._open_pool(settings, min_size, max_size, pool_timeout, connect_timeout)

    # ------------------------------------------------------------------ setup

    @property
    def url(self) -> str:
        return self._url

    def _sql(self, template: str) -> str:
        """A statement constant with ``{s}`` replaced by this store's quoted schema."""
        rendered = self._rendered  # least recently used first; each step atomic (threads)
        text = rendered.get(template)
        if text is None:
            text = rendered[template] = template.replace("{s}", self._quoted)
            while len(rendered) > RENDERED_MAX:  # texts built per call (find_events) vary
                try:
                    rendered.popitem(last=False)
                except KeyError:  # another thread emptied it meanwhile
                    break
        else:
            try:
                rendered.move_to_end(template)
            except KeyError:  # evicted by another thread meanwhile
                pass
        return text

    def _clean(self, exc: BaseException) -> str:
        # libpq does not echo passwords; masking is a second line of defence
        # (skipped for very short ones, which would mask ordinary letters).
        text = _one_line(exc)
        return text.replace(self._password, "***") if len(self._password) >= 4 else text

    def _failure(self, what: str, exc: psycopg.Error) -> StoreError:
        return StoreError(
            f"{what} on {self._where} (schema {self.schema!r}) failed: {self._clean(exc)}"
        )

    def _check_exists(self, conn: Conn) -> None:
        """For read-only use: refuse a schema without a store; never create or migrate."""
        quoted = self._quoted
        try:
            row = conn.execute("SELECT to_regclass(%s)", (f"{quoted}.pt_meta",)).fetchone()
            found = None
            if row is not None and row[0] is not None:
                found = conn.execute(
                    f"SELECT value FROM {quoted}.pt_meta WHERE key = 'schema_version'"
                ).fetchone()
        except psycopg.Error as exc:
            raise self._failure("checking the store", exc) from exc
        if found is None:
            raise NoStoreError(
                f"no playthrough store in schema {self.schema!r} on {self._where} "
                "(nothing was created)"
            )
        version = parse_schema_version(found[0], f"schema {self.schema!r} on {self._where}")
        if version > SCHEMA_VERSION:
            raise SchemaVersionError(
                f"schema {self.schema!r} on {self._where} holds schema version {found[0]}, "
                f"written by a newer playthrough; this one reads up to version {SCHEMA_VERSION}"
            )
        if version < SCHEMA_VERSION:  # a reader never migrates: the writer's job
            raise StoreError(
                f"schema {self.schema!r} on {self._where} holds schema version {found[0]}, "
                f"older than this playthrough's {SCHEMA_VERSION}: open it once with a writer "
                "(Engine.open) to upgrade it; nothing was changed"
            )

    def _migrate(self, conn: Conn) -> None:
        """Create the schema's tables, or check its version, under the migration lock."""
        quoted = self._quoted
        try:
            conn.execute(_WRITE)
            conn.execute(self._sql(_LOCK), (_LOCK_MIGRATE, self._lock_key))
            row = conn.execute("SELECT to_regclass(%s)", (f"{quoted}.pt_meta",)).fetchone()
            version = SCHEMA_VERSION
            if row is None or row[0] is None:
                for statement in _SCHEMA:  # the tables of version 1; the steps follow
                    conn.execute(self._sql(statement))
                conn.execute(f"INSERT INTO {quoted}.pt_meta VALUES ('schema_version', '1')")
                version = 1
            else:
                found = conn.execute(
                    f"SELECT value FROM {quoted}.pt_meta WHERE key = 'schema_version'"
                ).fetchone()
                if found is None:
                    raise StoreError(
                        f"schema {self.schema!r} on {self._where} has a pt_meta table "
                        "without a schema_version: not a playthrough store"
                    )
                version = parse_schema_version(found[0], f"schema {self.schema!r} on {self._where}")
                if version > SCHEMA_VERSION:
                    raise SchemaVersionError(
                        f"schema {self.schema!r} on {self._where} holds schema version "
                        f"{found[0]}, written by a newer playthrough; this one reads up to "
                        f"version {SCHEMA_VERSION}"
                    )
            for target, statements in MIGRATIONS:
                if version < target:
                    for statement in statements:
                        conn.execute(statement.replace("{s}", quoted + "."))
                    version = target
            conn.execute(
                f"UPDATE {quoted}.pt_meta SET value = %s WHERE key = 'schema_version'",
                (str(version),),
            )
            conn.execute("COMMIT")
        except psycopg.Error as exc:
            raise StoreError(
                f"cannot set up schema {self.schema!r} on {self._where}: {self._clean(exc)}"
            ) from exc

    def _open_pool(
        self,
        settings: _Settings,
        min_size: int,
        max_size: int,
        pool_timeout: float,
        connect_timeout: int,
    ) -> ConnectionPool[Conn]:
        pool: ConnectionPool[Conn] = ConnectionPool(
            settings.conninfo,
            kwargs=settings.connect_kwargs,
            min_size=min_size,
            max_size=max_size,
            open=False,
            timeout=pool_timeout,
            name=f"playthrough:{self.schema}",
            num_workers=1,
        )
        try:
            pool.open(wait=True, timeout=float(connect_timeout) + 5.0)
        except PoolTimeout as exc:
            pool.close()
            raise StoreError(
                f"cannot open a connection pool to {self._where}: {self._clean(exc)}"
            ) from exc
        return pool

    # ------------------------------------------------------------------ transactions

    def _checkout(self, begin: str) -> Conn:
        """A pooled connection with a transaction begun; dead connections are replaced."""
        if self._pool is None:
            raise StoreError(f"the store on {self._where} is closed")
        last: psycopg.Error | None = None
        for _ in range(self._max_size + 1):
            try:
                conn = self._pool.getconn()
            except PoolTimeout as exc:
                raise StoreError(f"no connection to {self._where}: {self._clean(exc)}") from exc
            try:
                conn.execute(begin, prepare=False)
                return conn
            except psycopg.OperationalError as exc:
                # Nothing was sent but BEGIN: safe to retry on another connection.
                self._pool.putconn(conn)
                last = exc
                if not conn.broken:
                    break
        assert last is not None
        raise StoreError(f"cannot reach {self._where}: {self._clean(last)}") from last

    def _release(self, conn: Conn, end: str | None) -> None:
        assert self._pool is not None
        try:
            if end is not None and not conn.broken:
                conn.execute(end, prepare=False)
        finally:
            self._pool.putconn(conn)

    def _abort(self, conn: Conn) -> None:
        try:
            self._release(conn, "ROLLBACK")
        except psycopg.Error:
            pass  # the connection is gone; the server rolled the transaction back

    @contextmanager
    def _transaction(self, doing: str, committing: str) -> Iterator[Conn]:
        """A READ COMMITTED write transaction on a pooled connection.

        When the block raises, the transaction is rolled back (a psycopg error
        becomes StoreError naming ``doing``); when it ends, it is committed
        (StoreError naming ``committing`` if that fails) unless the block
        already committed, as :meth:`append` does in its pipeline.
        """
        if getattr(self._local, "reading", False):
            raise StoreError("cannot write inside a read transaction")
        conn = self._checkout(_WRITE)
        try:
            yield conn
        except psycopg.Error as exc:
            self._abort(conn)
            raise self._failure(doing, exc) from exc
        except BaseException:
            self._abort(conn)
            raise
        ended = conn.info.transaction_status == TransactionStatus.IDLE
        try:
            self._release(conn, None if ended else "COMMIT")
        except psycopg.Error as exc:
            raise self._failure(committing, exc) from exc

    @contextmanager
    def reader(self) -> Iterator[StoreReader]:
        local = self._local  # each thread's read transaction holds its own connection
        if getattr(local, "reading", False):
            raise StoreError("a reader is already open on this store: readers do not nest")
        conn = self._checkout(_READ)
        local.reading = True
        ok = False
        try:
            yield _PostgresReader(self, conn)
            ok = True
        finally:
            local.reading = False
            try:
                self._release(conn, "COMMIT" if ok else "ROLLBACK")
            except psycopg.Error:
                pass  # a read-only transaction: nothing to lose; the pool drops a dead connection

    def _single(self, template: str, params: Sequence[Any]) -> tuple[list[tuple[Any, ...]], int]:
        """One statement in autocommit on a pooled connection (one round trip): rows, rowcount."""
        if getattr(self._local, "reading", False):
            raise StoreError("heads and values are read and written outside a read transaction")
        if self._pool is None:
            raise StoreError(f"the store on {self._where} is closed")
        last: psycopg.Error | None = None
        for _ in range(self._max_size + 1):
            try:
                conn = self._pool.getconn()
            except PoolTimeout as exc:
                raise StoreError(f"no connection to {self._where}: {self._clean(exc)}") from exc
            try:
                self.statements += 1
                cursor = conn.execute(self._sql(template), params)
                rows = cursor.fetchall() if cursor.description is not None else []
                return rows, cursor.rowcount
            except psycopg.OperationalError as exc:
                last = exc
                if not conn.broken:
                    raise self._failure("a statement", exc) from exc
                # A dead pooled connection: one statement on its own, safe to retry.
            except psycopg.Error as exc:
                raise self._failure("a statement", exc) from exc
            finally:
                self._pool.putconn(conn)
        assert last is not None
        raise StoreError(f"cannot reach {self._where}: {self._clean(last)}") from last

    def heads(self, keys: Iterable[StateKey]) -> HeadRows:
        wanted = list(dict.fromkeys(keys))
        if len(wanted) > _CHUNK:  # several statements: one transaction keeps them consistent
            with self.reader() as reader:
                return HeadRows.of(reader.heads(wanted))
        rows, _ = self._single(_HEADS, _key_arrays(wanted))
        return _head_rows(rows, HeadRows())

    def write_values(self, records: Sequence[SnapshotRecord], epoch: int | None = None) -> int:
        if not records:
            return 0
        latest = {r.key: r for r in records}
        rows = sorted(latest.values(), key=lambda r: r.key)
        _, count = self._single(
            _VALUES_WRITE,
            (
                epoch,
                [r.key.type for r in rows],
                [r.key.id for r in rows],
                [r.position for r in rows],
                [r.data for r in rows],
                [r.version for r in rows],
                [r.fingerprint for r in rows],
            ),
        )
        return count

    # ------------------------------------------------------------------ writing

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
        if extras is not None and extras.empty:
            extras = None
        if not events and not handled and extras is None:
            return []
        if getattr(self._local, "reading", False):
            raise StoreError("cannot write inside a read transaction")
        commit_id = commit_id or uuid.uuid4().hex
        if extras is not None or handled or not events:
            return self._append_unpipelined(
                events, expected, values or {}, extras or CommitExtras(), commit_id, handled, epoch
            )
        event_keys = batch_keys(events)
        params = _append_params(events, expected, values or {})
        params.update(
            cid=commit_id,
            cn=len(events),
            ek=[e.key for e in events],
            hn=[n for n, e in enumerate(events, 1) if e.needs_handling],
            fe=epoch,
        )
        conn = self._checkout(_WRITE)  # a failure here sent nothing: its StoreError is certain
        self.statements += 2
        try:
            cursor, error = self._send_append(conn, params)
        except BaseException as exc:
            # Interrupted (KeyboardInterrupt...) with the round trip in flight.
            self._settle_interrupted(conn, commit_id, len(events), exc)
            raise
        if error is None:
            assert cursor is not None
            row = cursor.fetchone()
            self._release(conn, None)
            assert row is not None
            base = int(row[0])
            return list(range(base + 1, base + 1 + len(events)))
        if error.sqlstate is not None and not conn.broken:
            # The server refused a statement, so the transaction aborted and the
            # COMMIT queued behind it rolled it back: nothing was written.
            self._abort(conn)
            if error.sqlstate == _STALE:
                raise _stale_error(error.diag.message_detail) from None
            if error.sqlstate == _LOCK_NOT_AVAILABLE:
                raise StoreError(
                    f"append to {self._where} (schema {self.schema!r}) waited more than "
                    f"{int(self._lock_timeout_ms) / 1000:g} s for the append lock (another writer "
                    "holds it, a large commit perhaps), nothing was written; raise the "
                    "store's lock_timeout to wait longer"
                ) from error
            if error.sqlstate == _UNIQUE_VIOLATION and event_keys:
                self._raise_duplicate(event_keys, error)
            raise StoreError(
                f"append to {self._where} (schema {self.schema!r}) failed, nothing was "
                f"written: {self._clean(error)}"
            ) from error
        # A client-side or connection failure with COMMIT possibly on its way:
        # the outcome is unknown until the old backend is gone and pt_commits is read.
        return self._abandon(conn, commit_id, len(events), error)

    def _append_unpipelined(
        self,
        events: Sequence[NewEvent],
        expected: Mapping[StateKey, int | None],
        values: Mapping[StateKey, str | HeadValue],
        extras: CommitExtras,
        commit_id: str,
        handled: Sequence[int],
        epoch: int | None = None,
    ) -> list[int]:
        """An append that checks before it writes: statement by statement, not pipelined.

        Used by commits that complete a handler (its pending row is deleted,
        checked, before the events are written), complete a state or touch the
        schedule (the positions those name are known once the events are
        numbered), and by commits of no events. Like the pipelined append, a
        lost connection is resolved through ``pt_commits``: the positions, a
        certain "nothing was written", or CommitOutcomeUnknown.
        """
        conn = self._checkout(_WRITE)  # a failure here sent nothing: its StoreError is certain
        try:
            positions = self._write_unpipelined(
                conn, events, expected, values, extras, commit_id, handled, epoch
            )
        except psycopg.Error as exc:
            if exc.sqlstate is not None and not conn.broken:
                # The server refused a statement: the transaction is rolled back.
                self._abort(conn)
                keys = batch_keys(events)
                if exc.sqlstate == _UNIQUE_VIOLATION and keys:
                    self._raise_duplicate(keys, exc)
                raise self._append_failure(conn, exc) from None
            # The connection failed, COMMIT perhaps on its way: learn the outcome.
            return self._abandon(conn, commit_id, len(events), exc)
        except PlaythroughError:  # a check refused the commit before COMMIT: rolled back
            self._abort(conn)
            raise
        except BaseException as exc:
            # Interrupted (KeyboardInterrupt...) with a statement or COMMIT in flight.
            self._settle_interrupted(conn, commit_id, len(events), exc)
            raise
        self._release(conn, None)
        return positions

    def _write_unpipelined(
        self,
        conn: Conn,
        events: Sequence[NewEvent],
        expected: Mapping[StateKey, int | None],
        values: Mapping[StateKey, str | HeadValue],
        extras: CommitExtras,
        commit_id: str,
        handled: Sequence[int],
        epoch: int | None = None,
    ) -> list[int]:
        self.statements += 2
        conn.execute(_LOCK_TIMEOUT, (self._lock_timeout_ms,))
        conn.execute(self._sql(_LOCK), (_LOCK_APPEND, self._lock_key))
        if handled:  # checked first: a handler completed elsewhere is not a conflict
            self.statements += 1
            wanted = list(dict.fromkeys(handled))
            done = {int(r[0]) for r in conn.execute(self._sql(_HANDLED), (wanted,)).fetchall()}
            gone = [p for p in wanted if p not in done]
            if gone:
                raise handled_refused(gone)
        self.statements += 1
        if events:
            params = _append_params(events, expected, values)
            params.update(
                cid=commit_id,
                cn=len(events),
                ek=[e.key for e in events],
                hn=[n for n, e in enumerate(events, 1) if e.needs_handling],
                fe=epoch,
            )
            if any(k is not None for k in params["ek"]):
                self.statements += 1
                conn.execute(self._sql(_ARCHIVED_KEYS_CHECK), params)
            row = conn.execute(self._sql(_APPEND), params).fetchone()
            assert row is not None
            base = int(row[0])
        else:
            if epoch is not None:  # the append statement checks it; without events, here
                self.statements += 1
                (now,) = conn.execute(self._sql(f"SELECT {_EPOCH}")).fetchone() or (0,)
                if now != epoch:
                    raise StaleForgetError(stale_forget_message())
            conn.execute(self._sql(_EMPTY_COMMIT), (commit_id,))
            base = 0
        positions = list(range(base + 1, base + 1 + len(events)))
        if extras.fired:
            self.statements += 1
            done_ids = {
                r[0]
                for r in conn.execute(
                    self._sql(_FIRED),
                    ([i for i, _ in extras.fired], [positions[n] for _, n in extras.fired]),
                ).fetchall()
            }
            taken = [i for i, _ in extras.fired if i not in done_ids]
            if taken:
                raise ConcurrencyError(fired_refused(taken))
        if extras.completed:
            self.statements += 1
            conn.execute(
                self._sql(_COMPLETED_WRITE),
                (
                    [k.type for k, _ in extras.completed],
                    [k.id for k, _ in extras.completed],
                    [positions[n] for _, n in extras.completed],
                    [events[n].type for _, n in extras.completed],
                ),
            )
        if extras.reopened:
            self.statements += 1
            conn.execute(self._sql(_REOPENED), _key_arrays(list(extras.reopened)))
        if extras.schedule:
            self.statements += 1
            conn.execute(
                self._sql(_SCHEDULE_WRITE),
                tuple([r[n] for r in extras.schedule] for n in range(6)),
            )
        if extras.cancel:  # checked: never "cancelled" and "fired"
            self.statements += 1
            wanted_ids = list(dict.fromkeys(extras.cancel))
            cancelled = {r[0] for r in conn.execute(self._sql(_CANCEL), (wanted_ids,)).fetchall()}
            rest = [i for i in wanted_ids if i not in cancelled]
            if rest:
                self.statements += 1
                found: dict[str, str] = dict(conn.execute(self._sql(_STATUSES), (rest,)).fetchall())
                refused = [
                    (i, str(found.get(i, "missing"))) for i in rest if found.get(i) != "cancelled"
                ]
                if refused:
                    raise cancel_refused(refused)
        self._send_commit(conn)
        return positions

    def _send_commit(self, conn: Conn) -> None:
        """COMMIT the transaction of an unpipelined append (tests make it fail)."""
        conn.execute("COMMIT", prepare=False)

    def rearm_schedule(self, schedule_id: str, due_at: str) -> bool:
        with self._transaction("rescheduling", "committing a reschedule") as conn:
            self.statements += 1
            done = conn.execute(self._sql(_REARM), (due_at, schedule_id)).rowcount
        return bool(done == 1)

    def ensure_subject_keys(self, subjects: Mapping[str, bytes]) -> dict[str, bytes]:
        if not subjects:
            return {}
        with self._transaction("storing subject keys", "committing subject keys") as conn:
            self.statements += 2
            encoded = [base64.b64encode(k).decode() for k in subjects.values()]
            conn.execute(self._sql(_SUBJECT_KEYS_WRITE), (list(subjects), encoded))
            rows = conn.execute(self._sql(_SUBJECT_KEYS), (list(subjects),)).fetchall()
        return {s: base64.b64decode(k) for s, k in rows}

    def _runner(self, conn: Conn) -> Callable[[str, Sequence[Any]], list[tuple[Any, ...]]]:
        """``run(sql, params)`` for ``_forget``: ``?`` placeholders, bare ``pt_`` tables."""

        def run(sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
            self.statements += 1
            text = re.sub(r"\bpt_", "{s}.pt_", sql).replace("?", "%s")
            cursor = conn.execute(self._sql(text), list(params))
            return cursor.fetchall() if cursor.description is not None else []

        return run

    def forget_subject(self, subject: str) -> bool:
        with self._transaction("forgetting a subject", "committing it") as conn:
            # Under the append lock: no commit interleaves, so one that read the old
            # forget epoch is refused by its own append statement.
            conn.execute(self._sql(_LOCK), (_LOCK_APPEND, self._lock_key))

            gone = forget(self._runner(conn), subject)
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
                self._sql(_CLAIM),
                {"owner": owner, "until": lease_until, "now": now, "limit": limit},
            ).fetchall()
        return sorted((ScheduleRecord(*r) for r in rows), key=lambda r: (r.due_at, r.id))

    def finish_schedule(self, schedule_id: str, owner: str, status: str, error: str | None) -> bool:
        with self._transaction("updating a scheduled event", "committing it") as conn:
            self.statements += 1
            done = conn.execute(self._sql(_FINISH), (status, error, schedule_id, owner)).rowcount
        return bool(done == 1)

    def _append_failure(self, conn: Conn, error: psycopg.Error) -> Exception:
        """The error to raise for a failed pipelined append (rolled back by the caller)."""
        if conn.broken:
            failure: Exception = StoreError(
                f"the connection to {self._where} was lost during an append: it may or "
                f"may not have been committed ({self._clean(error)})"
            )
            failure.__cause__ = error
        elif error.sqlstate == _STALE:
            failure = _stale_error(error.diag.message_detail)
            failure.__suppress_context__ = True
        else:
            failure = StoreError(
                f"append to {self._where} (schema {self.schema!r}) failed, nothing was "
                f"written: {self._clean(error)}"
            )
            failure.__cause__ = error
        return failure

    def _send_append(
        self, conn: Conn, params: Mapping[str, Any]
    ) -> tuple[psycopg.Cursor[TupleRow] | None, psycopg.Error | None]:
        """Lock, append and COMMIT; (cursor of the append, first error).

        Small batches go in one pipelined round trip: no client latency while
        the append lock is held, and an error aborts the transaction, so the
        COMMIT queued behind it does nothing. Large ones (``_PIPELINE_BYTES``)
        are sent statement by statement: psycopg's pipeline deadlocks on big
        payloads (client and server both blocked writing), which held the
        append lock forever. Waiting for that lock is bounded by ``lock_timeout``.
        """
        if _payload_bytes(params) > _PIPELINE_BYTES:
            return self._send_append_plainly(conn, params)
        cursor = None
        error: psycopg.Error | None = None
        try:
            with conn.pipeline() as pipeline:
                try:
                    conn.execute(_LOCK_TIMEOUT, (self._lock_timeout_ms,))
                    conn.execute(self._sql(_LOCK), (_LOCK_APPEND, self._lock_key))
                    if any(k is not None for k in params["ek"]):
                        conn.execute(self._sql(_ARCHIVED_KEYS_CHECK), params)
                    cursor = conn.execute(self._sql(_APPEND), params)
                    # Never prepared: psycopg would count a prepare that an
                    # aborted pipeline skipped as done.
                    conn.execute("COMMIT", prepare=False)
                except psycopg.Error as exc:
                    error = exc
                try:
                    pipeline.sync()  # the results of every statement queued, the first error
                except psycopg.Error as exc:
                    error = error or exc
        except psycopg.Error as exc:
            error = error or exc
        return cursor, error

    def _send_append_plainly(
        self, conn: Conn, params: Mapping[str, Any]
    ) -> tuple[psycopg.Cursor[TupleRow] | None, psycopg.Error | None]:
        cursor = None
        try:
            conn.execute(_LOCK_TIMEOUT, (self._lock_timeout_ms,))
            conn.execute(self._sql(_LOCK), (_LOCK_APPEND, self._lock_key))
            if any(k is not None for k in params["ek"]):
                conn.execute(self._sql(_ARCHIVED_KEYS_CHECK), params)
            cursor = conn.execute(self._sql(_APPEND), params)
            conn.execute("COMMIT", prepare=False)
        except psycopg.Error as exc:
            return cursor, exc
        return cursor, None

    def _discard(self, conn: Conn) -> None:
        """Close a connection whose state is unknown and give it back (the pool drops it)."""
        assert self._pool is not None
        try:
            conn.close()
        finally:
            self._pool.putconn(conn)

    def _abandon(self, conn: Conn, commit_id: str, count: int, cause: BaseException) -> list[int]:
        """Drop a connection whose COMMIT may be on its way, then learn the outcome."""
        pid = _backend_pid(conn)
        self._discard(conn)
        return self._resolve(commit_id, count, pid, cause)

    def _settle_interrupted(
        self, conn: Conn, commit_id: str, count: int, interruption: BaseException
    ) -> None:
        """An interruption (KeyboardInterrupt...) with a round trip in flight: the caller
        re-raises it once the outcome is learnt, unless it cannot be (CommitOutcomeUnknown)."""
        try:
            self._abandon(conn, commit_id, count, interruption)
        except CommitOutcomeUnknown as unknown:
            raise unknown from interruption
        except StoreError:
            pass  # learnt for certain that nothing was written: the interruption stands

    def _resolve(
        self, commit_id: str, count: int, pid: int | None, cause: BaseException
    ) -> list[int]:
        """Learn for certain whether commit ``commit_id`` is stored.

        The old backend is terminated (and waited for), so its transaction has
        ended for good; then pt_commits answers, on a fresh connection. Returns
        the positions if it was committed, raises a StoreError saying nothing
        was written if not, and CommitOutcomeUnknown if the server cannot be asked.
        """
        try:
            with psycopg.connect(self._conninfo, **self._connect_kwargs) as conn:
                if pid is not None:
                    row = conn.execute(self._sql(_TERMINATE), (pid,)).fetchone()
                    if row is not None and not row[0]:
                        raise StoreError(f"backend {pid} did not end within 10 s")
                row = conn.execute(self._sql(_COMMIT_POSITIONS), (commit_id,)).fetchone()
        except (psycopg.Error, StoreError) as exc:
            text = self._clean(exc) if isinstance(exc, psycopg.Error) else str(exc)
            raise CommitOutcomeUnknown(
                f"the connection to {self._where} failed during commit {commit_id} "
                f"({self._clean(cause)}) and whether it was written cannot be learnt now "
                f"({text}); engine.was_committed({commit_id!r}) answers once the server is "
                "reachable",
                commit_id,
            ) from cause
        if row is None:
            raise StoreError(
                f"append to {self._where} (schema {self.schema!r}) failed, nothing was "
                f"written (checked after the failure): {self._clean(cause)}"
            ) from cause
        first, last = int(row[0]), int(row[1])
        if last - first + 1 != count:  # pragma: no cover - a commit id is unique
            raise StoreError(f"commit {commit_id} holds {last - first + 1} events, not {count}")
        return list(range(first, last + 1))

    def _raise_duplicate(self, keys: Sequence[str], error: psycopg.Error) -> None:
        if error.diag.constraint_name not in _DUPLICATE_CONSTRAINTS:
            return
        with self.reader() as reader:
            taken = reader.event_keys(keys)
        if taken:
            key, position = next(iter(taken.items()))
            raise DuplicateEvent(duplicate_message(key, position), key, position) from None

    def rebuild_heads(self) -> int:
        with self._transaction("rebuilding heads", "committing rebuilt heads") as conn:
            self.statements += 2
            conn.execute(self._sql(_LOCK), (_LOCK_APPEND, self._lock_key))  # no append meanwhile
            return sum(conn.execute(self._sql(q)).rowcount for q in _REBUILD_HEADS)

    def mark_handled(self, positions: Sequence[int]) -> None:
        if not positions:
            return
        with self._transaction(
            "recording completed handlers", "committing completed handlers"
        ) as conn:
            self.statements += 1
            conn.execute(self._sql(_MARK_HANDLED), (list(positions),))

    def import_events(
        self,
        events: Iterable[ImportedEvent],
        after: int,
        tables: Callable[[StoreReader], TransferTables] | None = None,
    ) -> int:
        count = 0
        with self._transaction("import", "committing an import") as conn:
            # The append lock: no commit can interleave with the imported positions.
            self.statements += 2
            conn.execute(self._sql(_LOCK), (_LOCK_APPEND, self._lock_key))
            head = int(conn.execute(self._sql(_HEAD)).fetchone()[0])  # type: ignore[index]
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
            conn.execute(self._sql(_IMPORT_HEADS), (after,))
            forgot = False
            if tables is not None:
                carried = tables(_PostgresReader(self, conn))
                forgot = self._write_tables(conn, carried, after, after + count)
        if forgot:
            self._vacuum_forgotten()
        return count

    def _write_tables(self, conn: Conn, tables: TransferTables, after: int, until: int) -> bool:
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
        return import_keys(run, tables.subject_keys or (), tables.forgotten or ())

    def archive(
        self,
        until: int,
        base: Sequence[SnapshotRecord],
        meta: Mapping[str, str] | None = None,
    ) -> int:
        with self._transaction("archiving", "committing an archive") as conn:
            self.statements += 1
            conn.execute(self._sql(_LOCK), (_LOCK_APPEND, self._lock_key))
            check_archive_cut(_PostgresReader(self, conn), until, base)
            if base:
                self.statements += 1
                conn.execute(
                    self._sql(_SNAPSHOTS_WRITE),
                    (
                        [r.key.type for r in base],
                        [r.key.id for r in base],
                        [r.position for r in base],
                        [r.last_event_id for r in base],
                        [r.data for r in base],
                        [r.version for r in base],
                        [r.fingerprint for r in base],
                    ),
                )
            self.statements += 1
            archive_personal(self._runner(conn), until)
            params = {"until": until, "key": ARCHIVED_UNTIL, "value": str(until)}
            self.statements += 1
            conn.execute(self._sql(_ARCHIVE_KEYS), params)
            counts = []
            for statement in _ARCHIVE_DELETE:
                self.statements += 1
                counts.append(conn.execute(self._sql(statement), params).rowcount)
            for key, value in (meta or {}).items():
                self.statements += 1
                conn.execute(self._sql(_ARCHIVE_DELETE[-1]), {"key": key, "value": value})
        return int(counts[2])

    def _import_batch(self, conn: Conn, batch: Sequence[ImportedEvent]) -> None:
        if not batch:
            return
        self.statements += 2
        with conn.cursor() as cursor:
            with cursor.copy(self._sql(_COPY_EVENTS)) as copy:
                for e in batch:
                    copy.write_row((*e[:5], e.version, e.metadata, e.correlation))
            with cursor.copy(self._sql(_COPY_LINKS)) as copy:
                for e in batch:
                    for k, g in e.links:
                        copy.write_row((k.type, k.id, e.position, g))

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
                conn.execute(self._sql(_LOCK), (_LOCK_APPEND, self._lock_key))
                (now,) = conn.execute(self._sql(f"SELECT {_EPOCH}")).fetchone() or (0,)
                if now != epoch:
                    raise StaleForgetError(stale_forget_message())
            if meta:
                self.statements += 1
                conn.execute(
                    self._sql(_META_WRITE),
                    (
                        [k for k, v in meta.items() if v is None],
                        [k for k, v in meta.items() if v is not None],
                        [v for v in meta.values() if v is not None],
                    ),
                )
            if rows:
                self.statements += 2
                conn.execute(
                    self._sql(_SNAPSHOTS_WRITE),
                    (
                        [r.key.type for r in rows],
                        [r.key.id for r in rows],
                        [r.position for r in rows],
                        [r.last_event_id for r in rows],
                        [r.data for r in rows],
                        [r.version for r in rows],
                        [r.fingerprint for r in rows],
                    ),
                )
                conn.execute(self._sql(_SNAPSHOTS_TRIM), (*_key_arrays(keys), keep))

    def drop_snapshots(self, keys: Iterable[StateKey] | None = None) -> int:
        with self._transaction("dropping snapshots", "committing dropped snapshots") as conn:
            self.statements += 1  # one statement: the snapshots and the heads values
            if keys is None:
                return conn.execute(self._sql(_SNAPSHOTS_DROP_ALL)).rowcount
            wanted = list(dict.fromkeys(keys))
            return conn.execute(self._sql(_SNAPSHOTS_DROP), _key_arrays(wanted)).rowcount

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
                    row = conn.execute(self._sql(_FOLLOWER_LOCK), (name,)).fetchone()
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
                        self._sql(_FOLLOWER_CREATE), (name, datetime.now(UTC).isoformat())
                    )
            if row is None:  # another process holds the follower
                conn.execute("ROLLBACK")
                yield None
                return
            self.statements += 1
            rows = conn.execute(self._sql(_FOLLOWER_EVENTS), (row[0], limit)).fetchall()

            def keys(subjects: Iterable[str]) -> dict[str, bytes]:
                wanted = list(dict.fromkeys(subjects))
                found = conn.execute(self._sql(_SUBJECT_KEYS), (wanted,)).fetchall()
                return {k: base64.b64decode(v) for k, v in found}

            events = unseal([StoredEvent(*r) for r in rows], keys)
            self.statements += 1
            forgotten = [
                SubjectForgotten(int(q), str(subject), int(p))
                for q, subject, p in conn.execute(self._sql(_FOLLOWER_FORGOTTEN), (name,))
            ]
            batch = FollowerBatch(name, int(row[0]), events, _PostgresTransaction(conn), forgotten)
            yield batch
            self.statements += 1
            conn.execute(
                self._sql(_FOLLOWER_ADVANCE),
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

    def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.close()


def _append_params(
    events: Sequence[NewEvent],
    expected: Mapping[StateKey, int | None],
    values: Mapping[StateKey, str | HeadValue],
) -> dict[str, Any]:
    """The arrays the append statement takes (see ``_APPEND`` for the modes)."""
    last_touch: dict[StateKey, int] = {}
    lt: list[str] = []
    li: list[str] = []
    ln: list[int] = []
    lg: list[int] = []
    for n, e in enumerate(events, 1):
        for key, group in e.links:
            lt.append(key.type)
            li.append(key.id)
            ln.append(n)
            lg.append(group)
            last_touch[key] = n
    want = [*expected, *(k for k in last_touch if k not in expected)]
    modes = []
    for key in want:
        if key not in expected:
            modes.append("f")
        elif expected[key] is not None:
            modes.append("u")
        else:
            modes.append("i" if key in last_touch else "n")
    given = [None if values.get(k) is None else head_value(values[k]) for k in want]
    return {
        "wt": [k.type for k in want],
        "wi": [k.id for k in want],
        "we": [expected.get(k) for k in want],
        "wn": [last_touch.get(k) for k in want],
        "wm": modes,
        "wv": [v.data if v else None for v in given],
        "wvv": [v.version if v else 1 for v in given],
        "wvf": [v.fingerprint if v else None for v in given],
        "et": [e.type for e in events],
        "ed": [e.data for e in events],
        "ec": [e.caused_by for e in events],
        "ef": [e.fired_at for e in events],
        "ev": [e.version for e in events],
        "em": [e.metadata for e in events],
        "eo": [e.correlation for e in events],
        "lt": lt,
        "li": li,
        "ln": ln,
        "lg": lg,
    }


def _payload_bytes(params: Mapping[str, Any]) -> int:
    """About how many bytes the batch's event data takes on the wire."""
    return sum(len(d) for d in params["ed"])


def _backend_pid(conn: Conn) -> int | None:
    try:
        return int(conn.info.backend_pid) or None
    except psycopg.Error:
        return None


def _stale_message(detail: str | None) -> str:
    stale = json.loads(detail or "[]")
    return stale_message([(StateKey(t, i), want, have) for t, i, want, have in stale])


def _stale_error(detail: str | None) -> ConcurrencyError:
    """What pt_refuse's report means: stale states, or a forget since the engine loaded."""
    stale = json.loads(detail or "[]")
    if any(t == "$forget_epoch" for t, *_ in stale):
        return StaleForgetError(stale_forget_message())
    return ConcurrencyError(_stale_message(detail))


def _head_rows(rows: Iterable[Sequence[Any]], out: HeadRows) -> HeadRows:
    """Heads rows into ``out``; the row without a state carries the forget epoch."""
    for t, i, p, *rest in rows:
        if t is None:
            if out.epoch is None:
                out.epoch = int(p)
        else:
            out[StateKey(t, i)] = HeadRow(p, *rest)
    return out


@attrs.frozen
class _Settings:
    conninfo: str  # for libpq, without ``schema``
    schema: str
    url: str  # shown: without password
    where: str  # "PostgreSQL at host:port, database 'name'", for messages
    password: str
    connect_kwargs: dict[str, Any]


def _settings(
    url: str, schema: str | None, min_size: int, max_size: int, connect_timeout: int
) -> _Settings:
    """Read the URL and the options; raise StoreError for a bad combination."""
    parsed = parse_store_url(url)
    if parsed.kind != "postgresql":
        raise StoreError(f"not a PostgreSQL URL: {parsed.redacted()}")
    shown = parsed.redacted()
    if schema is not None and parsed.schema is not None and schema != parsed.schema:
        raise StoreError(
            f"two schemas given for {shown}: {parsed.schema!r} in the URL and "
            f"{schema!r} as an option"
        )
    name = _options.schema_name(schema) or parsed.schema or "public"
    if name != "public" and parsed.schema is None:
        shown += ("&" if "?" in shown else "?") + urlencode({"schema": name})
    params = conninfo_to_dict(parsed.conninfo)
    if "connect_timeout" in params:  # libpq's own option: 0 (or less) waits forever
        _options.positive(
            "connect_timeout", params["connect_timeout"], integer=True, unit=" seconds", text=True
        )
    kwargs: dict[str, Any] = {"autocommit": True}
    if "connect_timeout" not in params:
        kwargs["connect_timeout"] = connect_timeout
    if "application_name" not in params:
        kwargs["application_name"] = "playthrough"
    where = (
        f"PostgreSQL at {params.get('host') or 'localhost'}:{params.get('port') or 5432}, "
        f"database {params.get('dbname') or params.get('user') or '(default)'!r}"
    )
    return _Settings(
        conninfo=parsed.conninfo,
        schema=name,
        url=shown,
        where=where,
        password=str(params.get("password") or ""),
        connect_kwargs=kwargs,
    )
