"""A store in plain dicts with the log capability only: the proof that a backend is cheap.

It implements :class:`~playthrough._stores._base.LogRecorder` and the log's
reads, nothing else; the read side, the lifecycle and maintenance come from
the stand-ins of ``_capabilities``, so calling one of their methods raises
``CapabilityMissing`` naming the capability. It passes ``LogContract`` and
runs the README's tour (``tests/test_dict_store.py``).

One process, one handle: a lock serialises every call, and a read
transaction holds it, so a reader sees one consistent view.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager

from playthrough._errors import (
    CapabilityMissing,
    ConcurrencyError,
    DuplicateEvent,
    StaleForgetError,
    StoreError,
)
from playthrough._model import StateKey
from playthrough._stores._base import (
    ARCHIVED_UNTIL,
    FORGET_EPOCH,
    HEADS_VALUE,
    CommitRecord,
    HeadRow,
    HeadRows,
    HeadValue,
    Link,
    NewEvent,
    SnapshotRecord,
    StoredEvent,
    StoreReader,
    batch_keys,
    duplicate_message,
    handled_refused,
    head_value,
    stale_forget_message,
    stale_message,
)
from playthrough._stores._capabilities import (
    LIFECYCLE,
    NoLifecycle,
    NoLifecycleReads,
    NoMaintenance,
    NoMaintenanceReads,
    NoReadSide,
    NoReadSideReads,
)


class DictReader(NoReadSideReads, NoLifecycleReads, NoMaintenanceReads):
    """The log's reads over the store's dicts (the store's lock is held meanwhile)."""

    def __init__(self, store: DictStore) -> None:
        self._s = store

    def head(self) -> int:
        return len(self._s.events)

    def state_heads(self, keys: Iterable[StateKey]) -> dict[StateKey, int]:
        heads = self._s.head_rows
        return {k: heads[k].last_position for k in keys if k in heads}

    def snapshots(
        self, keys: Iterable[StateKey], at_most: int
    ) -> dict[StateKey, list[SnapshotRecord]]:
        out: dict[StateKey, list[SnapshotRecord]] = {}
        for key in dict.fromkeys(keys):
            found = {p: r for p, r in self._s.snapshots.get(key, {}).items() if p <= at_most}
            row = self._s.head_rows.get(key)
            if row is not None and row.value is not None and row.value_position is not None:
                vp = row.value_position
                if vp <= at_most and vp not in found:  # a value and a snapshot: one candidate
                    found[vp] = SnapshotRecord(
                        key, vp, vp, row.value, row.value_version, row.value_fingerprint
                    )
            if found:
                out[key] = [found[p] for p in sorted(found, reverse=True)]
        return out

    def links(self, ranges: Mapping[StateKey, tuple[int, int]]) -> list[Link]:
        hit = {
            p
            for key, (lo, hi) in ranges.items()
            for p, _ in self._s.links_of.get(key, ())
            if lo < p <= hi
        }
        return [link for p in sorted(hit) for link in self._s.links_at[p]]

    def events(self, positions: Sequence[int]) -> Iterator[StoredEvent]:
        for p in positions:
            if 1 <= p <= len(self._s.events):
                yield self._s.events[p - 1]

    def events_after(self, after: int, limit: int) -> list[StoredEvent]:
        return self._s.events[max(after, 0) : max(after, 0) + limit]

    def iter_snapshots(self) -> Iterator[SnapshotRecord]:
        rows = [(r.key, r.position, 0, r) for by in self._s.snapshots.values() for r in by.values()]
        for key, row in self._s.head_rows.items():
            if row.value is not None and row.value_position is not None:
                vp = row.value_position
                value = SnapshotRecord(
                    key, vp, vp, row.value, row.value_version, row.value_fingerprint, HEADS_VALUE
                )
                rows.append((key, vp, 1, value))
        for *_, record in sorted(rows, key=lambda r: (r[0], r[1], r[2])):
            yield record

    def links_between(self, after: int, upto: int) -> list[Link]:
        return [link for p in range(after + 1, upto + 1) for link in self._s.links_at.get(p, ())]

    def keys_between(self, after: int, upto: int) -> list[tuple[int, str]]:
        return sorted((p, k) for k, p in self._s.keys.items() if after < p <= upto)

    def meta(self, key: str) -> str | None:
        return self._s.meta.get(key)

    def commit_positions(self, commit_id: str) -> tuple[int, int] | None:
        return self._s.commits.get(commit_id)

    def event_keys(self, keys: Sequence[str]) -> dict[str, int]:
        return {k: self._s.keys[k] for k in keys if k in self._s.keys}


class DictStore(NoReadSide, NoLifecycle, NoMaintenance):
    """The log in dicts: events, links, heads (with values), snapshots, meta, commits."""

    def __init__(self) -> None:
        self.statements = 0
        self.events: list[StoredEvent] = []
        self.links_at: dict[int, list[Link]] = {}
        self.links_of: dict[StateKey, list[tuple[int, int]]] = {}
        self.head_rows: dict[StateKey, HeadRow] = {}
        self.snapshots: dict[StateKey, dict[int, SnapshotRecord]] = {}
        self.meta: dict[str, str] = {}
        self.commits: dict[str, tuple[int, int]] = {}
        self.keys: dict[str, int] = {}
        self.pending: set[int] = set()
        self._lock = threading.RLock()
        self._reading = False
        self._closed = False

    @property
    def url(self) -> str:
        return "dict://"

    def close(self) -> None:
        self._closed = True

    def _open(self) -> None:
        if self._closed:
            raise StoreError(f"the store on {self.url} is closed")

    def _writing(self, what: str) -> None:
        self._open()
        if self._reading:
            raise StoreError(f"cannot {what} inside a read transaction")

    def _epoch(self) -> int:
        return int(self.meta.get(FORGET_EPOCH, "0"))

    @contextmanager
    def reader(self) -> Iterator[StoreReader]:
        self._open()
        with self._lock:
            if self._reading:
                raise StoreError("a reader is already open on this store: readers do not nest")
            self._reading = True
            try:
                yield DictReader(self)
            finally:
                self._reading = False

    def heads(self, keys: Iterable[StateKey]) -> HeadRows:
        self._open()
        with self._lock:
            out = HeadRows({k: self.head_rows[k] for k in keys if k in self.head_rows})
            out.epoch = self._epoch()
            return out

    def write_commit(self, commit: CommitRecord) -> list[int]:
        events, expected, values, commit_id, handled, extras, epoch = commit
        if extras is not None:
            raise CapabilityMissing(
                "DictStore has no lifecycle capability: a commit that completes states or "
                "touches the schedule cannot be stored; nothing was written",
                LIFECYCLE,
                "append",
            )
        with self._lock:
            self._writing("append")
            self._check(events, expected, handled, epoch)
            return self._write(events, values, commit_id, handled)

    def _check(
        self,
        events: Sequence[NewEvent],
        expected: Mapping[StateKey, int | None],
        handled: Sequence[int],
        epoch: int | None,
    ) -> None:
        """Every refusal, before anything is written."""
        gone = [p for p in dict.fromkeys(handled) if p not in self.pending]
        if gone:
            raise handled_refused(gone)
        for key in batch_keys(events):
            if key in self.keys:
                raise DuplicateEvent(duplicate_message(key, self.keys[key]), key, self.keys[key])
        stale = [
            (k, want, have)
            for k, want in expected.items()
            if (have := self.state_heads_of(k)) != want
        ]
        if stale:
            raise ConcurrencyError(stale_message(stale))
        if epoch is not None and epoch != self._epoch():
            raise StaleForgetError(stale_forget_message())
        for e in events:
            bad = [f for f in ("type", "data", "fired_at") if not isinstance(getattr(e, f), str)]
            keys = [k for k, _ in e.links]
            if bad or len(set(keys)) != len(keys):
                what = f"{', '.join(bad)} missing" if bad else "a state linked twice"
                raise StoreError(f"append to {self.url} failed, nothing was written: {what}")

    def state_heads_of(self, key: StateKey) -> int | None:
        row = self.head_rows.get(key)
        return None if row is None else row.last_position

    def _write(
        self,
        events: Sequence[NewEvent],
        values: Mapping[StateKey, str | HeadValue],
        commit_id: str,
        handled: Sequence[int],
    ) -> list[int]:
        self.statements += 1
        base = len(self.events)
        positions = list(range(base + 1, base + 1 + len(events)))
        self.pending.difference_update(handled)
        touched: dict[StateKey, int] = {}
        for p, e in zip(positions, events, strict=True):
            stored = StoredEvent(
                p, e.type, e.data, e.caused_by, e.fired_at, e.version, e.metadata, e.correlation
            )
            self.events.append(stored)
            self.links_at[p] = [Link(p, key, group) for key, group in e.links]
            for key, group in e.links:
                self.links_of.setdefault(key, []).append((p, group))
                touched[key] = p
            if e.key is not None:
                self.keys[e.key] = p
            if e.needs_handling:
                self.pending.add(p)
        for key, p in touched.items():
            old = self.head_rows.get(key, HeadRow(p, None, None))
            given = values.get(key)
            if given is None:  # the older value stays, exact at its own position
                self.head_rows[key] = old._replace(last_position=p)
            else:
                v = head_value(given)
                self.head_rows[key] = HeadRow(p, v.data, p, v.version, v.fingerprint)
        self.commits[commit_id] = (base + 1, base + len(events))
        return positions

    def write_values(self, records: Sequence[SnapshotRecord], epoch: int | None = None) -> int:
        with self._lock:
            self._writing("write values")
            if epoch is not None and epoch != self._epoch():
                return 0
            count = 0
            for r in records:
                row = self.head_rows.get(r.key)
                if row is None or row.last_position != r.position:
                    continue
                if (
                    row.value is None
                    or row.value_position != r.position
                    or (row.value_version, row.value_fingerprint) != (r.version, r.fingerprint)
                ):
                    self.head_rows[r.key] = HeadRow(
                        r.position, r.data, r.position, r.version, r.fingerprint
                    )
                    count += 1
            return count

    def write_snapshots(
        self,
        records: Sequence[SnapshotRecord],
        keep: int,
        meta: Mapping[str, str | None] | None = None,
        epoch: int | None = None,
    ) -> None:
        with self._lock:
            self._writing("write")
            if epoch is not None and epoch != self._epoch():
                raise StaleForgetError(stale_forget_message())
            for key, value in (meta or {}).items():
                if value is None:
                    self.meta.pop(key, None)
                else:
                    self.meta[key] = value
            for r in records:
                self.snapshots.setdefault(r.key, {})[r.position] = SnapshotRecord(*r[:6])
            for state in dict.fromkeys(r.key for r in records):
                by = self.snapshots[state]
                for p in sorted(by, reverse=True)[keep:]:
                    if p != self._base():
                        del by[p]

    def _base(self) -> int:
        """The position of an archive's base snapshots (never dropped); -1: none."""
        return int(self.meta.get(ARCHIVED_UNTIL, "-1"))

    def drop_snapshots(self, keys: Iterable[StateKey] | None = None) -> int:
        with self._lock:
            self._writing("write")
            wanted = list(self.snapshots) if keys is None else list(dict.fromkeys(keys))
            for key in self.head_rows if keys is None else wanted:
                if key in self.head_rows:
                    row = self.head_rows[key]
                    self.head_rows[key] = row._replace(value=None, value_position=None)
            count = 0
            for key in wanted:
                by = self.snapshots.get(key, {})
                for p in [p for p in by if p != self._base()]:
                    del by[p]
                    count += 1
            return count
