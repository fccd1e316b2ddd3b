"""The SQLite store against the store contract, in memory and as a WAL file."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from playthrough._stores import SQLiteStore, Store, open_store
from playthrough.errors import ConfigurationError, StoreError
from playthrough.testing import StoreContract


class TestSQLiteMemoryStore(StoreContract):
    def make_store(self) -> Store:
        return SQLiteStore(":memory:")


class TestSQLiteFileStore(StoreContract):
    @pytest.fixture(autouse=True)
    def _dir(self, tmp_path: Path) -> None:
        self.path = str(tmp_path / "log.db")

    def make_store(self) -> Store:
        return SQLiteStore(self.path)

    def reopen_store(self, store: Store) -> Store | None:
        return SQLiteStore(self.path)

    def bump_schema_version(self, store: Store) -> Callable[[], Store]:
        conn = sqlite3.connect(self.path)
        conn.execute("UPDATE pt_meta SET value = '999' WHERE key = 'schema_version'")
        conn.commit()
        conn.close()
        return lambda: SQLiteStore(self.path)

    def test_file_is_wal_and_durable(self) -> None:
        store = self.store
        conn = sqlite3.connect(self.path)
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        conn.close()
        assert isinstance(store, SQLiteStore)
        assert store._conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def test_open_store_urls(tmp_path: Path) -> None:
    assert open_store("sqlite://").url == "sqlite://"
    assert open_store("sqlite://").url == "sqlite://"
    path = tmp_path / "x.db"
    store = open_store(f"sqlite:///{path}")
    assert store.url == f"sqlite:///{path}"
    store.close()
    with pytest.raises(StoreError, match="unknown store URL scheme"):
        open_store("mysql://x")
    with pytest.raises(ConfigurationError, match="unknown SQLite URL option: cache"):
        open_store("sqlite:///x.db?cache=shared")


def test_not_a_database_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "junk.db"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match=r"junk\.db"):
        SQLiteStore(str(path))


def test_reads_by_key_search_the_primary_keys_never_scan() -> None:
    """Cost must not grow with the number of states in the store: every statement a
    reader sends for a set of keys is planned as an index search, not a table scan."""
    from playthrough._model import StateKey
    from playthrough._stores import SnapshotRecord

    store = SQLiteStore(":memory:")
    keys = [StateKey("Acct", str(i)) for i in range(50)]
    store.write_snapshots([SnapshotRecord(k, 1, 1, "{}") for k in keys], keep=3)
    sent: list[str] = []
    store._conn.set_trace_callback(sent.append)
    with store.reader() as r:
        r.state_heads(keys[:5])
        r.snapshots(keys[:5], 10)
        r.links({k: (0, 10) for k in keys[:5]})
    store._conn.set_trace_callback(None)
    selects = [s for s in sent if "SELECT" in s]
    assert len(selects) == 3
    for sql in selects:
        plan = " | ".join(row[3] for row in store._conn.execute("EXPLAIN QUERY PLAN " + sql))
        for table in ("pt_heads", "pt_snapshots", "pt_links"):
            assert f"SCAN {table}" not in plan, f"{table} is scanned: {plan}\n{sql}"


def test_parse_store_url() -> None:
    from playthrough._stores import parse_store_url

    for memory in ("sqlite://", "sqlite:///:memory:"):
        parsed = parse_store_url(memory)
        assert (parsed.kind, parsed.path, parsed.is_memory) == ("sqlite", ":memory:", True)
        assert parsed.redacted() == "sqlite://"
    rel = parse_store_url("sqlite:///data/app.db?synchronous=normal")
    assert (rel.path, rel.is_memory, rel.options) == (
        "data/app.db",
        False,
        {"synchronous": "normal"},
    )
    assert rel.redacted() == "sqlite:///data/app.db?synchronous=normal"
    assert parse_store_url("sqlite:////abs/app.db").path == "/abs/app.db"
    with pytest.raises(StoreError, match="bad SQLite URL"):
        parse_store_url("sqlite://host/x.db")
    with pytest.raises(ConfigurationError, match="unknown SQLite URL option: cache"):
        parse_store_url("sqlite:///x.db?cache=shared")
    with pytest.raises(StoreError, match="unknown store URL scheme 'mysql'"):
        parse_store_url("mysql://x")
    # No error repeats a password the URL carries, wherever the URL went wrong.
    for bad, problem in [
        ("mysql://ann:S3cret@db/x?password=S3cret", "unknown store URL scheme 'mysql'"),
        ("sqlite://ann:S3cret@host/x.db", "bad SQLite URL 'sqlite://host/x.db'"),
        ("postgresql://ann:S3cret@[::1/x", "malformed store URL"),
    ]:
        with pytest.raises(StoreError, match=re.escape(problem)) as caught:
            parse_store_url(bad)
        assert "S3cret" not in str(caught.value)

    pg = parse_store_url("postgresql://ann:s%40cret@db.example:6432/shop?schema=s1&sslmode=require")
    assert (pg.kind, pg.host, pg.port, pg.dbname, pg.user, pg.schema) == (
        "postgresql",
        "db.example",
        6432,
        "shop",
        "ann",
        "s1",
    )
    assert pg.password == "s@cret" and not pg.is_memory and pg.path is None
    assert pg.conninfo == "postgresql://ann:s%40cret@db.example:6432/shop?sslmode=require"
    assert pg.redacted() == "postgresql://ann@db.example:6432/shop?schema=s1&sslmode=require"
    assert "cret" not in repr(pg)
    bare = parse_store_url("postgres:///?host=/run/pg&password=pw&dbname=d")
    assert (bare.host, bare.port, bare.dbname, bare.password, bare.schema) == (
        "/run/pg",
        None,
        "d",
        "pw",
        None,
    )
    assert "pw" not in bare.redacted()
    with pytest.raises(StoreError, match="more than one schema"):
        parse_store_url("postgresql://h/d?schema=a&schema=b")
    with pytest.raises(StoreError, match="bad port"):
        parse_store_url("postgresql://h:notaport/d")
