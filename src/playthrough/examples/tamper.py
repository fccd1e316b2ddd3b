"""Tampering with a store on purpose, to show that ``playthrough verify`` notices.

Never use this on data you care about.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from playthrough import Engine, State
from playthrough._model import key_of
from playthrough._serialization import dumps
from playthrough._stores import SnapshotRecord, Store


def corrupt_snapshot(
    target: Engine | Store,
    state_class: type[State],
    state_id: Any = None,
    *,
    changes: Mapping[str, Any],
    position: int | None = None,
) -> SnapshotRecord:
    """Rewrite one stored snapshot row through the store, setting ``changes`` in its data.

    ``changes`` maps field names to JSON values (``{"balance": 9999}``). The row
    is the state's newest snapshot, or the one at ``position``; the state's
    other snapshots are kept. Returns the rewritten record.
    """
    store = target.store if isinstance(target, Engine) else target
    key = key_of(state_class, state_id)
    with store.reader() as reader:
        history = reader.snapshots([key], reader.head()).get(key, [])
    chosen = [r for r in history if position is None or r.position == position]
    if not chosen:
        where = "" if position is None else f" at position {position}"
        raise LookupError(f"{key} has no stored snapshot{where}")
    record = chosen[0]
    data = json.loads(record.data)
    unknown = sorted(set(changes) - set(data))
    if unknown:
        raise KeyError(f"{key} has no field(s) {', '.join(unknown)}")
    data.update(changes)
    rewritten = record._replace(data=dumps(data))  # same version and fingerprint
    store.write_snapshots([rewritten], keep=len(history))
    return rewritten
