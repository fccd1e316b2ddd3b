"""The inspector's HTML pages, rendered on the server from ``_api``'s data.

Plain HTML and one stylesheet shipped in the package; no JavaScript at all.
Every value is escaped; pictures are inline SVG from ``_svg``.
"""

from __future__ import annotations

import json
from datetime import datetime
from html import escape
from typing import Any
from urllib.parse import quote, urlencode

from starlette.requests import Request

from .._model import registry
from ._api import Api, ApiError
from ._svg import graph_svg, plan_svg

__all__ = [
    "error_page",
    "event_page",
    "followers_page",
    "graph_page",
    "log_page",
    "schedule_page",
    "state_page",
    "verify_page",
]

_NAV = (
    ("/log", "Log"),
    ("/followers", "Followers"),
    ("/schedule", "Schedule"),
    ("/graph", "Coupling graph"),
    ("/verify", "Verify"),
)


def _layout(title: str, heading: str, body: str) -> str:
    nav = " ".join(f"<a href='{href}'>{text}</a>" for href, text in _NAV)
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>{escape(heading)} · playthrough inspector</title>"
        "<link rel='stylesheet' href='/static/style.css'></head><body>"
        f"<header><strong>playthrough inspector</strong> <span class='store'>{escape(title)}</span>"
        f"<nav>{nav}</nav></header><main><h1>{escape(heading)}</h1>{body}</main></body></html>"
    )


def _json(value: Any) -> str:
    return f"<pre class='json'>{escape(json.dumps(value, indent=2, ensure_ascii=False))}</pre>"


