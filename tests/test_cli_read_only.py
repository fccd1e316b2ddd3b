"""Read-only commands never create or migrate a store.

``playthrough verify`` on a PostgreSQL schema that does not exist used to
create it and report OK (green CI on nothing). Now a missing or empty store is
an error for verify unless ``--allow-empty``, and nothing is created.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from collections.abc import Iterator
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


# ---------------------------------------------------------------- the read commands

_READ_COMMANDS = [
    ["states", "{url}", "bank.Account"],
    ["events", "{url}"],
    ["info", "{url}", "bank.Account", "1"],
    ["followers", "{url}"],
    ["followers", "{url}", "--reset", "balances"],
    ["schema", "{url}"],
]


def _read(args: list[str], url: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, [a.format(url=url) for a in args] + APP[:2])
    return result.exit_code, result.output


@pytest.mark.postgres
@pytest.mark.parametrize("args", _READ_COMMANDS, ids=lambda a: " ".join(a[:1] + a[2:]))
def test_read_commands_on_a_missing_postgres_schema_create_nothing(
    pg_url: str, pg_schema: str, args: list[str]
) -> None:
    code, output = _read(args, f"{pg_url}?schema={pg_schema}")
    assert code == 1, output
    assert f"no playthrough store in schema '{pg_schema}'" in output
    assert not _schema_exists(pg_url, pg_schema)


@pytest.mark.parametrize("args", _READ_COMMANDS, ids=lambda a: " ".join(a[:1] + a[2:]))
def test_read_commands_on_a_sqlite_file_without_a_store_create_nothing(
    tmp_path: Path, args: list[str]
) -> None:
    path = tmp_path / "empty.db"
    sqlite3.connect(path).close()  # an empty file: no tables
    code, output = _read(args, f"sqlite:///{path}")
    assert code == 1 and "no playthrough store" in output, output
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT count(*) FROM sqlite_master").fetchone() == (0,)
    assert conn.execute("PRAGMA journal_mode").fetchone() == ("delete",)  # not even switched
    conn.close()


def test_a_missing_sqlite_file_is_not_created_by_create_false(tmp_path: Path) -> None:
    from playthrough._stores import SQLiteStore
    from playthrough._stores._base import NoStoreError

    path = tmp_path / "missing.db"
    with pytest.raises(NoStoreError, match="no such file"):
        SQLiteStore(str(path), create=False)
    with pytest.raises(NoStoreError, match="no such file"):
        Engine.open(f"sqlite:///{path}", create=False)
    assert list(tmp_path.iterdir()) == []


def _follower_names(url: str) -> list[str]:
    with Engine.open(url, create=False) as engine:
        return [f.name for f in engine.followers()]


def test_resetting_an_unknown_follower_is_an_error_not_a_phantom(tmp_path: Path) -> None:
    from playthrough.errors import NotFoundError
    from playthrough.examples.balances import OwnerBalances

    url = f"sqlite:///{tmp_path / 'bank.db'}"
    with Engine.open(url) as engine:
        engine.fire(AccountOpened(account_id=1, owner="ada"))
        engine.commit()
        engine.followers.run(OwnerBalances(), until_idle=True)
        with pytest.raises(NotFoundError, match=r"no follower named 'typo'.*followers: balances"):
            engine.followers.reset("typo")
    result = CliRunner().invoke(main, ["followers", url, "--reset", "balanse", *APP[:2]])
    assert result.exit_code == 1, result.output
    assert "no follower named 'balanse'" in result.output
    assert _follower_names(url) == ["balances"]
    apps = ["--app", "playthrough.examples.balances"]
    assert CliRunner().invoke(main, ["followers", url, "--reset", "balances", *apps]).exit_code == 0


@pytest.mark.postgres
def test_resetting_an_unknown_follower_on_postgres_is_an_error(pg_url: str, pg_schema: str) -> None:
    from playthrough.errors import NotFoundError

    with Engine.open(pg_url, schema=pg_schema) as engine:
        with pytest.raises(NotFoundError, match=r"no follower named 'typo'.*followers: none"):
            engine.followers.reset("typo")
        assert engine.followers() == []


# ---------------------------------------------------------------- read-only files

_READ_AS_USER = """
import sys
from playthrough import Engine
from playthrough.errors import StoreError
from playthrough.examples.bank import Account
url = sys.argv[1]
with Engine.open(url, create=False) as engine:
    print(engine.store.read_only, engine.head(), engine.load(Account, 1).owner)
    try:
        engine.store.rebuild_heads()
    except StoreError as exc:
        print("write refused:", "readonly" in str(exc))
try:
    Engine.open(url).close()
    print("writer: opened")  # the file says read-only; its first write will fail
except StoreError as exc:
    print("writer:", str(exc).rsplit("(", 1)[-1])
"""


def _run_unprivileged(args: list[str]) -> subprocess.CompletedProcess[str]:
    """Run ``args`` as a user the file permissions apply to (root ignores them)."""
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("running as root without setpriv: file permissions do not apply")
        args = [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", *args]
    return subprocess.run(args, capture_output=True, text=True, timeout=120, check=False)


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory other users can reach (pytest's tmp_path is private to its user)."""
    path = Path(tempfile.mkdtemp(prefix="pt-ro-"))
    path.chmod(0o755)
    yield path
    for sub in [path, *path.rglob("*")]:
        sub.chmod(0o777 if sub.is_dir() else 0o666)
    shutil.rmtree(path)


@pytest.mark.parametrize("folder_writable", [True, False], ids=["file-444", "dir-555"])
def test_a_read_only_sqlite_file_opens_with_create_false(
    shared_dir: Path, folder_writable: bool
) -> None:
    folder = shared_dir / "data"
    folder.mkdir()
    path = folder / "bank.db"
    with Engine.open(f"sqlite:///{path}") as engine:
        engine.fire(AccountOpened(account_id=1, owner="ada"))
        engine.commit()
    path.chmod(0o444)
    folder.chmod(0o777 if folder_writable else 0o555)
    url = f"sqlite:///{path}"
    done = _run_unprivileged([sys.executable, "-c", _READ_AS_USER, url])
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].split()[1:] == ["1", "ada"]
    assert lines[1] == "write refused: True"
    assert lines[2] == (
        "writer: opened"
        if folder_writable
        else "writer: a read-only file or directory opens with create=False, to read)"
    )
    cli = _run_unprivileged(
        [sys.executable, "-c", "from playthrough._cli import main; main()", "events", url, *APP[:2]]
    )
    assert cli.returncode == 0, cli.stderr
    assert "bank.AccountOpened(account_id=1, owner='ada')" in cli.stdout
