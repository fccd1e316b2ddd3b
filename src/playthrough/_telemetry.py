"""OpenTelemetry spans and metrics, when the ``otel`` extra is installed.

``pip install 'playthrough[otel]'`` installs ``opentelemetry-api``; the
application configures the SDK (providers, exporters) as usual. Without the
package every function here returns at its first line: no import, no object.

Every span is named ``playthrough.<what>`` and carries ``db.system``
(``sqlite`` or ``postgresql``; the store's, set by the shell that drives the
operation, see :func:`using`). Spans timed after the fact from the duration the
engine measured: ``commit`` (``playthrough.event_count``,
``playthrough.first_position``, ``playthrough.last_position``,
``playthrough.event_types``, ``playthrough.outcome``; a refused commit, by a
conflict or an error, is a ``commit`` span with status ERROR, its reason and
``error.type``), ``fire`` (``playthrough.event_type``, ``playthrough.outcome``:
``fired``, ``rejected`` when a ``validate`` hook refused it, ``error``),
``handle`` (one committed event's ``handle`` hooks: ``playthrough.event_type``,
``playthrough.position``, ``playthrough.outcome``: ``handled``, ``failed``,
``elsewhere``), ``load`` (``playthrough.events_played``,
``playthrough.states``, ``playthrough.position``, ``playthrough.rewound``),
``find`` and ``count`` (``playthrough.state_type``, ``playthrough.found``),
``snapshot`` (``playthrough.state_count``, ``playthrough.position``),
``replay``, ``verify`` and ``forget`` (``playthrough.found``, never the
subject), ``scheduler.pass`` (one that claimed rows: ``playthrough.claimed``,
``playthrough.fired``) and ``followers.batch`` (one with events:
``playthrough.follower``, ``playthrough.events``, ``playthrough.position``). A span
around work, the parent of the spans in it: ``handlers.pending`` (a pass of
``run_pending_handlers`` that found some: ``playthrough.events``, ``playthrough.ran``).

Metrics (attributes in brackets): ``playthrough.events.committed`` (counter;
``event_type``), ``playthrough.commits`` (counter; ``outcome``: ``committed``,
``conflict``, ``error``), ``playthrough.commit.duration`` (histogram, ms;
``outcome``), ``playthrough.conflicts`` (counter; ``error``),
``playthrough.events.fired`` (counter; ``event_type``, ``outcome``),
``playthrough.handlers.run`` (counter; ``event_type``, ``outcome``),
``playthrough.scheduled.handled`` (counter; ``event_type``, ``outcome``: the row's
status after the pass), ``playthrough.follower.events`` (counter; ``follower``,
``outcome``: ``processed`` or ``passed``), ``playthrough.load.events_played``
(histogram; ``state_type``), ``playthrough.queries`` (counter; ``state_type``,
``kind``: ``find`` or ``count``), ``playthrough.snapshot.rows`` (counter),
``playthrough.subjects.forgotten`` (counter, an audit count of ``forget`` calls
that deleted a key).

Observable gauges, read from every store opened by URL in this process
(``Engine.open``, ``playthrough.connect``) when the SDK collects; attributes
``db.system`` and ``playthrough.store`` (the URL without its password):
``playthrough.follower.lag`` (events behind the head; ``follower``),
``playthrough.scheduler.backlog`` (``status``: ``due``, the pending rows whose time
has come, and ``failed``) and ``playthrough.handlers.pending`` (committed events
whose ``handle`` hooks have not completed). These are the numbers to alert on.
"""

from __future__ import annotations

import os
import time
import weakref
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar, Token
from datetime import UTC, datetime
from typing import Any

try:
    from opentelemetry import metrics, trace
except ImportError:  # the extra is not installed: every function is a no-op
    ENABLED = False
else:
    ENABLED = True

_instruments: dict[str, Any] = {}
_tracer: Any = None

#: The ``db.system`` of the store the running operation uses (set by the shells).
_system: ContextVar[str | None] = ContextVar("playthrough_db_system", default=None)
_systems: dict[type, str] = {}
#: The stores the observable gauges read (opened by URL; dropped when closed or gone).
_watched: weakref.WeakSet[Any] = weakref.WeakSet()


