"""What the stored rows' types and versions are, and whether this code can read them.

``schema_report(store)`` backs ``playthrough schema``: per stored type, the
versions present in the log and in snapshots (counted by the database) and,
for each, whether the classes registered in this process can read it. Counting
is not reading: it also *decodes* a sample of the stored rows of each type and
version (every row with ``sample=None``) through the upcaster chain, strictly
(unknown or missing keys and every field's JSON type are errors), so a field
renamed without a version bump, a required field added, a changed type or an
upcaster that raises or returns the wrong thing is reported with the row's
position and the reason. ``rewrite_snapshots(...)`` backs ``playthrough snapshot``: it brings
every stored snapshot to its class's current version and fingerprint.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import attrs

from ._errors import PlaythroughError, StaleForgetError
from ._model import StateKey, registry
from ._personal import unsealing
from ._reconstitution import StateReconstitutor
from ._serialization import encode_state, state_from_snapshot
from ._stores import SnapshotRecord, Store, StoredEvent
from ._stores._base import EventQuery, reader_epoch
from ._upcasting import (
    current_value_shape,
    read_event,
    read_snapshot,
    snapshot_problem,
    snapshot_record,
)

__all__ = ["SchemaReport", "StoredVersion", "rewrite_snapshots", "schema_report"]


@attrs.frozen
class RowFailure:
    """One stored row this code cannot decode: where it is and why."""

    position: int
    reason: str
    state_id: str | None = None  # snapshots: the state's id


@attrs.frozen
class StoredVersion:
    """``rows`` rows of one stored type at one version (and, for snapshots, fingerprint)."""

    kind: str  # "event" or "snapshot"
    type: str
    version: int
    fingerprint: str | None
    rows: int
    readable: bool
    note: str  # how this code reads them, or why it cannot
    decoded: int = 0  # how many of the rows were decoded (a sample, or all)
    failures: tuple[RowFailure, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)


@attrs.frozen
class SchemaReport:
    url: str
    entries: tuple[StoredVersion, ...]

    @property
    def ok(self) -> bool:
        """Every stored event and snapshot can be read (and used) by this code."""
        return all(e.readable for e in self.entries)

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "url": self.url, "types": [e.to_dict() for e in self.entries]}

    def to_text(self) -> str:
        lines = [f"playthrough schema {self.url}"]
        for kind, title in (("event", "events"), ("snapshot", "snapshots and heads values")):
            mine = [e for e in self.entries if e.kind == kind]
            lines.append(f"{title}:" if mine else f"{title}: none stored")
            for e in mine:
                mark = "ok   " if e.readable else "FAIL "
                shape = f" [{e.fingerprint}]" if e.fingerprint else ""
                tried = f"; {e.decoded} decoded" if e.decoded and not e.failures else ""
                lines.append(
                    f"  {mark}{e.type} v{e.version}{shape}: {e.rows} row(s), {e.note}{tried}"
                )
                for f in e.failures[:_SHOWN]:
                    who = f"{e.type}({f.state_id}) " if f.state_id is not None else ""
                    lines.append(f"      {who}at position {f.position}: {f.reason}")
                if len(e.failures) > _SHOWN:
                    lines.append(f"      ... and {len(e.failures) - _SHOWN} more")
        bad = sum(1 for e in self.entries if not e.readable)
        lines.append(
            "OK: this code reads every stored row"
            if not bad
            else f"FAILED: {bad} stored type version(s) this code cannot read or use"
        )
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.to_text()


def _event_entry(type_name: str, version: int, rows: int) -> StoredVersion:
    cls = registry.events.get(type_name)
    if cls is None:
        return StoredVersion(
            "event", type_name, version, None, rows, False,
            "no Event class has this type name or alias (import its module with --app)",
        )  # fmt: skip
    name = cls.__qualname__
    if type_name != cls._pt_type_name:
        name += f" (alias of {cls._pt_type_name!r})"
    current = cls._pt_version
    if version > current:
        return StoredVersion(
            "event", type_name, version, None, rows, False,
            f"written by newer code: {name} here is version {current}",
        )  # fmt: skip
    how = "current version" if version == current else f"upcast v{version} -> v{current}"
    return StoredVersion("event", type_name, version, None, rows, True, f"{name}, {how}")


def _snapshot_entry(type_name: str, version: int, mark: str | None, rows: int) -> StoredVersion:
    cls = registry.states.get(type_name)
    if cls is None:
        return StoredVersion(
            "snapshot", type_name, version, mark, rows, False,
            "no State class has this type name (import its module with --app)",
        )  # fmt: skip
    probe = SnapshotRecord(StateKey(type_name, ""), 0, None, "", version, mark)
    problem = snapshot_problem(probe)
    if problem is not None:
        return StoredVersion(
            "snapshot", type_name, version, mark, rows, False,
            f"NOT USED by loads: {problem}; `playthrough snapshot` rewrites them",
        )  # fmt: skip
    current = cls._pt_version
    how = "current version" if version == current else f"upcast v{version} -> v{current}"
    return StoredVersion(
        "snapshot", type_name, version, mark, rows, True, f"{cls.__qualname__}, {how}"
    )


def schema_report(store: Store, *, sample: int | None = 100) -> SchemaReport:
    """Count the stored types and versions, and decode ``sample`` rows of each (the
    first ones of each type and version; ``None``: every row; ``0``: none)."""
    with store.reader() as reader:
        events = reader.event_versions()
        snapshots = reader.snapshot_versions()
        entries = [_event_entry(t.type, t.version, t.rows) for t in events]
        entries += [_snapshot_entry(t.type, t.version, t.fingerprint, t.rows) for t in snapshots]
        if sample is None or sample > 0:
            entries = [
                _decoded_events(reader, e, sample) if e.kind == "event" and e.readable else e
                for e in entries
            ]
            entries = _decoded_snapshots(reader, entries, sample)
    return SchemaReport(store.url, tuple(entries))


# --------------------------------------------------------------------------- decoding rows

_SHOWN = 10  # failures printed per type and version (all of them are in --format json)
_PAGE = 500


def _with_failures(entry: StoredVersion, decoded: int, failures: list[RowFailure]) -> StoredVersion:
    if not failures:
        return attrs.evolve(entry, decoded=decoded)
    note = f"{entry.note}; {len(failures)} of {decoded} decoded row(s) FAIL"
    return attrs.evolve(entry, readable=False, note=note, decoded=decoded, failures=tuple(failures))


def _decoded_events(reader: Any, entry: StoredVersion, sample: int | None) -> StoredVersion:
    failures: list[RowFailure] = []
    decoded = 0
    after = 0
    while sample is None or decoded < sample:
        limit = _PAGE if sample is None else min(_PAGE, sample - decoded)
        query = EventQuery(after=after, types=(entry.type,), version=entry.version)
        page: list[StoredEvent] = unsealing(reader).find_events(query, limit)
        for stored in page:
            decoded += 1
            problem = event_row_problem(stored)
            if problem is not None:
                failures.append(RowFailure(stored.position, problem))
        if len(page) < limit:
            break
        after = page[-1].position
    return _with_failures(entry, decoded, failures)


def event_row_problem(stored: StoredEvent) -> str | None:
    """Why this code cannot decode a stored event row, or None when it can (decoding is
    strict: upcasters, unknown and missing keys, and every field's type are checked)."""
    try:
        read_event(stored)
    except PlaythroughError as exc:
        return str(exc)
    return None


def _decoded_snapshots(
    reader: Any, entries: list[StoredVersion], sample: int | None
) -> list[StoredVersion]:
    """Decode the usable snapshots and heads values (unusable ones are never read)."""
    wanted = {
        (e.type, e.version, e.fingerprint): i
        for i, e in enumerate(entries)
        if e.kind == "snapshot" and e.readable
    }
    if not wanted:
        return entries
    counts: dict[int, int] = dict.fromkeys(wanted.values(), 0)
    failures: dict[int, list[RowFailure]] = {i: [] for i in wanted.values()}
    for record in reader.iter_snapshots():
        i = wanted.get((record.key.type, record.version, record.fingerprint))
        if i is None or (sample is not None and counts[i] >= sample):
            continue
        counts[i] += 1
        problem = snapshot_row_problem(record)
        if problem is not None:
            failures[i].append(RowFailure(record.position, problem, record.key.id))
        if sample is not None and all(n >= sample for n in counts.values()):
            break
    out = list(entries)
    for i in wanted.values():
        out[i] = _with_failures(entries[i], counts[i], failures[i])
    return out


def snapshot_row_problem(record: SnapshotRecord) -> str | None:
    """Why this code cannot decode a usable snapshot or heads value, or None."""
    try:
        read_snapshot(record)
    except PlaythroughError as exc:
        return str(exc)
    return None


# --------------------------------------------------------------------------- rewriting


@attrs.frozen
class RewriteReport:
    """What ``rewrite_snapshots`` did: ``upcast``: decoded and encoded again at the
    current version; ``rebuilt``: from the log (they could not be used)."""

    checked: int
    upcast: int
    rebuilt: int

    def to_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)


