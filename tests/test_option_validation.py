"""Every option is checked before anything is opened: a bad value is a ConfigurationError.

A value that silently meant something else lost data: ``sqlite:///`` (an unset
variable in an f-string) opened an in-memory store whose commits vanished,
``synchronous="ful"`` meant NORMAL, ``?schema=`` meant ``public``,
``connect_timeout=0`` waited forever.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from playthrough import Engine, connect
from playthrough._stores import SQLiteStore, parse_store_url
from playthrough.errors import ConfigurationError


@pytest.mark.parametrize("url", ["sqlite:///", "sqlite:///?synchronous=FULL", "sqlite:///  "])
def test_an_empty_sqlite_path_is_refused_not_memory(url: str) -> None:
    with pytest.raises(ConfigurationError, match="empty SQLite path"):
        parse_store_url(url)
    with pytest.raises(ConfigurationError, match="empty SQLite path"):
        Engine.open(url)


@pytest.mark.parametrize("path", ["", " "])
def test_an_empty_sqlite_path_is_refused_by_the_store(path: str) -> None:
    with pytest.raises(ConfigurationError, match="empty SQLite path"):
        SQLiteStore(path)


def test_memory_is_still_there_when_asked_for() -> None:
    for url in ("sqlite://", "sqlite:///:memory:"):
        assert parse_store_url(url).is_memory
        with Engine.open(url) as engine:
            assert engine.head() == 0


@pytest.mark.parametrize("bad", ["ful", "bogus", "true", "1", "", "FULL;", None, 2])
def test_synchronous_takes_only_sqlite_levels(tmp_path: Path, bad: Any) -> None:
    with pytest.raises(ConfigurationError, match="synchronous must be one of OFF, NORMAL"):
        SQLiteStore(str(tmp_path / "a.db"), synchronous=bad)
    with pytest.raises(ConfigurationError, match="synchronous"):
        Engine.open(f"sqlite:///{tmp_path / 'a.db'}", synchronous=bad)
    assert not (tmp_path / "a.db").exists()  # refused before anything was created


@pytest.mark.parametrize("bad", ["ful", "bogus", "true", ""])
def test_synchronous_in_the_url_takes_only_sqlite_levels(tmp_path: Path, bad: str) -> None:
    url = f"sqlite:///{tmp_path / 'a.db'}?synchronous={bad}"
    with pytest.raises(ConfigurationError, match="synchronous must be one of"):
        Engine.open(url)
    assert not (tmp_path / "a.db").exists()


@pytest.mark.parametrize(("given", "level"), [("off", 0), ("Normal", 1), ("FULL", 2), ("extra", 3)])
def test_synchronous_levels_in_any_case(tmp_path: Path, given: str, level: int) -> None:
    for store in (
        SQLiteStore(str(tmp_path / "k.db"), synchronous=given),
        connect(f"sqlite:///{tmp_path / 'u.db'}?synchronous={given}").store,
    ):
        assert isinstance(store, SQLiteStore)
        assert store._conn.execute("PRAGMA synchronous").fetchone()[0] == level
        store.close()


@pytest.mark.parametrize("bad", [-1, -0.5, "soon", True, float("nan")])
def test_busy_timeout_must_be_a_number_of_seconds_at_least_0(tmp_path: Path, bad: Any) -> None:
    with pytest.raises(ConfigurationError, match="busy_timeout"):
        Engine.open(f"sqlite:///{tmp_path / 'a.db'}", busy_timeout=bad)
    assert not (tmp_path / "a.db").exists()


def test_busy_timeout_0_means_do_not_wait(tmp_path: Path) -> None:
    with Engine.open(f"sqlite:///{tmp_path / 'a.db'}", busy_timeout=0) as engine:
        assert engine.head() == 0


@pytest.mark.parametrize(
    ("option", "bad"),
    [
        ("snapshot_every", 0),
        ("snapshot_every", -1),
        ("snapshot_every", 1.5),
        ("snapshot_every", "10"),
        ("max_states", 0),
        ("max_states", -3),
        ("snapshot_history", 0),
        ("snapshot_after_events", -1),
        ("max_event_bytes", 0),
    ],
)
def test_engine_options_are_checked(tmp_path: Path, option: str, bad: Any) -> None:
    with pytest.raises(ConfigurationError, match=f"{option} must be"):
        Engine(SQLiteStore(), **{option: bad})
    with pytest.raises(ConfigurationError, match=f"{option} must be"):
        Engine.open(f"sqlite:///{tmp_path / 'a.db'}", **{option: bad})
    assert not (tmp_path / "a.db").exists()  # refused before the store was opened


def test_engine_options_at_their_bounds_are_accepted() -> None:
    store = SQLiteStore()
    engine = Engine(store, snapshot_every=1, max_states=1, snapshot_history=1)
    assert (engine.coordinator.every, engine.max_states) == (1, 1)
    assert Engine(store, snapshot_every=None, max_states=None).max_states is None


@pytest.mark.parametrize(
    ("option", "good", "bad"),
    [
        ("max_states", 1, True),
        ("snapshot_every", 1, True),
        ("snapshot_history", 3, 3.0),
        ("max_event_bytes", 1, True),
        ("snapshot_after_events", 0, False),
    ],
)
def test_a_value_equal_to_one_accepted_before_is_still_checked(
    option: str, good: Any, bad: Any
) -> None:
    """Good option sets are remembered by type and value: ``True == 1`` is no pass."""
    store = SQLiteStore()
    for _ in range(2):
        Engine(store, **{option: good}).close()
        with pytest.raises(ConfigurationError, match=f"{option} must be"):
            Engine(store, **{option: bad})


def test_an_unhashable_option_is_refused_not_a_type_error() -> None:
    with pytest.raises(ConfigurationError, match="max_states must be an integer"):
        Engine(SQLiteStore(), max_states=[1])  # type: ignore[arg-type]


def test_an_unknown_sqlite_url_option_lists_the_valid_ones() -> None:
    with pytest.raises(ConfigurationError, match=r"unknown SQLite URL option: cache.*synchronous"):
        parse_store_url("sqlite:///x.db?cache=shared")


@pytest.mark.parametrize("url", ["postgresql://u@h/db?schema=", "postgresql://u@h/db?schema=%20"])
def test_an_empty_schema_in_the_url_is_refused_not_public(url: str) -> None:
    with pytest.raises(ConfigurationError, match="empty schema name"):
        parse_store_url(url)
    with pytest.raises(ConfigurationError, match="empty schema name"):
        Engine.open(url)  # refused before any connection is tried


@pytest.mark.parametrize(
    ("option", "bad"),
    [
        ("schema", ""),
        ("connect_timeout", 0),
        ("connect_timeout", -5),
        ("connect_timeout", 2.5),
        ("pool_timeout", 0),
        ("lock_timeout", 0),
        ("lock_timeout", -1),
        ("max_size", 0),
        ("min_size", -1),
    ],
)
def test_postgres_options_are_checked_before_connecting(option: str, bad: Any) -> None:
    # The host does not exist: only a check made before connecting can answer.
    with pytest.raises(ConfigurationError, match=option):
        Engine.open("postgresql://nobody@host.invalid/db", **{option: bad})


@pytest.mark.parametrize("bad", ["0", "-1", "soon"])
def test_connect_timeout_in_the_url_must_be_positive(bad: str) -> None:
    with pytest.raises(ConfigurationError, match="connect_timeout"):
        Engine.open(f"postgresql://nobody@host.invalid/db?connect_timeout={bad}")


def test_a_pool_smaller_than_its_minimum_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="min_size=3 is larger than max_size=2"):
        Engine.open("postgresql://nobody@host.invalid/db", min_size=3, max_size=2)


@pytest.mark.postgres
def test_valid_postgres_options_open(pg_url: str, pg_schema: str) -> None:
    with Engine.open(
        f"{pg_url}?schema={pg_schema}&connect_timeout=3", connect_timeout=1, lock_timeout=0.5
    ) as engine:
        assert engine.head() == 0


@pytest.mark.parametrize(
    "url", ["sqlite:///", "sqlite:///app.db?synchronous=ful", "postgresql://u@h/db?schema="]
)
def test_the_cli_names_a_bad_url_as_a_usage_error(url: str) -> None:
    from click.testing import CliRunner

    from playthrough._cli import main

    result = CliRunner().invoke(main, ["events", url])
    assert result.exit_code == 2, result.output
    assert "Invalid value for DATABASE_URL" in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize("name", ["x" * 64, "a\x00b"])
def test_a_schema_name_postgres_cannot_hold_is_refused(name: str) -> None:
    with pytest.raises(ConfigurationError, match="at most 63 bytes, no NUL"):
        Engine.open("postgresql://nobody@host.invalid/db", schema=name)


def test_a_file_that_is_no_database_is_named_with_create_false(tmp_path: Path) -> None:
    from playthrough.errors import StoreError

    path = tmp_path / "junk.db"
    path.write_bytes(b"not sqlite at all" * 100)
    with pytest.raises(StoreError, match=r"junk\.db.*not a database"):
        SQLiteStore(str(path), create=False)
    assert path.read_bytes() == b"not sqlite at all" * 100
