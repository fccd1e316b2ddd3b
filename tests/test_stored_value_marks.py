"""Stored values (snapshots, heads values) are caches of "the events up to P, applied by
the code that wrote them": when the event classes that can touch a state change, those
values are not used, ``explain`` says why, ``schema`` fails before the deploy, and
``playthrough snapshot`` rebuilds them from the log.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest
from click.testing import CliRunner

from playthrough import Engine, Event, State, state_id
from playthrough._cli import main
from playthrough._model import key_of, registry
from playthrough._upcasting import value_mark
from playthrough.errors import ArchivedRangeError, UnknownKeysError


@attrs.define
class Wallet(State, type_name="mk.Wallet"):
    balance: int = 0


@attrs.define
class Credited(Event, type_name="mk.Credited"):
    wallet_id: int = state_id(Wallet)
    amount: int = 0

    def apply(self, wallet: Wallet) -> None:
        wallet.balance += self.amount


@pytest.fixture(autouse=True)
def _restore() -> Iterator[None]:
    yield
    for name in [n for n in registry.events if n.startswith("mk.")]:
        del registry.events[name]
    registry.events["mk.Credited"] = Credited
    registry.states["mk.Wallet"] = Wallet


@pytest.fixture
def url(any_url: str) -> str:
    return any_url


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, [*args])
    return result.exit_code, result.output


def credit_40(url: str) -> None:
    """The old deploy: 40 units credited, a heads value and a snapshot written."""
    with Engine.open(url) as engine:
        for amount in (15, 25):
            engine.fire(Credited(wallet_id=1, amount=amount))
            engine.commit()
        engine.admin.snapshot()
        assert engine.load(Wallet, 1).balance == 40


def redeploy_as_money_in() -> Any:
    """The next deploy: ``Credited`` becomes ``MoneyIn`` v2, counting cents."""
    del registry.events["mk.Credited"]

    @attrs.define
    class MoneyIn(Event, type_name="mk.MoneyIn", version=2, aliases=("mk.Credited",)):
        wallet_id: int = state_id(Wallet)
        cents: int = 0

        @staticmethod
        def upcast_v1(data: dict[str, Any]) -> dict[str, Any]:
            data = dict(data)
            data["cents"] = data.pop("amount") * 100
            return data

        def apply(self, wallet: Wallet) -> None:
            wallet.balance += self.cents

    return MoneyIn


def test_a_changed_event_class_makes_stored_values_unusable(url: str) -> None:
    credit_40(url)
    before = value_mark(Wallet)
    money_in = redeploy_as_money_in()
    assert value_mark(Wallet) != before  # the mark follows the events, not only the state
    with Engine.open(url) as engine:
        text = engine.explain(Wallet, 1).explain()
        assert "the event classes that can touch" in text, text
        assert engine.explain(Wallet, 1).states[key_of(Wallet, 1)].start == 0
        assert engine.load(Wallet, 1).balance == 4000  # not the stored 40
        engine.fire(money_in(wallet_id=1, cents=5))
        engine.commit()
    with Engine.open(url) as engine:
        assert engine.load(Wallet, 1).balance == 4005


def test_schema_fails_before_the_deploy_and_snapshot_rebuilds_the_values(url: str) -> None:
    credit_40(url)
    redeploy_as_money_in()
    code, out = run("schema", url)
    assert code == 1, out
    assert "FAIL mk.Wallet" in out and "the event classes that can touch" in out, out
    code, out = run("verify", url)  # the stale values are not used, so not a failure
    assert code == 0 and "is not used by loads" in out, out
    code, out = run("snapshot", url)
    assert code == 0, out
    code, out = run("schema", url)
    assert code == 0, out
    with Engine.open(url) as engine:
        plan = engine.explain(Wallet, 1)
        assert "NOT USED" not in plan.explain(), plan.explain()
        assert plan.states[key_of(Wallet, 1)].start == 2  # the rebuilt value is used
        assert engine.load(Wallet, 1).balance == 4000
    code, out = run("verify", url)
    assert code == 0, out


def test_a_field_renamed_without_a_version_bump_is_refused_not_served(url: str) -> None:
    credit_40(url)
    del registry.events["mk.Credited"]

    @attrs.define
    class Renamed(Event, type_name="mk.Credited"):  # same name, same version, new field
        wallet_id: int = state_id(Wallet)
        cents: int = 0

        def apply(self, wallet: Wallet) -> None:
            wallet.balance += self.cents

    with Engine.open(url) as engine, pytest.raises(UnknownKeysError, match="amount"):
        engine.load(Wallet, 1)  # not the stored 40 from the old code
    code, out = run("schema", url)
    assert code == 1 and "the event classes that can touch" in out, out


def test_an_unchanged_deploy_keeps_every_stored_value_usable(url: str) -> None:
    credit_40(url)
    code, out = run("schema", url)
    assert code == 0, out
    with Engine.open(url) as engine:
        plan = engine.explain(Wallet, 1)
        assert "NOT USED" not in plan.explain()
        assert plan.states[key_of(Wallet, 1)].start == 2


def test_an_archived_store_refuses_a_base_made_by_other_event_classes(
    url: str, tmp_path: Path
) -> None:
    """The base snapshots stand for archived events: after those events' classes change,
    loads are refused (naming why), never served the old code's value."""
    credit_40(url)
    with Engine.open(url) as engine:
        engine.fire(Credited(wallet_id=1, amount=2))
        engine.commit()
        engine.admin.archive(before=3, to=tmp_path / "a1.jsonl.gz")
        assert engine.load(Wallet, 1).balance == 42
    redeploy_as_money_in()
    with Engine.open(url) as engine, pytest.raises(ArchivedRangeError) as caught:
        engine.load(Wallet, 1)
    assert "event classes that can touch" in str(caught.value)
    assert "playthrough snapshot" in str(caught.value)
