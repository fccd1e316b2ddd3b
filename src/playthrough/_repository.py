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
    """An identity map: at most one object per state key.

    Trimming costs O(1) amortized per state added: a state :meth:`trim` finds
    in ``keep`` (it has pending events) is set aside, out of the eviction
    order, until :meth:`release`, so later trims never scan it again. Without
    this a commit of more pending states than the bound scanned them all on
    every fire.
    """

    def __init__(self) -> None:
        self._states: OrderedDict[StateKey, State] = OrderedDict()  # evictable, LRU first
        self._pinned: dict[StateKey, State] = {}  # set aside by trim until release
        self.examined = 0  # states trim has looked at, in all (tests count the work)

    def get(self, key: StateKey) -> State | None:
        state = self._states.get(key)
        if state is not None:
            self._states.move_to_end(key)  # most recently used
            return state
        return self._pinned.get(key) if self._pinned else None

    def trim(self, limit: int, keep: Container[StateKey] = ()) -> int:
        """Evict least recently used states until at most ``limit`` remain; return how many.

        States in ``keep`` (those with pending events) are never evicted, so the
        map stays above ``limit`` when they alone exceed it. Those met on the
        way are set aside until :meth:`release` (call it once ``keep`` changes:
        after a commit or a discard).
        """
        states = self._states
        pinned = self._pinned
        excess = len(states) + len(pinned) - limit
        evicted = 0
        while evicted < excess and states:
            key, state = states.popitem(last=False)  # least recently used first
            self.examined += 1
            if key in keep:
                pinned[key] = state
            else:
                evicted += 1
        return evicted

    def release(self) -> None:
        """Put the states trim set aside back in the eviction order, as the most recent."""
        if self._pinned:
            self._states.update(self._pinned)
            self._pinned.clear()

    def put(self, key: StateKey, state: State) -> None:
        if self._pinned:
            self._pinned.pop(key, None)
        self._states[key] = state

    def forget(self, key: StateKey) -> None:
        self._states.pop(key, None)
        if self._pinned:
            self._pinned.pop(key, None)

    def clear(self) -> None:
        """Forget every state."""
        self._states.clear()
        self._pinned.clear()

    def __contains__(self, key: object) -> bool:
        return key in self._states or key in self._pinned

    def __len__(self) -> int:
        return len(self._states) + len(self._pinned)

    def items(self) -> Iterator[tuple[StateKey, State]]:
        """A snapshot of the (key, state) pairs held (safe to iterate while changing the map)."""
        return iter([*self._states.items(), *self._pinned.items()])
