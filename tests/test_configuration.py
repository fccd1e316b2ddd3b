"""Configuration: where the store comes from, which options exist, unclosed engines."""

from __future__ import annotations

import gc
import warnings
from pathlib import Path

import pytest

from playthrough import Engine
from playthrough._stores import parse_store_url
from playthrough.errors import ConfigurationError, PlaythroughError, StoreError
from playthrough.examples.bank import Account, Deposited


def test_no_url_and_no_variable_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PLAYTHROUGH_URL", raising=False)
    with pytest.raises(ConfigurationError, match=r"PLAYTHROUGH_URL is not set.*sqlite://"):
        Engine.open()
    assert issubclass(ConfigurationError, PlaythroughError)


def test_an_empty_variable_counts_as_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PLAYTHROUGH_URL", "  ")
    with pytest.raises(ConfigurationError, match="PLAYTHROUGH_URL"):
        Engine.open()


def test_no_url_reads_playthrough_url(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    db = tmp_path / "app.db"
    monkeypatch.setenv("PLAYTHROUGH_URL", f"sqlite:///{db}")
    with Engine.open() as engine:
        engine.fire(Deposited(account_id=1, amount=5))
        engine.commit()
        assert engine.store.url == f"sqlite:///{db}"
    with Engine.open(f"sqlite:///{db}") as again:  # it really wrote that file
        assert again.load(Account, 1).balance == 5


def test_an_explicit_url_wins_over_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PLAYTHROUGH_URL", "mysql://nope")
    with Engine.open("sqlite://") as engine:
        assert engine.store.url == "sqlite://"


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///:memory:"])
def test_in_memory_is_explicit(url: str) -> None:
    with Engine.open(url) as engine:
        engine.fire(Deposited(account_id=1, amount=5))
        engine.commit()
        assert engine.load(Account, 1).balance == 5
        assert engine.store.url == "sqlite://"


def test_sqlalchemy_style_postgres_urls_are_accepted() -> None:
    parsed = parse_store_url("postgresql+psycopg://ann:pw@db.example:6432/shop?schema=s1")
    assert parsed.kind == "postgresql"
    assert (parsed.host, parsed.port, parsed.dbname, parsed.user, parsed.schema) == (
        "db.example",
        6432,
        "shop",
        "ann",
        "s1",
    )
    assert parsed.conninfo.startswith("postgresql://")  # libpq does not know "+psycopg"
    assert "pw" not in parsed.redacted()
    assert parse_store_url("postgres+psycopg:///?host=/run/pg").kind == "postgresql"
    with pytest.raises(StoreError, match="postgresql\\+psycopg"):
        parse_store_url("postgresql+asyncpg://h/d")


@pytest.mark.postgres
def test_a_sqlalchemy_style_url_opens_postgres(pg_url: str, pg_schema: str) -> None:
    url = pg_url.replace("postgresql://", "postgresql+psycopg://", 1) + f"?schema={pg_schema}"
    with Engine.open(url) as engine:
        engine.fire(Deposited(account_id=1, amount=7))
        engine.commit()
    with Engine.open(url) as engine:
        assert engine.load(Account, 1).balance == 7


def test_an_unknown_option_lists_the_valid_ones() -> None:
    with pytest.raises(ConfigurationError) as caught:
        Engine.open("sqlite://", snapshot_evry=10)
    text = str(caught.value)
    assert "snapshot_evry" in text
    for valid in ("snapshot_every", "snapshot_after_events", "snapshot_history", "synchronous"):
        assert valid in text
    assert not isinstance(caught.value, TypeError)


def test_known_options_still_reach_the_engine_and_the_store() -> None:
    with Engine.open("sqlite://", snapshot_every=2, busy_timeout=1.0) as engine:
        assert engine.coordinator.every == 2


def test_closing_with_pending_events_warns_and_writes_nothing(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'a.db'}"
    engine = Engine.open(url)
    engine.fire(Deposited(account_id=1, amount=5))
    with pytest.warns(ResourceWarning, match="1 pending event never committed"):
        engine.close()
    with Engine.open(url) as again:
        assert again.head() == 0


def test_closing_a_clean_engine_is_silent() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        engine = Engine.open("sqlite://")
        engine.fire(Deposited(account_id=1, amount=5))
        engine.commit()
        engine.close()
        with Engine.open("sqlite://") as other:
            other.fire(Deposited(account_id=1, amount=5))
            other.discard()


def test_a_garbage_collected_engine_with_pending_events_warns() -> None:
    engine = Engine.open("sqlite://")
    engine.fire(Deposited(account_id=1, amount=5))
    with pytest.warns(ResourceWarning, match="pending event never committed"):
        del engine
        gc.collect()


def test_the_readme_table_lists_every_option() -> None:
    import re

    from playthrough._engine import _ENGINE_OPTIONS as ENGINE_OPTIONS
    from playthrough._stores import store_options

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    table = readme.split("| option | default | what it does |")[1].split("\n\n")[0]
    listed = set(
        re.findall(r"`(\w+)`", "\n".join(row.split("|")[1] for row in table.splitlines()[2:]))
    )
    assert listed == {*ENGINE_OPTIONS, *store_options("sqlite"), *store_options("postgresql")}
