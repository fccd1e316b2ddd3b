"""The tables every store holds, their schema versions and the migration steps.

Tables (names are the same in every store):

- events: position (strictly increasing, in commit order), type, data, caused_by, fired_at
- links: (state type, state id, position, group): which states an event touched;
  states with the same group number in one event are coupled by an ``apply`` hook
- heads: (state type, state id) -> position of the last event that touched it;
  the optimistic-concurrency check compares against this row, inside the
  database transaction that appends. Since schema version 2 the row also holds
  the state's canonical JSON ``value`` and the position it is exact at
  (``value_position``): written by the commit itself, in the same statement,
  and *fresh* when ``value_position = last_position``. An older value is still
  an exact snapshot at ``value_position``, so readers offer any value as a
  snapshot candidate.
- snapshots: (state type, state id, position) -> last_event_id, data; a short
  history per state so a load can rewind to an older one
- commits (schema 5): commit id -> first and last position of the events one
  append wrote, in the same transaction, so "was this commit written?" has a
  certain answer after a connection died mid-commit
- events.event_key (schema 5): an optional idempotency key, unique in the log
- archived_keys (schema 8): the keys of archived events (key -> position), moved
  there by the archive's transaction: a key stays refused after its event left
  the log, and ``event_keys`` answers from both tables
- pending_handlers (schema 5): positions of committed events whose ``handle``
  hooks have not completed; inserted by the append that stores the event,
  deleted in the transaction that stores what the handler fired (or alone), by
  a checked delete that refuses the whole commit if another runner got there first

Schema versions: a store is created at version 1 and brought up to
``SCHEMA_VERSION`` by the migration steps each backend lists (one ordered list
of ``(version, statements)``), inside one transaction, on open. A fresh store
and an upgraded one run the same steps, so they cannot differ.
- snapshots: (state type, state id, position) -> last_event_id, data, version,
  fingerprint; a short history per state so a load can rewind to an older one
- events, snapshots and heads values carry the ``version`` of the class that
  wrote them, snapshots and heads values its ``fingerprint`` (schema evolution,
  see _upcasting; since schema version 3)
- followers: name -> position of the last event a follower processed

Schema version 4 (a migration step, see ``MIGRATIONS``) adds ``metadata`` and
``correlation`` to events, indexes on ``caused_by`` and ``correlation``, and the
followers table.
- completed (schema 6): (state type, state id) -> position and type of the event
  that completed the state; written with that event, in the append transaction
- schedule (schema 6): events to fire later (id, due_at, type, data, status,
  position of the fired event, error, lease); a due row is fired by the append
  that marks it ``fired`` (refused there if it is no longer ``pending``)
"""

from __future__ import annotations

from .._archived import ARCHIVED_UNTIL as ARCHIVED_UNTIL
from .._errors import StoreError
from .._records import FORGET_EPOCH as FORGET_EPOCH

SCHEMA_VERSION = 11

# The data subjects of an event's sealed values (see _personal: every personal value is
# {"$pt_personal": {"s": subject, ...}}), into pt_subject_events; {new} names the row.
_SQLITE_SUBJECTS = (
    "INSERT OR IGNORE INTO pt_subject_events (subject, position) "
    "SELECT DISTINCT json_extract(j.value, '$.\"$pt_personal\".s'), {new}position "
    "FROM {each}json_each({new}data) j WHERE CASE WHEN j.type = 'object' "
    "THEN json_type(j.value, '$.\"$pt_personal\"') END = 'object'"
)
_PG_SUBJECTS = (
    "INSERT INTO {{s}}pt_subject_events (subject, position) "
    "SELECT DISTINCT j.value -> '$pt_personal' ->> 's', {new}position "
    "FROM {each}jsonb_each({new}data::jsonb) j "
    "WHERE jsonb_typeof(j.value -> '$pt_personal') = 'object'"
)

