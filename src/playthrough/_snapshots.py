"""SnapshotCoordinator: event-aligned snapshot sets, policies, sync check.

A snapshot set holds several states all as of one global position, written in
one transaction, so coupled states restart from one consistent cut. Each state
keeps a short history of snapshots so a load can rewind one that is ahead of
an event it must replay.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Iterable, Sequence
from typing import Protocol

import attrs

from . import _logging
from ._errors import PlaythroughError, StaleForgetError
from ._model import State, StateKey
from ._reconstitution import Plan, StateReconstitutor, usable_snapshots
from ._serialization import encode_state_checked
from ._steps import Read, Steps, call, run_sync
from ._stores import Store
from ._stores._base import FORGET_EPOCH, refuse_archived_steps
from ._upcasting import snapshot_problem, snapshot_record


class LiveStates(Protocol):
    """What the coordinator needs to know about the states a writer holds in memory."""

    def live_states(self) -> Iterable[tuple[StateKey, State]]:
        """Every state held in memory."""
        ...

    def live_state(self, key: StateKey) -> State | None:
        """The state held in memory for ``key``, if any."""
        ...

    def has_pending(self) -> bool:
        """Whether events were fired but not committed yet."""
        ...

    def current_epoch(self) -> int | None:
        """The forget epoch the live states were loaded at (None: not known)."""

    def drop_forgotten(self) -> None:
        """Drop every live state (a subject was forgotten since they were loaded)."""

    def pending_keys(self) -> Collection[StateKey]:
        """The states changed by pending events."""
        ...


@attrs.frozen
class OutOfSync:
    """``state`` snapshotted at ``position`` needs ``partner`` as of ``event - 1``,
    but the partner's newest snapshot is at ``partner_position`` (past that)."""

    state: StateKey
    position: int
    partner: StateKey
    partner_position: int
    event: int

    def __str__(self) -> str:
        return (
            f"{self.state} (snapshot at {self.position}) and {self.partner} (snapshot at "
            f"{self.partner_position}) are coupled by event {self.event} between them"
        )


@attrs.frozen
class SyncReport:
    checked: int
    out_of_sync: tuple[OutOfSync, ...]

    @property
    def in_sync(self) -> bool:
        return not self.out_of_sync

    def __str__(self) -> str:
        if self.in_sync:
            return f"{self.checked} snapshotted state(s), all coupled snapshots in sync"
        return "\n".join(
            [f"{len(self.out_of_sync)} coupled pair(s) out of sync:"]
            + [f"  {pair}" for pair in self.out_of_sync]
        )


