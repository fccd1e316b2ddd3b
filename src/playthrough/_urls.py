"""Store URLs: the one parser (:func:`parse_store_url`) and the one builder (:func:`sqlite_url`).

Everything that reads a store URL goes through :func:`parse_store_url`: opening
a store, the engine's option check, the CLI, the pytest plugin. Its errors
never repeat a password the URL carries, and :func:`shown_url` is the URL as
every message shows it.
"""

from __future__ import annotations

import os
from typing import Literal
from urllib.parse import SplitResult, parse_qsl, unquote, urlencode, urlsplit, urlunsplit

import attrs

from . import _options
from ._errors import ConfigurationError, StoreError

__all__ = [
    "MEMORY",
    "URL_VARIABLE",
    "StoreURL",
    "parse_store_url",
    "resolve_store_url",
    "shown_url",
    "sqlite_url",
]

MEMORY = ":memory:"

#: The environment variable ``Engine.open()`` reads when it is given no URL.
URL_VARIABLE = "PLAYTHROUGH_URL"

_SCHEMES = {
    "sqlite": "sqlite",
    "postgresql": "postgresql",
    "postgres": "postgresql",
    # SQLAlchemy style: the driver after "+"; psycopg (3) is the one the store uses.
    "postgresql+psycopg": "postgresql",
    "postgres+psycopg": "postgresql",
}


@attrs.frozen
class StoreURL:
    """A store URL taken apart (see :func:`parse_store_url`).

    SQLite: ``path`` (a file name, or ``":memory:"``) and ``options``
    (``synchronous``). PostgreSQL: ``host``, ``port``, ``dbname``, ``user`` and
    ``schema`` as the URL gives them (None: libpq's default), ``conninfo`` (the
    URL for libpq, without ``schema``). ``redacted()`` is the URL to show.
    """

    kind: Literal["sqlite", "postgresql"]
    path: str | None = None
    options: dict[str, str] = attrs.field(factory=dict)
    host: str | None = None
    port: int | None = None
    dbname: str | None = None
    user: str | None = None
    schema: str | None = None
    conninfo: str = attrs.field(default="", repr=False)
    password: str | None = attrs.field(default=None, repr=False)
    _shown: str = attrs.field(default="", repr=False, alias="shown")

    @property
    def is_memory(self) -> bool:
        return self.kind == "sqlite" and self.path == MEMORY

    def redacted(self) -> str:
        """The URL without any password; opening it opens the same store."""
        return self._shown


def resolve_store_url(url: str | None) -> str:
    """The URL to open: ``url``, or when it is None the ``PLAYTHROUGH_URL`` variable.

    Neither is a ConfigurationError: an in-memory store is never opened by
    accident (its events would vanish with the process); ask for one with
    ``"sqlite://"``.
    """
    if url is not None:
        return url
    found = os.environ.get(URL_VARIABLE, "").strip()
    if not found:
        raise ConfigurationError(
            f"no store URL given and ${URL_VARIABLE} is not set: pass one "
            '(Engine.open("sqlite:///app.db"), "postgresql://user@host/db") or set '
            f'{URL_VARIABLE}; for an in-memory store say so with "sqlite://"'
        )
    return found