#: Upgrade steps, in order: (the version a step brings a store to, statements).
#: A new store is created at version 1 and brought up through every step, so an
#: old store and a new one end with the same tables. ``{s}`` is the PostgreSQL
#: schema and a dot (empty for SQLite). Add a step per schema change; never edit one.
#: A statement starting ``--sqlite`` or ``--postgres`` runs on that store only.
MIGRATIONS: tuple[tuple[int, tuple[str, ...]], ...] = (
    (
        2,
        (
            "ALTER TABLE {s}pt_heads ADD COLUMN value TEXT",
            "ALTER TABLE {s}pt_heads ADD COLUMN value_position BIGINT",
        ),
    ),
    (
        3,  # schema evolution: the writing class's version (and shape) on every row
        (
            "ALTER TABLE {s}pt_events ADD COLUMN version INTEGER NOT NULL DEFAULT 1",
            "ALTER TABLE {s}pt_snapshots ADD COLUMN version INTEGER NOT NULL DEFAULT 1",
            "ALTER TABLE {s}pt_snapshots ADD COLUMN fingerprint TEXT",
            "ALTER TABLE {s}pt_heads ADD COLUMN value_version INTEGER NOT NULL DEFAULT 1",
            "ALTER TABLE {s}pt_heads ADD COLUMN value_fingerprint TEXT",
        ),
    ),
    (
        4,  # the read side: what the log stores with an event, followers
        (
            "ALTER TABLE {s}pt_events ADD COLUMN metadata TEXT",
            "ALTER TABLE {s}pt_events ADD COLUMN correlation TEXT",
            "CREATE INDEX pt_events_by_cause ON {s}pt_events (caused_by) "
            "WHERE caused_by IS NOT NULL",
            "CREATE INDEX pt_events_by_correlation ON {s}pt_events (correlation) "
            "WHERE correlation IS NOT NULL",
            "CREATE TABLE {s}pt_followers (name TEXT PRIMARY KEY, "
            "position BIGINT NOT NULL, updated_at TEXT NOT NULL)",
        ),
    ),
    (
        5,  # commit ids, idempotency keys, pending handlers
        (
            "CREATE TABLE {s}pt_commits (commit_id TEXT PRIMARY KEY, "
            "first_position BIGINT NOT NULL, last_position BIGINT NOT NULL)",
            "ALTER TABLE {s}pt_events ADD COLUMN event_key TEXT",
            "CREATE UNIQUE INDEX pt_events_by_key ON {s}pt_events (event_key) "
            "WHERE event_key IS NOT NULL",
            "CREATE TABLE {s}pt_pending_handlers (position BIGINT PRIMARY KEY)",
        ),
    ),
    (
        6,
        (
            """CREATE TABLE IF NOT EXISTS {s}pt_completed (
                state_type TEXT NOT NULL,
                state_id TEXT NOT NULL,
                position BIGINT NOT NULL,
                event_type TEXT NOT NULL,
                PRIMARY KEY (state_type, state_id)
            )""",
            """CREATE TABLE IF NOT EXISTS {s}pt_schedule (
                id TEXT PRIMARY KEY,
                due_at TEXT NOT NULL,
                type TEXT NOT NULL,
                data TEXT NOT NULL,
                status TEXT NOT NULL,
                position BIGINT,
                error TEXT,
                created_at TEXT NOT NULL,
                lease_owner TEXT,
                lease_until TEXT,
                version INTEGER NOT NULL DEFAULT 1
            )""",
            "CREATE INDEX IF NOT EXISTS pt_schedule_due ON {s}pt_schedule (status, due_at)",
        ),
    ),
    (
        7,
        (
            """CREATE TABLE IF NOT EXISTS {s}pt_subject_keys (
                subject TEXT PRIMARY KEY,
                key TEXT NOT NULL
            )""",
        ),
    ),
    (
        8,  # archive keeps the idempotency keys of the events it moves out of the log
        (
            """CREATE TABLE IF NOT EXISTS {s}pt_archived_keys (
                event_key TEXT PRIMARY KEY,
                position BIGINT NOT NULL
            )""",
        ),
    ),
    (
        9,  # forgetting: what followers are told, personal values the archive took away
        (
            "CREATE TABLE IF NOT EXISTS {s}pt_forgotten (seq BIGINT PRIMARY KEY, "
            "subject TEXT NOT NULL, position BIGINT NOT NULL)",
            "ALTER TABLE {s}pt_followers ADD COLUMN forgotten BIGINT NOT NULL DEFAULT 0",
            "CREATE TABLE IF NOT EXISTS {s}pt_archived_personal (subject TEXT NOT NULL, "
            "state_type TEXT NOT NULL, state_id TEXT NOT NULL, type TEXT NOT NULL, "
            "data TEXT NOT NULL)",
            "CREATE INDEX IF NOT EXISTS pt_archived_personal_by_subject "
            "ON {s}pt_archived_personal (subject)",
        ),
    ),
    (
        10,  # a forget names the key it deleted, so a copy can tell that key from a newer one
        ("ALTER TABLE {s}pt_forgotten ADD COLUMN key_id TEXT",),
    ),
    (
        11,  # each data subject's events, kept by the database: a forget reads only those
        (
            "CREATE TABLE IF NOT EXISTS {s}pt_subject_events (subject TEXT NOT NULL, "
            "position BIGINT NOT NULL, PRIMARY KEY (subject, position))",
            "--sqlite\n"
            + _SQLITE_SUBJECTS.format(new="e.", each="pt_events e, ")
            + " AND e.data LIKE '%\"$pt_personal\"%'",
            "--sqlite\nCREATE TRIGGER IF NOT EXISTS pt_events_subjects AFTER INSERT ON "
            "pt_events WHEN NEW.data LIKE '%\"$pt_personal\"%' BEGIN "
            + _SQLITE_SUBJECTS.format(new="NEW.", each="")
            + "; END",
            "--postgres\n"
            + _PG_SUBJECTS.format(new="e.", each="{s}pt_events e, ")
            + " AND e.data LIKE '%\"$pt_personal\"%' ON CONFLICT DO NOTHING",
            "--postgres\nCREATE OR REPLACE FUNCTION {s}pt_subject_events_add() RETURNS trigger "
            "LANGUAGE plpgsql AS $f$ BEGIN "
            + _PG_SUBJECTS.format(new="NEW.", each="")
            + " ON CONFLICT DO NOTHING; RETURN NULL; END $f$",
            # as SQLite's IF NOT EXISTS: a schema upgraded by hand may hold the trigger already
            "--postgres\nDROP TRIGGER IF EXISTS pt_events_subjects ON {s}pt_events",
            "--postgres\nCREATE TRIGGER pt_events_subjects AFTER INSERT ON {s}pt_events "
            "FOR EACH ROW WHEN (NEW.data LIKE '%\"$pt_personal\"%') "
            "EXECUTE FUNCTION {s}pt_subject_events_add()",
        ),
    ),
)


