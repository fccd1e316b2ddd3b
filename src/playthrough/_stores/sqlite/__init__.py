"""The embedded SQLite store: a file in WAL mode with durable commits, or memory.

A package: the database and its transactions (``_datastore``), the reads
(``_reader``), the log's writes (``_log``), the store with its lifecycle and
maintenance (``_store``), and every statement as a named constant (``_sql``).
"""

from __future__ import annotations

from ._sql import SCHEMA as _SCHEMA
from ._store import SQLiteStore

__all__ = ["_SCHEMA", "SQLiteStore"]
