"""One SQL dialect layer for the stores: statements written once, rendered per backend.

A statement both stores send is written here once, as a template (a class
attribute of :class:`Statements`), and each backend renders them all with its
:class:`Dialect` into ``SHARED`` of its own ``_sql`` module. A template spells
what differs between SQLite and PostgreSQL with these markers (and nothing else):

- ``{p}``: the tables' prefix (empty on SQLite; ``{s}.`` on PostgreSQL, whose
  store substitutes its quoted schema for ``{s}`` when it sends the statement)
- ``{?}``: the driver's parameter marker (``?`` or ``%s``)
- ``{distinct}``: "differs, NULLs compared as values" (``IS NOT`` or
  ``IS DISTINCT FROM``)
- ``{max}``: the larger of two values (``max`` or ``greatest``)

:meth:`Dialect.upsert` writes "insert these rows, or update the ones that
exist" for rows given as parameters: a ``VALUES`` row run once per row
(``executemany``) on SQLite, one ``unnest`` of typed arrays on PostgreSQL. The
migration steps (``MIGRATIONS``) and ``event_query_sql`` take part in the same
layer: the first with ``{s}`` as the prefix, the second with the dialect's
prefix and marker.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import attrs

from .._records import EventQuery, TransferTables
from ._tables import (
    ARCHIVED_UNTIL,
    EVENT_COLUMNS,
    FORGET_EPOCH,
    LOG_TABLES,
    SCHEDULE_COLUMNS,
    TRANSFER_TABLES,
)


@attrs.frozen
class Dialect:
    """How one backend spells the markers of a template."""

    name: str
    prefix: str
    mark: str
    distinct: str
    greatest: str
    #: PostgreSQL: rows travel as one array per column, so an upsert is one statement.
    arrays: bool = False

    def render(self, template: str) -> str:
        """The template in this dialect (a template holds only the markers listed above)."""
        return (
            template.replace("{p}", self.prefix)
            .replace("{?}", self.mark)
            .replace("{distinct}", self.distinct)
            .replace("{max}", self.greatest)
        )

    def rows(self, types: Sequence[str]) -> str:
        """The rows an INSERT takes from its parameters: one row, or one array per column."""
        if self.arrays:
            return f"SELECT * FROM unnest({', '.join(f'%b::{t}[]' for t in types)})"
        return f"VALUES ({', '.join(self.mark for _ in types)})"

    def upsert(
        self,
        table: str,
        columns: Sequence[str],
        types: Sequence[str],
        conflict: Sequence[str],
        update: Sequence[str] = (),
    ) -> str:
        """INSERT rows into ``pt_<table>``; a row whose ``conflict`` key exists updates
        ``update`` from the new row (none given: the existing row is kept)."""
        action = (
            "DO UPDATE SET " + ", ".join(f"{c} = excluded.{c}" for c in update)
            if update
            else "DO NOTHING"
        )
        return (
            f"INSERT INTO {self.prefix}pt_{table} ({', '.join(columns)}) {self.rows(types)} "
            f"ON CONFLICT ({', '.join(conflict)}) {action}"
        )


SQLITE = Dialect("sqlite", prefix="", mark="?", distinct="IS NOT", greatest="max")
POSTGRES = Dialect(
    "postgresql",
    prefix="{s}.",
    mark="%s",
    distinct="IS DISTINCT FROM",
    greatest="greatest",
    arrays=True,
)

# ----------------------------------------------------------------- templates

#: The columns of a snapshot row and their PostgreSQL array types.
SNAPSHOT_COLUMNS = (
    "state_type",
    "state_id",
    "position",
    "last_event_id",
    "data",
    "version",
    "fingerprint",
)
SNAPSHOT_TYPES = ("text", "text", "bigint", "bigint", "text", "integer", "text")


def snapshots_write(dialect: Dialect) -> str:
    """Write snapshots; one at a key and position that exists replaces it."""
    return dialect.upsert(
        "snapshots",
        SNAPSHOT_COLUMNS,
        SNAPSHOT_TYPES,
        ("state_type", "state_id", "position"),
        ("last_event_id", "data", "version", "fingerprint"),
    )


def meta_write(dialect: Dialect) -> str:
    """Set pt_meta keys (one row: key, value)."""
    return dialect.upsert("meta", ("key", "value"), ("text", "text"), ("key",), ("value",))


def subject_keys_write(dialect: Dialect) -> str:
    """Store subjects' keys; a subject that has one keeps it (the caller reads back which)."""
    return dialect.upsert("subject_keys", ("subject", "key"), ("text", "text"), ("subject",))