def parse_schema_version(value: object, where: str) -> int:
    """The stored schema version as an int, or a StoreError naming what was found."""
    try:
        return int(str(value))
    except ValueError:
        raise StoreError(
            f"{where}: pt_meta.schema_version is {value!r}, not a version number; "
            "this is not a playthrough store, or it was tampered with"
        ) from None


#: pt_meta key: the running hash of the log up to ``ARCHIVED_UNTIL`` (see _transfer.chain),
#: so a store whose first events are archived can still say which log it continues.
ARCHIVED_CHAIN = "archived_chain"


SCHEDULE_COLUMNS = (
    "id, due_at, type, data, status, position, error, created_at, lease_owner, lease_until, version"
)

#: The tables an export carries besides the log, in the order of the file (the
#: subject keys last, so that an operator can strip them), with the columns
#: ``StoreReader.transfer_rows`` reads and ``Store.import_events`` writes.
TRANSFER_TABLES: dict[str, tuple[str, str]] = {
    # table: (columns, ORDER BY)
    "schedule": (SCHEDULE_COLUMNS, "id"),
    "pending_handlers": ("position", "position"),
    "completed": ("state_type, state_id, position, event_type", "state_type, state_id"),
    "followers": ("name, position, updated_at", "name"),
    "subject_keys": ("subject, key", "subject"),
}
#: Read for an export too, when asked by name: every forget the store saw (not
#: personal data), so that a copy forgets the same keys.
LOG_TABLES: dict[str, tuple[str, str]] = {"forgotten": ("subject, key_id", "seq")}


#: The columns of an event row, in ``StoredEvent``'s order (both stores select these).
EVENT_COLUMNS = "position, type, data, caused_by, fired_at, version, metadata, correlation"
