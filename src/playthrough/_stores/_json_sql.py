"""Filters and orderings on a state's stored JSON value, rendered for SQLite and PostgreSQL.

Both renderings give the same answers (the store contract checks it): every
comparison is guarded by the JSON type of the value at the path, so a number
never equals a string, ``true`` never equals ``1``, and a missing field matches
only ``isnull``. Strings compare by code point (SQLite's default; ``COLLATE
"C"`` on PostgreSQL), numbers numerically.

SQLite reads the ``value`` text with its JSON functions (``json_extract``,
``json_type``, ``json_each``); PostgreSQL casts it to ``jsonb`` once per row.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from .._errors import QueryError
from ._base import Condition, Order

_RANGE = {"gt": ">", "gte": ">=", "lt": "<", "lte": "<="}


def _dumps(value: object) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _expand(condition: Condition) -> Condition | list[Condition]:
    """A dict ``contains`` is every key equal: the same semantics in both stores."""
    if condition.lookup == "contains" and isinstance(condition.value, dict):
        return [Condition((*condition.path, str(k)), "eq", v) for k, v in condition.value.items()]
    return condition


def _flatten(conditions: Sequence[Condition]) -> list[Condition]:
    out: list[Condition] = []
    for c in conditions:
        e = _expand(c)
        out.extend(e if isinstance(e, list) else [e])
    return out


# --------------------------------------------------------------------------- SQLite


def _literal(text: str, *, percent: bool = False) -> str:
    """A SQL string literal (paths are inlined, so each may appear many times in a statement).

    ``percent``: double ``%`` for drivers that read ``%s`` placeholders (psycopg).
    """
    quoted = "'" + text.replace("'", "''") + "'"
    return quoted.replace("%", "%%") if percent else quoted


def sqlite_path(path: Sequence[str]) -> str:
    """A SQLite JSON path: each label quoted as the stored JSON spells the key.

    SQLite compares a quoted label with the key's text as written in the JSON
    (escapes included) and ends the label at the first ``"``, so a key holding
    ``"`` cannot be named: QueryError rather than a filter matching nothing.
    """
    for p in path:
        if '"' in p:
            raise QueryError(
                f"the key {p!r} holds a double quote, which SQLite's JSON paths cannot "
                "name; filter on it in Python (or use PostgreSQL)"
            )
    return "$" + "".join("." + json.dumps(p, ensure_ascii=False) for p in path)


class SQLiteFilter:
    """Renders conditions over ``h.value`` (a JSON text column) for SQLite."""

    def __init__(self) -> None:
        self.params: list[Any] = []

    def _eq(self, path: Sequence[str], value: object) -> str:
        p = _literal(sqlite_path(path))
        t = f"json_type(h.value, {p})"
        x = f"json_extract(h.value, {p})"
        if value is None:
            return f"coalesce({t} = 'null', 0)"
        if isinstance(value, bool):
            return f"coalesce({t} = '{'true' if value else 'false'}', 0)"
        if _is_number(value):
            self.params.append(value)
            return f"coalesce({t} IN ('integer', 'real') AND {x} = ?, 0)"
        if isinstance(value, str):
            self.params.append(value)
            return f"coalesce({t} = 'text' AND {x} = ?, 0)"
        self.params.append(_dumps(value))
        return f"coalesce({t} IN ('array', 'object') AND {x} = json(?), 0)"

    def _in(self, t: str, x: str, values: list[Any]) -> str:
        """``x`` equals one of ``values`` (as ``_eq`` does): one JSON array parameter per
        kind of value present, read by ``json_each``, so a list of any length binds."""
        numbers = [v for v in values if _is_number(v)]
        texts = [v for v in values if isinstance(v, str)]
        atoms = sorted({_dumps(v) for v in values if v is None or isinstance(v, bool)})
        nested = [v for v in values if isinstance(v, (list, dict))]
        parts = []
        if numbers:
            self.params.append(_dumps(numbers))
            parts.append(
                f"({t} IN ('integer', 'real') AND {x} IN (SELECT value FROM json_each(?)))"
            )
        if texts:
            self.params.append(_dumps(texts))
            parts.append(f"({t} = 'text' AND {x} IN (SELECT value FROM json_each(?)))")
        if atoms:  # null, true, false: json_type names them as JSON spells them
            self.params.append("[" + ",".join(f'"{a}"' for a in atoms) + "]")
            parts.append(f"{t} IN (SELECT value FROM json_each(?))")
        if nested:
            self.params.append(_dumps(nested))
            parts.append(
                f"({t} IN ('array', 'object') AND {x} IN (SELECT json(value) FROM json_each(?)))"
            )
        return "coalesce(" + " OR ".join(parts) + ", 0)" if parts else "0"

    def condition(self, c: Condition) -> str:
        p = _literal(sqlite_path(c.path))
        t = f"json_type(h.value, {p})"
        x = f"json_extract(h.value, {p})"
        if c.lookup == "eq":
            return self._eq(c.path, c.value)
        if c.lookup == "ne":
            return f"NOT {self._eq(c.path, c.value)}"
        if c.lookup == "in":
            assert isinstance(c.value, list)
            return self._in(t, x, c.value)
        if c.lookup == "isnull":
            test = f"({t} IS NULL OR {t} = 'null')"
            return test if c.value else f"NOT {test}"
        if c.lookup in _RANGE:
            kinds = "('integer', 'real')" if _is_number(c.value) else "('text')"
            self.params.append(c.value)
            return f"coalesce({t} IN {kinds} AND {x} {_RANGE[c.lookup]} ?, 0)"
        if c.lookup == "contains":
            assert isinstance(c.value, list)
            self.params.append(_dumps(c.value))
            kind = "CASE WHEN {0}.type IN ('integer', 'real') THEN 'n' ELSE {0}.type END"
            return (
                f"coalesce({t} = 'array' AND NOT EXISTS ("
                "SELECT 1 FROM json_each(?) q WHERE NOT EXISTS ("
                f"SELECT 1 FROM json_each(h.value, {p}) s "
                f"WHERE s.value = q.value AND {kind.format('s')} = {kind.format('q')})), 0)"
            )
        raise ValueError(f"unknown lookup {c.lookup!r}")

    def where(self, conditions: Sequence[Condition]) -> str:
        parts = [self.condition(c) for c in _flatten(conditions)]
        return " AND ".join(parts) if parts else "1"

    def order(self, order: Sequence[Order]) -> str:
        parts = []
        for o in order:
            p = _literal(sqlite_path(o.path))
            parts.append(f"json_extract(h.value, {p}) {'DESC' if o.descending else 'ASC'}")
        return ", ".join([*parts, "h.state_id"])


# --------------------------------------------------------------------------- PostgreSQL


def _number_text(value: object) -> str:
    """A number's exact text for ``::numeric`` (``repr``: the digits JSON stores, where a
    float parameter would be cast through 15 significant digits)."""
    return repr(value) if isinstance(value, float) else str(value)


def _pg_path(path: Sequence[str]) -> str:
    return "ARRAY[" + ", ".join(_literal(p, percent=True) for p in path) + "]::text[]"


class PostgresFilter:
    """Renders conditions over ``h.j`` (the value as jsonb) for PostgreSQL."""

    def __init__(self) -> None:
        self.params: list[Any] = []

    def _eq(self, path: Sequence[str], value: object) -> str:
        x = f"(h.j #> {_pg_path(path)})"
        t = f"jsonb_typeof({x})"
        if value is None:
            return f"coalesce({t} = 'null', false)"
        if isinstance(value, bool):
            return f"coalesce({t} = 'boolean' AND {x} = '{str(value).lower()}'::jsonb, false)"
        if _is_number(value):
            self.params.append(_number_text(value))
            return f"coalesce({t} = 'number' AND ({x} #>> '{{}}')::numeric = %s::numeric, false)"
        if isinstance(value, str):
            self.params.append(value)
            return f"coalesce({t} = 'string' AND ({x} #>> '{{}}') COLLATE \"C\" = %s, false)"
        self.params.append(_dumps(value))
        return f"coalesce({t} IN ('array', 'object') AND {x} = %s::jsonb, false)"

    def condition(self, c: Condition) -> str:
        x = f"(h.j #> {_pg_path(c.path)})"
        t = f"jsonb_typeof({x})"
        if c.lookup == "eq":
            return self._eq(c.path, c.value)
        if c.lookup == "ne":
            return f"NOT {self._eq(c.path, c.value)}"
        if c.lookup == "in":
            assert isinstance(c.value, list)
            if not c.value:
                return "false"
            # jsonb equality is _eq's: typed, numbers by value, strings by code
            # point, arrays and objects structurally. One parameter for any length.
            self.params.append(_dumps(c.value))
            return f"coalesce({x} IN (SELECT jsonb_array_elements(%s::jsonb)), false)"
        if c.lookup == "isnull":
            test = f"({x} IS NULL OR {t} = 'null')"
            return test if c.value else f"NOT {test}"
        if c.lookup in _RANGE:
            op = _RANGE[c.lookup]
            if _is_number(c.value):
                self.params.append(_number_text(c.value))
                return (
                    f"coalesce({t} = 'number' AND ({x} #>> '{{}}')::numeric {op} %s::numeric, "
                    "false)"
                )
            self.params.append(c.value)
            return (
                f"coalesce({t} = 'string' AND ({x} #>> '{{}}') COLLATE \"C\" {op} "
                '%s COLLATE "C", false)'
            )
        if c.lookup == "contains":
            self.params.append(_dumps(c.value))
            return f"coalesce({t} = 'array' AND {x} @> %s::jsonb, false)"
        raise ValueError(f"unknown lookup {c.lookup!r}")

    def where(self, conditions: Sequence[Condition]) -> str:
        parts = [self.condition(c) for c in _flatten(conditions)]
        return " AND ".join(parts) if parts else "true"

    def order(self, order: Sequence[Order]) -> str:
        # SQLite's order of json_extract values: NULL (missing or null), then
        # numbers (false/true as 0/1), then text; the same here, spelled out.
        parts = []
        for o in order:
            d = "DESC" if o.descending else "ASC"
            x = f"(h.j #> {_pg_path(o.path)})"
            t = f"jsonb_typeof({x})"
            parts.append(
                f"CASE {t} WHEN 'number' THEN 1 WHEN 'boolean' THEN 1 WHEN 'string' THEN 2 "
                f"WHEN 'null' THEN 0 ELSE (CASE WHEN {x} IS NULL THEN 0 ELSE 3 END) END {d}"
            )
            parts.append(
                f"CASE WHEN {t} = 'number' THEN ({x} #>> '{{}}')::numeric "
                f"WHEN {t} = 'boolean' THEN (CASE WHEN {x} = 'true'::jsonb THEN 1 ELSE 0 END) "
                f"END {d}"
            )
            parts.append(f"CASE WHEN {t} = 'string' THEN {x} #>> '{{}}' END COLLATE \"C\" {d}")
        return ", ".join([*parts, 'h.state_id COLLATE "C"'])
