"""The coupling groups an event's links are stored with, per kind of event.

Events whose apply hooks each take one state couple nothing, and their groups
are told without binding the hooks; a hook taking two states, or a list of
states, couples them. Firing and committing an event of a class that couples
nothing builds no Binding at all: its keys come straight from its id fields.
"""

from __future__ import annotations

from typing import Any, cast

import attrs
import pytest

from playthrough import Engine, Event, SingletonState, State, state_id
from playthrough._binding import binding, direct_keys, links
from playthrough.errors import EventRejected


@attrs.define
class Box(State, type_name="t.groups.Box"):
    n: int = 0


@attrs.define
class Split(Event, type_name="t.groups.Split"):
    a_id: int = state_id(Box)
    b_id: int = state_id(Box)

    def apply_a(self, a: Box) -> None:
        a.n += 1

    def apply_b(self, b: Box) -> None:
        b.n += 1


@attrs.define
class Joined(Event, type_name="t.groups.Joined"):
    a_id: int = state_id(Box)
    b_id: int = state_id(Box)
    c_id: int = state_id(Box)

    def apply(self, a: Box, b: Box) -> None:
        a.n += b.n

    def apply_c(self, c: Box) -> None:
        c.n += 1


@attrs.define
class Listed(Event, type_name="t.groups.Listed"):
    box_ids: list[int] = state_id(Box, many=True)

    def apply(self, boxes: list[Box]) -> None:
        for box in boxes:
            box.n += 1


def test_one_state_apply_hooks_couple_nothing() -> None:
    assert Split._pt_spec.one_state_applies
    assert binding(Split(a_id=1, b_id=2)).groups == (0, 1)


def test_a_two_state_apply_hook_couples_its_states() -> None:
    assert not Joined._pt_spec.one_state_applies
    assert binding(Joined(a_id=1, b_id=2, c_id=3)).groups == (0, 0, 1)


def test_a_list_of_states_in_one_hook_is_coupled() -> None:
    assert Listed._pt_spec.one_state_applies
    assert binding(Listed(box_ids=[1, 2, 3])).groups == (0, 0, 0)


@attrs.define
class Tally(SingletonState, type_name="t.groups.Tally"):
    n: int = 0


#: What the validate hooks of Checked were given, in order.
SEEN: list[Any] = []


@attrs.define
class Checked(Event, type_name="t.groups.Checked"):
    a_id: int = state_id(Box)
    b_id: int | None = state_id(Box, default=None)
    limit: int = 10

    def validate(self, tally: Tally, a: Box) -> None:
        SEEN.append((tally.n, a.n))
        if a.n >= self.limit:
            raise EventRejected(f"box {self.a_id} is full")

    def validate_b(self, b: Box | None) -> None:
        SEEN.append(None if b is None else b.n)

    def apply(self, a: Box) -> None:
        a.n += 1

    def apply_tally(self, tally: Tally) -> None:
        tally.n += 1

    def apply_b(self, b: Box) -> None:
        b.n += 10


def _bound_links(event: Event) -> tuple[tuple[Any, int], ...]:
    full = binding(event)
    return tuple(zip(full.touched, full.groups, strict=True))


@pytest.mark.parametrize(
    ("make", "direct"),
    [
        (lambda: Split(a_id=1, b_id=2), True),
        (lambda: Split(a_id=3, b_id=3), True),  # one state twice: touched once
        (lambda: Checked(a_id=1), True),  # a None id, and a singleton
        (lambda: Checked(a_id=1, b_id=1), True),
        (lambda: Joined(a_id=1, b_id=2, c_id=3), False),  # coupled: bound
        (lambda: Listed(box_ids=[1, 2]), False),  # a many-field: bound
        (lambda: Split(a_id=cast(int, [1, 2]), b_id=3), False),  # a list in a plain field
    ],
)
def test_direct_links_are_the_bound_links(make: Any, direct: bool) -> None:
    event = make()
    assert (direct_keys(event) is not None) is direct
    assert links(event) == _bound_links(make())
    if direct:
        assert getattr(event, "_pt_binding", None) is None  # told without binding


def test_the_direct_path_refuses_a_bad_id_as_binding_does() -> None:
    with pytest.raises(TypeError, match="not bool"):
        direct_keys(Split(a_id=True, b_id=2))


def test_firing_a_class_that_couples_nothing_builds_no_binding(tmp_path: Any) -> None:
    SEEN.clear()
    url = f"sqlite:///{tmp_path / 'store.db'}"
    with Engine.open(url) as engine:
        fired: list[Event] = [engine.fire(Checked(a_id=1)), engine.fire(Checked(a_id=2, b_id=1))]
        with pytest.raises(EventRejected):
            engine.fire(Checked(a_id=1, limit=1))
        fired.append(engine.fire(Split(a_id=1, b_id=2)))
        engine.commit()
        assert all(getattr(e, "_pt_binding", None) is None for e in fired)
        # validate hooks got the singleton, the box, and None for a None id
        assert SEEN == [(0, 0), None, (1, 0), 1, (2, 11)]
    with Engine.open(url) as engine:
        assert engine.load(Box, 1).n == 12
        assert engine.load(Box, 2).n == 2
        assert engine.load(Tally).n == 2
