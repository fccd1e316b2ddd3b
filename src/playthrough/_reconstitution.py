"""StateReconstitutor: plans which snapshots and events a load needs, then plays the plan.

The reference result of loading state S at position p is: every state blank,
every event up to p applied once, in global order. The planner computes the
smallest work that gives exactly that result.

Each state X in a plan carries ``need`` (the last position whose value of X is
required) and ``needed_from`` (the earliest). X starts from its newest snapshot
at or before ``needed_from`` (blank when none) and plays the events touching X
in ``(start, need]``. An event e in that range whose ``apply`` hook couples X
with Y (the link groups) requires Y's value just before e, so Y joins the plan
with ``needed_from <= e - 1 <= need``. When Y's newest snapshot is ahead of
``e - 1``, Y is *rewound* to an older snapshot of its short history, or to
blank. This repeats until nothing changes; each round reads the snapshots and
links of the states it discovered in one batch.

While playing, an event's hooks run for the states *taking part*: those whose
range holds the event, plus every state coupled with them in that event. A
state whose snapshot already includes the event never takes part, so no event
is applied twice and no hook sees a state at any position but just before the
event. The plan records which event pulled which state in; ``Plan.graph``
builds the networkx dependency graph from it on demand, for :meth:`Plan.explain`.
"""

from __future__ import annotations

import bisect
import json
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Any

import attrs
import networkx as nx

from ._errors import ReconstitutionError
from ._model import Event, State, StateKey, blank_state, decode_id, registry
from ._replay import APPLY_ONLY, Replay
from ._serialization import converter, decode
from ._stores import SnapshotRecord, StoredEvent, StoreReader


@attrs.define
class StatePlan:
    """How one state is rebuilt."""

    key: StateKey
    need: int
    needed_from: int
    start: int = 0
    snapshot: SnapshotRecord | None = None
    newest_snapshot: int | None = None
    events: int = 0

    @property
    def rewound(self) -> bool:
        return self.newest_snapshot is not None and self.start < self.newest_snapshot


