"""Server-side SVG pictures of a load plan and of the coupling graph.

Drawn in Python from the same data as ``Plan.to_dict()`` and
``CouplingGraph.to_dict()``, so a page shows its picture with no JavaScript
library and no network: the inspector works offline, the picture is in the
HTML a test (or ``curl``) receives, and there is no layout engine to ship or
pin. The layout is simple and deterministic: a plan's states in columns by
their distance from the targets along the "needed" edges, in natural order
within a column; the graph's event types in one column, state types in the
next.
"""

from __future__ import annotations

from html import escape
from typing import Any
from urllib.parse import quote

__all__ = ["graph_svg", "plan_svg"]

_W, _H = 210, 46  # a node's box
_COL, _ROW = 330, 74  # distance between columns and rows
_PAD = 24
_DEFS = (
    "<defs><marker id='arrow' viewBox='0 0 10 10' refX='10' refY='5' markerWidth='7' "
    "markerHeight='7' orient='auto-start-reverse'><path d='M 0 0 L 10 5 L 0 10 z' "
    "fill='#555'/></marker></defs>"
)


def _fit(text: str, limit: int = 30) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _state_href(node: dict[str, Any]) -> str:
    path = f"/states/{quote(node['type'], safe='')}"
    if node.get("state_id") is not None:
        path += "/" + quote(str(node["state_id"]), safe="")
    return path


def _detail(node: dict[str, Any]) -> str:
    start = f"snapshot {node['start']}" if node["from_snapshot"] else "blank"
    if node["rewound"]:
        return f"REWOUND {node['newest_snapshot']} → {start} · plays {node['events']}"
    return f"from {start} · plays {node['events']}"


def _edge(
    x1: float, y1: float, x2: float, y2: float, text: str, cls: str, both: bool = False
) -> str:
    """A line with its label; a one-way edge curves gently to the left of its direction,
    so X->Y and Y->X for different events do not overlap; a two-way edge is straight."""
    mx, my = (x1 + x2) / 2, (y1 + y2) / 2
    dx, dy = x2 - x1, y2 - y1
    length = max((dx * dx + dy * dy) ** 0.5, 1.0)
    bend = 0 if both else 22
    cx, cy = mx - dy / length * bend, my + dx / length * bend
    lx, ly = (mx + cx) / 2, (my + cy) / 2 - (6 if both else 0)
    start = " marker-start='url(#arrow)'" if both else ""
    return (
        f"<g class='{cls}'><path d='M {x1:.1f} {y1:.1f} Q {cx:.1f} {cy:.1f} {x2:.1f} {y2:.1f}' "
        f"fill='none' marker-end='url(#arrow)'{start}/>"
        f"<text x='{lx:.1f}' y='{ly:.1f}' class='edge-label'>{escape(text)}</text></g>"
    )


def _anchor(pos: tuple[float, float], toward: tuple[float, float]) -> tuple[float, float]:
    """Where a line from a box's centre toward a point leaves the box."""
    x, y = pos
    tx, ty = toward
    dx, dy = tx - x, ty - y
    if dx == 0 and dy == 0:
        return x, y
    sx = (_W / 2) / abs(dx) if dx else float("inf")
    sy = (_H / 2) / abs(dy) if dy else float("inf")
    s = min(sx, sy)
    return x + dx * s, y + dy * s


