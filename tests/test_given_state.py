"""``given_state``: a state put in a known value for a test, stored as a marked event."""

from __future__ import annotations

import attrs
import pytest

from playthrough import Engine, Event, SingletonState, State, state_id
from playthrough.errors import PlaythroughError, StateCompleted
from playthrough.testing import Scenario, given_state, throwaway
from playthrough.testing._given import GIVEN


@attrs.define
class GAccount(State, type_name="t.given.Account"):
    balance: int = 0
    owner: str = ""
    tags: list[str] = attrs.field(factory=list)
    closed: bool = False
    complete_when = "closed"


@attrs.define
class GBank(SingletonState, type_name="t.given.Bank"):
    total: int = 0


@attrs.define
class GDeposited(Event, type_name="t.given.Deposited"):
    account_id: int = state_id(GAccount)
    amount: int = 0

    def apply(self, account: GAccount, bank: GBank) -> None:
        account.balance += self.amount
        bank.total += self.amount


def test_a_given_state_is_a_marked_event_that_loads_replays_and_verifies_exactly() -> None:
    with Engine.open("sqlite://") as engine:
        engine.fire(GDeposited(account_id=1, amount=5))
        engine.commit()
        given = given_state(engine, GAccount, 1, balance=100, tags=["vip"])
        # The fields not named keep the value the state had; the named ones are set.
        assert given == GAccount(balance=100, tags=["vip"])
        assert given_state(engine, GBank, total=7) == GBank(total=7)
        engine.fire(GDeposited(account_id=1, amount=1))
        engine.commit()
        types = [type(e)._pt_type_name for e in engine.log.events()]
        assert types == [
            "t.given.Deposited",
            GIVEN + "t.given.Account",
            GIVEN + "t.given.Bank",
            "t.given.Deposited",
        ]
        assert engine.load(GAccount, 1, at=1) == GAccount(balance=5)
        assert engine.load(GAccount, 1, at=2) == GAccount(balance=100, tags=["vip"])
        assert engine.load(GBank) == GBank(total=8)
        assert engine.admin.verify().ok
        engine.admin.snapshot()
        engine.admin.drop_snapshots()
    with Engine.open("sqlite://") as other:  # a fresh engine replays the log from blank
        assert other.load(GAccount, 1) == GAccount()


def test_the_log_replays_it_in_a_fresh_engine(tmp_path: object) -> None:
    url = f"sqlite:///{tmp_path}/given.db"
    with throwaway(Engine.open(url)) as engine:
        given_state(engine, GAccount, 2, owner="ada", closed=True)
    with Engine.open(url) as engine:
        assert engine.load(GAccount, 2) == GAccount(owner="ada", closed=True)
        completion = engine.states.completion(GAccount, 2)
        assert completion is not None and completion.position == 1  # completed, as any event
        with pytest.raises(StateCompleted):
            engine.fire(GDeposited(account_id=2, amount=1))
        report = engine.admin.verify()
        assert report.ok, str(report)


def test_only_throwaway_stores_take_a_given_state(any_url: str) -> None:
    with Engine.open(any_url) as engine:
        with pytest.raises(PlaythroughError, match=r"only for throwaway stores.*throwaway\("):
            given_state(engine, GAccount, 1, balance=1)
        assert engine.head() == 0
        throwaway(engine)
        assert given_state(engine, GAccount, 1, balance=1).balance == 1
        assert engine.admin.verify().ok


def test_bad_given_states_are_refused_and_write_nothing() -> None:
    with Engine.open("sqlite://") as engine:
        with pytest.raises(TypeError, match=r"no field 'balanse'.*balance"):
            given_state(engine, GAccount, 1, balanse=1)
        with pytest.raises(TypeError, match="needs an id"):
            given_state(engine, GAccount, balance=1)
        with pytest.raises(TypeError, match="singleton"):
            given_state(engine, GBank, 1, total=1)
        with pytest.raises(PlaythroughError, match=r"given value of t\.given\.Account\(1\)"):
            given_state(engine, GAccount, 1, tags={1: object()})
        with pytest.raises(PlaythroughError, match="would read back as"):
            given_state(engine, GAccount, 1, tags="ab")
        engine.fire(GDeposited(account_id=1, amount=1))
        with pytest.raises(PlaythroughError, match="pending"):
            given_state(engine, GAccount, 1, balance=1)
        engine.discard()
        given_state(engine, GAccount, 1, balance=3)
        with pytest.raises(TypeError, match="int ids already, not str"):
            given_state(engine, GAccount, "x", balance=3)
        with pytest.raises(TypeError, match="given_state"):
            given_state(object(), GAccount, 1)  # type: ignore[arg-type]
        assert engine.head() == 1


def test_a_scenario_starts_from_a_given_state() -> None:
    with Engine.open("sqlite://") as engine:
        (
            Scenario(engine)
            .given_state(GAccount, 1, balance=100)
            .given(GDeposited(account_id=1, amount=5))
            .when(GDeposited(account_id=1, amount=2))
            .then({(GAccount, 1): GAccount(balance=107), GBank: GBank(total=7)})
        )


def test_the_fixture_engine_is_a_throwaway(playthrough_engine: Engine) -> None:
    assert given_state(playthrough_engine, GAccount, 1, owner="bo").owner == "bo"