def _outdated(type_name: str, version: int, mark: str | None) -> bool:
    cls = registry.states.get(type_name)
    if cls is None:
        return False  # reported by ``schema``; nothing here can write it
    return (version, mark) != current_value_shape(cls)


def rewrite_snapshots(
    store: Store,
    *,
    batch: int = 500,
    progress: Callable[[int, int], None] | None = None,
) -> RewriteReport:
    """Bring every stored snapshot and heads value to its class's current version.

    A snapshot with an upcaster path is upcast and written again at its position;
    one that cannot be used (no path, or a class changed without a version bump)
    is rebuilt from the log at its position by a plan that ignores it, which is
    exact. Positions and the number of snapshots per state do not change.
    Memory holds the keys of the outdated snapshots and one batch of states;
    running it again after an interruption continues with what is left.
    """
    with store.reader() as reader:
        groups = reader.snapshot_versions()  # counted by the database
        stale = {
            (g.type, g.version, g.fingerprint)
            for g in groups
            if _outdated(g.type, g.version, g.fingerprint)
        }
        # iter_snapshots yields a snapshot and a heads value at one position as two rows
        counts = Counter(
            (r.key, r.position)
            for r in (reader.iter_snapshots() if stale else ())
            if (r.key.type, r.version, r.fingerprint) in stale
        )
    todo = list(counts)
    reconstitutor = StateReconstitutor()
    upcast = rebuilt = 0
    for start in range(0, len(todo), batch):
        part = todo[start : start + batch]
        while True:
            try:
                done = _rewrite_batch(store, reconstitutor, part, counts)
            except StaleForgetError:
                continue  # a subject was forgotten while the batch was read: read it again
            break
        upcast += done[0]
        rebuilt += done[1]
        if progress is not None:
            progress(min(start + batch, len(todo)), len(todo))
    return RewriteReport(len(todo), upcast, rebuilt)