def plan_svg(data: dict[str, Any]) -> str:
    """The plan (``plan_data``) as an ``<svg>``: targets bold, rewound states red."""
    nodes = data["nodes"]
    if not nodes:
        return "<svg xmlns='http://www.w3.org/2000/svg' class='plan' width='10' height='10'/>"
    out: dict[str, list[str]] = {}
    for edge in data["edges"]:
        out.setdefault(edge["from"], []).append(edge["to"])
    layer = {t: 0 for t in data["targets"]}
    frontier = list(data["targets"])
    while frontier:
        nxt = []
        for n in frontier:
            for m in out.get(n, []):
                if m not in layer:
                    layer[m] = layer[n] + 1
                    nxt.append(m)
        frontier = nxt
    deepest = max(layer.values(), default=0)
    columns: dict[int, list[dict[str, Any]]] = {}
    for node in nodes:  # nodes come targets first, then in natural order
        columns.setdefault(layer.get(node["id"], deepest + 1), []).append(node)
    pos: dict[str, tuple[float, float]] = {}
    for col, members in columns.items():
        for row, node in enumerate(members):
            pos[node["id"]] = (_PAD + _W / 2 + col * _COL, _PAD + _H / 2 + row * _ROW)
    width = int(_PAD * 2 + _W + max(columns) * _COL)
    height = int(_PAD * 2 + _H + (max(len(m) for m in columns.values()) - 1) * _ROW)
    parts = [
        f"<svg xmlns='http://www.w3.org/2000/svg' class='plan' width='{width}' "
        f"height='{height}' viewBox='0 0 {width} {height}' role='img' "
        f"aria-label='load plan at position {data['at']}'>",
        _DEFS,
    ]
    pairs = {(e["from"], e["to"]): e for e in data["edges"]}
    for edge in data["edges"]:
        back = pairs.get((edge["to"], edge["from"]))
        both = back is not None and back["positions"] == edge["positions"]
        if both and edge["from"] > edge["to"]:
            continue  # drawn once, from the other end, with an arrowhead at each end
        a, b = pos[edge["from"]], pos[edge["to"]]
        (x1, y1), (x2, y2) = _anchor(a, b), _anchor(b, a)
        parts.append(_edge(x1, y1, x2, y2, edge["label"], "edge", both))
    for node in nodes:
        x, y = pos[node["id"]]
        cls = (
            "node" + (" target" if node["target"] else "") + (" rewound" if node["rewound"] else "")
        )
        detail = _detail(node)
        parts.append(
            f"<a href='{escape(_state_href(node))}'><g class='{cls}' data-node='{node['id']}'>"
            f"<title>{escape(node['label'])}: {escape(detail)}</title>"
            f"<rect x='{x - _W / 2:.1f}' y='{y - _H / 2:.1f}' width='{_W}' height='{_H}' rx='7'/>"
            f"<text x='{x:.1f}' y='{y - 5:.1f}' class='node-label'>"
            f"{escape(_fit(node['label']))}</text>"
            f"<text x='{x:.1f}' y='{y + 13:.1f}' class='node-detail'>"
            f"{escape(_fit(detail, 36))}</text></g></a>"
        )
    parts.append("</svg>")
    return "".join(parts)


def graph_svg(data: dict[str, Any]) -> str:
    """The coupling graph (``CouplingGraph.to_dict``): coupled edges thick, hot spots red."""
    events, states = data["events"], data["states"]
    rows = max(len(events), len(states), 1)
    pos: dict[tuple[str, str], tuple[float, float]] = {}
    for i, e in enumerate(events):
        pos[("e", e["type"])] = (_PAD + _W / 2, _PAD + _H / 2 + i * _ROW)
    for i, s in enumerate(states):
        pos[("s", s["type"])] = (_PAD + _W / 2 + _COL * 1.4, _PAD + _H / 2 + i * _ROW)
    width = int(_PAD * 2 + _W + _COL * 1.4)
    height = int(_PAD * 2 + _H + (rows - 1) * _ROW)
    parts = [
        f"<svg xmlns='http://www.w3.org/2000/svg' class='graph' width='{width}' "
        f"height='{height}' viewBox='0 0 {width} {height}' role='img' "
        "aria-label='event types and the state types they touch'>",
        _DEFS,
    ]
    for edge in data["edges"]:
        a, b = pos[("e", edge["event"])], pos[("s", edge["state"])]
        (x1, y1), (x2, y2) = _anchor(a, b), _anchor(b, a)
        cls = "edge coupled" if edge["coupled"] else "edge"
        parts.append(
            f"<g class='{cls}'><line x1='{x1:.1f}' y1='{y1:.1f}' x2='{x2:.1f}' y2='{y2:.1f}' "
            "marker-end='url(#arrow)'/></g>"
        )
    for e in events:
        x, y = pos[("e", e["type"])]
        detail = "coupled: " + ", ".join(e["coupled"]) if e["coupled"] else ""
        parts.append(
            f"<g class='node event'><title>{escape(e['type'])} {escape(detail)}</title>"
            f"<rect x='{x - _W / 2:.1f}' y='{y - _H / 2:.1f}' width='{_W}' height='{_H}' "
            f"rx='23'/><text x='{x:.1f}' y='{y - 3:.1f}' class='node-label'>"
            f"{escape(_fit(e['type']))}</text><text x='{x:.1f}' y='{y + 13:.1f}' "
            f"class='node-detail'>{escape(_fit(detail, 36))}</text></g>"
        )
    for s in states:
        x, y = pos[("s", s["type"])]
        cls = "node state" + (" hot" if s["hot"] else "")
        detail = f"{s['event_types']} event type(s)" + (" · HOT SPOT" if s["hot"] else "")
        parts.append(
            f"<g class='{cls}'><title>{escape(s['type'])}: {escape(detail)}</title>"
            f"<rect x='{x - _W / 2:.1f}' y='{y - _H / 2:.1f}' width='{_W}' height='{_H}' rx='7'/>"
            f"<text x='{x:.1f}' y='{y - 3:.1f}' class='node-label'>{escape(_fit(s['type']))}"
            f"</text><text x='{x:.1f}' y='{y + 13:.1f}' class='node-detail'>"
            f"{escape(detail)}</text></g>"
        )
    parts.append("</svg>")
    return "".join(parts)