def parse_store_url(url: str | None) -> StoreURL:
    """Parse a store URL; raise StoreError naming what is wrong with it.

    ``None`` reads ``PLAYTHROUGH_URL`` (see :func:`resolve_store_url`).

    - ``"sqlite://"`` or ``"sqlite:///:memory:"``: SQLite in memory
    - ``"sqlite:///relative/path.db"``, ``"sqlite:////absolute/path.db"``: a SQLite file;
      ``?synchronous=normal`` trades durability on power loss for speed
    - ``"postgresql://user@host:5432/db?schema=name"`` (or ``postgres://``, or
      SQLAlchemy's ``postgresql+psycopg://``): PostgreSQL; other query options go to libpq
    """
    url = resolve_store_url(url)
    try:
        parts = urlsplit(url)
    except ValueError as exc:  # "Invalid IPv6 URL": the text itself is never repeated
        raise StoreError(f"malformed store URL: {exc}") from None
    kind = _SCHEMES.get(parts.scheme.lower())
    if kind == "sqlite":
        return _parse_sqlite(url)
    if kind == "postgresql":
        # libpq knows postgresql:// and postgres:// only: drop a "+driver" suffix.
        return _parse_postgres(
            "postgresql" + url[len(parts.scheme) :] if "+" in parts.scheme else url
        )
    raise StoreError(
        f"unknown store URL scheme {parts.scheme!r} in {_without_password(parts)!r}: use "
        "sqlite, postgresql or postgresql+psycopg"
    )


_SQLITE_URL_OPTIONS = ("synchronous",)


def _parse_sqlite(url: str) -> StoreURL:
    parts = urlsplit(url)
    if parts.netloc:
        raise StoreError(
            f"bad SQLite URL {_without_password(parts)!r}: use sqlite:///relative.db or "
            "sqlite:////abs/path.db"
        )
    if parts.path in ("", "/:memory:"):  # "sqlite://": memory, asked for in so many words
        path = MEMORY
    else:  # "sqlite:///" is an empty path (an unset variable), never memory
        path = _options.sqlite_path(parts.path[1:] if parts.path.startswith("/") else parts.path)
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    options = {k: query.pop(k) for k in _SQLITE_URL_OPTIONS if k in query}
    _options.unknown("SQLite", list(query), _SQLITE_URL_OPTIONS)
    if "synchronous" in options:
        _options.synchronous(options["synchronous"])
    shown = sqlite_url(path)
    if options:
        shown += "?" + urlencode(options)
    return StoreURL("sqlite", path, options, shown=shown)


def _parse_postgres(url: str) -> StoreURL:
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    schemas = [v for k, v in query if k == "schema"]
    if len(schemas) > 1:
        raise StoreError("the URL names more than one schema")
    for schema in schemas:
        _options.schema_name(schema)
    given = dict(query)  # libpq: a query parameter overrides the URL's own part
    try:
        port_text = given.get("port") or (str(parts.port) if parts.port else None)
        port = int(port_text) if port_text else None
    except ValueError as exc:
        raise StoreError(f"bad port in PostgreSQL URL: {exc}") from None
    password = given.get("password") or (unquote(parts.password) if parts.password else None)
    userinfo, at, hostport = parts.netloc.rpartition("@")
    netloc = (userinfo.partition(":")[0] + at + hostport) if at else hostport
    return StoreURL(
        "postgresql",
        host=given.get("host") or (unquote(parts.hostname) if parts.hostname else None),
        port=port,
        dbname=given.get("dbname") or (unquote(parts.path[1:]) or None),
        user=given.get("user") or (unquote(parts.username) if parts.username else None),
        schema=schemas[0] if schemas else None,
        conninfo=urlunsplit(
            parts._replace(query=urlencode([q for q in query if q[0] != "schema"]))
        ),
        password=password,
        shown=urlunsplit(
            parts._replace(netloc=netloc, query=urlencode([q for q in query if q[0] != "password"]))
        ),
    )


def _without_password(parts: SplitResult) -> str:
    """A URL that did not parse as a store URL, for its error: user info and query dropped."""
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=host, query=""))


def sqlite_url(path: str | os.PathLike[str]) -> str:
    """The URL of a SQLite file (``":memory:"``: in memory); the one place one is built."""
    text = os.fspath(path)
    return "sqlite://" if text == MEMORY else f"sqlite:///{text}"


def shown_url(text: str) -> str:
    """The URL as every message shows it: without a password, wherever the URL put one.

    A URL that does not parse is not shown at all (showing it could show a password).
    """
    try:
        return parse_store_url(text).redacted()
    except (StoreError, ConfigurationError):
        return "(the DATABASE_URL given)"
