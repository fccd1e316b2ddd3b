"""StateRepository: the identity map of states.

A repository answers "which object is state X here?". The engine has one
current (live) repository; replays, time-travel loads and verification each run
in states of their own, so they never pollute the live one. It keeps its
states in least recently used order; the engine trims its live repository to
``max_states`` between operations (:meth:`StateRepository.trim`), never
evicting a state with pending events.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Container, Iterator

from ._model import State, StateKey


class StateRepository:
    """An identity map: at most one object per state key."""

    def __init__(self) -> None:
        self._states: OrderedDict[StateKey, State] = OrderedDict()

    def get(self, key: StateKey) -> State | None:
        state = self._states.get(key)
        if state is not None:
            self._states.move_to_end(key)  # most recently used
        return state

    def trim(self, limit: int, keep: Container[StateKey] = ()) -> int:
        """Evict least recently used states until at most ``limit`` remain; return how many.

        States in ``keep`` (those with pending events) are never evicted, so the
        map stays above ``limit`` when they alone exceed it.
        """
        states = self._states
        excess = len(states) - limit
        if excess <= 0:
            return 0
        victims: list[StateKey] = []
        for key in states:  # least recently used first
            if key not in keep:
                victims.append(key)
                if len(victims) == excess:
                    break
        for key in victims:
            del states[key]
        return len(victims)

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
