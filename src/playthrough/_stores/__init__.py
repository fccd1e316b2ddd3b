"""Stores: the contract (``_base``) and one module per backend.

``open_store(url)`` picks the backend from the URL scheme; the PostgreSQL
store is imported only when asked for, so SQLite users need no psycopg.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, urlsplit

from .._errors import StoreError
from ._base import (
    Condition,
    EventQuery,
    FollowerBatch,
    FollowerRow,
    FollowerTransaction,
    Link,
    NewEvent,
    Order,
    SnapshotRecord,
    StateInfoRow,
    Store,
    StoredEvent,
    StoreReader,
)
from .sqlite import SQLiteStore

__all__ = [
    "Condition",
    "EventQuery",
    "FollowerBatch",
    "FollowerRow",
    "FollowerTransaction",
    "Order",
    "StateInfoRow",
    "Link",
    "NewEvent",
    "SQLiteStore",
    "SnapshotRecord",
    "Store",
    "StoreReader",
    "StoredEvent",
    "open_store",
]


def open_store(url: str | None = None, **options: Any) -> Store:
    """Open the store a URL names.

    - ``None``, ``"sqlite://"`` or ``"sqlite:///:memory:"``: SQLite in memory
    - ``"sqlite:///relative/path.db"``, ``"sqlite:////absolute/path.db"``: a SQLite file;
      ``?synchronous=normal`` trades durability on power loss for speed
    - ``"postgresql://user@host:5432/db?schema=name"``: PostgreSQL (``playthrough[postgres]``)
    """
    if url is None:
        return SQLiteStore(":memory:", **options)
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme == "sqlite":
        if parts.netloc:
            raise StoreError(
                f"bad SQLite URL {url!r}: use sqlite:///relative.db or sqlite:////abs/path.db"
            )
        path = parts.path[1:] if parts.path.startswith("/") else parts.path
        query = dict(parse_qsl(parts.query))
        if "synchronous" in query:
            options.setdefault("synchronous", query.pop("synchronous"))
        if query:
            raise StoreError(f"unknown SQLite URL options: {', '.join(sorted(query))}")
        return SQLiteStore(path or ":memory:", **options)
    if scheme in ("postgresql", "postgres"):
        try:
            from .postgres import PostgresStore
        except ImportError as exc:
            raise StoreError(
                "the PostgreSQL store needs psycopg: pip install 'playthrough[postgres]'"
            ) from exc
        return PostgresStore(url, **options)
    raise StoreError(
        f"unknown store URL scheme {parts.scheme!r} in {url!r}: use sqlite or postgresql"
    )
