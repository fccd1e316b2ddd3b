"""The PostgreSQL store's statements, as named constants.

``{s}`` stands for the store's quoted schema (substituted when a statement is
sent, see ``PostgresDatastore._sql``). Statements both stores send are rendered
from the templates of ``_dialect``; the rest are PostgreSQL's own: keys,
positions and rows travel as binary arrays (``unnest``/``ANY``), so the number
of statements does not grow with the number of states or events.
"""

from __future__ import annotations

import psycopg
from psycopg.rows import TupleRow

from .. import _dialect as d
from .._dialect import POSTGRES
from .._tables import EVENT_COLUMNS, SCHEDULE_COLUMNS

R = POSTGRES.render

#: The statements both stores send (see ``_dialect.Statements``), rendered for this one.
SHARED = d.Statements(POSTGRES)

# ---------------------------------------------------------------- PostgreSQL's own

Conn = psycopg.Connection[TupleRow]

CHUNK = 10_000  # positions or keys per statement
PAGE = 10_000  # snapshots per page of iter_snapshots

# Advisory lock classes (first int of the two-int key); the second int is a
# hash of the schema name, so stores in different schemas never wait for each other.
LOCK_APPEND = 0x70740001
LOCK_MIGRATE = 0x70740002

STALE = "PT409"  # SQLSTATE of pt_refuse()
RENDERED_MAX = 256  # statement texts kept with the schema substituted (least recently used go)
READ = "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY"
WRITE = "BEGIN ISOLATION LEVEL READ COMMITTED, READ WRITE"