class Statements:
    """The statements both stores send, as templates (class attributes), and rendered
    for one dialect (an instance's attributes of the same names): a backend's
    ``_sql`` module holds ``SHARED = Statements(ITS_DIALECT)``."""

    #: The log's archived prefix (0: nothing archived), as a scalar subquery.
    ARCHIVED = (
        "(SELECT coalesce(CAST(max(value) AS BIGINT), 0) FROM {p}pt_meta "
        f"WHERE key = '{ARCHIVED_UNTIL}')"
    )

    #: The store's forget epoch (0: never forgot anyone), as a scalar subquery.
    EPOCH = (
        "(SELECT coalesce(max(CAST(value AS BIGINT)), 0) FROM {p}pt_meta "
        f"WHERE key = '{FORGET_EPOCH}')"
    )

    #: The base snapshots of an archived log (at pt_meta's archived_until) are never
    #: trimmed or dropped: they stand for the archived events.
    NOT_BASE = (
        "position <> coalesce((SELECT CAST(value AS BIGINT) FROM {p}pt_meta "
        f"WHERE key = '{ARCHIVED_UNTIL}'), -1)"
    )

    # verify's checks of heads rows and snapshot metadata against the links, and repair.
    # Linear: each heads row looks up its links' maximum on the links' primary key,
    # and each linked state without a heads row is found by a lookup on the heads'
    # (a FULL OUTER JOIN against a grouped subquery runs as a nested loop in SQLite).
    HEADS_DISAGREE = f"""SELECT t, i, have, want FROM (
        SELECT h.state_type AS t, h.state_id AS i, h.last_position AS have,
               (SELECT max(l.position) FROM {{p}}pt_links l
                WHERE l.state_type = h.state_type AND l.state_id = h.state_id) AS want
        FROM {{p}}pt_heads h
        UNION ALL
        SELECT l.state_type, l.state_id, NULL, max(l.position) FROM {{p}}pt_links l
        WHERE NOT EXISTS (SELECT 1 FROM {{p}}pt_heads h
                          WHERE h.state_type = l.state_type AND h.state_id = l.state_id)
        GROUP BY l.state_type, l.state_id
    ) x WHERE have {{distinct}} want
      AND NOT (want IS NULL AND have <= {ARCHIVED})
    ORDER BY 1, 2 LIMIT {{?}}"""

    SNAPSHOTS_DISAGREE = f"""SELECT x.state_type, x.state_id, x.position, x.last_event_id,
    x.want FROM (
        SELECT s.state_type, s.state_id, s.position, s.last_event_id,
               (SELECT max(l.position) FROM {{p}}pt_links l WHERE l.state_type = s.state_type
                AND l.state_id = s.state_id AND l.position <= s.position) AS want
        FROM {{p}}pt_snapshots s
    ) x WHERE x.last_event_id {{distinct}} x.want
      AND NOT (x.want IS NULL AND x.last_event_id <= {ARCHIVED})
    ORDER BY 1, 2, 3 LIMIT {{?}}"""

    #: repair: heads rows from the links (a state without links keeps an archived head).
    REBUILD_HEADS = (
        f"""DELETE FROM {{p}}pt_heads WHERE last_position > {ARCHIVED}
        AND NOT EXISTS (SELECT 1 FROM {{p}}pt_links l
        WHERE l.state_type = {{p}}pt_heads.state_type AND l.state_id = {{p}}pt_heads.state_id)""",
        """INSERT INTO {p}pt_heads (state_type, state_id, last_position)
        SELECT state_type, state_id, max(position) FROM {p}pt_links WHERE true
        GROUP BY state_type, state_id
        ON CONFLICT (state_type, state_id) DO UPDATE SET last_position = excluded.last_position,
            value = NULL, value_position = NULL
        WHERE {p}pt_heads.last_position {distinct} excluded.last_position""",
    )

    #: An import's heads: the links it wrote after the old head.
    IMPORT_HEADS = (
        "INSERT INTO {p}pt_heads (state_type, state_id, last_position) "
        "SELECT state_type, state_id, max(position) FROM {p}pt_links WHERE position > {?} "
        "GROUP BY state_type, state_id "
        "ON CONFLICT (state_type, state_id) DO UPDATE SET last_position = excluded.last_position"
    )

    # Every reader of events selects EVENT_COLUMNS: an apply hook reads self.metadata,
    # so a load that dropped it would differ from firing and from a replay.
    EVENTS_AFTER = (
        f"SELECT {EVENT_COLUMNS} FROM {{p}}pt_events WHERE position > {{?}} "
        "ORDER BY position LIMIT {?}"
    )
    LINKS_BETWEEN = (
        "SELECT position, state_type, state_id, grp FROM {p}pt_links "
        "WHERE position > {?} AND position <= {?} ORDER BY position"
    )
    #: The states each event in a range touched, without the group: covered by the links'
    #: position index on SQLite (its entries hold the key), so no row is looked up.
    LINKED_KEYS_BETWEEN = (
        "SELECT position, state_type, state_id FROM {p}pt_links "
        "WHERE position > {?} AND position <= {?} ORDER BY position"
    )
    #: The links of the events of a range that touch two or more states (the events that
    #: may couple states: the groups are told apart by the reader). The events are found
    #: on the links' position index alone; only their links are looked up for the group.
    MULTI_LINKS_BETWEEN = (
        "SELECT position, state_type, state_id, grp FROM {p}pt_links WHERE position IN ("
        "SELECT position FROM {p}pt_links WHERE position > {?} AND position <= {?} "
        "GROUP BY position HAVING count(*) > 1) ORDER BY position"
    )
    KEYS_BETWEEN = (
        "SELECT position, event_key FROM {p}pt_events WHERE position > {?} AND position <= {?} "
        "AND event_key IS NOT NULL ORDER BY position"
    )
    META = "SELECT value FROM {p}pt_meta WHERE key = {?}"
    META_DELETE = "DELETE FROM {p}pt_meta WHERE key = {?}"
    COMMIT_POSITIONS = (
        "SELECT first_position, last_position FROM {p}pt_commits WHERE commit_id = {?}"
    )
    PENDING_HANDLERS = "SELECT position FROM {p}pt_pending_handlers ORDER BY position LIMIT {?}"
    EVENT_VERSIONS = (
        "SELECT type, version, count(*) FROM {p}pt_events GROUP BY type, version "
        "ORDER BY type, version"
    )
    SNAPSHOT_VERSIONS = (
        "SELECT t, v, f, count(*) FROM (SELECT state_type AS t, version AS v, fingerprint AS f "
        "FROM {p}pt_snapshots UNION ALL SELECT state_type, value_version, value_fingerprint "
        "FROM {p}pt_heads WHERE value IS NOT NULL) x GROUP BY t, v, f ORDER BY t, v, f"
    )
    STATE_INFO = (
        "SELECT h.last_position, h.value_position, "
        "(SELECT min(position) FROM {p}pt_links l WHERE l.state_type = h.state_type "
        "AND l.state_id = h.state_id), "
        "(SELECT count(*) FROM {p}pt_links l WHERE l.state_type = h.state_type "
        "AND l.state_id = h.state_id), "
        "(SELECT max(position) FROM {p}pt_snapshots s WHERE s.state_type = h.state_type "
        "AND s.state_id = h.state_id) "
        "FROM {p}pt_heads h WHERE h.state_type = {?} AND h.state_id = {?}"
    )
    FOLLOWERS = "SELECT name, position, updated_at FROM {p}pt_followers ORDER BY name"
    FOLLOWER_CREATE = (
        "INSERT INTO {p}pt_followers (name, position, updated_at) VALUES ({?}, 0, {?}) "
        "ON CONFLICT (name) DO NOTHING"
    )
    FOLLOWER_ADVANCE = (
        "UPDATE {p}pt_followers SET position = {?}, updated_at = {?}, "
        "forgotten = {max}(forgotten, {?}) WHERE name = {?}"
    )
    FOLLOWER_FORGOTTEN = (
        "SELECT f.seq, f.subject, f.position FROM {p}pt_forgotten f "
        "JOIN {p}pt_followers w ON w.name = {?} WHERE f.seq > w.forgotten ORDER BY f.seq"
    )
    SCHEDULE = f"SELECT {SCHEDULE_COLUMNS} FROM {{p}}pt_schedule WHERE id = {{?}}"
    SCHEDULES = f"SELECT {SCHEDULE_COLUMNS} FROM {{p}}pt_schedule ORDER BY due_at, id"
    SCHEDULES_BY_STATUS = (
        f"SELECT {SCHEDULE_COLUMNS} FROM {{p}}pt_schedule WHERE status = {{?}} ORDER BY due_at, id"
    )
    FINISH = (
        "UPDATE {p}pt_schedule SET status = {?}, error = {?}, lease_owner = NULL, "
        "lease_until = NULL WHERE id = {?} AND status = 'pending' AND lease_owner = {?}"
    )
    REARM = (
        "UPDATE {p}pt_schedule SET status = 'pending', due_at = {?}, error = NULL, "
        "lease_owner = NULL, lease_until = NULL WHERE id = {?} AND status IN ('pending', 'failed')"
    )
    ARCHIVE_KEYS = (
        "INSERT INTO {p}pt_archived_keys (event_key, position) SELECT event_key, position "
        "FROM {p}pt_events WHERE position <= {?} AND event_key IS NOT NULL"
    )
    #: What an archive deletes (each takes the position it archives up to).
    ARCHIVE_DELETE = (
        "DELETE FROM {p}pt_snapshots WHERE position < {?}",
        "DELETE FROM {p}pt_links WHERE position <= {?}",
        "DELETE FROM {p}pt_events WHERE position <= {?}",
    )

    def __init__(self, dialect: Dialect) -> None:
        for name, template in vars(Statements).items():
            if name.isupper():
                rendered = (
                    dialect.render(template)
                    if isinstance(template, str)
                    else tuple(dialect.render(t) for t in template)
                )
                setattr(self, name, rendered)
        self.SNAPSHOTS_WRITE = snapshots_write(dialect)
        self.META_SET = meta_write(dialect)
        self.SUBJECT_KEYS_WRITE = subject_keys_write(dialect)


