"""``fired`` hooks: follow-up events that join the commit of the event that fired them.

A ``fired(self, engine)`` hook runs right after its event is fired (validated,
applied, queued), before any commit; what it fires is queued behind its event
and committed with it in one transaction. A refusal anywhere in the chain undoes
the event and everything the chain fired; a conflict at commit writes none of
them. Replays never run ``fired``: they play the children the log holds.
"""

from __future__ import annotations

from typing import ClassVar

import attrs
import pytest

from playthrough import Engine, Event, SingletonState, State, state_id
from playthrough.errors import ConcurrencyError, DefinitionError, EventRejected, PlaythroughError


@attrs.define
class FiredOrder(State, type_name="t.fired.Order"):
    paid: int = 0


@attrs.define
class FiredPoints(State, type_name="t.fired.Points"):
    points: int = 0


@attrs.define
class FiredTally(SingletonState, type_name="t.fired.Tally"):
    fired: int = 0


class Calls:
    fired: ClassVar[list[str]] = []


@attrs.define
class FiredEarned(Event, type_name="t.fired.Earned"):
    customer_id: int = state_id(FiredPoints)
    points: int = 0

    def validate(self, customer: FiredPoints) -> None:
        if self.points < 0:
            raise EventRejected("points must not be negative")

    def apply(self, customer: FiredPoints, tally: FiredTally) -> None:
        customer.points += self.points
        tally.fired += 1

    def fired(self, engine: Engine) -> None:
        Calls.fired.append(f"earned {self.points}")


@attrs.define
class FiredPaid(Event, type_name="t.fired.Paid"):
    order_id: int = state_id(FiredOrder)
    customer: int = 0
    points: tuple[int, ...] = ()

    def apply(self, order: FiredOrder) -> None:
        order.paid += 1

    def fired(self, engine: Engine, order: FiredOrder) -> None:
        Calls.fired.append(f"paid {self.order_id} ({order.paid})")
        for n in self.points:
            engine.fire(FiredEarned(customer_id=self.customer, points=n))


@attrs.define
class FiredChained(Event, type_name="t.fired.Chained"):
    customer_id: int = state_id(FiredPoints)
    left: int = 0

    def apply(self, customer: FiredPoints) -> None:
        customer.points += 1

    def fired(self, engine: Engine) -> None:
        if self.left:
            engine.fire(FiredChained(customer_id=self.customer_id, left=self.left - 1))


@pytest.fixture(autouse=True)
def _calls() -> None:
    Calls.fired.clear()


def test_what_fired_fires_is_committed_with_its_event_in_order(any_url: str) -> None:
    with Engine.open(any_url) as engine:
        parent = engine.fire(FiredPaid(order_id=1, customer=7, points=(5, 3)))
        # Right after the event: its children are already applied and queued behind it.
        chain = ["FiredPaid", "FiredEarned", "FiredEarned"]
        assert [type(e).__name__ for e in engine.pending] == chain
        assert engine.pending[0] is parent
        assert engine.load(FiredPoints, 7).points == 8
        assert Calls.fired == ["paid 1 (1)", "earned 5", "earned 3"]
        committed = engine.commit()
        assert [e.id for e in committed] == [1, 2, 3]
        assert engine.last_commit_id is not None
        ranges = {e.correlation for e in committed}
        assert ranges == {parent.correlation}  # one business transaction
    with Engine.open(any_url) as fresh:
        assert fresh.load(FiredPoints, 7).points == 8
        assert fresh.load(FiredTally).fired == 2
        assert [type(e).__name__ for e in fresh.log.events()] == chain


def test_a_refused_child_undoes_its_parent_and_earlier_children(any_url: str) -> None:
    with Engine.open(any_url) as engine:
        engine.fire(FiredPaid(order_id=1, customer=7, points=(2,)))
        before = engine.pending
        with pytest.raises(EventRejected, match="negative"):
            engine.fire(FiredPaid(order_id=2, customer=7, points=(4, -1)))
        assert engine.pending == before  # the earlier fire stays; the refused chain is gone
        assert engine.load(FiredOrder, 2).paid == 0
        assert engine.load(FiredPoints, 7).points == 2  # the +4 was undone
        assert engine.load(FiredTally).fired == 1
        engine.commit()
    with Engine.open(any_url) as fresh:
        assert [e.id for e in fresh.log.events()] == [1, 2]
        assert fresh.load(FiredOrder, 2).paid == 0 and fresh.load(FiredPoints, 7).points == 2


def test_a_refused_parent_fires_no_children(any_url: str) -> None:
    @attrs.define
    class FiredRefused(Event, type_name="t.fired.Refused"):
        order_id: int = state_id(FiredOrder)

        def validate(self, order: FiredOrder) -> None:
            raise EventRejected("no")

        def apply(self, order: FiredOrder) -> None:
            order.paid += 1

        def fired(self, engine: Engine) -> None:
            engine.fire(FiredEarned(customer_id=1, points=1))

    with Engine.open(any_url) as engine:
        with pytest.raises(EventRejected):
            engine.fire(FiredRefused(order_id=1))
        assert engine.pending == () and Calls.fired == []


