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
import logging
import warnings
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

import attrs

from ._archived import archived_until_steps, refuse_archived_steps
from ._errors import (
    ArchivedRangeError,
    DecodeError,
    ReconstitutionError,
    UnknownKeysError,
    UnknownTypeError,
)
from ._model import Event, State, StateKey
from ._personal import chunked, unseal_steps
from ._playing import APPLY_ONLY, EventPlayer
from ._records import SnapshotRecord, missing_event
from ._serialization import blank_for, decode_event, state_from_snapshot
from ._steps import Steps, call, run_reader
from ._upcasting import snapshot_problem

_log = logging.getLogger("playthrough")

if TYPE_CHECKING:
    import networkx as nx

    from ._stores import StoreReader

__all__ = ["Plan", "PlayObserver", "StatePlan", "StateReconstitutor", "known_positions"]


@attrs.define
class StatePlan:
    """How one state is rebuilt."""

    key: StateKey
    need: int
    needed_from: int
    start: int = 0
    snapshot: SnapshotRecord | None = None
    newest_snapshot: int | None = None
    event_count: int = 0  # how many events this state plays
    # Stored snapshots a load must not use (position, why): planned as if absent.
    skipped: list[tuple[int, str]] = attrs.Factory(list)
    # Positions of skipped snapshots that stand for no event (the state was blank there).
    blank_at: frozenset[int] = frozenset()

    @property
    def events(self) -> int:
        """Deprecated: the number of events, now :attr:`event_count`."""
        warnings.warn(
            "StatePlan.events is deprecated (removed in 0.3.0); use StatePlan.event_count",
            DeprecationWarning,
            stacklevel=2,
        )
        return self.event_count

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
    #: Snapshots that could not be decoded and were passed over (the load then
    #: starts from an older one or blank: exact, slower), one line each.
    skipped: list[str] = attrs.field(factory=list)

    @property
    def graph(self) -> nx.DiGraph:
        """The dependency graph: an edge X -> Y when an event of X's needed Y just before it.

        Built on demand, and networkx is imported only here: ``import playthrough`` and
        a load that nobody explains do not pay for it.
        """
        import networkx as nx

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
        from ._ids import label, natural_key

        targets = ", ".join(map(label, self.targets))
        lines = [
            f"plan for {targets} at position {self.at}: {len(self.states)} state(s), "
            f"{self.events_played} event(s) to play, {self.rounds} round(s) of reads"
        ]
        order = list(self.targets) + sorted(
            (k for k in self.states if k not in self.targets), key=natural_key
        )
        for key in order:
            sp = self.states[key]
            origin = (
                f"snapshot at {sp.start}" if sp.snapshot is not None else "blank (no snapshot used)"
            )
            line = (
                f"  {label(key)}: starts from {origin}, "
                f"plays {sp.event_count} event(s) in ({sp.start}, {sp.need}]"
            )
            if key not in self.targets:
                pulled = sorted(self.why(key), key=lambda item: (item[1], natural_key(item[0])))
                pulls = ", ".join(f"event {p} of {label(src)}" for src, p in pulled[:3])
                line += f"; needed as of {sp.needed_from} by {pulls}"
            for position, why in sp.skipped:
                line += f"; snapshot at {position} NOT USED: {why}"
            if sp.rewound:
                line += (
                    f"; REWOUND: its newest snapshot (at {sp.newest_snapshot}) is past "
                    f"position {sp.needed_from}, where an event needs it"
                )
            lines.append(line)
        for line in self.skipped:
            lines.append(f"  SKIPPED {line}")
        if self.positions:
            shown = ", ".join(map(str, self.positions[:20]))
            more = f" … (+{len(self.positions) - 20})" if len(self.positions) > 20 else ""
            lines.append(f"  events: {shown}{more}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.explain()

    def to_dict(self, event_types: Mapping[int, str] | None = None) -> dict[str, Any]:
        """The plan as JSON-able data: ``nodes`` (``rewound``, ``target``), ``edges``
        (``positions`` of the events that pulled a state in), ``rewound``.
        ``event_types`` (position -> type name) names the events on the edges."""
        from ._pictures import plan_data

        return plan_data(self, event_types)

    def to_mermaid(self, event_types: Mapping[int, str] | None = None) -> str:
        """A Mermaid flowchart: rewound states highlighted, edges labelled with the event."""
        from ._pictures import plan_mermaid

        return plan_mermaid(self, event_types)

    def to_dot(self, event_types: Mapping[int, str] | None = None) -> str:
        """The same picture as Graphviz DOT."""
        from ._pictures import plan_dot

        return plan_dot(self, event_types)


class PlayObserver(Protocol):
    """Told around each event a plan plays (snapshots are decoded before the first)."""

    def before(
        self, event: Event, position: int, part: tuple[StateKey, ...], states: dict[StateKey, State]
    ) -> None: ...

    def after(
        self, event: Event, position: int, part: tuple[StateKey, ...], states: dict[StateKey, State]
    ) -> None: ...


class _BadSnapshot(Exception):
    """A snapshot of the plan cannot be decoded (the load falls back, see reconstitute)."""

    def __init__(self, record: SnapshotRecord, error: DecodeError) -> None:
        super().__init__(str(error))
        self.record = record
        self.error = error

    def describe(self) -> str:
        return (
            f"snapshot of {self.record.key} at position {self.record.position} cannot be "
            f"decoded ({self.error}); the load used an older snapshot or the log instead"
        )


def _decode_snapshot(record: SnapshotRecord) -> State:
    try:
        return state_from_snapshot(record)
    except (UnknownTypeError, UnknownKeysError):
        raise  # no module defines the type, or an upcaster is wrong: code to fix, said loudly
    except DecodeError as exc:
        raise _BadSnapshot(record, exc) from exc


def explain_steps(reconstitutor: StateReconstitutor, key: StateKey, at: int | None) -> Steps[Plan]:
    """The plan a load of ``key`` would run, as reader requests (both engines' ``explain``):
    at the head, what a live load plays (its plan brings every state to the head)."""
    if at is None:
        head = yield call("head")
        return (yield from checked_plan_steps(reconstitutor, [key], head, to_head=True))
    yield from refuse_archived_steps(at, f"explaining a load at {at}")
    return (yield from checked_plan_steps(reconstitutor, [key], at))


def checked_plan_steps(
    reconstitutor: StateReconstitutor,
    targets: Sequence[StateKey],
    at: int,
    *,
    to_head: bool = False,
) -> Steps[Plan]:
    """A plan whose snapshots all decode (for ``explain``): bad ones are passed over, and said."""
    exclude: set[tuple[StateKey, int, str]] = set()
    skipped: list[str] = []
    while True:
        plan = yield from reconstitutor.plan_steps(
            targets, at, to_head=to_head, exclude=frozenset(exclude)
        )
        plan.skipped.extend(skipped)
        try:
            for sp in plan.states.values():
                if sp.snapshot is not None:
                    _decode_snapshot(sp.snapshot)
            return plan
        except _BadSnapshot as bad:
            exclude.add((bad.record.key, bad.record.position, bad.record.data))
            skipped.append(bad.describe())


def _refuse_unusable_base(states: dict[StateKey, StatePlan]) -> Steps[None]:
    """Refuse a plan that would skip a snapshot it cannot do without.

    Skipping an unusable snapshot is exact only while the events before it are
    in the log. After an archive (``playthrough archive``) the base snapshots at
    the cut stand for the archived events: a state that must start before the
    cut because its base snapshot there is unusable cannot be rebuilt here. A
    state no archived event touched has no base and starts blank, exactly.
    """
    skipping = [sp for sp in states.values() if sp.skipped]
    if not skipping:
        return  # the common case: no extra read
    cut = yield from archived_until_steps()
    for sp in skipping:
        # Every state an archived event touched has a base snapshot at the cut (archive
        # writes one, nothing drops it). Starting before the cut is exact for a state
        # without one (no archived event touched it: it starts blank), not for a state
        # whose base this code cannot use.
        # A snapshot at the cut of a state no event had touched by then (its last event
        # is None) stands for nothing archived: a user's snapshot set, not a base.
        base = [(p, why) for p, why in sp.skipped if p == cut and p not in sp.blank_at]
        if cut and sp.start < cut and base:
            position, why = base[-1]
            if "event classes" in why:
                remedy = (
                    "The archived events would now be applied differently and are not in "
                    "the log: read with the event classes that wrote it, or import the "
                    "archive files into a store and run `playthrough snapshot` there"
                )
            else:
                remedy = (
                    "Give the state class an upcaster path from that version (upcast_vK), "
                    "or read with the code that wrote it"
                )
            raise ArchivedRangeError(
                f"{sp.key} needs its snapshot at {position} (the log before position {cut} "
                f"was archived), but this code cannot use it: {why}. {remedy}"
            )


def usable_snapshots(
    history: list[SnapshotRecord], skipped: list[tuple[int, str]] | None = None
) -> list[SnapshotRecord]:
    """The snapshots a load may start from; the others go to ``skipped`` with the reason.

    A snapshot whose version has no upcaster path, or whose class shape changed
    without a version bump, is never used: the plan is made as if it did not exist.
    """
    out = history
    for i, record in enumerate(history):
        problem = snapshot_problem(record)
        if problem is not None:
            if out is history:
                out = list(history[:i])
            if skipped is not None:
                skipped.append((record.position, problem))
        elif out is not history:
            out.append(record)
    return out


def known_positions(
    reader: StoreReader, found: dict[StateKey, list[SnapshotRecord]]
) -> dict[StateKey, list[SnapshotRecord]]:
    """``found`` with every snapshot row's ``last_event_id`` known (see known_positions_steps)."""
    return run_reader(known_positions_steps(found), reader)


def known_positions_steps(
    found: dict[StateKey, list[SnapshotRecord]],
) -> Steps[dict[StateKey, list[SnapshotRecord]]]:
    """``found`` with the ``last_event_id`` of every snapshot row that lacks one filled in.

    A row written by older code, or by hand, may hold NULL there. Its value is
    still exact, but a state loaded from it would carry ``last_event_id None``
    and every later commit on it would be refused as concurrent. The position
    is derived: the state's last event at or before the snapshot, that is its
    heads row's when that is not past the snapshot, else its last link up to
    it. A state with no event up to the snapshot (an archive's base snapshot of
    a state first touched after the cut) keeps None, which is right. Costs
    nothing unless such a row is found (then two reads).
    """
    lacking: dict[StateKey, int] = {}
    for key, history in found.items():
        for record in history:
            if record.last_event_id is None:
                lacking[key] = max(lacking.get(key, 0), record.position)
    if not lacking:
        return found
    heads = yield call("state_heads", list(lacking))
    ranges = {k: (0, p) for k, p in lacking.items() if k not in heads or heads[k] > p}
    touching: dict[StateKey, list[int]] = {}
    for link in (yield call("links", ranges)) if ranges else ():
        if link.key in ranges:
            touching.setdefault(link.key, []).append(link.position)
    out = dict(found)
    for key in lacking:
        head = heads.get(key)
        mine = sorted(touching.get(key, []))
        filled = []
        for record in found[key]:
            if record.last_event_id is None:
                if head is not None and head <= record.position:
                    last: int | None = head
                else:
                    i = bisect.bisect_right(mine, record.position)
                    last = mine[i - 1] if i else None
                record = record._replace(last_event_id=last)
            filled.append(record)
        out[key] = filled
    return out


def _starting_snapshot(history: list[SnapshotRecord], needed_from: int) -> SnapshotRecord | None:
    """The newest snapshot at or before ``needed_from`` (history is newest first): the rewind."""
    return next((s for s in history if s.position <= needed_from), None)


def _taking_part(
    event_links: dict[StateKey, int], states: dict[StateKey, StatePlan], position: int
) -> tuple[StateKey, ...]:
    """The states an event is played on: those whose range holds it, plus every state
    coupled with them in it (same link group). A state whose snapshot already includes
    the event is never among them, unless coupled, and then the plan has rewound it."""
    groups = {
        g
        for k, g in event_links.items()
        if k in states and states[k].start < position <= states[k].need
    }
    return tuple(k for k, g in event_links.items() if g in groups)


def _held_just_before(held: StatePlan | None, position: int) -> bool:
    """Whether the plan holds a state just before the event at ``position``: it starts
    before the event (so the event is not in its snapshot) and is needed up to it."""
    return held is not None and held.start < position and held.need >= position - 1


class StateReconstitutor:
    """Plans loads over the state-event links and plays them with an EventPlayer."""

    def plan(
        self,
        reader: StoreReader,
        targets: Sequence[StateKey],
        at: int,
        *,
        use_snapshots: bool = True,
        to_head: bool = False,
        exclude: frozenset[tuple[StateKey, int, str]] = frozenset(),
        since: int | None = None,
    ) -> Plan:
        """The plan of :meth:`plan_steps`, read through ``reader``."""
        steps = self.plan_steps(
            targets, at, use_snapshots=use_snapshots, to_head=to_head, exclude=exclude, since=since
        )
        return run_reader(steps, reader)

    def plan_steps(
        self,
        targets: Sequence[StateKey],
        at: int,
        *,
        use_snapshots: bool = True,
        to_head: bool = False,
        exclude: frozenset[tuple[StateKey, int, str]] = frozenset(),
        since: int | None = None,
    ) -> Steps[Plan]:
        """What loading ``targets`` as of ``at`` takes; ``use_snapshots=False`` starts every
        state from blank (the reference path verification compares snapshots against).

        ``since``: the targets are needed from that position on, so each starts
        from its newest snapshot at or before it (blank for 0) and plays every
        event of its own after it: a state's history in one playthrough.

        With ``to_head``, every state that joins the plan is played to ``at``
        too (not only to just before the event that needs it): the plan becomes
        one playthrough of the targets' coupled component since their
        snapshots, and every state it holds comes out current, ready for the
        identity map and for a heads-value write-back.
        """
        if not use_snapshots:
            # From blank needs every event: refused when the log's start was archived.
            yield from refuse_archived_steps(0, "a snapshot-free rebuild")
        states: dict[StateKey, StatePlan] = {}
        edges: dict[tuple[StateKey, StateKey], list[int]] = {}
        for key in targets:
            states[key] = StatePlan(key, need=at, needed_from=at if since is None else since)
        snaps: dict[StateKey, list[SnapshotRecord]] = {}
        links: dict[int, dict[StateKey, int]] = {}
        touching: dict[StateKey, list[int]] = {}
        fetched: dict[StateKey, tuple[int, int]] = {}
        scanned: dict[StateKey, tuple[int, int]] = {}
        rounds = 0
        while True:
            rounds += 1
            new = [k for k in states if k not in snaps]
            if new and use_snapshots:
                found = yield from known_positions_steps((yield call("snapshots", new, at)))
                for k in new:
                    history = [
                        r for r in found.get(k, []) if (k, r.position, r.data) not in exclude
                    ]
                    snaps[k] = usable_snapshots(history, states[k].skipped) if history else []
                    blank = frozenset(r.position for r in history if r.last_event_id is None)
                    if blank:  # rare: most plans allocate nothing here
                        states[k].blank_at = blank
            else:
                for k in new:
                    snaps[k] = []
            for sp in states.values():
                history = snaps[sp.key]
                chosen = _starting_snapshot(history, sp.needed_from)
                sp.snapshot = chosen
                sp.start = chosen.position if chosen is not None else 0
                sp.newest_snapshot = history[0].position if history else None
            # Ranges are frozen for the round: links were fetched for exactly these, and a
            # requirement found while scanning one state takes effect on the next round.
            bounds = {sp.key: (sp.start, sp.need) for sp in states.values()}
            yield from self._fetch_links(bounds, fetched, links, touching)
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
                                states[other] = StatePlan(
                                    other, need=at if to_head else req, needed_from=req
                                )
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
        yield from _refuse_unusable_base(states)
        return self._finish(at, tuple(targets), states, links, touching, edges, rounds)

    @staticmethod
    def _fetch_links(
        bounds: dict[StateKey, tuple[int, int]],
        fetched: dict[StateKey, tuple[int, int]],
        links: dict[int, dict[StateKey, int]],
        touching: dict[StateKey, list[int]],
    ) -> Steps[None]:
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
            for position, key, group in (yield call("links", ranges)):
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
            sp.event_count = len(played)
            positions.update(played)
        taking_part: dict[int, tuple[StateKey, ...]] = {}
        for e in positions:
            event_links = links[e]
            part = _taking_part(event_links, states, e)
            for k in part:
                if not _held_just_before(states.get(k), e):
                    raise ReconstitutionError(  # a planner bug, never a user error
                        f"inconsistent plan: {k} takes part in event {e} but is not held "
                        "just before it"
                    )
            taking_part[e] = part
        return Plan(at, targets, states, sorted(positions), taking_part, edges, rounds)

    def play(
        self, reader: StoreReader, plan: Plan, observer: PlayObserver | None = None
    ) -> dict[StateKey, State]:
        """Run the plan through one EventPlayer; returns every state of the plan as last played.

        ``observer`` is told before and after each event is played (a state's history).
        """
        return run_reader(self.play_steps(plan, observer), reader)

    def play_steps(
        self, plan: Plan, observer: PlayObserver | None = None
    ) -> Steps[dict[StateKey, State]]:
        """:meth:`play` as reader requests (one: the plan's events)."""
        states: dict[StateKey, State] = {}
        for sp in plan.states.values():
            states[sp.key] = (
                _decode_snapshot(sp.snapshot) if sp.snapshot is not None else blank_for(sp.key)
            )
        player = EventPlayer(states, APPLY_ONLY)
        wanted = iter(plan.positions)
        # Events come sealed from the store: each chunk opened with its subjects' keys.
        for chunk in chunked((yield call("events", plan.positions))):
            for stored in (yield from unseal_steps(chunk)):
                expected = next(wanted)
                if stored.position != expected:  # links name it, the log lacks it
                    raise missing_event(expected, "a link of a state being loaded points at it")
                event = decode_event(stored)
                part = plan.taking_part[stored.position]
                if observer is None:
                    player.play(event, stored.position, part)
                else:
                    observer.before(event, stored.position, part, states)
                    player.play(event, stored.position, part)
                    observer.after(event, stored.position, part, states)
        for expected in wanted:
            raise missing_event(expected, "a link of a state being loaded points at it")
        return states

    def reconstitute(
        self,
        reader: StoreReader,
        targets: Iterable[StateKey],
        at: int,
        *,
        use_snapshots: bool = True,
        to_head: bool = False,
        since: int | None = None,
        observer: PlayObserver | None = None,
    ) -> tuple[dict[StateKey, State], Plan]:
        """The targets as of ``at``, plus every other state the plan finished at ``at``.

        With ``use_snapshots=False`` no stored snapshot is read: every state starts blank.
        """
        steps = self.reconstitute_steps(
            targets,
            at,
            use_snapshots=use_snapshots,
            to_head=to_head,
            since=since,
            observer=observer,
        )
        return run_reader(steps, reader)

    def reconstitute_steps(
        self,
        targets: Iterable[StateKey],
        at: int,
        *,
        use_snapshots: bool = True,
        to_head: bool = False,
        since: int | None = None,
        observer: PlayObserver | None = None,
    ) -> Steps[tuple[dict[StateKey, State], Plan]]:
        """:meth:`reconstitute` as reader requests: the seam both engines drive."""
        wanted = list(dict.fromkeys(targets))
        exclude: set[tuple[StateKey, int, str]] = set()
        skipped: list[str] = []
        while True:
            plan = yield from self.plan_steps(
                wanted,
                at,
                use_snapshots=use_snapshots,
                to_head=to_head,
                exclude=frozenset(exclude),
                since=since,
            )
            plan.skipped.extend(skipped)
            try:
                states = yield from self.play_steps(plan, observer)
                break
            except _BadSnapshot as bad:  # an older snapshot or the log can answer
                exclude.add((bad.record.key, bad.record.position, bad.record.data))
                skipped.append(bad.describe())
                _log.warning("playthrough: %s", bad.describe())
        complete = {k: s for k, s in states.items() if plan.states[k].need >= at}
        return complete, plan