def transfer_select(table: str, prefix: str) -> str:
    """The SELECT of one carried table's rows (``prefix``: the schema and a dot, or empty)."""
    known = {**TRANSFER_TABLES, **LOG_TABLES}
    if table not in known:
        raise ValueError(f"{table!r} is not a table an export carries ({', '.join(known)})")
    columns, order = known[table]
    return f"SELECT {columns} FROM {prefix}pt_{table} ORDER BY {order}"


def transfer_writes(tables: TransferTables, prefix: str) -> list[tuple[str, list[tuple[Any, ...]]]]:
    """The statements (``?`` placeholders) and rows that write ``tables`` (keys aside).

    A DELETE comes with no rows (run it once), an INSERT with its rows (run it for each).
    """
    out: list[tuple[str, list[tuple[Any, ...]]]] = []
    rows: dict[str, Sequence[tuple[Any, ...]] | None] = {
        "schedule": tables.schedule,
        "pending_handlers": None
        if tables.pending_handlers is None
        else [(p,) for p in tables.pending_handlers],
        "completed": None
        if tables.completed is None
        else [(c.key.type, c.key.id, c.position, c.event_type) for c in tables.completed],
        "followers": tables.followers,
    }
    for table, carried in rows.items():
        if carried is None:
            continue
        columns = TRANSFER_TABLES[table][0]
        marks = ", ".join("?" for _ in columns.split(","))
        out.append((f"DELETE FROM {prefix}pt_{table}", []))
        if carried:
            insert = f"INSERT INTO {prefix}pt_{table} ({columns}) VALUES ({marks})"
            out.append((insert, [tuple(r) for r in carried]))
    return out


