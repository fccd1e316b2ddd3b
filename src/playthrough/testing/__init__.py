"""Testing kit for playthrough users: reference, checks, strategies, a pytest plugin.

- ``reference``: the reference semantics of a load, written as plainly as possible
  (every event once, in global order, from blank), to test the engine against
- ``scenario``: given / when / then (:class:`Scenario`), including
  ``when_time_passes(minutes=15)`` for scheduled events
- :class:`ManualClock`: a clock tests move by hand (``Engine(store, clock=...)``)
- :func:`given_state`: a state put in a known value (``given_state(engine, Account,
  1, balance=100)``), stored as a marked event; only on throwaway stores
  (in-memory SQLite, or an engine declared with :func:`throwaway`)
- ``checks``: :func:`play_history`, :func:`assert_reconstitutes` (any snapshot
  placement loads like the reference; replay is deterministic)
- ``strategies``: Hypothesis strategies derived from attrs event classes and
  :func:`check_reconstitution`, the ready property (needs Hypothesis; imported
  on first use, so the plugin works without it)
- ``plugin``: the pytest plugin, installed as the ``pytest11`` entry point
  ``playthrough``: fixtures ``playthrough_engine``, ``playthrough_scenario``,
  option ``--playthrough-url`` / environment ``PLAYTHROUGH_TEST_URL``
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .._clock import ManualClock
from ._given import given_state, throwaway
from .checks import assert_reconstitutes, play_history, stored_events
from .reference import reference_states
from .scenario import Scenario, scenario, state_differences
from .store_contract import StoreContract

if TYPE_CHECKING:
    from .strategies import (
        check_reconstitution,
        event_strategy,
        events,
        histories,
        ids,
        snapshot_placements,
        values,
    )

_STRATEGIES = (
    "check_reconstitution",
    "event_strategy",
    "events",
    "histories",
    "ids",
    "snapshot_placements",
    "values",
)

__all__ = [
    "ManualClock",
    "Scenario",
    "StoreContract",
    "assert_reconstitutes",
    "check_reconstitution",
    "event_strategy",
    "events",
    "given_state",
    "histories",
    "ids",
    "play_history",
    "reference_states",
    "scenario",
    "snapshot_placements",
    "state_differences",
    "stored_events",
    "throwaway",
    "values",
]


def __getattr__(name: str) -> Any:
    if name in _STRATEGIES:
        from . import strategies

        return getattr(strategies, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
