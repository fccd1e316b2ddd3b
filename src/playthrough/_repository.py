"""StateRepository: the identity map of states.

A repository answers "which object is state X here?". The engine has one
current (live) repository; replays, time-travel loads and verification each run
in states of their own, so they never pollute the live one. It holds every
state it is given; the four methods below are the whole interface, so a
bounded (evicting) variant only has to override them.
"""

from __future__ import annotations

from collections.abc import Iterator

from ._model import State, StateKey


class StateRepository:
    """An identity map: at most one object per state key."""

    def __init__(self) -> None:
        self._states: dict[StateKey, State] = {}

    def get(self, key: StateKey) -> State | None:
        return self._states.get(key)

    def put(self, key: StateKey, state: State) -> None:
        self._states[key] = state

    def forget(self, key: StateKey) -> None:
        self._states.pop(key, None)

    def clear(self) -> None:
        """Forget every state."""
        self._states.clear()

    def __contains__(self, key: object) -> bool:
        return key in self._states

    def __len__(self) -> int:
        return len(self._states)

    def items(self) -> Iterator[tuple[StateKey, State]]:
        """A snapshot of the (key, state) pairs held (safe to iterate while changing the map)."""
        return iter(list(self._states.items()))