# The instruments by key: (name, unit, description); histograms apart.
_COUNTERS = {
    "committed": ("playthrough.events.committed", "{event}", "events committed"),
    "commits": ("playthrough.commits", "{commit}", "commit attempts, by outcome"),
    "conflicts": ("playthrough.conflicts", "{commit}", "commits refused by a conflict"),
    "fired": (
        "playthrough.events.fired",
        "{event}",
        "events fired (validated and applied), by outcome",
    ),
    "handled": ("playthrough.handlers.run", "{event}", "committed events whose handle hooks ran"),
    "scheduled": ("playthrough.scheduled.handled", "{event}", "scheduled events a pass handled"),
    "follower": ("playthrough.follower.events", "{event}", "events a follower processed or passed"),
    "queries": ("playthrough.queries", "{query}", "find and count queries of states by value"),
    "snapshot_rows": ("playthrough.snapshot.rows", "{row}", "snapshot rows written"),
    "forgotten": ("playthrough.subjects.forgotten", "{subject}", "data subjects forgotten"),
}
_HISTOGRAMS = {
    "commit_ms": ("playthrough.commit.duration", "ms", "time of a commit's append"),
    "played": ("playthrough.load.events_played", "{event}", "events a load played"),
}


def _setup() -> None:
    global _tracer
    # Proxies: they follow whatever providers the application sets, even later.
    _tracer = trace.get_tracer("playthrough")
    meter = metrics.get_meter("playthrough")
    for key, (name, unit, description) in _COUNTERS.items():
        _instruments[key] = meter.create_counter(name, unit=unit, description=description)
    for key, (name, unit, description) in _HISTOGRAMS.items():
        _instruments[key] = meter.create_histogram(name, unit=unit, description=description)
    meter.create_observable_gauge(
        "playthrough.follower.lag",
        callbacks=[_follower_lag],
        unit="{event}",
        description="events a follower is behind the head",
    )
    meter.create_observable_gauge(
        "playthrough.scheduler.backlog",
        callbacks=[_schedule_backlog],
        unit="{event}",
        description="scheduled events due and not fired, and failed ones",
    )
    meter.create_observable_gauge(
        "playthrough.handlers.pending",
        callbacks=[_pending_handlers],
        unit="{event}",
        description="committed events whose handle hooks have not completed",
    )


# ---------------------------------------------------------------- db.system


def db_system(store: Any) -> str:
    """``sqlite`` or ``postgresql`` (OpenTelemetry's names), from the store's URL."""
    cls = type(store)
    found = _systems.get(cls)
    if found is None:
        from ._urls import parse_store_url

        try:
            found = parse_store_url(store.url).kind
        except Exception:  # noqa: BLE001 - a store of the user's own: say so
            found = "other_sql"
        _systems[cls] = found
    return found


def using(store: Any) -> Token[str | None] | None:
    """The spans emitted from here until :func:`done` carry ``store``'s ``db.system``
    (none are, until a provider is set: then nothing is set)."""
    if not observed():
        return None
    return _system.set(db_system(store))


def done(token: Token[str | None] | None) -> None:
    if token is not None:
        _system.reset(token)


def _attributes(attributes: Mapping[str, Any], store: Any) -> dict[str, Any]:
    out = {f"playthrough.{k}": v for k, v in attributes.items()}
    system = db_system(store) if store is not None else _system.get()
    if system is not None:
        out["db.system"] = system
    return out


# ---------------------------------------------------------------- spans


_traced = False
_PROVIDER_FROM_ENV = "OTEL_PYTHON_TRACER_PROVIDER" in os.environ


def _tracing() -> bool:
    """Whether the application has set a tracer provider: until it does, a span would be a
    non-recording one (some microseconds per fire for nothing), so none is made. A global
    provider is set once, so once seen the answer stays yes."""
    global _traced
    if _traced:
        return True
    # trace.get_tracer_provider() reads os.environ on every call until a provider is set:
    # the global is read directly, unless the environment names a provider to load.
    provider = getattr(trace, "_TRACER_PROVIDER", None)
    if provider is None and (not hasattr(trace, "_TRACER_PROVIDER") or _PROVIDER_FROM_ENV):
        provider = trace.get_tracer_provider()
    if provider is None or isinstance(
        provider, (trace.ProxyTracerProvider, trace.NoOpTracerProvider)
    ):
        return False
    _traced = True
    return True


_metered = False
_METER_PROVIDER_FROM_ENV = "OTEL_PYTHON_METER_PROVIDER" in os.environ


