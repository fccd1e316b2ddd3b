"""``playthrough.connect``: open a store once per process, share it between engines."""

from __future__ import annotations

from typing import Any

from ._stores import Store, open_store


def connect(url: str | None = None, **options: Any) -> Store:
    """Open the store a URL names, once per process; engines borrow it.

    Opening connects, sizes the PostgreSQL pool (``max_size=``) and checks or
    upgrades the schema; an engine made from the store afterwards
    (``store.engine()`` or ``Engine(store)``) costs microseconds and no round
    trip, and closing it leaves the store open. The store is safe to share
    across threads. URLs: ``"sqlite://"`` (SQLite in memory), ``sqlite:///path.db``,
    ``postgresql://user@host:5432/db?schema=name``; ``None`` reads ``PLAYTHROUGH_URL``
    (unset: ConfigurationError). Close it at shutdown.
    """
    return open_store(url, **options)
