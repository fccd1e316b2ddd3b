"""Bisection: the event a snapshot's differing fields come from, in log2(n) rebuilds."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence

import attrs

from .._model import State, StateKey
from .._reconstitution import StateReconstitutor
from .._serialization import blank_for, encode_state
from .._stores import Store
from .rebuild import rebuild
from .report import LAST_EVENT, MISSING, canon


def _projection(state: State, fields: Sequence[str]) -> dict[str, str]:
    data = json.loads(encode_state(state))
    out = {f: canon(data.get(f, MISSING)) for f in fields if f != LAST_EVENT}
    if LAST_EVENT in fields:
        out[LAST_EVENT] = str(state.last_event_id)
    return out


@attrs.frozen
class Divergence:
    """Where :func:`locate_divergence` found a snapshot's differing fields to come from."""

    event: int | None
    event_type: str | None
    nondeterministic: bool
    rebuilds: int


def locate_divergence(
    reconstitutor: StateReconstitutor,
    store: Store,
    key: StateKey,
    position: int,
    fields: Sequence[str],
) -> Divergence:
    """Find, by bisection, the event the snapshot's differing ``fields`` come from.

    Let ``c_0 = 0`` (blank, before any event) and ``c_1 < … < c_n`` be the
    positions ``<= position`` of the events that touch ``key``. ``R(c)`` is the
    state rebuilt from the log at ``c``, from blank, snapshots ignored; each
    rebuild is a fresh replay. Only ``fields`` (those on which the snapshot and
    ``R(position)`` differ) are compared; ``R(c_n)`` equals ``R(position)``.

    1. Two rebuilds at ``c_n`` are compared. When they disagree, the log does
       not determine ``fields``: some ``apply`` is nondeterministic (wall
       clock, unseeded randomness...). ``unstable(i)`` holds when two
       rebuilds at ``c_i`` disagree; ``unstable(0)`` is false (blank is blank)
       and ``unstable(n)`` true. The answer is the first event after which
       the fields are no longer reproducible: bisection keeps ``lo`` with
       ``not unstable(lo)`` and ``hi`` with ``unstable(hi)`` until they are
       adjacent and answers ``c_hi`` (``nondeterministic=True``).
    2. Otherwise the log is reproducible and the snapshot disagrees with it.
       ``settled(i)`` holds when ``R(c_i)`` equals ``R(c_n)`` on ``fields``.
       If ``settled(0)``, the log never moves the fields off their blank
       values: the answer is ``None``. Otherwise bisection as above answers
       ``c_hi`` with ``settled(hi)`` and ``not settled(hi - 1)``: the event
       after which the log takes the values the snapshot contradicts, while
       just before it the log held other values.

    In both cases, when the fields reach their final (or unreproducible)
    values once and keep them (set-once fields, counters, growing lists: the
    usual case), ``c_hi`` is exactly the earliest event after which the state
    rebuilt from the log disagrees with the snapshot in that way and stays
    so; a field that leaves its final value and later returns to it can make
    bisection stop at an earlier visit of that value. A nondeterminism that
    happens to repeat a value in two rebuilds goes unseen by that probe.

    At most ``2 * (ceil(log2(n)) + 1)`` states are rebuilt (``rebuilds``).
    """
    rebuilds = 0
    with store.reader() as reader:
        links = reader.links({key: (0, position)})
        candidates = [0, *sorted({lk.position for lk in links if lk.key == key})]
        cache: dict[int, dict[str, str]] = {}

        def at(i: int, *, fresh: bool = False) -> dict[str, str]:
            nonlocal rebuilds
            q = candidates[i]
            if q == 0:
                return _projection(blank_for(key), fields)
            if not fresh and q in cache:
                return cache[q]
            rebuilds += 1
            found = _projection(rebuild(reconstitutor, reader, [key], q)[key], fields)
            cache.setdefault(q, found)
            return found

        def bisect(holds: Callable[[int], bool]) -> int:
            lo, hi = 0, len(candidates) - 1
            while hi - lo > 1:
                mid = (lo + hi) // 2
                if holds(mid):
                    hi = mid
                else:
                    lo = mid
            return hi

        last = len(candidates) - 1
        final = at(last)
        nondeterministic = last > 0 and at(last, fresh=True) != final
        if nondeterministic:
            hi = bisect(lambda i: at(i) != at(i, fresh=True))
        elif at(0) == final:
            return Divergence(None, None, False, rebuilds)
        else:
            hi = bisect(lambda i: at(i) == final)
        first = candidates[hi]
        kind = next(iter(reader.events([first]))).type
    return Divergence(first, kind, nondeterministic, rebuilds)
