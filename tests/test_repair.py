"""Verify checks heads rows and snapshot metadata; repair rebuilds heads.

A lowered heads row made a state uncommittable forever (every commit refused
as stale) and a snapshot with no ``last_event_id`` went unnoticed, while verify
said OK.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner

from playthrough import Engine
from playthrough._cli import main
from playthrough.errors import ConcurrencyError
from playthrough.examples.bank import Account, AccountOpened, Deposited

APP = ["--app", "playthrough.examples.bank", "--no-subprocess"]


def _bank(url: str) -> None:
    with Engine.open(url) as engine:
        engine.fire(AccountOpened(account_id=1, owner="ada"))
        engine.fire(AccountOpened(account_id=2, owner="bob"))
        engine.fire(Deposited(account_id=1, amount=10))
        engine.commit()
        engine.admin.snapshot()


def _sql(path: Path, statement: str) -> None:
    conn = sqlite3.connect(path)
    conn.execute(statement)
    conn.commit()
    conn.close()


def test_a_lowered_heads_row_is_reported_and_repaired(tmp_path: Path) -> None:
    path = tmp_path / "bank.db"
    url = f"sqlite:///{path}"
    _bank(url)
    _sql(path, "UPDATE pt_heads SET last_position = 1, value = NULL WHERE state_id = '1'")
    with Engine.open(url) as engine:
        engine.fire(Deposited(account_id=1, amount=5))
        with pytest.raises(ConcurrencyError):  # uncommittable: the row lies
            engine.commit()
    result = CliRunner().invoke(main, ["verify", url, *APP])
    assert result.exit_code == 1
    assert "heads row of bank.Account(1) says its last event is 1, its links say 3" in (
        result.output
    )
    repaired = CliRunner().invoke(main, ["repair", url, *APP[:2]])
    assert repaired.exit_code == 0 and "1 row(s) changed" in repaired.output
    assert CliRunner().invoke(main, ["verify", url, *APP]).exit_code == 0
    with Engine.open(url) as engine:
        engine.fire(Deposited(account_id=1, amount=5))
        engine.commit()
        assert engine.load(Account, 1).balance == 15


def test_a_heads_row_for_a_state_without_links_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "bank.db"
    url = f"sqlite:///{path}"
    _bank(url)
    _sql(path, "INSERT INTO pt_heads (state_type, state_id, last_position) VALUES ('x', '9', 2)")
    result = CliRunner().invoke(main, ["verify", url, *APP])
    assert result.exit_code == 1 and "heads row of x(9) says its last event is 2" in result.output
    assert CliRunner().invoke(main, ["repair", url]).exit_code == 0
    assert CliRunner().invoke(main, ["verify", url, *APP]).exit_code == 0


def test_a_snapshot_without_last_event_id_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "bank.db"
    url = f"sqlite:///{path}"
    _bank(url)
    _sql(path, "UPDATE pt_snapshots SET last_event_id = NULL WHERE state_id = '2'")
    result = CliRunner().invoke(main, ["verify", url, *APP])
    assert result.exit_code == 1
    assert "snapshot of bank.Account(2) at position 3 says its last event is None" in (
        result.output
    )


@pytest.mark.postgres
def test_postgres_heads_checks_and_repair(pg_url: str, pg_schema: str) -> None:
    import psycopg

    url = f"{pg_url}?schema={pg_schema}"
    _bank(url)
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(
            f'UPDATE "{pg_schema}".pt_heads SET last_position = 1, value = NULL '
            "WHERE state_id = '1'"
        )
        conn.execute(
            f"UPDATE \"{pg_schema}\".pt_snapshots SET last_event_id = NULL WHERE state_id = '2'"
        )
    with Engine.open(url) as engine, engine.store.reader() as reader:
        assert [(str(k), h, w) for k, h, w in reader.heads_disagreements(10)] == [
            ("bank.Account(1)", 1, 3)
        ]
        assert [(str(k), p, last, w) for k, p, last, w in reader.snapshot_disagreements(10)] == [
            ("bank.Account(2)", 3, None, 2)
        ]
    assert CliRunner().invoke(main, ["repair", url]).exit_code == 0
    with Engine.open(url) as engine:
        with engine.store.reader() as reader:
            assert reader.heads_disagreements(10) == []
        engine.fire(Deposited(account_id=1, amount=5))
        engine.commit()
