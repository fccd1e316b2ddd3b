"""Archival: move the old part of the log to a file while every load stays exact.

``archive_log(store, coordinator, before=..., to=...)``:

1. the cut ``C``: the events before a position, or those fired before a date
   (the longest prefix of the log all fired before it);
2. the base: a snapshot at ``C`` of every state touched at or before ``C``
   (those touched since the previous cut, and those with a base snapshot
   there), each reconstituted exactly at ``C``;
3. the events ``(previous cut, C]`` exported to the file (the export format,
   checked by its trailer) and flushed to disk;
4. one store transaction (``Store.archive``): write the base, delete the
   events, links and every snapshot older than ``C``, record ``C``.

Afterwards a load at any position >= ``C`` starts from the base (or a newer
snapshot): exact. Anything that needs an archived position (time travel before
``C``, ``replay()``, reading the whole log) raises ArchivedRangeError naming
the range, unless the engine was opened with ``archive=`` files, which
:class:`ArchiveReader` loads into an in-memory store for reads before ``C``.
"""

from __future__ import annotations

import base64
import gzip
import os
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import attrs

from ._errors import ArchivedRangeError, PlaythroughError, StoreError, TransferError
from ._model import StateKey
from ._personal import clear_values
from ._serialization import encode_state
from ._stores import SQLiteStore, Store, StoreReader
from ._stores._base import ARCHIVED_CHAIN, LogReader, SnapshotRecord, archived_until
from ._transfer import export_log, import_log
from ._upcasting import snapshot_record

if TYPE_CHECKING:
    from ._reconstitution import StateReconstitutor

__all__ = ["ArchiveReader", "ArchiveReport", "archive_log"]


@attrs.frozen
class ArchiveReport:
    """What ``archive`` did: events ``(after, until]`` moved to ``path``.

    ``states``: how many base snapshots were written at ``until``.
    ``vacuumed``: with ``vacuum=True``, the store's size in bytes before and
    after (see :meth:`Store.vacuum`); None otherwise.
    """

    after: int
    until: int
    events: int
    states: int
    path: str
    sha256: str
    vacuumed: tuple[int, int] | None = None


def find_cut(store: Store, before: int | datetime) -> int:
    """The last position to archive: ``before - 1``, or the last event fired before a date."""
    with store.reader() as reader:
        previous = archived_until(reader)
    if isinstance(before, int):
        return before - 1
    if before.tzinfo is None:
        raise ValueError("give the date with a time zone (UTC: 2026-01-01T00:00:00+00:00)")
    cut = previous
    for page in store.read_log(after=previous, chunk=2000):
        for entry in page:
            if datetime.fromisoformat(entry.event.fired_at) >= before:
                return cut
            cut = entry.event.position
    return cut


#: ``progress(stage, done, total)``; stages: "states" (the base snapshots), "export"
#: (events written to the file), "delete" (the store transaction), "vacuum".
ArchiveProgress = Callable[[str, int, int], None]


def archive_log(
    store: Store,
    reconstitutor: StateReconstitutor,
    *,
    before: int | datetime,
    to: str | os.PathLike[str],
    progress: ArchiveProgress | None = None,
    vacuum: bool = False,
) -> ArchiveReport:
    """Archive the log before ``before`` into the file ``to`` (gzip; refused if it exists).

    The file is on disk (its directory entry too) before any event is deleted;
    ``vacuum`` then gives the deleted rows' space back (:meth:`Store.vacuum`).
    """
    step = progress if progress is not None else _no_progress
    path = Path(to)
    if path.exists():
        raise PlaythroughError(f"{path} already exists: an archive is never overwritten")
    cut = find_cut(store, before)
    with store.reader() as reader:
        previous = archived_until(reader)
        head = reader.head()
        if not previous < cut < head:
            raise PlaythroughError(
                f"nothing to archive before {before}: the cut ({cut}) must be after the "
                f"archived positions (1..{previous}) and before the head ({head}), which "
                "stays in the log"
            )
        keys = _touched_up_to(reader, previous, cut)
        step("states", 0, len(keys))
        states, _ = reconstitutor.reconstitute(reader, keys, cut) if keys else ({}, None)
    base = [snapshot_record(k, cut, states[k], encode_state(states[k])) for k in keys]
    step("states", len(keys), len(keys))
    partial = path.with_name(path.name + ".partial")
    with open(partial, "wb") as raw:
        with gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=6) as out:
            # The events only (the tables describe the live store), sealed, with their keys.
            exported = export_log(
                store,
                out,
                after=previous,
                until=cut,
                tables=False,
                progress=lambda done, total: step("export", done, total),
            )
        raw.flush()
        os.fsync(raw.fileno())
    os.replace(partial, path)
    sync_directory(path.parent)  # the rename itself survives a crash before the delete
    # The log's running hash at the cut stays in the store: it can still say which
    # log it continues (an import --append, the next archive's header).
    meta = {} if exported.chain is None else {ARCHIVED_CHAIN: exported.chain}
    step("delete", 0, 1)
    deleted = store.archive(cut, base, meta, lambda reader: check_cut(reader, cut, base))
    step("delete", 1, 1)
    if deleted != exported.count:
        raise PlaythroughError(
            f"archive of ({previous}, {cut}] deleted {deleted} events but exported "
            f"{exported.count}: check the store"
        )
    reclaimed = None
    if vacuum:
        step("vacuum", 0, 1)
        reclaimed = store.vacuum()
        step("vacuum", 1, 1)
    return ArchiveReport(previous, cut, deleted, len(base), str(path), exported.sha256, reclaimed)


