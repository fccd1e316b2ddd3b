"""The SQLite store's statements, as named constants.

Statements both stores send are rendered from the templates of ``_dialect``;
the rest are SQLite's own (``?NNN`` numbered parameters, ``VALUES`` lists
built per chunk, ``executemany`` over rows).
"""

from __future__ import annotations

from .. import _dialect as d
from .._dialect import SQLITE
from .._tables import EVENT_COLUMNS, SCHEDULE_COLUMNS

R = SQLITE.render

SCHEMA = """
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

SCHEMA_VERSION_READ = "SELECT value FROM pt_meta WHERE key = 'schema_version'"
SCHEMA_VERSION_WRITE = (
    "INSERT INTO pt_meta VALUES ('schema_version', ?) ON CONFLICT (key) "
    "DO UPDATE SET value = excluded.value"
)

#: The statements both stores send (see ``_dialect.Statements``), rendered for this one.
SHARED = d.Statements(SQLITE)

# ---------------------------------------------------------------- reads

HEAD = "SELECT seq FROM sqlite_sequence WHERE name = 'pt_events'"
#: An append's forget epoch and log head in one statement (one round trip fewer).
EPOCH_AND_HEAD = (
    f"SELECT {SHARED.EPOCH}, "
    "coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'pt_events'), 0)"
)
FIRED_AT = "SELECT position, fired_at FROM pt_events WHERE position IN (?, ?)"

# The chunked reads: ``{values}`` is a VALUES list of the chunk's keys
# (``(?,?)`` each), ``{marks}`` a list of ``?``; ``{n}`` numbers a parameter after them.
STATE_HEADS = (
    "WITH want(t, i) AS (VALUES {values}) "
    "SELECT h.state_type, h.state_id, h.last_position FROM want w "
    "JOIN pt_heads h ON h.state_type = w.t AND h.state_id = w.i"
)
# The append's check: the heads rows, then one row (no state) with the forget
# epoch and the log's head, in one statement.
STATE_HEADS_AND_HEAD = (
    STATE_HEADS + f" UNION ALL SELECT NULL, {SHARED.EPOCH}, "
    "coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'pt_events'), 0)"
)
# A state's heads value is one of its snapshots (exact at value_position).
SNAPSHOTS = (
    "WITH want(t, i) AS (VALUES {values}) "
    "SELECT s.state_type, s.state_id, s.position, s.last_event_id, s.data, "
    "s.version, s.fingerprint "
    "FROM want w JOIN pt_snapshots s ON s.state_type = w.t AND s.state_id = w.i "
    "AND s.position <= ?{n} UNION ALL "
    "SELECT h.state_type, h.state_id, h.value_position, h.value_position, h.value, "
    "h.value_version, h.value_fingerprint "
    "FROM want w JOIN pt_heads h ON h.state_type = w.t AND h.state_id = w.i "
    "AND h.value IS NOT NULL AND h.value_position <= ?{n} "
    "ORDER BY 1, 2, 3 DESC"
)
# The heads rows, and one more row (no state) carrying the forget epoch.
HEADS = (
    "WITH want(t, i) AS (VALUES {values}) "
    "SELECT h.state_type, h.state_id, h.last_position, h.value, h.value_position, "
    "h.value_version, h.value_fingerprint "
    "FROM want w JOIN pt_heads h ON h.state_type = w.t AND h.state_id = w.i "
    f"UNION ALL SELECT NULL, NULL, {SHARED.EPOCH}, NULL, NULL, NULL, NULL"
)
LINKS = (
    "WITH want(t, i, lo, hi) AS (VALUES {values}), "
    "hit AS (SELECT DISTINCT l.position FROM want w JOIN pt_links l "
    "ON l.state_type = w.t AND l.state_id = w.i "
    "AND l.position > w.lo AND l.position <= w.hi) "
    "SELECT l.position, l.state_type, l.state_id, l.grp FROM hit "
    "JOIN pt_links l ON l.position = hit.position"
)
EVENTS = f"SELECT {EVENT_COLUMNS} FROM pt_events WHERE position IN ({{marks}}) ORDER BY position"
SUBJECT_KEYS = "SELECT subject, key FROM pt_subject_keys WHERE subject IN ({marks})"
COMPLETIONS = (
    "WITH want(t, i) AS (VALUES {values}) "
    "SELECT c.state_type, c.state_id, c.position, c.event_type FROM want w "
    "JOIN pt_completed c ON c.state_type = w.t AND c.state_id = w.i"
)
EVENT_KEYS = (
    "SELECT event_key, position FROM pt_events WHERE event_key IN ({marks}) "
    "UNION ALL SELECT event_key, position FROM pt_archived_keys "
    "WHERE event_key IN ({marks})"
)
ITER_SNAPSHOTS = (
    "SELECT state_type, state_id, position, last_event_id, data, version, fingerprint, "
    "0 FROM pt_snapshots UNION ALL SELECT state_type, state_id, value_position, "
    "value_position, value, value_version, value_fingerprint, 1 "
    "FROM pt_heads WHERE value IS NOT NULL ORDER BY 1, 2, 3, 8"
)
STALE_STATES = (
    "SELECT state_id, last_position FROM pt_heads WHERE state_type = ? "
    "AND (value_position IS NULL OR value_position <> last_position{other_shape}) "
    "ORDER BY state_id LIMIT ?"
)
STALE_SHAPE = " OR value_version IS NOT ? OR value_fingerprint IS NOT ?"
# Followed by the rendered filter (its JSON paths are data: never formatted).
QUERY_STATES = (
    "SELECT h.state_id, h.value, h.value_position FROM pt_heads h WHERE h.state_type = ? AND "
)
COUNT_STATES = "SELECT count(*) FROM pt_heads h WHERE h.state_type = ? AND "

# ---------------------------------------------------------------- the append

HANDLED = "DELETE FROM pt_pending_handlers WHERE position = ?"
EVENTS_WRITE = f"INSERT INTO pt_events ({EVENT_COLUMNS}, event_key) VALUES ({', '.join('?' * 9)})"
LINKS_WRITE = "INSERT INTO pt_links VALUES (?, ?, ?, ?)"
# The value rides in the heads statement; a state without one keeps
# its old value (exact at its old value_position, no longer fresh).
HEADS_WRITE = (
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
    "value_position = coalesce(excluded.value_position, value_position)"
)
COMMIT_WRITE = "INSERT INTO pt_commits VALUES (?, ?, ?)"
PENDING_WRITE = "INSERT INTO pt_pending_handlers VALUES (?)"
VALUES_WRITE = (
    "UPDATE pt_heads SET value = ?1, value_position = ?2, value_version = ?5, "
    "value_fingerprint = ?6 "
    "WHERE state_type = ?3 AND state_id = ?4 AND last_position = ?2 "
    "AND (value_position IS NOT ?2 OR value IS NULL "
    "OR value_version IS NOT ?5 OR value_fingerprint IS NOT ?6)"
)
FIRED = (
    "UPDATE pt_schedule SET status = 'fired', position = ?, lease_owner = NULL, "
    "lease_until = NULL WHERE id = ? AND status = 'pending'"
)
COMPLETED_WRITE = (
    "INSERT INTO pt_completed VALUES (?, ?, ?, ?) ON CONFLICT (state_type, state_id) "
    "DO UPDATE SET position = excluded.position, event_type = excluded.event_type"
)
REOPENED = "DELETE FROM pt_completed WHERE state_type = ? AND state_id = ?"
SCHEDULE_WRITE = (
    "INSERT INTO pt_schedule (id, due_at, type, data, status, created_at, version) "
    "VALUES (?, ?, ?, ?, 'pending', ?, ?)"
)
CANCEL = (
    "UPDATE pt_schedule SET status = 'cancelled', lease_owner = NULL, "
    "lease_until = NULL WHERE id = ? AND status = 'pending'"
)
STATUS = "SELECT status FROM pt_schedule WHERE id = ?"

# ---------------------------------------------------------------- lifecycle, maintenance

CLAIM = (
    f"SELECT {SCHEDULE_COLUMNS} FROM pt_schedule WHERE status = 'pending' "
    "AND due_at <= ? AND (lease_until IS NULL OR lease_until <= ?) "
    "ORDER BY due_at, id LIMIT ?"
)
LEASE = "UPDATE pt_schedule SET lease_owner = ?, lease_until = ? WHERE id = ?"
FOLLOWER_POSITION = "SELECT position FROM pt_followers WHERE name = ?"
IMPORT_EVENTS = f"INSERT INTO pt_events ({EVENT_COLUMNS}) VALUES ({', '.join('?' * 8)})"
# The same for an event with no cause or metadata, without and with a correlation
# (left out, the columns take their NULL default; see SQLiteStore._import_page).
IMPORT_PLAIN_EVENTS = (
    "INSERT INTO pt_events (position, type, data, fired_at, version) VALUES (?, ?, ?, ?, ?)"
)
IMPORT_CORRELATED_EVENTS = (
    "INSERT INTO pt_events (position, type, data, fired_at, version, correlation) "
    "VALUES (?, ?, ?, ?, ?, ?)"
)
# Keep the newest ``keep`` snapshots of a state (and an archive's base snapshots).
SNAPSHOTS_TRIM = (
    "DELETE FROM pt_snapshots WHERE state_type = ? AND state_id = ? AND position < "
    "(SELECT MIN(position) FROM (SELECT position FROM pt_snapshots "
    "WHERE state_type = ? AND state_id = ? ORDER BY position DESC LIMIT ?)) "
    f"AND {SHARED.NOT_BASE}"
)
# VALUES_WRITE for many states in one statement ({values}: rows of VALUES_WRITE's six
# parameters, one per state, no state twice), on SQLite 3.33 and later (UPDATE FROM).
VALUES_WRITE_MANY = (
    "WITH v(value, p, t, i, version, mark) AS (VALUES {values}) "
    "UPDATE pt_heads SET value = v.value, value_position = v.p, value_version = v.version, "
    "value_fingerprint = v.mark FROM v WHERE pt_heads.state_type = v.t "
    "AND pt_heads.state_id = v.i AND pt_heads.last_position = v.p "
    "AND (pt_heads.value_position IS NOT v.p OR pt_heads.value IS NULL "
    "OR pt_heads.value_version IS NOT v.version OR pt_heads.value_fingerprint IS NOT v.mark)"
)
# A snapshot set in one statement per chunk of rows ({rows}: a VALUES list of
# SNAPSHOTS_WRITE's row), and its trim in one per chunk of keys ({values}: pairs,
# then the number kept less one): each key keeps its ``keep`` newest snapshots.
SNAPSHOTS_WRITE_MANY = SHARED.SNAPSHOTS_WRITE.replace(
    "VALUES (?, ?, ?, ?, ?, ?, ?)", "VALUES {rows}", 1
)
SNAPSHOTS_TRIM_MANY = (
    "WITH k(t, i) AS (VALUES {values}) "
    "DELETE FROM pt_snapshots WHERE (state_type, state_id) IN (SELECT t, i FROM k) "
    "AND position < (SELECT s.position FROM pt_snapshots s "
    "WHERE s.state_type = pt_snapshots.state_type AND s.state_id = pt_snapshots.state_id "
    "ORDER BY s.position DESC LIMIT 1 OFFSET ?) "
    f"AND {SHARED.NOT_BASE}"
)
# Dropping snapshots forgets the heads values too (they are the newest snapshots).
VALUES_DROP_ALL = "UPDATE pt_heads SET value = NULL, value_position = NULL WHERE value IS NOT NULL"
SNAPSHOTS_DROP_ALL = f"DELETE FROM pt_snapshots WHERE {SHARED.NOT_BASE}"
VALUES_DROP = (
    "UPDATE pt_heads SET value = NULL, value_position = NULL WHERE state_type = ? AND state_id = ?"
)
SNAPSHOTS_DROP = (
    f"DELETE FROM pt_snapshots WHERE state_type = ? AND state_id = ? AND {SHARED.NOT_BASE}"
)
