"""Stores: the contract (``_base``) and one module per backend.

``open_store(url)`` picks the backend from the URL scheme; the PostgreSQL
store is imported only when asked for, so SQLite users need no psycopg.
:func:`parse_store_url` (in ``playthrough._urls``, re-exported here) is the one
parser of store URLs.
"""

from __future__ import annotations

import inspect
from typing import Any, Literal

from .. import _telemetry
from .._errors import ConfigurationError, StoreError
from .._urls import (
    StoreURL,
    parse_store_url,
    resolve_store_url,
    sqlite_url,
)
from ._base import (
    Condition,
    EventQuery,
    FollowerBatch,
    FollowerRow,
    FollowerTransaction,
    ImportedEvent,
    ImportPage,
    Link,
    LinkedEntry,
    LogEntry,
    NewEvent,
    Order,
    SealedEvent,
    SnapshotRecord,
    StateInfoRow,
    Store,
    StoredEvent,
    StoreReader,
    TransferTables,
    TypeVersions,
)
from .sqlite import SQLiteStore

__all__ = [
    "Condition",
    "EventQuery",
    "FollowerBatch",
    "FollowerRow",
    "FollowerTransaction",
    "ImportPage",
    "ImportedEvent",
    "Link",
    "LinkedEntry",
    "LogEntry",
    "NewEvent",
    "Order",
    "SQLiteStore",
    "SealedEvent",
    "SnapshotRecord",
    "StateInfoRow",
    "Store",
    "StoreReader",
    "StoreURL",
    "StoredEvent",
    "TransferTables",
    "TypeVersions",
    "open_store",
    "parse_store_url",
    "resolve_store_url",
    "sqlite_url",
    "store_options",
]


def store_options(kind: Literal["sqlite", "postgresql"]) -> tuple[str, ...]:
    """The keyword options the store of this kind takes (from its constructor)."""
    if kind == "sqlite":
        cls: type[Store] = SQLiteStore
    else:
        try:
            from .postgres import PostgresStore
        except ImportError:
            return ()
        cls = PostgresStore
    return tuple(
        name
        for name, p in inspect.signature(cls.__init__).parameters.items()
        if p.kind is inspect.Parameter.KEYWORD_ONLY
    )


def open_store(url: str | None = None, **options: Any) -> Store:
    """Open the store a URL names (see :func:`parse_store_url` for the URLs).

    ``None`` reads ``PLAYTHROUGH_URL``; an option the store does not take is a
    ConfigurationError listing those it does.
    """
    url = resolve_store_url(url)
    parsed = parse_store_url(url)
    unknown = sorted(set(options) - set(store_options(parsed.kind)))
    if unknown:
        raise ConfigurationError(
            f"unknown option{'s' if len(unknown) > 1 else ''} {', '.join(unknown)} for the "
            f"{parsed.kind} store; it takes: {', '.join(store_options(parsed.kind))}"
        )
    if parsed.kind == "sqlite":
        assert parsed.path is not None
        for name, value in parsed.options.items():
            options.setdefault(name, value)
        store: Store = SQLiteStore(parsed.path, **options)
    else:
        try:
            from .postgres import PostgresStore
        except ImportError as exc:
            raise StoreError(
                "the PostgreSQL store needs psycopg: pip install 'playthrough[postgres]'"
            ) from exc
        store = PostgresStore(url, **options)
    _telemetry.watch(store)  # the observable gauges read it (backlogs, lag)
    return store
