"""The coupling groups an event's links are stored with, per kind of event.

Events whose apply hooks each take one state couple nothing, and their groups
are told without binding the hooks; a hook taking two states, or a list of
states, couples them.
"""

from __future__ import annotations

import attrs

from playthrough import Event, State, state_id
from playthrough._binding import binding


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
