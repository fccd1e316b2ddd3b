"""The read-side commands: events, states, info, followers (text and JSON)."""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from playthrough import Engine
from playthrough._cli import main
from playthrough.examples.balances import OwnerBalances
from playthrough.examples.bank import Deposited, story

APP = ["--app", "playthrough.examples.bank"]


@pytest.fixture
def db(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'bank.db'}"
    with Engine.open(url) as engine, engine.metadata(user="ada"):
        story(engine)  # 1-2 opened, 3 deposit, 4-5 transfers, 6 flagged (caused by 5)
    return url


def run(*args: str) -> str:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_events_text_and_json(db: str) -> None:
    text = run("events", db, *APP)
    lines = text.splitlines()
    assert len(lines) == 6
    assert (
        lines[0].startswith("#1 ") and "bank.AccountOpened(account_id=1, owner='ada')" in lines[0]
    )
    assert "caused by #5" in lines[5] and '{"user":"ada"}' in lines[0]
    rows = [json.loads(x) for x in run("events", db, *APP, "--format", "json").splitlines()]
    assert [r["position"] for r in rows] == [1, 2, 3, 4, 5, 6]
    assert rows[2]["data"] == {"account_id": 1, "amount": 2500}
    assert rows[5]["caused_by"] == 5 and rows[5]["correlation"] == rows[4]["correlation"]
    assert rows[0]["metadata"] == {"user": "ada"}
    picked = run(
        "events", db, *APP, "--state", "bank.Account:2", "--type", "Transferred", "--after", "4"
    )
    assert [line.split()[0] for line in picked.splitlines()] == ["#5"]
    assert len(run("events", db, *APP, "--limit", "2").splitlines()) == 2


def test_states_and_info(db: str) -> None:
    rows = [
        json.loads(x)
        for x in run(
            "states", db, "bank.Account", *APP, "--where", "balance__gt=1000", "--format", "json"
        ).splitlines()
    ]
    assert [(r["id"], r["value"]["balance"]) for r in rows] == [(2, 1500)]
    assert run("states", db, "bank.Account", *APP, "--where", "owner=ada", "--count") == "1\n"
    text = run("states", db, "bank.Account", *APP, "--order-by", "-balance")
    assert [line.split()[0] for line in text.splitlines()] == ["2", "1"]
    info = json.loads(run("info", db, "bank.Account", "2", *APP, "--format", "json"))
    assert (info["created_position"], info["last_position"], info["events"]) == (2, 5, 3)
    assert info["completed"] is None and "value_position" in info
    assert "created #2" in run("info", db, "bank.Account", "2", *APP)
    assert "events" in run("info", db, "bank.Ledger", *APP)


def test_bad_input_is_named(db: str) -> None:
    result = CliRunner().invoke(main, ["states", db, "Nope", *APP])
    assert result.exit_code != 0 and "no state type 'Nope'" in result.output
    result = CliRunner().invoke(main, ["states", db, "bank.Account", *APP, "--where", "colour=red"])
    assert result.exit_code != 0 and "has no field 'colour'" in result.output
    result = CliRunner().invoke(main, ["info", db, "bank.Account", "99", *APP])
    assert result.exit_code != 0 and "no event ever touched" in result.output
    result = CliRunner().invoke(main, ["events", db, *APP, "--state", "7"])
    assert result.exit_code != 0 and "TYPE:ID" in result.output


def test_followers_show_lag_and_reset(db: str) -> None:
    apps = ["--app", "playthrough.examples.balances"]
    assert run("followers", db, *apps) == "no followers\n"
    assert run("followers", db, *apps, "--format", "json") == ""  # JSON Lines: no line
    with Engine.open(db) as engine:
        engine.followers.run(OwnerBalances(), until_idle=True)
        engine.fire(Deposited(account_id=2, amount=5))
        engine.commit()
    [line] = run("followers", db, *apps, "--format", "json").splitlines()  # JSON Lines
    row = json.loads(line)
    assert (row["name"], row["position"], row["lag"]) == ("balances", 6, 1)
    assert "position 0" in run("followers", db, *apps, "--reset", "balances")
    with Engine.open(db) as engine:
        with engine.store.follow("x", 0) as batch:
            assert batch is not None
            assert batch.tx.execute("SELECT count(*) FROM owner_balance") == [(0,)]  # cleared
        assert engine.followers.run(OwnerBalances(), until_idle=True).position == 7


SCOPED_APP = """
import attrs
from playthrough import Event, State, state_id


@attrs.define
class Account(State, type_name="scoped.Account"):
    balance: int = 0


@attrs.define
class Deposited(Event, type_name="scoped.Deposited"):
    account_id: int = state_id(Account)
    amount: int = 0

    def apply(self, account: Account) -> None:
        account.balance += self.amount
"""


@pytest.mark.usefixtures("isolated_registry")
def test_a_short_type_name_is_looked_up_in_the_app_modules_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """bank.Account is imported too (this file imports the bank example): `Account` with
    --app scoped_app means scoped.Account, not an ambiguous name."""
    (tmp_path / "scoped_app.py").write_text(SCOPED_APP)
    monkeypatch.syspath_prepend(str(tmp_path))
    scoped_app: Any = importlib.import_module("scoped_app")

    url = f"sqlite:///{tmp_path / 'scoped.db'}"
    with Engine.open(url) as engine:
        engine.fire(scoped_app.Deposited(account_id=1, amount=7))
        engine.fire(Deposited(account_id=1, amount=5))
        engine.commit()
    scoped = ["--app", "scoped_app"]
    info = json.loads(run("info", url, "Account", "1", *scoped, "--format", "json"))
    assert info["type"] == "scoped.Account" and info["events"] == 1
    rows = run("events", url, *scoped, "--type", "Deposited", "--format", "json").splitlines()
    assert [json.loads(r)["type"] for r in rows] == ["scoped.Deposited"]
    # Without --app the short name stays ambiguous, and says which types it could be.
    result = CliRunner().invoke(main, ["info", url, "Account", "1"])
    assert result.exit_code == 2 and "bank.Account" in result.output
    assert "scoped.Account" in result.output