def event_query_sql(
    query: EventQuery,
    *,
    tables: str,
    placeholder: str,
    types_condition: Callable[[tuple[str, ...]], tuple[str, list[Any]]],
) -> tuple[str, list[Any]] | None:
    """The SELECT behind ``find_events`` in one store's dialect, and its parameters.

    ``tables`` prefixes the table names (a schema), ``placeholder`` is the
    driver's parameter marker, ``types_condition`` renders "type is one of".
    The last parameter is the LIMIT, which the caller appends. None: the query
    can match nothing (an empty ``types``).
    """
    ph = placeholder
    where = [f"e.position > {ph}"]
    params: list[Any] = [query.after]
    if query.upto is not None:
        where.append(f"e.position <= {ph}")
        params.append(query.upto)
    if query.types is not None:
        if not query.types:
            return None
        condition, values = types_condition(query.types)
        where.append(condition)
        params.extend(values)
    if query.caused_by is not None:
        where.append(f"e.caused_by = {ph}")
        params.append(query.caused_by)
    if query.correlation is not None:
        where.append(f"e.correlation = {ph}")
        params.append(query.correlation)
    if query.version is not None:
        where.append(f"e.version = {ph}")
        params.append(query.version)
    source = f"{tables}pt_events e"
    if query.key is not None:
        source = (
            f"{tables}pt_links l JOIN {tables}pt_events e ON e.position = l.position "
            f"AND l.state_type = {ph} AND l.state_id = {ph}"
        )
        params = [query.key.type, query.key.id, *params]
        where[0] = f"l.position > {ph}"
    columns = ", ".join("e." + c.strip() for c in EVENT_COLUMNS.split(","))
    sql = (
        f"SELECT {columns} FROM {source} WHERE {' AND '.join(where)} ORDER BY e.position LIMIT {ph}"
    )
    return sql, params