def _metering() -> bool:
    """Whether the application has set a meter provider: until it does, the instruments
    are proxies that record nothing, so the per-fire and per-commit ones are not called.
    Like the tracer provider, a global meter provider is set once: once seen, yes."""
    global _metered
    if _metered:
        return True
    internal = getattr(metrics, "_internal", None)
    provider = getattr(internal, "_METER_PROVIDER", None)
    if provider is None and (
        internal is None or not hasattr(internal, "_METER_PROVIDER") or _METER_PROVIDER_FROM_ENV
    ):
        provider = metrics.get_meter_provider()
    proxy = getattr(internal, "_ProxyMeterProvider", ())
    if provider is None or isinstance(provider, (proxy, metrics.NoOpMeterProvider)):
        return False
    _metered = True
    return True


# Until a provider is set both globals are None (unless the environment names one to
# load): one read each tells "nothing is observed" on every fire.
_QUICK_NONE = (
    ENABLED
    and not _PROVIDER_FROM_ENV
    and not _METER_PROVIDER_FROM_ENV
    and hasattr(trace, "_TRACER_PROVIDER")
    and hasattr(getattr(metrics, "_internal", None), "_METER_PROVIDER")
)


def observed() -> bool:
    """Whether a fire or a commit is worth telling (a meter or a tracer provider is set):
    when not, they skip their metrics, spans and the facts gathered for them."""
    if _metered or _traced:
        return True
    if not ENABLED:
        return False
    if _QUICK_NONE and trace._TRACER_PROVIDER is None and metrics._internal._METER_PROVIDER is None:
        return False
    return _metering() or _tracing()


def span(
    name: str,
    seconds: float,
    attributes: Mapping[str, Any],
    *,
    store: Any = None,
    error: BaseException | None = None,
) -> None:
    """A finished span ``playthrough.<name>`` that lasted ``seconds`` until now
    (status ERROR with ``error.type`` when ``error`` is given)."""
    if not ENABLED or not _tracing():
        return
    end = time.time_ns()
    attrs = _attributes(attributes, store)
    if error is not None:
        attrs["error.type"] = type(error).__name__
    started = _tracer.start_span(
        f"playthrough.{name}", start_time=end - int(seconds * 1e9), attributes=attrs
    )
    if error is not None:
        started.set_status(trace.Status(trace.StatusCode.ERROR, str(error)[:500]))
    started.end(end_time=end)


class _Facts:
    """What a :func:`operation` learned on the way, set as its span's attributes."""

    __slots__ = ("span",)

    def __init__(self, span: Any) -> None:
        self.span = span

    def set(self, **facts: Any) -> None:
        if self.span is not None:
            for k, v in facts.items():
                self.span.set_attribute(f"playthrough.{k}", v)


_NO_FACTS = _Facts(None)


@contextmanager
def operation(name: str, store: Any, **attributes: Any) -> Iterator[_Facts]:
    """A span ``playthrough.<name>`` around a block of work, the parent of the spans in
    it; an exception leaving the block marks it ERROR. Only for plain (not generator)
    code: the span is the current one while the block runs."""
    if not ENABLED or not _tracing():
        yield _NO_FACTS
        return
    token = _system.set(db_system(store))
    try:
        with _tracer.start_as_current_span(
            f"playthrough.{name}", attributes=_attributes(attributes, store)
        ) as current:
            yield _Facts(current)
    finally:
        _system.reset(token)


def committed(
    count: int,
    first: int,
    last: int,
    seconds: float,
    types: Sequence[str] = (),
    counts: Mapping[str, int] | None = None,
) -> None:
    if not observed():
        return
    add = _instruments["committed"].add
    if counts:
        for event_type, n in counts.items():
            add(n, {"event_type": event_type})
    else:
        add(count)
    _instruments["commits"].add(1, {"outcome": "committed"})
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
    _instruments["commits"].add(1, {"outcome": outcome})
    span(
        "commit",
        0.0,
        {"event_count": count, "event_types": list(types), "outcome": outcome},
        error=error,
    )


def fired(event_type: str, seconds: float, error: BaseException | None = None) -> None:
    """One ``fire`` (its ``validate`` hooks, ``apply``, the loads it needed)."""
    if not observed():
        return
    if error is None:
        outcome = "fired"
    else:
        from ._errors import EventRejected

        outcome = "rejected" if isinstance(error, EventRejected) else "error"
    _instruments["fired"].add(1, {"event_type": event_type, "outcome": outcome})
    span("fire", seconds, {"event_type": event_type, "outcome": outcome}, error=error)