@attrs.define
class Plan:
    """What a load will do: where each state starts and which events it plays."""

    at: int
    targets: tuple[StateKey, ...]
    states: dict[StateKey, StatePlan]
    positions: list[int]
    taking_part: dict[int, tuple[StateKey, ...]]
    edges: dict[tuple[StateKey, StateKey], list[int]]  # (puller, pulled) -> event positions
    rounds: int

    @property
    def graph(self) -> nx.DiGraph:
        """The dependency graph: an edge X -> Y when an event of X's needed Y just before it.

        Built on demand (networkx), so a load that nobody explains does not pay for it.
        """
        graph: nx.DiGraph = nx.DiGraph()
        graph.add_nodes_from(self.states)
        for (src, dst), positions in self.edges.items():
            graph.add_edge(src, dst, positions=positions)
        return graph

    @property
    def events_played(self) -> int:
        return len(self.positions)

    @property
    def rewound(self) -> list[StatePlan]:
        return [sp for sp in self.states.values() if sp.rewound]

    def why(self, key: StateKey) -> list[tuple[StateKey, int]]:
        """The (state, event position) pairs that pulled ``key`` into the plan."""
        return [
            (src, min(data["positions"])) for src, _, data in self.graph.in_edges(key, data=True)
        ]

    def explain(self) -> str:
        targets = ", ".join(map(str, self.targets))
        lines = [
            f"plan for {targets} at position {self.at}: {len(self.states)} state(s), "
            f"{self.events_played} event(s) to play, {self.rounds} round(s) of reads"
        ]
        order = list(self.targets) + sorted(k for k in self.states if k not in self.targets)
        for key in order:
            sp = self.states[key]
            origin = (
                f"snapshot at {sp.start}" if sp.snapshot is not None else "blank (no snapshot used)"
            )
            line = (
                f"  {key}: starts from {origin}, "
                f"plays {sp.events} event(s) in ({sp.start}, {sp.need}]"
            )
            if key not in self.targets:
                pulls = ", ".join(f"event {p} of {src}" for src, p in sorted(self.why(key))[:3])
                line += f"; needed as of {sp.needed_from} by {pulls}"
            if sp.rewound:
                line += (
                    f"; REWOUND: its newest snapshot (at {sp.newest_snapshot}) is past "
                    f"position {sp.needed_from}, where an event needs it"
                )
            lines.append(line)
        if self.positions:
            shown = ", ".join(map(str, self.positions[:20]))
            more = f" … (+{len(self.positions) - 20})" if len(self.positions) > 20 else ""
            lines.append(f"  events: {shown}{more}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.explain()


def decode_event(stored: StoredEvent) -> Event:
    try:
        cls = registry.events[stored.type]
        event: Event = _structure_hook(cls)(json.loads(stored.data), cls)
    except Exception:  # noqa: BLE001 - decode again the slow way for the clear error
        where = f" at position {stored.position}"
        cls = registry.event_class(stored.type, where)
        event = decode(cls, stored.data, f"event {stored.type}{where}")
    object.__setattr__(event, "_pt_position", stored.position)
    object.__setattr__(event, "_pt_data", stored.data)
    object.__setattr__(event, "_pt_caused_by", stored.caused_by)
    object.__setattr__(event, "_pt_fired_at", datetime.fromisoformat(stored.fired_at))
    if stored.correlation is not None:
        object.__setattr__(event, "_pt_correlation", stored.correlation)
    if stored.metadata is not None:
        object.__setattr__(event, "_pt_metadata", json.loads(stored.metadata))
    return event


_STRUCTURE: dict[type, Callable[[Any, type], Any]] = {}


def _structure_hook(cls: type) -> Callable[[Any, type], Any]:
    hook = _STRUCTURE.get(cls)
    if hook is None:
        hook = _STRUCTURE[cls] = converter.get_structure_hook(cls)
    return hook


def state_from_snapshot(record: SnapshotRecord) -> State:
    cls = registry.state_class(record.key.type, f" (snapshot at position {record.position})")
    state = decode(cls, record.data, f"snapshot of {record.key} at position {record.position}")
    object.__setattr__(state, "_pt_id", decode_id(record.key.id))
    object.__setattr__(state, "_pt_last_event_id", record.last_event_id)
    return state


def blank_for(key: StateKey) -> State:
    return blank_state(registry.state_class(key.type), decode_id(key.id))


class StateReconstitutor:
    """Plans loads over the state-event links and plays them as Replays."""

    def plan(self, reader: StoreReader, targets: Sequence[StateKey], at: int) -> Plan:
        states: dict[StateKey, StatePlan] = {}
        edges: dict[tuple[StateKey, StateKey], list[int]] = {}
        for key in targets:
            states[key] = StatePlan(key, need=at, needed_from=at)
        snaps: dict[StateKey, list[SnapshotRecord]] = {}
        links: dict[int, dict[StateKey, int]] = {}
        touching: dict[StateKey, list[int]] = {}
        fetched: dict[StateKey, tuple[int, int]] = {}
        scanned: dict[StateKey, tuple[int, int]] = {}
        rounds = 0
        while True:
            rounds += 1
            new = [k for k in states if k not in snaps]
            if new:
                found = reader.snapshots(new, at)
                for k in new:
                    snaps[k] = found.get(k, [])
            for sp in states.values():
                history = snaps[sp.key]
                chosen = next((s for s in history if s.position <= sp.needed_from), None)
                sp.snapshot = chosen
                sp.start = chosen.position if chosen is not None else 0
                sp.newest_snapshot = history[0].position if history else None
            # Ranges are frozen for the round: links were fetched for exactly these, and a
            # requirement found while scanning one state takes effect on the next round.
            bounds = {sp.key: (sp.start, sp.need) for sp in states.values()}
            self._fetch_links(reader, bounds, fetched, links, touching)
            changed = False
            for key, (lo, hi) in bounds.items():
                done = scanned.get(key)
                parts = [(lo, hi)] if done is None else [(lo, done[0]), (done[1], hi)]
                scanned[key] = (lo, hi) if done is None else (min(lo, done[0]), max(hi, done[1]))
                mine = touching.get(key, [])
                for a, b in parts:
                    if b <= a:
                        continue
                    for e in mine[bisect.bisect_right(mine, a) : bisect.bisect_right(mine, b)]:
                        event_links = links[e]
                        group = event_links[key]
                        for other, other_group in event_links.items():
                            if other == key or other_group != group:
                                continue
                            req = e - 1
                            op = states.get(other)
                            if op is None:
                                states[other] = StatePlan(other, need=req, needed_from=req)
                                changed = True
                            else:
                                if req > op.need:
                                    op.need = req
                                    changed = True
                                if req < op.needed_from:
                                    op.needed_from = req
                                    changed = True
                            edge = edges.get((key, other))
                            if edge is None:
                                edges[(key, other)] = [e]
                            else:
                                edge.append(e)
            if not changed:
                break
        return self._finish(at, tuple(targets), states, links, touching, edges, rounds)

    @staticmethod
    def _fetch_links(
        reader: StoreReader,
        bounds: dict[StateKey, tuple[int, int]],
        fetched: dict[StateKey, tuple[int, int]],
        links: dict[int, dict[StateKey, int]],
        touching: dict[StateKey, list[int]],
    ) -> None:
        first: dict[StateKey, tuple[int, int]] = {}
        second: dict[StateKey, tuple[int, int]] = {}
        for key, (lo, hi) in bounds.items():
            if hi <= lo and key not in fetched:
                continue
            have = fetched.get(key)
            if have is None:
                first[key] = (lo, hi)
                fetched[key] = (lo, hi)
                continue
            flo, fhi = have
            if lo < flo:
                first[key] = (lo, flo)
            if hi > fhi:
                (second if key in first else first)[key] = (fhi, hi)
            fetched[key] = (min(lo, flo), max(hi, fhi))
        grown: set[StateKey] = set()
        for ranges in (first, second):
            if not ranges:
                continue
            for position, key, group in reader.links(ranges):
                event_links = links.get(position)
                if event_links is None:
                    event_links = links[position] = {}
                if key not in event_links:
                    event_links[key] = group
                    mine = touching.get(key)
                    if mine is None:
                        touching[key] = [position]
                    else:
                        mine.append(position)
                        grown.add(key)
        for key in grown:  # a rewind appends positions before those already known
            touching[key].sort()

    @staticmethod
    def _finish(
        at: int,
        targets: tuple[StateKey, ...],
        states: dict[StateKey, StatePlan],
        links: dict[int, dict[StateKey, int]],
        touching: dict[StateKey, list[int]],
        edges: dict[tuple[StateKey, StateKey], list[int]],
        rounds: int,
    ) -> Plan:
        positions: set[int] = set()
        for sp in states.values():
            mine = touching.get(sp.key, [])
            played = mine[bisect.bisect_right(mine, sp.start) : bisect.bisect_right(mine, sp.need)]
            sp.events = len(played)
            positions.update(played)
        taking_part: dict[int, tuple[StateKey, ...]] = {}
        for e in positions:
            event_links = links[e]
            groups = {
                g
                for k, g in event_links.items()
                if k in states and states[k].start < e <= states[k].need
            }
            part = tuple(k for k, g in event_links.items() if g in groups)
            for k in part:
                held = states.get(k)
                if held is None or held.start >= e or held.need < e - 1:
                    raise ReconstitutionError(  # a planner bug, never a user error
                        f"inconsistent plan: {k} takes part in event {e} but is not held "
                        "just before it"
                    )
            taking_part[e] = part
        return Plan(at, targets, states, sorted(positions), taking_part, edges, rounds)

    def play(self, reader: StoreReader, plan: Plan) -> dict[StateKey, State]:
        """Run the plan as one Replay; returns every state of the plan as last played."""
        states: dict[StateKey, State] = {}
        for sp in plan.states.values():
            states[sp.key] = (
                state_from_snapshot(sp.snapshot) if sp.snapshot is not None else blank_for(sp.key)
            )
        replay = Replay(states, APPLY_ONLY)
        for stored in reader.events(plan.positions):
            replay.play(decode_event(stored), stored.position, plan.taking_part[stored.position])
        return states

    def reconstitute(
        self, reader: StoreReader, targets: Iterable[StateKey], at: int
    ) -> tuple[dict[StateKey, State], Plan]:
        """The targets as of ``at``, plus every other state the plan finished at ``at``."""
        plan = self.plan(reader, list(dict.fromkeys(targets)), at)
        states = self.play(reader, plan)
        complete = {k: s for k, s in states.items() if plan.states[k].need >= at}
        return complete, plan