class SnapshotCoordinator:
    """Writes aligned snapshot sets; ``every``/``after_events`` are the automatic policies.

    - ``every=N``: after a commit, once N commits were made by this engine
      since its last set, snapshot the states those commits changed (plus the
      states coupled with them): the cost is what changed, not what is in memory.
    - ``after_events=T``: when a load had to play more than T events, snapshot
      the states that load finished.
    """

    def __init__(
        self,
        store: Store,
        reconstitutor: StateReconstitutor,
        live: LiveStates,
        *,
        every: int | None = None,
        after_events: int | None = None,
        history: int = 3,
    ) -> None:
        if history < 1:
            raise ValueError("snapshot_history must be at least 1")
        self.store = store
        self.reconstitutor = reconstitutor
        self.live = live
        self.every = every
        self.after_events = after_events
        self.history = history
        self._committed_since = 0
        self._changed: dict[StateKey, None] = {}  # states committed since the last set

    # ------------------------------------------------------------------ policies

    def committed(self, keys: Iterable[StateKey]) -> None:
        """Note the states a commit changed (what the ``every`` policy writes)."""
        if self.every is not None:
            self._changed.update(dict.fromkeys(keys))

    def after_commit(self, committed: int = 1) -> None:
        run_sync(self.after_commit_steps(committed), self.store)

    def after_commit_steps(self, committed: int = 1) -> Steps[None]:
        """The ``every`` policy after a commit, as store requests (both engines drive it)."""
        if self.every is None:
            return
        self._committed_since += committed
        if self._committed_since >= self.every and not self.live.has_pending():
            yield from self.write_set_steps(list(self._changed), None, with_partners=True)
            self._changed.clear()
            self._committed_since = 0

    def after_load(self, plan: Plan, states: dict[StateKey, State]) -> None:
        run_sync(self.after_load_steps(plan, states), self.store)

    def after_load_steps(self, plan: Plan, states: dict[StateKey, State]) -> Steps[None]:
        """The ``after_events`` policy after a load, as store requests."""
        if self.after_events is None or plan.events_played <= self.after_events:
            return
        yield from self._write_steps(plan.at, states)

    # ------------------------------------------------------------------ sets

    def write_set(
        self, keys: Sequence[StateKey] | None, at: int | None, *, with_partners: bool = False
    ) -> int:
        """Write ``keys`` (None: every live state) as one set at ``at`` (None: the head).

        ``with_partners`` (always, for None) adds the states coupled with them
        by events since their newest snapshot, so the set stays aligned.
        """
        return run_sync(self.write_set_steps(keys, at, with_partners=with_partners), self.store)

    def write_set_steps(
        self, keys: Sequence[StateKey] | None, at: int | None, *, with_partners: bool = False
    ) -> Steps[int]:
        """:meth:`write_set` as store requests: one read, then the write."""
        live = keys is None
        if live and self.live.has_pending():
            raise PlaythroughError("commit or discard pending events before snapshotting")
        read: tuple[int, dict[StateKey, State], int] = yield Read(
            self._set_steps(keys, at, with_partners)
        )
        position, states, epoch = read
        yield from self._write_steps(position, states, epoch)
        if live:
            self._committed_since = 0
        return position

    def _set_steps(
        self, keys: Sequence[StateKey] | None, at: int | None, with_partners: bool
    ) -> Steps[tuple[int, dict[StateKey, State], int]]:
        """In one read: the set's position, its states (live ones still current, the
        others rebuilt) and the forget epoch they were read at."""
        head = yield call("head")
        epoch_value = yield call("meta", FORGET_EPOCH)
        epoch = int(epoch_value) if epoch_value else 0
        position = head if at is None else at
        if position < 0 or position > head:
            raise ValueError(f"position {position} is outside the log (0..{head})")
        if at is not None:
            yield from refuse_archived_steps(position, f"a snapshot set at {position}")
        if keys is None:
            keys = [k for k, _ in self.live.live_states()]
            with_partners = True
        if with_partners:
            keys = list(dict.fromkeys([*keys, *(yield from self._partners(keys, position))]))
        keys = list(dict.fromkeys(keys))
        states: dict[StateKey, State] = {}
        mine = self.live.current_epoch()
        if position == head and (mine is None or mine == epoch):
            heads = yield call("state_heads", keys)
            pending = self.live.pending_keys()
            for k in keys:
                state = self.live.live_state(k)
                if state is not None and k not in pending and state.last_event_id == heads.get(k):
                    states[k] = state
        rebuild = [k for k in keys if k not in states]
        if rebuild:
            built, _ = yield from self.reconstitutor.reconstitute_steps(rebuild, position)
            states.update({k: built[k] for k in rebuild})
        return position, states, epoch

    def _write_steps(
        self, position: int, states: dict[StateKey, State], epoch: int | None = None
    ) -> Steps[None]:
        """Write the states as a set; ``epoch`` (default: the live states') is the forget
        epoch they were built at: if a subject was forgotten since, nothing is written."""
        started = time.perf_counter()
        records = [
            snapshot_record(k, position, s, encode_state_checked(s, f"{k} at {position}"))
            for k, s in states.items()
        ]
        try:
            yield call(
                "write_snapshots",
                records,
                self.history,
                epoch=self.live.current_epoch() if epoch is None else epoch,
            )
        except StaleForgetError:
            self.live.drop_forgotten()
            raise
        if records:
            _logging.snapshot_set(position, len(records), time.perf_counter() - started, self.store)

    @staticmethod
    def _partners(keys: Sequence[StateKey], at: int) -> Steps[list[StateKey]]:
        """States coupled with ``keys`` by events since each key's newest snapshot."""
        if not keys:
            return []
        found = yield call("snapshots", keys, at)
        newest = {k: usable_snapshots(h) for k, h in found.items()}
        ranges = {k: (newest[k][0].position if newest.get(k) else 0, at) for k in keys}
        by_event: dict[int, dict[StateKey, int]] = {}
        for link in (yield call("links", ranges)):
            by_event.setdefault(link.position, {})[link.key] = link.group
        wanted = set(keys)
        out: dict[StateKey, None] = {}
        for event_links in by_event.values():
            groups = {g for k, g in event_links.items() if k in wanted}
            for k, g in event_links.items():
                if g in groups and k not in wanted:
                    out[k] = None
        return list(out)

    # ------------------------------------------------------------------ sync

    def check_sync(self) -> SyncReport:
        with self.store.reader() as reader:
            newest: dict[StateKey, int] = {}
            for record in reader.iter_snapshots():
                if snapshot_problem(record) is None:  # loads never start from the others
                    newest[record.key] = max(record.position, newest.get(record.key, 0))
            if not newest:
                return SyncReport(0, ())
            top = max(newest.values())
            ranges = {k: (p, top) for k, p in newest.items() if p < top}
            by_event: dict[int, dict[StateKey, int]] = {}
            for link in reader.links(ranges):
                by_event.setdefault(link.position, {})[link.key] = link.group
        found: dict[tuple[StateKey, StateKey], OutOfSync] = {}
        for e in sorted(by_event):
            event_links = by_event[e]
            for k, g in event_links.items():
                pos = newest.get(k)
                if pos is None or pos >= e:
                    continue
                for other, og in event_links.items():
                    other_pos = newest.get(other)
                    if other == k or og != g or other_pos is None or other_pos < e:
                        continue
                    found.setdefault((k, other), OutOfSync(k, pos, other, other_pos, e))
        return SyncReport(len(newest), tuple(found.values()))


__all__ = ["LiveStates", "OutOfSync", "SnapshotCoordinator", "SyncReport"]
