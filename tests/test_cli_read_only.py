"""Issue 9, item 14: read-only commands never create or migrate a store.

``playthrough verify`` on a PostgreSQL schema that does not exist used to
create it and report OK (green CI on nothing). Now a missing or empty store is
an error for verify unless ``--allow-empty``, and nothing is created.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner

from playthrough import Engine
from playthrough._cli import main
from playthrough.examples.bank import AccountOpened

from .test_schema_migration import _old_sqlite

APP = ["--app", "playthrough.examples.bank", "--no-subprocess"]


def _schema_exists(pg_url: str, schema: str) -> bool:
    with psycopg.connect(pg_url) as conn:
        row = conn.execute(
            "SELECT 1 FROM information_schema.schemata WHERE schema_name = %s", (schema,)
        ).fetchone()
    return row is not None


@pytest.mark.postgres
def test_verify_of_a_missing_postgres_schema_fails_and_creates_nothing(
    pg_url: str, pg_schema: str
) -> None:
    url = f"{pg_url}?schema={pg_schema}"
    result = CliRunner().invoke(main, ["verify", url, *APP])
    assert result.exit_code == 1, result.output
    assert "no playthrough store" in result.output
    assert not _schema_exists(pg_url, pg_schema)
    allowed = CliRunner().invoke(main, ["verify", url, *APP, "--allow-empty"])
    assert allowed.exit_code == 0, allowed.output
    assert not _schema_exists(pg_url, pg_schema)


def test_verify_of_an_empty_store_fails_unless_allowed(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    Engine.open(url).close()  # a store with no events
    result = CliRunner().invoke(main, ["verify", url, *APP])
    assert result.exit_code == 1 and "is empty" in result.output
    assert CliRunner().invoke(main, ["verify", url, *APP, "--allow-empty"]).exit_code == 0


def test_verify_of_a_sqlite_file_that_is_no_store_creates_no_tables(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE unrelated (x)")
    conn.commit()
    conn.close()
    result = CliRunner().invoke(main, ["verify", f"sqlite:///{path}", *APP])
    assert result.exit_code == 1 and "no playthrough store" in result.output
    conn = sqlite3.connect(path)
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    conn.close()
    assert tables == {"unrelated"}


def test_verify_never_migrates_an_old_store(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    _old_sqlite(path)
    args = ["verify", f"sqlite:///{path}", "--app", "tests.test_commit_outcome", "--no-subprocess"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2 and "open it once with a writer" in result.output
    conn = sqlite3.connect(path)
    version = conn.execute("SELECT value FROM pt_meta WHERE key = 'schema_version'").fetchone()
    conn.close()
    assert version == ("1",)
    Engine.open(f"sqlite:///{path}").close()  # a writer upgrades it; then verify runs
    assert CliRunner().invoke(main, args).exit_code == 0


def test_handlers_never_creates_a_store(tmp_path: Path) -> None:
    path = tmp_path / "none.db"
    sqlite3.connect(path).close()  # an empty file
    result = CliRunner().invoke(main, ["handlers", f"sqlite:///{path}"])
    assert result.exit_code == 1 and "no playthrough store" in result.output
    with Engine.open(f"sqlite:///{path}") as engine:  # a writer may create it
        engine.fire(AccountOpened(account_id=1, owner="ada"))
        engine.commit()


@pytest.mark.parametrize("form", ["url", "path"])
def test_verify_of_a_missing_sqlite_file_exits_0_with_allow_empty(
    tmp_path: Path, form: str
) -> None:
    # The help promised it; a missing file was a usage error (exit 2) all the same.
    path = tmp_path / "missing.db"
    target = f"sqlite:///{path}" if form == "url" else str(path)
    refused = CliRunner().invoke(main, ["verify", target, *APP])
    assert refused.exit_code == 2, refused.output
    allowed = CliRunner().invoke(main, ["verify", target, *APP, "--allow-empty"])
    assert allowed.exit_code == 0, allowed.output
    assert "no store there, nothing to check" in allowed.output
    assert not path.exists()
