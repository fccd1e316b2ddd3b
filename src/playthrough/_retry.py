"""Retrying a unit of work that lost an optimistic-concurrency race.

Under contention on a hot state, a writer whose commit is refused and that
retries at once keeps colliding with the same writers; one that backs off by a
random ("full jitter") amount, growing with each failure, gets its turn. The
work is re-run from scratch: the failed commit already dropped the states it
touched from memory, so the next attempt loads what the others committed.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from . import _logging
from ._errors import ConcurrencyError, PlaythroughError

if TYPE_CHECKING:
    from ._engine import Engine

T = TypeVar("T")

# The defaults of both engines' retry. Under a saturated hot spot each attempt wins
# with a roughly constant chance (about 0.3 with 32 writers on one singleton), so the
# attempts an order needs fall off geometrically: 30 attempts lost about one order in
# ten runs of that workload under coverage; 60 put it out of reach. The waits only
# spread the load, capped at 1 s.
ATTEMPTS = 60
BACKOFF = 0.005
MAX_BACKOFF = 1.0


def retry(
    engine: Engine,
    work: Callable[[Engine], T],
    *,
    attempts: int = ATTEMPTS,
    backoff: float = BACKOFF,
    max_backoff: float = MAX_BACKOFF,
    rng: random.Random | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Run ``work(engine)`` and commit, again on ConcurrencyError, up to ``attempts`` times.

    Between attempts it sleeps a random time in ``[0, min(max_backoff, backoff * 2**n))``
    (n failures so far). Anything else ``work`` or the commit raises propagates
    at once: a ``CommitOutcomeUnknown`` in particular is not retried (the first
    attempt may be in the log; fire with ``key=`` to make such retries safe).
    """
    check_retry(engine, attempts, backoff, max_backoff)
    draw = rng or random.Random()
    for failures in range(attempts):
        token = _logging.retrying.set((failures + 1, attempts))
        try:
            with engine.transaction():
                result = work(engine)
            return result
        except ConcurrencyError:
            if failures + 1 == attempts:
                raise
        finally:
            _logging.retrying.reset(token)
        sleep(wait(draw, failures, backoff, max_backoff))
    raise AssertionError("unreachable")  # pragma: no cover


def check_retry(engine: Engine, attempts: int, backoff: float, max_backoff: float) -> None:
    """ValueError for bad arguments, PlaythroughError with events pending (both engines)."""
    if attempts < 1:
        raise ValueError(f"attempts must be at least 1, not {attempts}")
    if backoff < 0 or max_backoff < 0:
        raise ValueError("backoff and max_backoff must not be negative")
    if engine.pending:
        raise PlaythroughError("commit or discard pending events before engine.retry()")


def wait(draw: random.Random, failures: int, backoff: float, max_backoff: float) -> float:
    """The jittered wait after ``failures`` refused attempts."""
    return draw.uniform(0.0, min(max_backoff, backoff * (2**failures)))
