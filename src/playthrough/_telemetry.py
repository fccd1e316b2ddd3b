"""OpenTelemetry spans and metrics, when the ``otel`` extra is installed.

``pip install 'playthrough[otel]'`` installs ``opentelemetry-api``; the
application configures the SDK (providers, exporters) as usual. Without the
package every function here returns at its first line: no import, no object.

Spans (named ``playthrough.<what>``, timed after the fact from the duration
the engine measured): ``commit`` (``playthrough.event_count``,
``playthrough.first_position``, ``playthrough.last_position``,
``playthrough.event_types``, ``playthrough.outcome``; a refused commit, by a
conflict or an error, is a ``commit`` span with status ERROR, its reason and
``error.type``), ``load``
(``playthrough.events_played``, ``playthrough.states``, ``playthrough.position``,
``playthrough.rewound``), ``snapshot`` (``playthrough.state_count``,
``playthrough.position``), ``replay`` and ``verify``.

Metrics: ``playthrough.events.committed`` (counter), ``playthrough.commit.duration``
(histogram, ms), ``playthrough.conflicts`` (counter),
``playthrough.load.events_played`` (histogram), ``playthrough.snapshot.rows``
(counter), ``playthrough.subjects.forgotten`` (counter, an audit count of
``forget`` calls that deleted a key; a ``forget`` span too, never the subject).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

try:
    from opentelemetry import metrics, trace
except ImportError:  # the extra is not installed: every function is a no-op
    ENABLED = False
else:
    ENABLED = True

_instruments: dict[str, Any] = {}
_tracer: Any = None


def _setup() -> None:
    global _tracer
    # Proxies: they follow whatever providers the application sets, even later.
    _tracer = trace.get_tracer("playthrough")
    meter = metrics.get_meter("playthrough")
    _instruments["committed"] = meter.create_counter(
        "playthrough.events.committed", unit="{event}", description="events committed"
    )
    _instruments["commit_ms"] = meter.create_histogram(
        "playthrough.commit.duration", unit="ms", description="time of a commit's append"
    )
    _instruments["conflicts"] = meter.create_counter(
        "playthrough.conflicts", unit="{commit}", description="commits refused by a conflict"
    )
    _instruments["played"] = meter.create_histogram(
        "playthrough.load.events_played", unit="{event}", description="events a load played"
    )
    _instruments["snapshot_rows"] = meter.create_counter(
        "playthrough.snapshot.rows", unit="{row}", description="snapshot rows written"
    )
    _instruments["forgotten"] = meter.create_counter(
        "playthrough.subjects.forgotten", unit="{subject}", description="data subjects forgotten"
    )


if ENABLED:
    _setup()


def span(name: str, seconds: float, attributes: dict[str, Any]) -> None:
    """A finished span ``playthrough.<name>`` that lasted ``seconds`` until now."""
    if not ENABLED:
        return
    end = time.time_ns()
    started = _tracer.start_span(
        f"playthrough.{name}",
        start_time=end - int(seconds * 1e9),
        attributes={f"playthrough.{k}": v for k, v in attributes.items()},
    )
    started.end(end_time=end)


def committed(count: int, first: int, last: int, seconds: float, types: Sequence[str] = ()) -> None:
    if not ENABLED:
        return
    _instruments["committed"].add(count, {"outcome": "committed"})
    _instruments["commit_ms"].record(seconds * 1000, {"outcome": "committed"})
    span(
        "commit",
        seconds,
        {
            "event_count": count,
            "first_position": first,
            "last_position": last,
            "event_types": list(types),
            "outcome": "committed",
        },
    )


def refused(count: int, error: BaseException, types: Sequence[str], outcome: str) -> None:
    """A commit that wrote nothing: ``outcome`` is ``conflict`` (counted in
    ``playthrough.conflicts``) or ``error``; its span has status ERROR with the reason."""
    if not ENABLED:
        return
    if outcome == "conflict":
        _instruments["conflicts"].add(1, {"error": type(error).__name__})
    end = time.time_ns()
    started = _tracer.start_span(
        "playthrough.commit",
        start_time=end,
        attributes={
            "playthrough.event_count": count,
            "playthrough.event_types": list(types),
            "playthrough.outcome": outcome,
            "error.type": type(error).__name__,
        },
    )
    started.set_status(trace.Status(trace.StatusCode.ERROR, str(error)[:500]))
    started.end(end_time=end)


def loaded(events_played: int, states: int, position: int, rewound: int, seconds: float) -> None:
    if not ENABLED:
        return
    _instruments["played"].record(events_played)
    span(
        "load",
        seconds,
        {
            "events_played": events_played,
            "states": states,
            "position": position,
            "rewound": rewound,
        },
    )


def snapshot_set(position: int, rows: int, seconds: float) -> None:
    if not ENABLED:
        return
    _instruments["snapshot_rows"].add(rows)
    span("snapshot", seconds, {"position": position, "state_count": rows})


def forgotten(found: bool, seconds: float) -> None:
    """A ``forget`` (counted when it deleted a key); the subject is never recorded."""
    if not ENABLED:
        return
    if found:
        _instruments["forgotten"].add(1)
    span("forget", seconds, {"found": found})
