"""Loading: states into the unit of work's identity map, or as they were at a position."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TypeVar

from . import _logging
from ._archive import ArchiveReader
from ._errors import NotFoundError, ReconstitutionError
from ._model import State, StateKey, key_of
from ._playing import in_apply
from ._reconstitution import Plan, StateReconstitutor
from ._snapshots import SnapshotCoordinator
from ._steps import Read, Steps, call, run_reader, run_sync
from ._stores import Store
from ._stores._base import archived_until_steps, check_archived
from ._values import current_states, write_back_steps
from ._work import UnitOfWork

S = TypeVar("S", bound=State)


class Loader:
    """Brings states into the live identity map (to the head) or rebuilds them at a position."""

    def __init__(
        self,
        store: Store,
        reconstitutor: StateReconstitutor,
        work: UnitOfWork,
        coordinator: SnapshotCoordinator,
        *,
        head_values: bool,
        max_states: int | None,
        archive: ArchiveReader | None,
    ) -> None:
        self.store = store
        self.reconstitutor = reconstitutor
        self.work = work
        self.coordinator = coordinator
        self.head_values = head_values
        self.max_states = max_states
        self.archive = archive

    @staticmethod
    def guard(key: StateKey) -> None:
        """ReconstitutionError when an apply hook tries to load a state."""
        if in_apply():
            raise ReconstitutionError(
                f"an apply hook tried to load {key}: apply may only touch the states its event "
                "declares (reconstitution depends on knowing every state an event touched)"
            )

    def found(self, state_class: type[S], state_id: object, state: S) -> S:
        """``state``, or NotFoundError when no event (stored or pending here) touched it."""
        if state.last_event_id is None and key_of(state_class, state_id) not in self.work.keys:
            raise NotFoundError(
                f"no {state_class.__qualname__} with id {state_id!r}: no event ever touched it"
            )
        return state

    def trim(self) -> None:
        """Evict least recently used states beyond ``max_states`` (never pending ones)."""
        self.work.trim(self.max_states)

    # ------------------------------------------------------------------ live

    def live(self, keys: Sequence[StateKey]) -> dict[StateKey, State]:
        if not keys:
            return {}
        return run_sync(self.live_steps(keys), self.store)

    def live_steps(self, keys: Sequence[StateKey]) -> Steps[dict[StateKey, State]]:
        """Load states missing from the identity map, put them in it and return them.

        One statement when every heads value is current (or the state was
        never touched); otherwise one plan for all of them, played to the head
        (every state it holds comes out current and joins the map), and the
        values it brought to the head are written back.
        """
        if not keys:
            return {}
        work = self.work
        started = time.perf_counter()
        rows = yield call("heads", keys)
        seen = getattr(rows, "epoch", None)
        if seen is not None and (work.epoch is None or not len(work.repository)):
            work.epoch = seen
        states = current_states(rows, keys)
        if states is None:
            states, plan = yield Read(self._to_head_steps(keys))
            _logging.loaded(plan, time.perf_counter() - started)
            if self.head_values:
                yield from write_back_steps(plan, states, rows, work.epoch)
            yield from self.coordinator.after_load_steps(plan, states)
        repository = work.repository
        out: dict[StateKey, State] = {}
        for key, state in states.items():
            held = repository.get(key)
            if held is None:
                repository.put(key, state)
                held = state
            out[key] = held
        return {k: out[k] for k in keys}

    def _to_head_steps(self, keys: Sequence[StateKey]) -> Steps[tuple[dict[StateKey, State], Plan]]:
        """In one read transaction: the head, then the plan playing ``keys`` to it."""
        at = yield call("head")
        return (yield from self.reconstitutor.reconstitute_steps(keys, at, to_head=True))

    # ------------------------------------------------------------------ at a position

    def at(self, keys: Sequence[StateKey], at: int) -> dict[StateKey, State]:
        started = time.perf_counter()
        with self.store.reader() as reader:
            cut, found = run_reader(self.at_steps(keys, at), reader)
        if found is None:
            # Before the cut: the archived events, read from the archive files.
            assert self.archive is not None
            with self.archive.store(cut).reader() as archived:
                found = self.reconstitutor.reconstitute(archived, keys, at)
        states, plan = found
        _logging.loaded(plan, time.perf_counter() - started, self.store)
        return states

    def at_steps(
        self, keys: Sequence[StateKey], at: int
    ) -> Steps[tuple[int, tuple[dict[StateKey, State], Plan] | None]]:
        """In one read: the archive cut, and the states at ``at`` (None: before the cut,
        to read from the archive files this engine was given)."""
        head = yield call("head")
        if at < 0 or at > head:
            raise ValueError(f"position {at} is outside the log (0..{head})")
        cut = yield from archived_until_steps()
        if at >= cut:
            return cut, (yield from self.reconstitutor.reconstitute_steps(keys, at))
        if self.archive is None:
            check_archived(cut, at, f"a load at position {at}")
        return cut, None