def _rewrite_batch(
    store: Store,
    reconstitutor: StateReconstitutor,
    part: list[tuple[StateKey, int]],
    counts: Counter[tuple[StateKey, int]],
) -> tuple[int, int]:
    """Rewrite one batch of snapshots: (upcast, rebuilt). Written under the forget
    epoch they were read at, so a forget in between refuses it (StaleForgetError)
    instead of letting a forgotten subject's clear values back in."""
    upcast = rebuilt = 0
    records: list[SnapshotRecord] = []
    values: list[SnapshotRecord] = []
    with store.reader() as reader:
        epoch = reader_epoch(reader)
        wanted = set(part)
        keys = list(dict.fromkeys(k for k, _ in part))
        heads = reader.heads(keys)
        found = reader.snapshots(keys, reader.head())
        for history in found.values():
            for record in history:
                if (record.key, record.position) not in wanted:
                    continue
                if snapshot_problem(record) is None:
                    state = state_from_snapshot(record)
                    upcast += 1
                else:
                    built, _ = reconstitutor.reconstitute(reader, [record.key], record.position)
                    state = built[record.key]
                    rebuilt += 1
                new = snapshot_record(record.key, record.position, state, encode_state(state))
                row = heads.get(record.key)
                is_value = row is not None and row.value_position == record.position
                if is_value:
                    values.append(new)
                if not is_value or counts[(record.key, record.position)] > 1:
                    records.append(new)
    # keep: every snapshot each state has (only rows at existing positions are rewritten)
    store.write_snapshots(records, keep=1 << 30, epoch=epoch)
    # where still the state's last event (else: no longer used); nothing after a forget
    store.write_values(values, epoch=epoch)
    return upcast, rebuilt