def _short(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return escape(text if len(text) <= 60 else text[:57] + "...")


def _state_href(type_name: str, state_id: Any) -> str:
    ident = "-" if state_id is None else quote(str(state_id), safe="")
    return f"/states/{quote(type_name, safe='')}/{ident}"


def _event_link(position: int | None) -> str:
    if position is None:
        return ""
    return f"<a class='event-link' href='/events/{position}'>#{position}</a>"


def _touched(event: dict[str, Any]) -> str:
    """Links to the states an event's ``state_id`` fields name."""
    cls = registry.events.get(event["type"])
    if cls is None:
        return ""
    links = []
    for f in cls._pt_spec.fields:
        value = event["data"].get(f.name)
        values = value if isinstance(value, list) else [value]
        for v in values:
            if v is not None:
                name = f.state_class._pt_type_name
                text = f"{escape(name)}({escape(str(v))})"
                links.append(f"<a class='state-link' href='{_state_href(name, v)}'>{text}</a>")
    for s in cls._pt_spec.singletons:
        name = s._pt_type_name
        links.append(f"<a class='state-link' href='{_state_href(name, None)}'>{escape(name)}</a>")
    return " ".join(links)


def error_page(title: str, status: int, message: str) -> str:
    return _layout(title, f"Error {status}", f"<p class='error'>{escape(message)}</p>")


def _parse_time(params: dict[str, str], name: str) -> datetime | None:
    text = params.pop(name, "")
    if not text:
        return None
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise ApiError(400, f"{name} must be an ISO date or time, not {text!r}") from None
    return when if when.tzinfo is not None else when.astimezone()


def log_page(api: Api, title: str, request: Request) -> str:
    params = {k: v for k, v in request.query_params.items() if v != ""}
    types = [t for t in request.query_params.getlist("type") if t]
    since, until = _parse_time(params, "since"), _parse_time(params, "until")
    limit = int(params.get("limit", "50")) if params.get("limit", "50").isdigit() else 50
    rows: list[dict[str, Any]] = []
    next_after: int | None = None
    head = 0
    query = dict(params)
    while True:  # the time filter reads on until a page is full or the log ends
        found = api.events(query, types)
        head = found["head"]
        for event in found["events"]:
            when = datetime.fromisoformat(event["fired_at"]) if event["fired_at"] else None
            if (since and (when is None or when < since)) or (until and when and when > until):
                continue
            rows.append(event)
        next_after = found["next_after"]
        if next_after is None or len(rows) >= limit or not (since or until):
            break
        query["after"] = str(next_after)
    form = (
        "<form class='filters' method='get' action='/log'>"
        + "".join(
            f"<label>{label} <input name='{name}' "
            f"value='{escape(request.query_params.get(name, ''))}' placeholder='{hint}'></label>"
            for name, label, hint in (
                ("type", "type", "bank.Deposited"),
                ("state", "state", "TYPE:ID"),
                ("correlation", "correlation", ""),
                ("since", "since", "2026-01-31T12:00"),
                ("until", "until", ""),
                ("after", "after position", "0"),
            )
        )
        + "<button type='submit'>Filter</button></form>"
    )
    body = [form, f"<p>{len(rows)} event(s) shown; the log holds 1..{head}.</p>"]
    body.append(
        "<table class='events'><thead><tr><th>#</th><th>fired at</th><th>type</th>"
        "<th>states</th><th>caused by</th><th>metadata</th></tr></thead><tbody>"
    )
    for e in rows:
        body.append(
            f"<tr><td>{_event_link(e['position'])}</td><td>{escape(e['fired_at'] or '')}</td>"
            f"<td>{escape(e['type'])}</td><td>{_touched(e)}</td>"
            f"<td>{_event_link(e['caused_by'])}</td>"
            f"<td>{_short(e['metadata']) if e['metadata'] else ''}</td></tr>"
        )
    body.append("</tbody></table>")
    if next_after is not None:
        nxt = {k: v for k, v in request.query_params.items() if v}
        nxt["after"] = str(next_after)
        body.append(f"<p><a class='next' href='/log?{escape(urlencode(nxt))}'>next page →</a></p>")
    return _layout(title, "Log", "".join(body))


def _effects(items: list[dict[str, Any]]) -> str:
    if not items:
        return ""
    out = ["<ul class='effects'>"]
    for e in items:
        out.append(
            f"<li>{_event_link(e['position'])} {escape(e['type'])}{_effects(e['effects'])}</li>"
        )
    out.append("</ul>")
    return "".join(out)


def event_page(api: Api, title: str, position: str) -> str:
    e = api.event(position)
    body = [
        "<table class='facts'>",
        f"<tr><th>position</th><td>{e['position']}</td></tr>",
        f"<tr><th>type</th><td>{escape(e['type'])}</td></tr>",
        f"<tr><th>fired at</th><td>{escape(e['fired_at'] or '')}</td></tr>",
        f"<tr><th>caused by</th><td>{_event_link(e['caused_by'])}</td></tr>",
        f"<tr><th>correlation</th><td>{escape(e['correlation'] or '')}</td></tr>",
        f"<tr><th>states</th><td>{_touched(e)}</td></tr>",
        "</table><h2>Payload</h2>",
        _json(e["data"]),
        "<h2>Metadata</h2>",
        _json(e["metadata"]) if e["metadata"] else "<p>none</p>",
        "<h2>Causes</h2>",
    ]
    if e["causes"]:
        chain = " → ".join(f"{_event_link(c['position'])} {escape(c['type'])}" for c in e["causes"])
        body.append(f"<p class='causes'>{chain} → <strong>this event</strong></p>")
    else:
        body.append("<p>none: a root event</p>")
    body.append("<h2>Effects</h2>")
    body.append(_effects(e["effects"]) or "<p>none</p>")
    return _layout(title, f"Event #{e['position']} {e['type']}", "".join(body))


def state_page(api: Api, title: str, type_name: str, state_id: str | None) -> str:
    s = api.state(type_name, state_id)
    history = api.history(type_name, state_id)
    plan = api.plan(type_name, state_id, None)
    info = s["info"]
    body = ["<table class='facts'>"]
    for name, value in info.items():
        body.append(
            f"<tr><th>{escape(name.replace('_', ' '))}</th><td>{escape(str(value))}</td></tr>"
        )
    if s["can_complete"]:
        done = s["completed"]
        text = "no" if done is None else f"yes, by {done['event_type']} at #{done['position']}"
        body.append(f"<tr><th>completed</th><td>{escape(text)}</td></tr>")
    body.append("</table><h2>Value</h2>")
    body.append(_json(s["value"]))
    body.append(f"<h2 id='history'>History ({len(history['events'])} event(s))</h2>")
    if history["since"]:
        body.append(
            f"<p>Positions 1..{history['since']} are archived; the history starts from the "
            "base snapshot there.</p>"
        )
    body.append("<ol class='timeline'>")
    for entry in history["events"]:
        changes = (
            "".join(
                f"<tr><td>{escape(c['field'])}</td><td>{_short(c['before'])}</td>"
                f"<td>→</td><td>{_short(c['after'])}</td></tr>"
                for c in entry["changes"]
            )
            or "<tr><td colspan='4'>(no field changed)</td></tr>"
        )
        cause = f" caused by {_event_link(entry['caused_by'])}" if entry["caused_by"] else ""
        body.append(
            f"<li>{_event_link(entry['position'])} <strong>{escape(entry['type'])}</strong> "
            f"<span class='when'>{escape(entry['fired_at'] or '')}</span>{cause}"
            f"<table class='diff'>{changes}</table></li>"
        )
    body.append("</ol><h2 id='plan'>Load plan</h2>")
    body.append(
        f"<p>{len(plan['nodes'])} state(s), {plan['events_played']} event(s) to play; "
        f"{len(plan['rewound'])} rewound (red). Edges: an event of one state that needed "
        "the other just before it.</p>"
    )
    body.append(f"<div class='picture'>{plan_svg(plan)}</div>")
    body.append(f"<details><summary>as text</summary><pre>{escape(plan['text'])}</pre></details>")
    return _layout(title, s["label"], "".join(body))


def followers_page(api: Api, title: str) -> str:
    rows = api.followers()["followers"]
    if not rows:
        return _layout(title, "Followers", "<p>no followers</p>")
    body = [
        "<table class='events'><tr><th>name</th><th>position</th><th>lag</th><th>updated</th></tr>"
    ]
    for f in rows:
        body.append(
            f"<tr><td>{escape(f['name'])}</td><td>{f['position']}</td>"
            f"<td class='{'lagging' if f['lag'] else ''}'>{f['lag']}</td>"
            f"<td>{escape(f['updated_at'])}</td></tr>"
        )
    body.append("</table>")
    return _layout(title, "Followers", "".join(body))


def schedule_page(api: Api, title: str) -> str:
    data = api.schedule()
    body = []
    for status in ("pending", "failed"):
        rows = data[status]
        body.append(f"<h2>{status.capitalize()} ({len(rows)})</h2>")
        if not rows:
            body.append("<p>none</p>")
            continue
        body.append(
            "<table class='events'><tr><th>id</th><th>type</th><th>due</th><th>error</th></tr>"
        )
        for r in rows:
            body.append(
                f"<tr><td>{escape(r['id'])}</td><td>{escape(r['type'])}</td>"
                f"<td>{escape(r['due_at'])}</td><td>{escape(r['error'] or '')}</td></tr>"
            )
        body.append("</table>")
    return _layout(title, "Schedule", "".join(body))


def graph_page(api: Api, title: str) -> str:
    data = api.graph()
    hot = ", ".join(data["hot"]) or "none"
    body = (
        "<p>Event types (left) and the state types they touch (right). Thick edges: an "
        f"<code>apply</code> hook couples the states. Hot spots (red): {escape(hot)}.</p>"
        f"<div class='picture'>{graph_svg(data)}</div>"
    )
    return _layout(title, "Coupling graph", body)


def verify_page(api: Api, title: str) -> str:
    report = api.verify()
    verdict = "passed" if report["ok"] else "FAILED"
    css = "ok" if report["ok"] else "error"
    body = f"<p class='{css}'>verify {verdict}</p><pre>{escape(report['text'])}</pre>"
    return _layout(title, "Verify", body)
