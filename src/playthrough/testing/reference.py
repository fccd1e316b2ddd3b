"""The reference result of a load: play every event once, in global order, from blank.

Deliberately naive (no snapshots, no planning, every state of every event) so
that it can be trusted by reading it; the engine must agree with it for any
snapshot placement.
"""

from __future__ import annotations

from collections.abc import Iterable

from .._model import (
    Event,
    State,
    StateKey,
    flat_hook_keys,
    touched_keys,
)
from .._playing import playing, run_hook
from .._serialization import blank_for as _blank
from .._slots import set_last_event_id


def reference_states(events: Iterable[Event], *, upto: int | None = None) -> dict[StateKey, State]:
    """Every state the events touch, as of ``upto`` (default: after all of them).

    ``events`` must be committed events (with ``id``) in global order.
    """
    states: dict[StateKey, State] = {}
    for event in events:
        position = event.id
        if position is None:
            raise ValueError("reference_states() takes committed events (with an id)")
        if upto is not None and position > upto:
            break
        with playing(event):
            for hook in type(event)._pt_spec.by_phase("apply"):
                keys = flat_hook_keys(event, hook)
                if not keys:
                    continue
                for key in keys:
                    if key not in states:
                        states[key] = _blank(key)
                run_hook(event, hook, states)
        for key in touched_keys(event):
            if key not in states:
                states[key] = _blank(key)
            set_last_event_id(states[key], position)
    return states
