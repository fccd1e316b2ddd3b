"""StateRepository: the identity map of states, built from composable cache layers.

A repository answers "which object is state X here?". The engine has one
current (live) repository; replays, time-travel loads and verification each run
in a repository of their own, so they never pollute the live one. Layers are
asked top to bottom; a hit in a lower layer is copied into the layers above it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Protocol, runtime_checkable

from ._model import State, StateKey


@runtime_checkable
class StateCache(Protocol):
    """One layer of a repository."""

    def get(self, key: StateKey) -> State | None: ...
    def put(self, key: StateKey, state: State) -> None: ...
    def forget(self, key: StateKey) -> None: ...
    def clear(self) -> None: ...


class MemoryCache:
    """Holds live objects in a dict: the identity map itself."""

    def __init__(self) -> None:
        self._states: dict[StateKey, State] = {}

    def get(self, key: StateKey) -> State | None:
        return self._states.get(key)

    def put(self, key: StateKey, state: State) -> None:
        self._states[key] = state

    def forget(self, key: StateKey) -> None:
        self._states.pop(key, None)

    def clear(self) -> None:
        self._states.clear()

    def __len__(self) -> int:
        return len(self._states)

    def items(self) -> Iterator[tuple[StateKey, State]]:
        return iter(list(self._states.items()))


class ReadOnlyCache:
    """Reads through to ``inner`` but never writes to it."""

    def __init__(self, inner: StateCache) -> None:
        self.inner = inner

    def get(self, key: StateKey) -> State | None:
        return self.inner.get(key)

    def put(self, key: StateKey, state: State) -> None:
        pass

    def forget(self, key: StateKey) -> None:
        pass

    def clear(self) -> None:
        pass


class WriteOnlyCache:
    """Writes to ``inner`` but never answers a read from it."""

    def __init__(self, inner: StateCache) -> None:
        self.inner = inner

    def get(self, key: StateKey) -> State | None:
        return None

    def put(self, key: StateKey, state: State) -> None:
        self.inner.put(key, state)

    def forget(self, key: StateKey) -> None:
        self.inner.forget(key)

    def clear(self) -> None:
        self.inner.clear()


class StateRepository:
    """An identity map of states over a stack of cache layers (a MemoryCache on top)."""

    def __init__(self, layers: Sequence[StateCache] = ()) -> None:
        self.memory = MemoryCache()
        self.layers: tuple[StateCache, ...] = (self.memory, *layers)

    def get(self, key: StateKey) -> State | None:
        state = self.memory.get(key)
        if state is not None:
            return state
        for depth, layer in enumerate(self.layers[1:], start=1):
            found = layer.get(key)
            if found is not None:
                for upper in self.layers[:depth]:
                    upper.put(key, found)
                return found
        return None

    def put(self, key: StateKey, state: State) -> None:
        for layer in self.layers:
            layer.put(key, state)

    def forget(self, key: StateKey) -> None:
        for layer in self.layers:
            layer.forget(key)

    def clear(self) -> None:
        """Forget every state (in every layer that accepts writes)."""
        for layer in self.layers:
            layer.clear()

    def __contains__(self, key: object) -> bool:
        return isinstance(key, StateKey) and self.get(key) is not None

    def __len__(self) -> int:
        return len(self.memory)

    def items(self) -> Iterator[tuple[StateKey, State]]:
        """The states held in memory."""
        return self.memory.items()