SCHEMA = [
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
                USING ERRCODE = '{STALE}', DETAIL = stale;
        END IF;
        RETURN 0;
    END $$""",
]

SUBJECT_KEYS = "SELECT subject, key FROM {s}.pt_subject_keys WHERE subject = ANY(%b::text[])"

FORGET = "DELETE FROM {s}.pt_subject_keys WHERE subject = %s"
VALUES_DROP_ALL = (
    "UPDATE {s}.pt_heads SET value = NULL, value_position = NULL WHERE value IS NOT NULL"
)
UNIQUE_VIOLATION = "23505"
LOCK_NOT_AVAILABLE = "55P03"
# Batches whose payload is larger than this are not pipelined (see _send_append).
PIPELINE_BYTES = 1 << 20

KEYS = "SELECT * FROM unnest(%b::text[], %b::text[])"

COMPLETIONS = (
    "SELECT state_type, state_id, position, event_type FROM {s}.pt_completed "
    f"WHERE (state_type, state_id) IN ({KEYS})"
)

# Workers lease disjoint rows: a row another transaction is claiming is skipped,
# not waited for, and a lease still running is left alone.
CLAIM = (
    "UPDATE {s}.pt_schedule s SET lease_owner = %(owner)s, lease_until = %(until)s "
    "FROM (SELECT id FROM {s}.pt_schedule WHERE status = 'pending' AND due_at <= %(now)s "
    "AND (lease_until IS NULL OR lease_until <= %(now)s) ORDER BY due_at, id LIMIT %(limit)s "
    "FOR UPDATE SKIP LOCKED) c WHERE s.id = c.id "
    f"RETURNING {', '.join('s.' + c.strip() for c in SCHEDULE_COLUMNS.split(','))}"
)

FIRED = (
    "UPDATE {s}.pt_schedule s SET status = 'fired', position = f.p, lease_owner = NULL, "
    "lease_until = NULL FROM unnest(%b::text[], %b::bigint[]) AS f(id, p) "
    "WHERE s.id = f.id AND s.status = 'pending' RETURNING s.id"
)

COMPLETED_WRITE = (
    "INSERT INTO {s}.pt_completed (state_type, state_id, position, event_type) "
    "SELECT * FROM unnest(%b::text[], %b::text[], %b::bigint[], %b::text[]) "
    "ON CONFLICT (state_type, state_id) DO UPDATE SET position = excluded.position, "
    "event_type = excluded.event_type"
)

REOPENED = f"DELETE FROM {{s}}.pt_completed WHERE (state_type, state_id) IN ({KEYS})"

SCHEDULE_WRITE = (
    "INSERT INTO {s}.pt_schedule (id, due_at, type, data, status, created_at, version) "
    "SELECT i, d, t, x, 'pending', c, v FROM unnest(%b::text[], %b::text[], %b::text[], "
    "%b::text[], %b::text[], %b::int[]) AS r(i, d, t, x, c, v)"
)

CANCEL = (
    "UPDATE {s}.pt_schedule SET status = 'cancelled', lease_owner = NULL, lease_until = NULL "
    "WHERE id = ANY(%b::text[]) AND status = 'pending' RETURNING id"
)
STATUSES = "SELECT id, status FROM {s}.pt_schedule WHERE id = ANY(%b::text[])"

# A handler's completion: checked (the rows another runner deleted are missing).
HANDLED = (
    "DELETE FROM {s}.pt_pending_handlers WHERE position = ANY(%b::bigint[]) RETURNING position"
)

# The commit row of a commit that appends no events (an empty range).
EMPTY_COMMIT = (
    "INSERT INTO {s}.pt_commits (commit_id, first_position, last_position) "
    "SELECT %s, coalesce(max(position), 0) + 1, coalesce(max(position), 0) FROM {s}.pt_events"
)

HEAD = "SELECT coalesce(max(position), 0) FROM {s}.pt_events"

STATE_HEADS = (
    "SELECT state_type, state_id, last_position FROM {s}.pt_heads "
    f"WHERE (state_type, state_id) IN ({KEYS})"
)

# A state's heads value is one of its snapshots (exact at value_position).
SNAPSHOTS = (
    "SELECT state_type, state_id, position, last_event_id, data, version, fingerprint "
    "FROM {s}.pt_snapshots "
    f"WHERE (state_type, state_id) IN ({KEYS}) AND position <= %s UNION ALL "
    "SELECT state_type, state_id, value_position, value_position, value, value_version, "
    "value_fingerprint FROM {s}.pt_heads "
    f"WHERE (state_type, state_id) IN ({KEYS}) AND value IS NOT NULL "
    "AND value_position <= %s ORDER BY 1, 2, 3 DESC"
)

# The heads rows, and one more row (no state) carrying the forget epoch.
HEADS = (
    "SELECT state_type, state_id, last_position, value, value_position, value_version, "
    "value_fingerprint FROM {s}.pt_heads "
    f"WHERE (state_type, state_id) IN ({KEYS}) "
    f"UNION ALL SELECT NULL, NULL, {SHARED.EPOCH}, NULL, NULL, NULL, NULL"
)

# Values are written only where still exact, and never wait for a row a writer
# holds (SKIP LOCKED): a load's write-back cannot slow down or deadlock a commit.
VALUES_WRITE = (
    "WITH fe AS (SELECT %s::bigint AS e), "
    "v AS (SELECT * FROM unnest(%b::text[], %b::text[], %b::bigint[], %b::text[], "
    "%b::integer[], %b::text[]) AS v(t, i, p, value, version, mark)), "
    "mine AS (SELECT h.state_type, h.state_id FROM {s}.pt_heads h "
    "JOIN v ON h.state_type = v.t AND h.state_id = v.i AND h.last_position = v.p "
    "WHERE (h.value IS NULL OR h.value_position IS DISTINCT FROM v.p "
    "OR h.value_version IS DISTINCT FROM v.version "
    "OR h.value_fingerprint IS DISTINCT FROM v.mark) "
    f"AND ((SELECT e FROM fe) IS NULL OR (SELECT e FROM fe) = {SHARED.EPOCH}) "
    "FOR UPDATE OF h SKIP LOCKED) "
    "UPDATE {s}.pt_heads h SET value = v.value, value_position = v.p, "
    "value_version = v.version, value_fingerprint = v.mark FROM mine, v "
    "WHERE h.state_type = mine.state_type AND h.state_id = mine.state_id "
    "AND v.t = mine.state_type AND v.i = mine.state_id AND h.last_position = v.p"
)

LINKS = (
    "WITH want AS (SELECT * FROM unnest(%b::text[], %b::text[], %b::bigint[], %b::bigint[]) "
    "AS w(t, i, lo, hi)), "
    "hit AS (SELECT DISTINCT l.position FROM want w JOIN {s}.pt_links l "
    "ON l.state_type = w.t AND l.state_id = w.i AND l.position > w.lo AND l.position <= w.hi) "
    "SELECT l.position, l.state_type, l.state_id, l.grp FROM hit "
    "JOIN {s}.pt_links l ON l.position = hit.position ORDER BY l.position"
)

# Every reader of events selects EVENT_COLUMNS: an apply hook reads self.metadata,
# so a load that dropped it would differ from firing and from a replay.
EVENTS = (
    f"SELECT {EVENT_COLUMNS} FROM {{s}}.pt_events "
    "WHERE position = ANY(%b::bigint[]) ORDER BY position"
)

ITER_SNAPSHOTS = (
    "SELECT * FROM (SELECT state_type, state_id, position, last_event_id, data, 0 AS src, "
    "version, fingerprint "
    "FROM {s}.pt_snapshots UNION ALL SELECT state_type, state_id, value_position, "
    "value_position, value, 1, value_version, value_fingerprint "
    "FROM {s}.pt_heads WHERE value IS NOT NULL) x "
    "WHERE (state_type, state_id, position, src) > (%s, %s, %s, %s) "
    "ORDER BY state_type, state_id, position, src LIMIT %s"
)

LOCK = "SELECT pg_advisory_xact_lock(%s, %s)"
# The append's lock with its bounded wait, one statement: the subquery in FROM
# (volatile, so never pulled up) sets lock_timeout for this transaction before
# the lock is asked for. Parameters: class, key, timeout (ms, as text).
LOCK_BOUNDED = (
    "SELECT pg_advisory_xact_lock(%s, %s) "
    "FROM (SELECT set_config('lock_timeout', %s, true)) AS bound"
)

EVENT_KEYS = (
    "SELECT event_key, position FROM {s}.pt_events WHERE event_key = ANY(%b::text[]) "
    "UNION ALL SELECT event_key, position FROM {s}.pt_archived_keys "
    "WHERE event_key = ANY(%b::text[])"
)
# Sent after the append lock when a batch carries keys: re-inserting an archived key
# violates pt_archived_keys' primary key, which aborts the append like a live duplicate.
ARCHIVED_KEYS_CHECK = (
    "INSERT INTO {s}.pt_archived_keys (event_key, position) "
    "SELECT event_key, position FROM {s}.pt_archived_keys WHERE event_key = ANY(%(ek)s::text[])"
)

DUPLICATE_CONSTRAINTS = ("pt_events_by_key", "pt_archived_keys_pkey")

MARK_HANDLED = "DELETE FROM {s}.pt_pending_handlers WHERE position = ANY(%b::bigint[])"

# Ends the backend of a connection that failed mid-append and waits (up to
# 10 s) until it is gone: then its transaction is committed or rolled back for
# good, and pt_commits answers for certain.
TERMINATE = (
    "SELECT pg_terminate_backend(pid, 10000) FROM pg_stat_activity "
    "WHERE pid = %s AND usename = current_user"
)

FIRED_AT = "SELECT position, fired_at FROM {s}.pt_events WHERE position = ANY(%b::bigint[])"
STALE_STATES = (
    "SELECT state_id, last_position FROM {s}.pt_heads WHERE state_type = %s "
    "AND (value_position IS NULL OR value_position <> last_position "
    "OR (%s::integer IS NOT NULL AND (value_version IS DISTINCT FROM %s::integer "
    "OR value_fingerprint IS DISTINCT FROM %s::text))) "
    "ORDER BY state_id LIMIT %s"
)
# The subquery casts each value to jsonb once (OFFSET 0 keeps PostgreSQL from
# inlining it and casting again in every condition).
HEADS_JSON = (
    "(SELECT state_id, value, value_position, value::jsonb AS j FROM {s}.pt_heads "
    "WHERE state_type = %s OFFSET 0) h"
)

FOLLOWER_LOCK = "SELECT position FROM {s}.pt_followers WHERE name = %s FOR UPDATE NOWAIT"

# One statement, run under the append lock (so its snapshot holds every
# earlier append): number the events after the current head, check and
# move the heads, insert events and links, and report the stale states.
# want.mode: 'u' known state (update where last_position = expected),
# 'i' new state touched here (insert, the primary key refuses a taken one),
# 'n' new state not touched here (must still be absent), 'f' touched but
# not in ``expected`` (written unchecked, as the SQLite store does).
APPEND = """
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

COPY_EVENTS = (
    "COPY {s}.pt_events (position, type, data, caused_by, fired_at, version, metadata, "
    "correlation) FROM STDIN"
)
COPY_LINKS = "COPY {s}.pt_links (state_type, state_id, position, grp) FROM STDIN"

IMPORT_BATCH = 10_000  # events per COPY of an import

META_WRITE = (
    "WITH d AS (DELETE FROM {s}.pt_meta WHERE key = ANY(%b::text[])) "
    "INSERT INTO {s}.pt_meta (key, value) SELECT * FROM unnest(%b::text[], %b::text[]) "
    "ON CONFLICT (key) DO UPDATE SET value = excluded.value"
)

SNAPSHOTS_TRIM = (
    "DELETE FROM {s}.pt_snapshots s USING ("
    "SELECT x.state_type, x.state_id, x.position FROM ("
    "SELECT p.state_type, p.state_id, p.position, row_number() OVER ("
    "PARTITION BY p.state_type, p.state_id ORDER BY p.position DESC) AS rn "
    "FROM {s}.pt_snapshots p JOIN unnest(%b::text[], %b::text[]) AS k(t, i) "
    "ON p.state_type = k.t AND p.state_id = k.i) x WHERE x.rn > %s) old "
    "WHERE s.state_type = old.state_type AND s.state_id = old.state_id "
    "AND s.position = old.position AND {not_base}"
)

SNAPSHOTS_TRIM = SNAPSHOTS_TRIM.replace("{not_base}", "s." + SHARED.NOT_BASE)

# Dropping snapshots forgets the heads values too (they are the newest snapshots).
SNAPSHOTS_DROP_ALL = (
    "WITH v AS (UPDATE {s}.pt_heads SET value = NULL, value_position = NULL "
    f"WHERE value IS NOT NULL) DELETE FROM {{s}}.pt_snapshots WHERE {SHARED.NOT_BASE}"
)

SNAPSHOTS_DROP = (
    "WITH k AS (SELECT * FROM unnest(%b::text[], %b::text[]) AS k(t, i)), "
    "v AS (UPDATE {s}.pt_heads h SET value = NULL, value_position = NULL FROM k "
    "WHERE h.state_type = k.t AND h.state_id = k.i) "
    "DELETE FROM {s}.pt_snapshots s USING k WHERE s.state_type = k.t AND s.state_id = k.i "
    f"AND s.{SHARED.NOT_BASE}"
)
