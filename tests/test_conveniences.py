"""Conveniences: ``is_valid``/``fire_if_valid``, ``is_replaying``, refiring an event,
and scenarios of several ``when`` steps with time passing between them."""

from __future__ import annotations

from datetime import timedelta
from typing import ClassVar

import attrs
import pytest

import playthrough
from playthrough import Engine, Event, State, state_id
from playthrough.errors import EventRejected, PlaythroughError
from playthrough.testing import ManualClock, scenario


@attrs.define
class ConvWallet(State, type_name="t.conv.Wallet"):
    coins: int = 0
    bonus: int = 0


class Seen:
    replaying: ClassVar[list[bool]] = []


@attrs.define
class ConvPaid(Event, type_name="t.conv.Paid"):
    wallet_id: int = state_id(ConvWallet)
    coins: int = 0

    def validate(self, wallet: ConvWallet) -> None:
        if wallet.coins + self.coins < 0:
            raise EventRejected("not enough coins")

    def apply(self, wallet: ConvWallet) -> None:
        Seen.replaying.append(playthrough.is_replaying())
        wallet.coins += self.coins


@attrs.define
class ConvBonus(Event, type_name="t.conv.Bonus"):
    wallet_id: int = state_id(ConvWallet)

    def apply(self, wallet: ConvWallet) -> None:
        wallet.bonus += 1

    def fired(self, engine: Engine) -> None:
        engine.fire(ConvPaid(wallet_id=self.wallet_id, coins=-5))  # refused below 0


@attrs.define
class ConvReminder(Event, type_name="t.conv.Reminder"):
    wallet_id: int = state_id(ConvWallet)

    def apply(self, wallet: ConvWallet) -> None:
        wallet.bonus += 10


@attrs.define
class ConvRemind(Event, type_name="t.conv.Remind"):
    wallet_id: int = state_id(ConvWallet)

    def apply(self, wallet: ConvWallet) -> None:
        wallet.bonus += 100

    def handle(self, engine: Engine) -> None:
        engine.scheduler.schedule(
            ConvReminder(wallet_id=self.wallet_id), after=timedelta(minutes=15)
        )


@pytest.fixture(autouse=True)
def _seen() -> None:
    Seen.replaying.clear()


def test_is_valid_and_fire_if_valid_leave_nothing_behind_when_refused(any_url: str) -> None:
    with Engine.open(any_url) as engine:
        engine.fire(ConvPaid(wallet_id=1, coins=3))
        before = engine.pending
        assert ConvBonus(wallet_id=1).is_valid(engine) is False  # its fired child is refused
        assert engine.pending == before and engine.load(ConvWallet, 1).bonus == 0
        assert engine.fire_if_valid(ConvPaid(wallet_id=1, coins=-4)) is None
        assert engine.pending == before and engine.load(ConvWallet, 1).coins == 3
        probe = ConvPaid(wallet_id=1, coins=2)
        assert probe.is_valid(engine) is True
        assert engine.pending == before and engine.load(ConvWallet, 1).coins == 3  # undone
        assert engine.is_valid(ConvBonus(wallet_id=1)) is False
        fired = engine.fire_if_valid(probe)  # the probe stayed unfired: it can be fired
        assert fired is probe and engine.load(ConvWallet, 1).coins == 5
        assert engine.is_valid(ConvBonus(wallet_id=1)) is True  # 5 coins: the child passes
        assert engine.load(ConvWallet, 1).bonus == 0 and len(engine.pending) == 2
        engine.commit()
    with Engine.open(any_url) as fresh:
        assert [e.id for e in fresh.log.events()] == [1, 2]
        assert fresh.load(ConvWallet, 1).coins == 5


def test_is_replaying_is_true_only_while_a_stored_event_is_played(any_url: str) -> None:
    with Engine.open(any_url) as engine:
        engine.fire(ConvPaid(wallet_id=1, coins=1))
        engine.fire(ConvPaid(wallet_id=1, coins=1))
        engine.commit()
        assert Seen.replaying == [False, False]
        assert playthrough.is_replaying() is False
    with Engine.open(any_url) as fresh:
        assert fresh.load(ConvWallet, 1, at=1).coins == 1  # played from blank
        assert Seen.replaying == [False, False, True]
        fresh.admin.replay()
        assert Seen.replaying[3:] == [True, True]  # replay() played both events


def test_refiring_an_event_says_how_to_fire_a_copy() -> None:
    with Engine.open("sqlite://") as engine:
        event = engine.fire(ConvPaid(wallet_id=1, coins=1))
        with pytest.raises(PlaythroughError, match=r"fire a copy: engine\.fire\(attrs\.evolve"):
            engine.fire(event)
        copy = engine.fire(attrs.evolve(event))
        assert copy is not event and engine.load(ConvWallet, 1).coins == 2
        engine.commit()


def test_a_scenario_takes_several_when_steps_with_time_passing_between() -> None:
    with Engine.open("sqlite://", clock=ManualClock()) as engine:
        run = (
            scenario(engine)
            .given(ConvPaid(wallet_id=1, coins=10))
            .when(ConvPaid(wallet_id=1, coins=-3))
            .when(ConvRemind(wallet_id=1))
            .when_time_passes(minutes=15)
            .when(ConvPaid(wallet_id=1, coins=1))
        )
        run.then({(ConvWallet, 1): ConvWallet(coins=8, bonus=110)})
        run.then_committed(
            ConvPaid(wallet_id=1, coins=-3),
            ConvRemind(wallet_id=1),
            ConvReminder(wallet_id=1),
            ConvPaid(wallet_id=1, coins=1),
        )
        failed = scenario(engine).when(ConvPaid(wallet_id=1, coins=-100))
        with pytest.raises(AssertionError, match=r"an earlier step .* failed with EventRejected"):
            failed.when(ConvPaid(wallet_id=1, coins=1))
        failed.then_rejected(match="not enough coins")
