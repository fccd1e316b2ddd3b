"""The PostgreSQL store: psycopg 3 over a small connection pool, one schema per store.

A package: the settings (``_settings``), the database, its pool and
transactions (``_datastore``), the reads (``_reader``), the log's writes and
the append (``_log``), the store with its lifecycle and maintenance
(``_store``), and every statement as a named constant (``_sql``).
"""

from __future__ import annotations

from ._sql import LOCK_APPEND as _LOCK_APPEND
from ._sql import RENDERED_MAX
from ._sql import SCHEMA as _SCHEMA
from ._store import PostgresStore

__all__ = ["RENDERED_MAX", "_LOCK_APPEND", "_SCHEMA", "PostgresStore"]
