"""Pictures of a load plan and of the type-level coupling graph, as data, Mermaid and DOT.

A plan is drawn with one node per state it holds (targets first, then the
others in natural order, ``o2`` before ``o10``) and one edge per "an event of
X needed Y just before it", labelled with that event (its position, and its
type when the caller knows it). Rewound states are highlighted. Ids are
printed as the user wrote them (``Order(o13)``), never encoded.

Mermaid and DOT are text the user pastes into a renderer; the inspector draws
the same data as SVG on the server (``_svg.py``), so it needs no JavaScript.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ._ids import label, natural_key, readable_id

if TYPE_CHECKING:
    from ._coupling import CouplingGraph
    from ._model import StateKey
    from ._reconstitution import Plan, StatePlan

__all__ = ["graph_dot", "graph_mermaid", "plan_data", "plan_dot", "plan_mermaid"]


def _ordered(plan: Plan) -> list[StateKey]:
    targets = list(dict.fromkeys(plan.targets))
    return targets + sorted((k for k in plan.states if k not in targets), key=natural_key)


def _origin(sp: StatePlan) -> str:
    if sp.rewound:
        return f"REWOUND from snapshot at {sp.newest_snapshot} to " + (
            f"snapshot at {sp.start}" if sp.snapshot is not None else "blank"
        )
    return f"snapshot at {sp.start}" if sp.snapshot is not None else "blank"


def _edge_label(positions: list[int], event_types: Mapping[int, str] | None) -> str:
    first = min(positions)
    name = (event_types or {}).get(first)
    text = f"#{first}" + (f" {name}" if name else "")
    if len(positions) > 1:
        text += f" (+{len(positions) - 1})"
    return text


def plan_data(plan: Plan, event_types: Mapping[int, str] | None = None) -> dict[str, Any]:
    """The plan as JSON-able data: ``nodes``, ``edges``, ``rewound`` (node ids)."""
    order = _ordered(plan)
    ids = {key: f"n{i}" for i, key in enumerate(order)}
    nodes = []
    for key in order:
        sp = plan.states[key]
        nodes.append(
            {
                "id": ids[key],
                "type": key.type,
                "state_id": readable_id(key) or None,
                "label": label(key),
                "target": key in plan.targets,
                "rewound": sp.rewound,
                "start": sp.start,
                "from_snapshot": sp.snapshot is not None,
                "newest_snapshot": sp.newest_snapshot,
                "needed_from": sp.needed_from,
                "need": sp.need,
                "events": sp.event_count,
                "origin": _origin(sp),
            }
        )
    edges = []
    for (src, dst), positions in sorted(
        plan.edges.items(), key=lambda item: (order.index(item[0][0]), order.index(item[0][1]))
    ):
        ordered = sorted(positions)
        edges.append(
            {
                "from": ids[src],
                "to": ids[dst],
                "positions": ordered,
                "event_type": (event_types or {}).get(ordered[0]),
                "label": _edge_label(ordered, event_types),
            }
        )
    return {
        "at": plan.at,
        "targets": [ids[k] for k in dict.fromkeys(plan.targets)],
        "events_played": plan.events_played,
        "nodes": nodes,
        "edges": edges,
        "rewound": [ids[k] for k in order if plan.states[k].rewound],
        "skipped": list(plan.skipped),
    }


def _mermaid_text(text: str) -> str:
    return json.dumps(text)[1:-1].replace('\\"', "#quot;").replace("<", "#lt;")


def plan_mermaid(plan: Plan, event_types: Mapping[int, str] | None = None) -> str:
    """A Mermaid flowchart of the plan (rewound states red, targets bold)."""
    data = plan_data(plan, event_types)
    lines = ["flowchart LR"]
    for node in data["nodes"]:
        text = _mermaid_text(node["label"]) + "<br/>"
        text += _mermaid_text(f"{node['origin']}, plays {node['events']}")
        lines.append(f'    {node["id"]}["{text}"]')
    for edge in data["edges"]:
        lines.append(f'    {edge["from"]} -->|"{_mermaid_text(edge["label"])}"| {edge["to"]}')
    lines.append("    classDef target stroke-width:3px")
    lines.append("    classDef rewound fill:#fde2e2,stroke:#c0392b,color:#7b241c")
    targets = [n["id"] for n in data["nodes"] if n["target"]]
    if targets:
        lines.append(f"    class {','.join(targets)} target")
    if data["rewound"]:
        lines.append(f"    class {','.join(data['rewound'])} rewound")
    return "\n".join(lines) + "\n"


def _dot_text(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


def plan_dot(plan: Plan, event_types: Mapping[int, str] | None = None) -> str:
    """A Graphviz DOT digraph of the plan (rewound states filled red, targets bold)."""
    data = plan_data(plan, event_types)
    lines = [
        f"digraph {_dot_text(f'plan at {plan.at}')} {{",
        "    rankdir=LR;",
        '    node [shape=box, style="rounded"];',
    ]
    for node in data["nodes"]:
        attrs = [f"label={_dot_text(node['label'] + chr(10) + node['origin'])}"]
        if node["rewound"]:
            attrs.append('style="rounded,filled", fillcolor="#fde2e2", color="#c0392b"')
        if node["target"]:
            attrs.append("penwidth=3")
        lines.append(f"    {node['id']} [{', '.join(attrs)}];")
    for edge in data["edges"]:
        lines.append(f"    {edge['from']} -> {edge['to']} [label={_dot_text(edge['label'])}];")
    lines.append("}")
    return "\n".join(lines) + "\n"


def graph_mermaid(graph: CouplingGraph) -> str:
    """The coupling graph as Mermaid: event types -> state types; coupled edges thick."""
    data = graph.to_dict()
    lines = ["flowchart LR"]
    eids = {e["type"]: f"e{i}" for i, e in enumerate(data["events"])}
    sids = {s["type"]: f"s{i}" for i, s in enumerate(data["states"])}
    for e in data["events"]:
        mark = " (coupled)" if e["coupled"] else ""
        lines.append(f'    {eids[e["type"]]}(["{_mermaid_text(e["type"] + mark)}"])')
    for s in data["states"]:
        mark = f"<br/>HOT: {s['event_types']} event types" if s["hot"] else ""  # trusted
        lines.append(f'    {sids[s["type"]]}["{_mermaid_text(s["type"])}{mark}"]')
    for edge in data["edges"]:
        arrow = "==>" if edge["coupled"] else "-->"
        lines.append(f"    {eids[edge['event']]} {arrow} {sids[edge['state']]}")
    lines.append("    classDef hot fill:#fde2e2,stroke:#c0392b,color:#7b241c")
    hot = [sids[s["type"]] for s in data["states"] if s["hot"]]
    if hot:
        lines.append(f"    class {','.join(hot)} hot")
    return "\n".join(lines) + "\n"


def graph_dot(graph: CouplingGraph) -> str:
    """The coupling graph as DOT: coupled edges bold, hot-spot states filled red."""
    data = graph.to_dict()
    lines = ["digraph coupling {", "    rankdir=LR;"]
    eids = {e["type"]: f"e{i}" for i, e in enumerate(data["events"])}
    sids = {s["type"]: f"s{i}" for i, s in enumerate(data["states"])}
    for e in data["events"]:
        text = e["type"] + (" (coupled)" if e["coupled"] else "")
        lines.append(f"    {eids[e['type']]} [shape=ellipse, label={_dot_text(text)}];")
    for s in data["states"]:
        extra = ', style=filled, fillcolor="#fde2e2", color="#c0392b"' if s["hot"] else ""
        text = s["type"] + (f"\nHOT: {s['event_types']} event types" if s["hot"] else "")
        lines.append(f"    {sids[s['type']]} [shape=box, label={_dot_text(text)}{extra}];")
    for edge in data["edges"]:
        style = ' [penwidth=3, label="coupled"]' if edge["coupled"] else ""
        lines.append(f"    {eids[edge['event']]} -> {sids[edge['state']]}{style};")
    lines.append("}")
    return "\n".join(lines) + "\n"
