"""The ``playthrough`` logger: what the engine did, with structured ``extra`` fields.

Each function also feeds OpenTelemetry (``_telemetry``), a no-op without the extra.

Silent by default (a NullHandler, as a library should); an application turns
it on with ``logging.getLogger("playthrough").setLevel(...)`` and a handler.
Every record carries its facts as attributes (``record.event_count``, ...) so
a JSON formatter or a log pipeline can read them without parsing messages.

Levels: DEBUG for every commit and for a conflict ``Engine.retry`` will retry; INFO for
snapshot sets, full replays, forgets, loads that rewound a state or played many events;
WARNING for commits refused by a conflict (inside ``retry``, only the last attempt's);
ERROR for handle hooks that raised after their event was committed.
Records are built only when the level is enabled, so a silent logger costs a
level check per commit.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from contextvars import ContextVar
from typing import TYPE_CHECKING

from . import _telemetry

if TYPE_CHECKING:
    from ._reconstitution import Plan
    from ._replay import ReplayReport

logger = logging.getLogger("playthrough")
logger.addHandler(logging.NullHandler())

#: A load whose plan plays at least this many events is logged at INFO.
MANY_EVENTS = 1000


class EventTypes(tuple[str, ...]):
    """The distinct type names of a batch's events, in order; ``counts``: how many of each
    (the committed-events counter's ``event_type`` attribute)."""

    counts: dict[str, int]


def event_types(batch: Sequence[object]) -> EventTypes:
    """The distinct type names of a batch's events, in order (for logs and spans)."""
    counts: dict[str, int] = {}
    for e in batch:
        name = getattr(type(e), "_pt_type_name", type(e).__name__)
        counts[name] = counts.get(name, 0) + 1
    found = EventTypes(counts)
    found.counts = counts
    return found


def committed(positions: Sequence[int], seconds: float, batch: Sequence[object] = ()) -> None:
    """A commit of ``batch`` at ``positions``: its event types are gathered only when a
    record or telemetry takes them (most commits: neither)."""
    if not positions:
        return
    debug = logger.isEnabledFor(logging.DEBUG)
    if not debug and not _telemetry.observed():
        return
    types = event_types(batch)
    _telemetry.committed(len(positions), positions[0], positions[-1], seconds, types, types.counts)
    if debug:
        logger.debug(
            "committed %d event(s) at positions %d..%d in %.2f ms: %s",
            len(positions),
            positions[0],
            positions[-1],
            seconds * 1000,
            ", ".join(types),
            extra={
                "event_count": len(positions),
                "first_position": positions[0],
                "last_position": positions[-1],
                "duration_ms": seconds * 1000,
                "event_types": list(types),
            },
        )


#: Inside ``Engine.retry``: (this attempt, of how many). A conflict it will retry is
#: routine under contention, so it is DEBUG; only the last attempt's is a WARNING.
retrying: ContextVar[tuple[int, int] | None] = ContextVar("playthrough_retrying", default=None)


def conflict(event_count: int, error: BaseException, types: Sequence[str] = ()) -> None:
    _telemetry.refused(event_count, error, types, "conflict")
    attempt = retrying.get()
    if attempt is not None and attempt[0] < attempt[1]:
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug(
                "commit of %d event(s) refused, retrying (attempt %d of %d): %s",
                event_count,
                attempt[0],
                attempt[1],
                error,
                extra={
                    "event_count": event_count,
                    "error": str(error),
                    "attempt": attempt[0],
                    "attempts": attempt[1],
                },
            )
        return
    if attempt is not None:
        logger.warning(
            "commit of %d event(s) refused after %d attempts, giving up: %s",
            event_count,
            attempt[1],
            error,
            extra={
                "event_count": event_count,
                "error": str(error),
                "attempt": attempt[0],
                "attempts": attempt[1],
            },
        )
        return
    logger.warning(
        "commit of %d event(s) refused: %s",
        event_count,
        error,
        extra={"event_count": event_count, "error": str(error)},
    )


def commit_failed(event_count: int, error: BaseException, types: Sequence[str] = ()) -> None:
    _telemetry.refused(event_count, error, types, "error")
    logger.error(
        "commit of %d event(s) failed, nothing was written: %s",
        event_count,
        error,
        extra={"event_count": event_count, "error": str(error)},
    )


def handler_failed(event_type: str, hook: str, position: int | None, error: BaseException) -> None:
    logger.error(
        "%s.%s raised after event %s was committed: %r",
        event_type,
        hook,
        position,
        error,
        exc_info=error,
        extra={"event_type": event_type, "hook": hook, "position": position},
    )


def loaded(plan: Plan, seconds: float, store: object = None) -> None:
    """A load worth a line: it rewound a state or played many events."""
    rewound = plan.rewound
    if _telemetry.ENABLED:
        kinds = sorted({k.type for k in plan.targets})
        _telemetry.loaded(
            plan.events_played,
            len(plan.states),
            plan.at,
            len(rewound),
            seconds,
            ",".join(kinds),
            store,
        )
    many = plan.events_played >= MANY_EVENTS
    if not (rewound or many) or not logger.isEnabledFor(logging.INFO):
        return
    targets = [str(k) for k in plan.targets]
    names = [str(sp.key) for sp in rewound]
    extra = {
        "targets": targets,
        "position": plan.at,
        "events_played": plan.events_played,
        "state_count": len(plan.states),
        "rewound": names,
        "duration_ms": seconds * 1000,
    }
    if rewound:
        logger.info(
            "load of %s at %d rewound %s (snapshots out of sync); played %d event(s)",
            ", ".join(targets),
            plan.at,
            ", ".join(names),
            plan.events_played,
            extra=extra,
        )
    else:
        logger.info(
            "load of %s at %d played %d event(s) over %d state(s) in %.1f ms",
            ", ".join(targets),
            plan.at,
            plan.events_played,
            len(plan.states),
            seconds * 1000,
            extra=extra,
        )


def snapshot_set(position: int, state_count: int, seconds: float, store: object = None) -> None:
    _telemetry.snapshot_set(position, state_count, seconds, store)
    logger.info(
        "wrote a snapshot set of %d state(s) at position %d in %.1f ms",
        state_count,
        position,
        seconds * 1000,
        extra={"position": position, "state_count": state_count, "duration_ms": seconds * 1000},
    )


def replayed(report: ReplayReport, seconds: float, store: object = None) -> None:
    _telemetry.span(
        "replay",
        seconds,
        {"events_played": report.played, "position": report.position},
        store=store,
    )
    logger.info(
        "full replay played %d event(s) up to position %d (resumed from %d), "
        "wrote %d snapshot set(s), held at most %d state(s)",
        report.played,
        report.position,
        report.resumed_from,
        report.snapshot_sets,
        report.peak_states,
        extra={
            "events_played": report.played,
            "position": report.position,
            "resumed_from": report.resumed_from,
            "snapshot_sets": report.snapshot_sets,
            "peak_states": report.peak_states,
        },
    )


def forgotten(subject: str, found: bool, seconds: float, store: object = None) -> None:
    """An audit record of a forget: INFO, the subject as a hash only (never its data)."""
    import hashlib

    _telemetry.forgotten(found, seconds, store)
    if logger.isEnabledFor(logging.INFO):
        digest = hashlib.sha256(b"playthrough subject\x00" + subject.encode()).hexdigest()[:12]
        logger.info(
            "forgot data subject %s (hashed)%s in %.2f ms",
            digest,
            "" if found else ": it had no key, nothing to forget",
            seconds * 1000,
            extra={"subject_hash": digest, "forgotten": found, "duration_ms": seconds * 1000},
        )
