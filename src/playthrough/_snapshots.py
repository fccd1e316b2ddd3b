"""SnapshotCoordinator: event-aligned snapshot sets, policies, sync check, full replay.

A snapshot set holds several states all as of one global position, written in
one transaction, so coupled states restart from one consistent cut. Each state
keeps a short history of snapshots so a load can rewind one that is ahead of
an event it must replay.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import attrs

from ._errors import PlaythroughError
from ._model import State, StateKey
from ._reconstitution import Plan, blank_for, decode_event, state_from_snapshot
from ._replay import Replay
from ._serialization import encode_state_checked
from ._stores import SnapshotRecord, StoreReader

if TYPE_CHECKING:
    from ._engine import Engine

REPLAY_META = "replay_position"


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

    - ``every=N``: after a commit, once N events were committed by this engine
      since its last set, snapshot every state in memory.
    - ``after_events=T``: when a load had to play more than T events, snapshot
      the states that load finished.
    """

    def __init__(
        self,
        engine: Engine,
        *,
        every: int | None = None,
        after_events: int | None = None,
        history: int = 3,
    ) -> None:
        if history < 1:
            raise ValueError("snapshot_history must be at least 1")
        self.engine = engine
        self.every = every
        self.after_events = after_events
        self.history = history
        self._committed_since = 0

    # ------------------------------------------------------------------ policies

    def after_commit(self, committed: int = 1) -> None:
        if self.every is None:
            return
        self._committed_since += committed
        if self._committed_since >= self.every and not self.engine._pending:
            self.write_set(None, None)

    def after_load(self, plan: Plan, states: dict[StateKey, State]) -> None:
        if self.after_events is None or plan.events_played <= self.after_events:
            return
        self._write(plan.at, states)

    # ------------------------------------------------------------------ sets

    def write_set(self, keys: Sequence[StateKey] | None, at: int | None) -> int:
        engine = self.engine
        live = keys is None
        if live and engine._pending:
            raise PlaythroughError("commit or discard pending events before snapshotting")
        with engine.store.reader() as reader:
            head = reader.head()
            position = head if at is None else at
            if position < 0 or position > head:
                raise ValueError(f"position {position} is outside the log (0..{head})")
            if keys is None:
                keys = [k for k, _ in engine.repository.items()]
                keys = list(dict.fromkeys([*keys, *self._partners(reader, keys, position)]))
            keys = list(dict.fromkeys(keys))
            states: dict[StateKey, State] = {}
            if position == head:
                heads = reader.state_heads(keys)
                for k in keys:
                    state = engine.repository.get(k)
                    if (
                        state is not None
                        and k not in engine._pending_keys
                        and state.last_event_id == heads.get(k)
                    ):
                        states[k] = state
            rebuild = [k for k in keys if k not in states]
            if rebuild:
                built, _ = engine.reconstitutor.reconstitute(reader, rebuild, position)
                states.update({k: built[k] for k in rebuild})
        self._write(position, states)
        if live:
            self._committed_since = 0
        return position

    def _write(self, position: int, states: dict[StateKey, State]) -> None:
        records = [
            SnapshotRecord(
                k, position, s.last_event_id, encode_state_checked(s, f"{k} at {position}")
            )
            for k, s in states.items()
        ]
        self.engine.store.write_snapshots(records, self.history)

    @staticmethod
    def _partners(reader: StoreReader, keys: Sequence[StateKey], at: int) -> list[StateKey]:
        """States coupled with ``keys`` by events since each key's newest snapshot."""
        if not keys:
            return []
        newest = reader.snapshots(keys, at)
        ranges = {k: (newest[k][0].position if newest.get(k) else 0, at) for k in keys}
        by_event: dict[int, dict[StateKey, int]] = {}
        for link in reader.links(ranges):
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
        with self.engine.store.reader() as reader:
            newest: dict[StateKey, int] = {}
            for record in reader.iter_snapshots():
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


@attrs.frozen
class ReplayReport:
    """What a full replay did: memory is bounded by ``peak_states``, not by the log."""

    played: int
    snapshot_sets: int
    peak_states: int
    position: int
    resumed_from: int


def full_replay(
    engine: Engine,
    *,
    progress: Callable[[int, int], None] | None,
    snapshot_every: int,
    chunk_size: int,
    resume: bool,
) -> ReplayReport:
    """Drop snapshots and stream the whole log through ``apply`` from blank.

    Every ``snapshot_every`` events the states touched since the last set are
    written as an aligned set (with the replay's position, in the same
    transaction) and dropped from memory, so memory does not grow with the log;
    a state touched again later restarts from that snapshot. An interrupted
    replay resumes from the last set written.
    """
    store = engine.store
    coordinator = engine.snapshots
    with store.reader() as reader:
        saved = reader.meta(REPLAY_META)
        total = reader.head()
    if resume and saved is not None:
        position = int(saved)
    else:
        store.drop_snapshots(None)
        store.write_snapshots([], coordinator.history, meta={REPLAY_META: "0"})
        position = 0
    states: dict[StateKey, State] = {}
    played = 0
    since = 0
    sets = 0
    peak = 0
    resumed_from = position

    def flush(at: int, *, done: bool) -> None:
        records = [
            SnapshotRecord(k, at, s.last_event_id, encode_state_checked(s, f"{k} at {at}"))
            for k, s in states.items()
        ]
        nonlocal sets
        store.write_snapshots(
            records, coordinator.history, meta={REPLAY_META: None if done else str(at)}
        )
        sets += 1
        states.clear()

    replay = Replay(states, ("apply", "handle"))
    while True:
        with store.reader() as reader:
            chunk = reader.events_after(position, chunk_size)
            if not chunk:
                break
            total = max(total, reader.head())
            links: dict[int, list[StateKey]] = {}
            for link in reader.links_between(position, chunk[-1].position):
                links.setdefault(link.position, []).append(link.key)
            missing = list(dict.fromkeys(k for ks in links.values() for k in ks if k not in states))
            if missing:
                found = reader.snapshots(missing, position)
                for k in missing:
                    history = found.get(k)
                    states[k] = state_from_snapshot(history[0]) if history else blank_for(k)
        for stored in chunk:
            keys = links.get(stored.position, [])
            for k in keys:
                if k not in states:  # dropped by a flush inside this chunk
                    with store.reader() as reader:
                        history = reader.snapshots([k], stored.position).get(k)
                    states[k] = state_from_snapshot(history[0]) if history else blank_for(k)
            peak = max(peak, len(states))
            replay.play(decode_event(stored), stored.position, keys)
            played += 1
            since += 1
            position = stored.position
            if since >= snapshot_every:
                flush(position, done=False)
                since = 0
        if progress is not None:
            progress(position, total)
    flush(position, done=True)
    return ReplayReport(played, sets, peak, position, resumed_from)
