"""playthrough, natively async: the same engine, awaited.

::

    import playthrough.aio

    store = await playthrough.aio.connect(url)      # once, e.g. in the app's lifespan
    async with store.engine() as engine:            # commits at the end, discards on error
        await engine.fire(Deposited(account_id=1, amount=100))
        account = await engine.load(Account, 1)
    await store.close()

PostgreSQL runs on psycopg's async connections and pool; SQLite, which is
embedded, on one thread per store. The engine's core (planner, player, codec,
checks) is the sync engine's own, driven through its I/O-free seam, so both
engines give the same states, errors and outcomes.
"""

from ._engine import AsyncEngine
from ._store import AsyncSQLiteStore, AsyncStore, connect

__all__ = ["AsyncEngine", "AsyncSQLiteStore", "AsyncStore", "connect"]
