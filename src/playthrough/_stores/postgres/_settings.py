"""Reading a PostgreSQL store's URL and options into what its connections need."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import attrs
from psycopg.conninfo import conninfo_to_dict

from ... import _options
from ..._errors import StoreError
from ..._urls import parse_store_url


def int32(value: int) -> int:
    return value - (1 << 32) if value >= (1 << 31) else value


def one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


@attrs.frozen
class Settings:
    conninfo: str  # for libpq, without ``schema``
    schema: str
    url: str  # shown: without password
    where: str  # "PostgreSQL at host:port, database 'name'", for messages
    password: str
    connect_kwargs: dict[str, Any]


def settings(
    url: str, schema: str | None, min_size: int, max_size: int, connect_timeout: int
) -> Settings:
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
    return Settings(
        conninfo=parsed.conninfo,
        schema=name,
        url=shown,
        where=where,
        password=str(params.get("password") or ""),
        connect_kwargs=kwargs,
    )
