"""A store that keeps no heads values: how every store behaved before schema version 2.

Loads from it always plan and play events, so tests that exercise the planner
(or that mutate it to show the properties catch the mutation) use it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from playthrough._model import StateKey
from playthrough._stores import NewEvent, SnapshotRecord, SQLiteStore
from playthrough._stores._base import CommitExtras, HeadValue


class ValuelessStore(SQLiteStore):
    """Drops every heads value the engine hands it."""

    def append(
        self,
        events: Sequence[NewEvent],
        expected: Mapping[StateKey, int | None],
        values: Mapping[StateKey, str | HeadValue] | None = None,
        commit_id: str | None = None,
        handled: Sequence[int] = (),
        extras: CommitExtras | None = None,
        epoch: int | None = None,
    ) -> list[int]:
        return super().append(
            events, expected, None, commit_id=commit_id, handled=handled, extras=extras, epoch=epoch
        )

    def write_values(self, records: Sequence[SnapshotRecord], epoch: int | None = None) -> int:
        return 0