def _no_progress(stage: str, done: int, total: int) -> None:
    pass


def sync_directory(folder: Path) -> None:
    """fsync a directory, so that a rename in it is durable (POSIX; elsewhere a no-op)."""
    if os.name != "posix":  # pragma: no cover - Windows cannot open a directory
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _touched_up_to(reader: StoreReader, previous: int, cut: int) -> list[StateKey]:
    """States touched in (previous, cut], and those based at the previous cut."""
    keys: dict[StateKey, None] = {}
    step = 10_000
    for lo in range(previous, cut, step):
        for link in reader.links_between(lo, min(lo + step, cut)):
            keys[link.key] = None
    if previous:
        for record in reader.iter_snapshots():
            if record.position == previous:
                keys[record.key] = None
    return list(keys)


class ArchiveReader:
    """The archived events, from the archive files, in an in-memory store (loaded once).

    The store the log was archived from (``hot``) is the truth about keys: a
    subject whose key a file carries but ``hot`` no longer holds (forgotten
    since the file was written) is forgotten in the in-memory copy too.
    """

    def __init__(self, paths: Sequence[str | os.PathLike[str]], hot: Store | None = None) -> None:
        self.paths = [Path(p) for p in paths]
        self.hot = hot
        self._store: SQLiteStore | None = None

    def store(self, needed_until: int) -> SQLiteStore:
        if self._store is None:
            store = SQLiteStore(":memory:")
            try:
                for n, path in enumerate(self.paths):
                    with path.open("rb") as source:
                        # Sealed values whose keys the file lacks read as forgotten.
                        import_log(
                            store,
                            source,
                            append=n > 0,
                            name=str(path),
                            forgotten=True,
                            rebuild_completions=False,
                        )
            except TransferError as exc:
                store.close()
                raise ArchivedRangeError(
                    f"the archive files, in the order given, must hold the archived log from "
                    f"position 1 on: {exc}"
                ) from exc
            except BaseException:
                store.close()
                raise
            if self.hot is not None:
                _forget_as_in(store, self.hot)
            self._store = store
        with self._store.reader() as reader:
            have = reader.head()
        if have < needed_until:
            raise ArchivedRangeError(
                f"the archive files ({', '.join(map(str, self.paths))}) hold positions 1..{have}, "
                f"but the store archived 1..{needed_until}"
            )
        return self._store

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None


def _forget_as_in(copy: Store, hot: Store) -> None:
    """Forget in ``copy`` every subject whose key ``hot`` does not hold (the same key)."""
    with copy.reader() as reader:
        rows = reader.transfer_rows("subject_keys")
    if not rows:
        return
    with hot.reader() as reader:
        held = reader.subject_keys(str(s) for s, _ in rows)
    for subject, key in rows:
        have = held.get(str(subject))
        if have is None or base64.b64encode(have).decode() != str(key):
            copy.forget_subject(str(subject), clear_values)


def check_cut(reader: LogReader, until: int, base: Sequence[SnapshotRecord]) -> None:
    """The archive's guard, run by the store inside its transaction (``Store.archive``):
    StoreError unless ``until`` is a valid next cut and ``base`` all sits at it."""
    previous = archived_until(reader)
    head = reader.head()
    if not previous < until < head:
        raise StoreError(
            f"cannot archive up to position {until}: the cut must be after the archived "
            f"positions (1..{previous}) and before the head ({head}), which stays in the log"
        )
    wrong = [r for r in base if r.position != until]
    if wrong:
        raise StoreError(f"base snapshot of {wrong[0].key} at {wrong[0].position}, not {until}")
