"""``playthrough.connect``: open a store once per process, share it between engines.

The storage layer never knows the Engine: what makes engines over a store is
the :class:`Connection` that ``connect`` returns, at the public surface.
"""

from __future__ import annotations

from types import TracebackType
from typing import Any

from ._engine import Engine
from ._stores import Store, open_store


class Connection:
    """A store opened once per process, and the engines made over it.

    ``connection.engine()`` is a new engine over the store (cheap: no
    connection, no schema check); use one per request or thread. ``with
    connection.engine() as engine:`` commits on a clean exit and discards on
    an error, and closing the engine leaves the store open. ``Engine(connection)``
    is the same. The store's own methods and attributes (``reader()``, ``url``,
    ``statements``...) read through (``connection.store`` is the store itself).
    Close the connection at shutdown: that closes the store.
    """

    __slots__ = ("store",)

    def __init__(self, store: Store) -> None:
        self.store = store

    def engine(self, **options: Any) -> Engine:
        """A new engine over this store; ``options`` are those of :class:`Engine`."""
        return Engine(self.store, **options)

    @property
    def url(self) -> str:
        """Where the store lives, without credentials."""
        return self.store.url

    def close(self) -> None:
        """Close the store (its connections); engines over it stop working."""
        self.store.close()

    def __getattr__(self, name: str) -> Any:
        if name == "store":  # not set yet (a copy being built): no recursion
            raise AttributeError(name)
        return getattr(self.store, name)

    def __enter__(self) -> Connection:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Connection {self.store.url}>"


def connect(url: str | None = None, **options: Any) -> Connection:
    """Open the store a URL names, once per process; engines borrow it.

    Opening connects, sizes the PostgreSQL pool (``max_size=``) and checks or
    upgrades the schema; an engine made from it afterwards
    (``connection.engine()`` or ``Engine(connection)``) costs microseconds and
    no round trip, and closing it leaves the store open. The store is safe to
    share across threads. URLs: ``"sqlite://"`` (SQLite in memory), ``sqlite:///path.db``,
    ``postgresql://user@host:5432/db?schema=name``; ``None`` reads ``PLAYTHROUGH_URL``
    (unset: ConfigurationError). Close it at shutdown.
    """
    return Connection(open_store(url, **options))