def handled(
    event_type: str,
    position: int | None,
    seconds: float,
    outcome: str,
    error: BaseException | None = None,
) -> None:
    """One committed event's ``handle`` hooks ran: ``handled``, ``failed`` or ``elsewhere``."""
    if not ENABLED:
        return
    _instruments["handled"].add(1, {"event_type": event_type, "outcome": outcome})
    attributes = {"event_type": event_type, "position": position or 0, "outcome": outcome}
    span("handle", seconds, attributes, error=error)


def scheduled(event_type: str, outcome: str) -> None:
    if ENABLED:
        _instruments["scheduled"].add(1, {"event_type": event_type, "outcome": outcome})


def follower_events(follower: str, processed: int, passed: int) -> None:
    if not ENABLED:
        return
    if processed:
        _instruments["follower"].add(processed, {"follower": follower, "outcome": "processed"})
    if passed:
        _instruments["follower"].add(passed, {"follower": follower, "outcome": "passed"})


def queried(kind: str, state_type: str, found: int, seconds: float) -> None:
    """A ``find`` (``found``: the rows the database matched) or a ``count``."""
    if not ENABLED:
        return
    _instruments["queries"].add(1, {"state_type": state_type, "kind": kind})
    span(kind, seconds, {"state_type": state_type, "found": found})


def loaded(
    events_played: int,
    states: int,
    position: int,
    rewound: int,
    seconds: float,
    state_type: str = "",
    store: Any = None,
) -> None:
    if not ENABLED:
        return
    _instruments["played"].record(events_played, {"state_type": state_type})
    span(
        "load",
        seconds,
        {
            "events_played": events_played,
            "states": states,
            "position": position,
            "rewound": rewound,
        },
        store=store,
    )


def snapshot_set(position: int, rows: int, seconds: float, store: Any = None) -> None:
    if not ENABLED:
        return
    _instruments["snapshot_rows"].add(rows)
    span("snapshot", seconds, {"position": position, "state_count": rows}, store=store)


def forgotten(found: bool, seconds: float, store: Any = None) -> None:
    """A ``forget`` (counted when it deleted a key); the subject is never recorded."""
    if not ENABLED:
        return
    if found:
        _instruments["forgotten"].add(1)
    span("forget", seconds, {"found": found}, store=store)


# ---------------------------------------------------------------- gauges


def watch(store: Any) -> None:
    """Let the observable gauges read ``store`` while it is open."""
    if ENABLED:
        _watched.add(store)


def _observe(read: Any) -> list[Any]:
    """One observation per (store, attributes) that ``read(store, reader)`` yields;
    a store that is closed (or failing) is left out of this collection."""
    from opentelemetry.metrics import Observation

    from ._urls import shown_url

    out: list[Any] = []
    for store in list(_watched):
        try:
            base = {"db.system": db_system(store), "playthrough.store": shown_url(store.url)}
            with store.reader() as reader:
                found = list(read(reader))
        except Exception:  # noqa: BLE001 - a closed store has nothing to report
            continue
        out.extend(Observation(value, {**base, **extra}) for value, extra in found)
    return out


def _follower_lag(_options: Any = None) -> list[Any]:
    def read(reader: Any) -> Iterator[tuple[int, dict[str, str]]]:
        head = reader.head()
        for row in reader.followers():
            yield head - row.position, {"follower": row.name}

    return _observe(read)


def _schedule_backlog(_options: Any = None) -> list[Any]:
    def read(reader: Any) -> Iterator[tuple[int, dict[str, str]]]:
        now = datetime.now(UTC)
        due = sum(1 for r in reader.schedules("pending") if datetime.fromisoformat(r.due_at) <= now)
        yield due, {"status": "due"}
        yield len(reader.schedules("failed")), {"status": "failed"}

    return _observe(read)


#: At most this many pending handlers are counted (a gauge above it reads this number).
PENDING_CAP = 100_000


def _pending_handlers(_options: Any = None) -> list[Any]:
    def read(reader: Any) -> Iterator[tuple[int, dict[str, str]]]:
        yield len(reader.pending_handlers(PENDING_CAP)), {}

    return _observe(read)


if ENABLED:
    _setup()