def test_a_conflict_at_commit_writes_neither_parent_nor_children(any_url: str) -> None:
    with Engine.open(any_url) as setup:
        setup.fire(FiredEarned(customer_id=7, points=1))
        setup.commit()
    with Engine.open(any_url) as mine, Engine.open(any_url) as other:
        mine.load(FiredPoints, 7)
        other.fire(FiredEarned(customer_id=7, points=10))
        other.commit()
        mine.fire(FiredPaid(order_id=1, customer=7, points=(5,)))
        with pytest.raises(ConcurrencyError):
            mine.commit()
        assert mine.pending == ()
    with Engine.open(any_url) as fresh:
        assert [type(e).__name__ for e in fresh.log.events()] == ["FiredEarned", "FiredEarned"]
        assert fresh.load(FiredOrder, 1).paid == 0 and fresh.load(FiredPoints, 7).points == 11


def test_endless_recursion_is_refused_with_a_clear_error_and_nothing_queued() -> None:
    with Engine.open("sqlite://") as engine:
        engine.fire(FiredChained(customer_id=1, left=3))  # bounded chains are fine
        assert len(engine.pending) == 4 and engine.load(FiredPoints, 1).points == 4
        with pytest.raises(PlaythroughError, match=r"nested more than 32 deep \(FiredChained"):
            engine.fire(FiredChained(customer_id=2, left=1_000))
        assert len(engine.pending) == 4
        assert engine.load(FiredPoints, 2).points == 0
        engine.commit()


def test_replay_and_loads_play_the_logged_children_and_never_run_fired(any_url: str) -> None:
    with Engine.open(any_url) as engine:
        engine.fire(FiredPaid(order_id=1, customer=7, points=(5, 3)))
        engine.commit()
        assert len(Calls.fired) == 3
        engine.admin.drop_snapshots()
        report = engine.admin.replay()
        assert report.played == 3
        assert engine.admin.verify().ok
    with Engine.open(any_url, head_values=False) as fresh:
        assert fresh.load(FiredPoints, 7).points == 8
        assert fresh.load(FiredOrder, 1, at=1).paid == 1
        assert fresh.load(FiredPoints, 7, at=2).points == 5
    assert len(Calls.fired) == 3  # no replay, verify or load ran a fired hook


def test_fired_hooks_refuse_commit_and_discard_inside_and_cannot_change_states() -> None:
    @attrs.define
    class FiredCommits(Event, type_name="t.fired.Commits"):
        order_id: int = state_id(FiredOrder)
        how: str = "commit"

        def apply(self, order: FiredOrder) -> None:
            order.paid += 1

        def fired(self, engine: Engine, order: FiredOrder) -> None:
            if self.how == "commit":
                engine.commit()
            elif self.how == "discard":
                engine.discard()
            else:
                order.paid = 100

    with Engine.open("sqlite://") as engine:
        with pytest.raises(PlaythroughError, match=r"commit\(\) from inside a fired hook"):
            engine.fire(FiredCommits(order_id=1))
        with pytest.raises(PlaythroughError, match=r"discard\(\) from inside a fired hook"):
            engine.fire(FiredCommits(order_id=1, how="discard"))
        with pytest.raises(PlaythroughError, match="apply hook"):
            engine.fire(FiredCommits(order_id=1, how="assign"))
        assert engine.pending == () and engine.load(FiredOrder, 1).paid == 0


def test_a_handler_that_fires_an_event_with_fired_hooks_commits_the_chain_together() -> None:
    @attrs.define
    class FiredShipped(Event, type_name="t.fired.Shipped"):
        order_id: int = state_id(FiredOrder)

        def apply(self, order: FiredOrder) -> None:
            order.paid += 10

        def handle(self, engine: Engine) -> None:
            engine.fire(FiredPaid(order_id=self.order_id, customer=3, points=(1,)))

    with Engine.open("sqlite://") as engine:
        engine.fire(FiredShipped(order_id=1))
        committed = engine.commit()
        assert [type(e).__name__ for e in committed] == ["FiredShipped", "FiredPaid", "FiredEarned"]
        assert [e.caused_by for e in committed] == [None, 1, 1]
        assert engine.load(FiredPoints, 3).points == 1


def test_only_fired_and_handle_hooks_take_the_engine() -> None:
    with pytest.raises(DefinitionError, match="only fired and handle hooks can take the engine"):

        @attrs.define
        class FiredBad(Event, type_name="t.fired.Bad"):
            order_id: int = state_id(FiredOrder)

            def apply(self, order: FiredOrder, engine: Engine) -> None:
                pass

    @attrs.define
    class FiredHasFire(Event, type_name="t.fired.HasFire"):  # a plain method named fire is fine
        order_id: int = state_id(FiredOrder)

        def fire(self) -> str:
            return "plain"

    assert FiredHasFire(order_id=1).fire() == "plain"
