"""Testing kit for playthrough users: reference, checks, strategies, a pytest plugin.

- ``reference``: the reference semantics of a load, written as plainly as possible
  (every event once, in global order, from blank), to test the engine against
- ``scenario``: given / when / then (:class:`Scenario`)
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
    "Scenario",
    "StoreContract",
    "assert_reconstitutes",
    "check_reconstitution",
    "event_strategy",
    "events",
    "histories",
    "ids",
    "play_history",
    "reference_states",
    "scenario",
    "snapshot_placements",
    "state_differences",
    "stored_events",
    "values",
]


def __getattr__(name: str) -> Any:
    if name in _STRATEGIES:
        from . import strategies

        return getattr(strategies, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
