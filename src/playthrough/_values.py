"""Heads values: the current value of each state, stored in its heads row.

The commit writes them (``Store.append(..., values)``); this module reads them
for a load (:func:`current_states`) and decides what a load that had to play
writes back (:func:`write_back`). See design/architecture.md, "Heads values".
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

from ._errors import DecodeError, PlaythroughError, UnknownTypeError
from ._model import State, StateKey
from ._reconstitution import Plan
from ._serialization import blank_for, encode_state_checked
from ._steps import Steps, call, run_sync
from ._stores import SnapshotRecord, Store
from ._stores._base import HeadRow
from ._upcasting import read_snapshot, snapshot_problem, snapshot_record

_log = logging.getLogger("playthrough")
_new = tuple.__new__  # a NamedTuple without its Python-level __new__


def current_states(
    rows: Mapping[StateKey, HeadRow], keys: Sequence[StateKey]
) -> dict[StateKey, State] | None:
    """The states of ``keys`` from their heads rows, or None when one is not current.

    A key without a row was never touched: blank. A current value goes through
    the same decoding as any snapshot (a ``SnapshotRecord`` at its position);
    one this code must not use (another class version or shape, see
    ``_upcasting.snapshot_problem``) makes the load plan, which skips it.
    """
    states: dict[StateKey, State] = {}
    for key in keys:
        row = rows.get(key)
        if row is None:
            states[key] = blank_for(key)
        elif row.fresh:
            assert row.value is not None
            last = row.last_position
            record: SnapshotRecord = _new(
                SnapshotRecord,
                (key, last, last, row.value, row.value_version, row.value_fingerprint),
            )
            if snapshot_problem(record) is not None:
                return None  # unusable by this code: the plan skips it and says why
            try:
                states[key] = read_snapshot(record)
            except UnknownTypeError:
                raise
            except DecodeError as exc:  # the log can still answer: take the planned path
                _log.warning("playthrough: heads value of %s cannot be decoded: %s", key, exc)
                return None
        else:
            return None
    return states


def write_back(
    store: Store,
    plan: Plan,
    states: Mapping[StateKey, State],
    rows: Mapping[StateKey, HeadRow],
    epoch: int | None = None,
) -> int:
    """:func:`write_back_steps` on ``store``."""
    return run_sync(write_back_steps(plan, states, rows, epoch), store)


def write_back_steps(
    plan: Plan,
    states: Mapping[StateKey, State],
    rows: Mapping[StateKey, HeadRow],
    epoch: int | None = None,
) -> Steps[int]:
    """Store the values a load played to the head where they are not current yet.

    ``states`` are all at the head (a plan ``to_head``); a state is written
    when its row was known stale or the plan played events for it. The store
    keeps a value only where the state's last event is still its position, so
    a commit in between is never overwritten. A failure here loses a shortcut,
    never a result: it is logged, not raised. With ``epoch`` (the forget epoch
    the states were loaded at) nothing is written if a subject was forgotten since.
    """
    records = []
    for key, state in states.items():
        last = state.last_event_id
        if last is None:
            continue
        row = rows.get(key)
        if (row is not None and not row.fresh) or plan.states[key].event_count or stale(key, row):
            try:
                data = encode_state_checked(state, f"the value of {key}")
            except PlaythroughError as exc:  # a shortcut lost, never a result
                _log.warning("playthrough: not writing back a heads value: %s", exc)
                continue
            records.append(snapshot_record(key, last, state, data))
    if not records:
        return 0
    try:
        return (yield call("write_values", records, epoch))  # type: ignore[no-any-return]
    except PlaythroughError as exc:
        _log.warning("playthrough: could not write back heads values: %s", exc)
        return 0


def stale(key: StateKey, row: HeadRow | None) -> bool:
    """A value written by another version or shape of the class: rewrite it."""
    if row is None or row.value is None:
        return False
    probe = SnapshotRecord(key, 0, None, "", row.value_version, row.value_fingerprint)
    return snapshot_problem(probe) is not None
