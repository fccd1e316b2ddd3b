"""Verification: do the stored snapshots agree with the log, and is replay deterministic?

:func:`verify` runs three checks over a store and returns a :class:`VerifyReport`:

1. **Snapshots against the log.** Every stored snapshot must equal the state
   rebuilt from the log at the snapshot's position, from blank, in states of
   the verifier's own (the engine's live repository is never read or
   written). Without a sample, the log streams once through ``apply`` from
   blank (the reference semantics: every event once, in order) and each
   snapshot is compared as the stream passes its position; with a sample, the
   engine's reconstitutor rebuilds just the sampled states with a plan that
   ignores snapshots. A mismatch names the state, the snapshot's position, the
   fields that differ, and the event they come from, found by bisection (see
   :func:`locate_divergence`), telling a corrupted snapshot from a
   nondeterministic ``apply``.
2. **Replay is deterministic.** The log is replayed twice from blank and every
   state's canonical serialisation (``encode_state``: sorted keys, no spaces)
   must be byte-identical. When the modules defining the user's classes are
   known (``apps``) and the store can be opened from another process, the
   second replay runs in a subprocess with a different ``PYTHONHASHSEED``, so
   hooks that depend on the iteration order of sets or dicts of strings are
   caught too; otherwise it runs in this process.
3. **Snapshot sets are in sync.** ``engine.snapshot_sync()``.

For big logs: ``sample`` checks a seeded random sample of states, ``start`` /
``end`` limit the positions checked, ``time_budget`` stops cleanly and the
report says what was not checked, ``progress`` is called as work advances.
Rebuilding always starts from blank at position 0: ``start`` only limits which
snapshots (positions in ``[start, end]``) and which states (touched by an event
in ``(start, end]``) are compared.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any
from xml.etree import ElementTree

import attrs

from ._errors import DecodeError, PlaythroughError, UnknownTypeError
from ._model import Phase, State, StateKey, decode_id
from ._reconstitution import StateReconstitutor, blank_for, decode_event, state_from_snapshot
from ._replay import Replay
from ._serialization import encode_state
from ._snapshots import SyncReport
from ._stores import Link, SnapshotRecord, Store, StoredEvent, StoreReader, open_store

if TYPE_CHECKING:
    from ._engine import Engine

#: ``progress(stage, done, total)``; stages: "sync", "snapshots", "replay", "locate".
Progress = Callable[[str, int, int], None]

_APPLY: tuple[Phase, ...] = ("apply",)
_CHUNK = 2_000
_MISSING = "<missing>"
_LAST_EVENT = "(last_event_id)"


class _OutOfTime(Exception):
    """The time budget ran out; the caller records what was not checked."""


class _ReplayFailed(PlaythroughError):
    """An apply hook raised while the verifier replayed the log."""


# --------------------------------------------------------------------------- report


@attrs.frozen
class FieldDiff:
    """One top-level field whose canonical JSON differs between two versions of a state.

    ``a`` and ``b`` are JSON values (``"<missing>"`` when a side lacks the field);
    which side is which depends on the check: (snapshot, log) or (first, second).
    """

    field: str
    a: Any
    b: Any


@attrs.frozen
class SnapshotMismatch:
    """A stored snapshot that is not the state the log gives at its position.

    ``first_event`` is the position found by :func:`locate_divergence` (None when
    the log never moves the differing fields off their blank values, when the
    snapshot cannot be decoded, or when the time budget ran out first:
    ``located`` says whether the search ran). ``nondeterministic``: the log
    itself does not reproduce the differing fields from ``first_event`` on
    (an ``apply`` is not deterministic), rather than the snapshot being wrong.
    """

    state: StateKey
    position: int
    diffs: tuple[FieldDiff, ...]
    error: str | None = None
    located: bool = False
    first_event: int | None = None
    first_event_type: str | None = None
    nondeterministic: bool = False
    rebuilds: int = 0

    def describe(self) -> str:
        head = f"{self.state}, snapshot at {self.position}: "
        if self.error is not None:
            head += f"cannot be decoded ({self.error})"
        elif not self.located:
            head += "differs from the log (event not located: out of time)"
        elif self.first_event is None:
            head += "differs from the log, which never moves those fields off their blank values"
        elif self.nondeterministic:
            head += (
                f"differs from the log, which does not reproduce "
                f"{', '.join(d.field for d in self.diffs)} from event {self.first_event} "
                f"({self.first_event_type}) on: each replay of it gives other values "
                "(an apply hook is not deterministic)"
            )
        else:
            head += (
                f"differs from the log since event {self.first_event} "
                f"({self.first_event_type}), which settled "
                f"{', '.join(d.field for d in self.diffs)} to the value(s) the snapshot contradicts"
            )
        lines = [head]
        for d in self.diffs:
            lines.append(f"    {d.field}: snapshot {_short(d.a)} != log {_short(d.b)}")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "state": _key_dict(self.state),
            "position": self.position,
            "first_event": self.first_event,
            "first_event_type": self.first_event_type,
            "located": self.located,
            "nondeterministic": self.nondeterministic,
            "rebuilds": self.rebuilds,
            "error": self.error,
            "diffs": [{"field": d.field, "snapshot": d.a, "log": d.b} for d in self.diffs],
        }


@attrs.frozen
class ReplayMismatch:
    """A state whose canonical JSON differs between the two replays from blank."""

    state: StateKey
    diffs: tuple[FieldDiff, ...]

    def describe(self) -> str:
        lines = [f"{self.state}: the two replays disagree"]
        for d in self.diffs:
            lines.append(f"    {d.field}: first {_short(d.a)} != second {_short(d.b)}")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "state": _key_dict(self.state),
            "diffs": [{"field": d.field, "first": d.a, "second": d.b} for d in self.diffs],
        }


@attrs.frozen
class SnapshotCheck:
    """Check 1: ``checked`` snapshots of ``states`` compared with the log."""

    ran: bool
    checked: int
    states: tuple[StateKey, ...]
    mismatches: tuple[SnapshotMismatch, ...]

    @property
    def ok(self) -> bool:
        return not self.mismatches


@attrs.frozen
class ReplayCheck:
    """Check 2: ``states`` replayed twice from blank; ``digest`` hashes the first replay."""

    ran: bool
    mode: str
    states: tuple[StateKey, ...]
    mismatches: tuple[ReplayMismatch, ...]
    digest: str | None

    @property
    def ok(self) -> bool:
        return not self.mismatches


@attrs.frozen
class VerifyReport:
    """What :func:`verify` found. ``ok``: every check that ran holds and nothing failed.

    ``complete`` is False when a time budget stopped the run; ``not_checked``
    then says what was skipped (a run that is not complete can still be ok).
    """

    url: str
    head: int
    start: int
    end: int
    sample: tuple[int, int, int] | None  # (sampled states, of how many, seed)
    snapshots: SnapshotCheck
    replay: ReplayCheck
    sync: SyncReport | None
    not_checked: tuple[str, ...]
    errors: tuple[str, ...]
    elapsed: float

    @property
    def ok(self) -> bool:
        return (
            self.snapshots.ok
            and self.replay.ok
            and (self.sync is None or self.sync.in_sync)
            and not self.errors
        )

    @property
    def complete(self) -> bool:
        return not self.not_checked

    # ------------------------------------------------------------------ text

    def to_text(self) -> str:
        def mark(ok: bool, ran: bool = True) -> str:
            return "SKIP " if not ran else ("ok   " if ok else "FAIL ")

        scope = f"positions {self.start}..{self.end} of {self.head}"
        if self.sample is not None:
            n, of, seed = self.sample
            scope += f", a sample of {n} of {of} state(s) (seed {seed})"
        lines = [f"playthrough verify {self.url} ({scope})"]
        s = self.snapshots
        lines.append(
            f"{mark(s.ok, s.ran)}snapshots vs log: {s.checked} snapshot(s) of "
            f"{len(s.states)} state(s) checked, {len(s.mismatches)} mismatch(es)"
        )
        lines.extend("  " + m.describe().replace("\n", "\n  ") for m in s.mismatches)
        r = self.replay
        lines.append(
            f"{mark(r.ok, r.ran)}replay determinism: {len(r.states)} state(s) replayed twice "
            f"from blank ({r.mode}), {len(r.mismatches)} differ"
            + (f"; digest {r.digest[:16]}" if r.digest and r.ok else "")
        )
        lines.extend("  " + m.describe().replace("\n", "\n  ") for m in r.mismatches)
        if self.sync is None:
            lines.append(f"{mark(True, False)}snapshot sync: not checked")
        else:
            lines.append(
                f"{mark(self.sync.in_sync)}snapshot sync: " + str(self.sync).replace("\n", "\n  ")
            )
        for error in self.errors:
            lines.append(f"ERROR {error}")
        for item in self.not_checked:
            lines.append(f"not checked: {item}")
        verdict = "OK" if self.ok else "FAILED"
        if not self.complete:
            verdict += " (incomplete: time budget reached)"
        lines.append(f"{verdict} in {self.elapsed:.2f}s")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.to_text()

    # ------------------------------------------------------------------ json

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict (``json.dumps(report.to_dict())``)."""
        sync: dict[str, Any] | None = None
        if self.sync is not None:
            sync = {
                "ok": self.sync.in_sync,
                "checked": self.sync.checked,
                "out_of_sync": [
                    {
                        "state": _key_dict(p.state),
                        "position": p.position,
                        "partner": _key_dict(p.partner),
                        "partner_position": p.partner_position,
                        "event": p.event,
                    }
                    for p in self.sync.out_of_sync
                ],
            }
        return {
            "ok": self.ok,
            "complete": self.complete,
            "url": self.url,
            "head": self.head,
            "start": self.start,
            "end": self.end,
            "sample": None
            if self.sample is None
            else dict(zip(("size", "of", "seed"), self.sample, strict=True)),
            "snapshots": {
                "ok": self.snapshots.ok,
                "ran": self.snapshots.ran,
                "checked": self.snapshots.checked,
                "states": len(self.snapshots.states),
                "mismatches": [m.to_dict() for m in self.snapshots.mismatches],
            },
            "replay": {
                "ok": self.replay.ok,
                "ran": self.replay.ran,
                "mode": self.replay.mode,
                "states": len(self.replay.states),
                "digest": self.replay.digest,
                "mismatches": [m.to_dict() for m in self.replay.mismatches],
            },
            "sync": sync,
            "not_checked": list(self.not_checked),
            "errors": list(self.errors),
            "elapsed": round(self.elapsed, 3),
        }

    # ------------------------------------------------------------------ junit

    def to_junit_xml(self) -> str:
        """JUnit XML for CI systems: one testcase per check and state."""
        suite = ElementTree.Element("testsuite", name="playthrough.verify")
        counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}

        def case(classname: str, name: str) -> ElementTree.Element:
            counts["tests"] += 1
            return ElementTree.SubElement(suite, "testcase", classname=classname, name=name)

        def fail(el: ElementTree.Element, message: str, text: str) -> None:
            counts["failures"] += 1
            node = ElementTree.SubElement(el, "failure", message=message)
            node.text = text

        by_state: dict[StateKey, list[SnapshotMismatch]] = {}
        for m in self.snapshots.mismatches:
            by_state.setdefault(m.state, []).append(m)
        for key in self.snapshots.states:
            el = case("playthrough.verify.snapshots", str(key))
            found = by_state.get(key)
            if found:
                fail(
                    el,
                    f"{len(found)} snapshot(s) of {key} differ from the log",
                    "\n".join(m.describe() for m in found),
                )
        replay_bad = {m.state: m for m in self.replay.mismatches}
        for key in self.replay.states:
            el = case("playthrough.verify.replay", str(key))
            bad = replay_bad.get(key)
            if bad is not None:
                fail(el, f"replays of {key} are not deterministic", bad.describe())
        if self.sync is not None:
            el = case("playthrough.verify", "snapshot sync")
            if not self.sync.in_sync:
                fail(
                    el, f"{len(self.sync.out_of_sync)} coupled pair(s) out of sync", str(self.sync)
                )
        for item in self.not_checked:
            el = case("playthrough.verify", f"not checked: {item}")
            counts["skipped"] += 1
            ElementTree.SubElement(el, "skipped", message=item)
        for error in self.errors:
            el = case("playthrough.verify", "error")
            counts["errors"] += 1
            node = ElementTree.SubElement(el, "error", message=error.splitlines()[0])
            node.text = error
        for name, value in counts.items():
            suite.set(name, str(value))
        suite.set("time", f"{self.elapsed:.3f}")
        root = ElementTree.Element("testsuites")
        root.append(suite)
        ElementTree.indent(root)
        return '<?xml version="1.0" encoding="utf-8"?>\n' + ElementTree.tostring(
            root, encoding="unicode"
        )


def _key_dict(key: StateKey) -> dict[str, Any]:
    value = decode_id(key.id)
    return {"type": key.type, "id": str(value) if value is not None else None, "name": str(key)}


def _short(value: Any, limit: int = 120) -> str:
    text = json.dumps(value, sort_keys=True, ensure_ascii=False)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def field_diffs(a: str, b: str) -> tuple[FieldDiff, ...]:
    """The top-level fields whose canonical JSON differs between two encoded states."""
    try:
        da, db = json.loads(a), json.loads(b)
    except ValueError:
        return (FieldDiff("(data)", a, b),)
    if not (isinstance(da, dict) and isinstance(db, dict)):
        return () if _canon(da) == _canon(db) else (FieldDiff("(data)", da, db),)
    out = []
    for name in sorted(set(da) | set(db)):
        va, vb = da.get(name, _MISSING), db.get(name, _MISSING)
        if _canon(va) != _canon(vb):
            out.append(FieldDiff(name, va, vb))
    return tuple(out)


def _canon(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


# --------------------------------------------------------------------------- rebuilding


class _IgnoringSnapshots(StoreReader):
    """A reader that shows the log but no snapshot: plans over it start every state blank."""

    def __init__(self, inner: StoreReader) -> None:
        self._inner = inner

    def head(self) -> int:
        return self._inner.head()

    def state_heads(self, keys: Iterable[StateKey]) -> dict[StateKey, int]:
        return self._inner.state_heads(keys)

    def snapshots(
        self, keys: Iterable[StateKey], at_most: int
    ) -> dict[StateKey, list[SnapshotRecord]]:
        return {}

    def links(self, ranges: Mapping[StateKey, tuple[int, int]]) -> list[Link]:
        return self._inner.links(ranges)

    def events(self, positions: Sequence[int]) -> Iterator[StoredEvent]:
        return self._inner.events(positions)

    def events_after(self, after: int, limit: int) -> list[StoredEvent]:
        return self._inner.events_after(after, limit)

    def iter_snapshots(self) -> Iterator[SnapshotRecord]:
        return iter(())

    def links_between(self, after: int, upto: int) -> list[Link]:
        return self._inner.links_between(after, upto)

    def meta(self, key: str) -> str | None:
        return self._inner.meta(key)

    def commit_positions(self, commit_id: str) -> tuple[int, int] | None:
        return self._inner.commit_positions(commit_id)

    def event_keys(self, keys: Sequence[str]) -> dict[str, int]:
        return self._inner.event_keys(keys)

    def pending_handlers(self, limit: int) -> list[int]:
        return self._inner.pending_handlers(limit)


def rebuild(
    reconstitutor: StateReconstitutor,
    reader: StoreReader,
    keys: Sequence[StateKey],
    at: int,
) -> dict[StateKey, State]:
    """The states as the log gives them at ``at``, rebuilt from blank (snapshots ignored)."""
    try:
        states, _ = reconstitutor.reconstitute(_IgnoringSnapshots(reader), keys, at)
    except DecodeError:
        raise
    except Exception as exc:
        raise _ReplayFailed(f"rebuilding {', '.join(map(str, keys[:3]))} at {at}: {exc!r}") from exc
    return {k: states[k] for k in keys}


class _FromBlank:
    """Streams the log through ``apply`` from blank, holding every state touched."""

    def __init__(self) -> None:
        self.states: dict[StateKey, State] = {}
        self._replay = Replay(self.states, _APPLY)

    def play(self, stored: StoredEvent, keys: list[StateKey]) -> None:
        for k in keys:
            if k not in self.states:
                self.states[k] = blank_for(k)
        event = decode_event(stored)
        try:
            self._replay.play(event, stored.position, keys)
        except Exception as exc:
            raise _ReplayFailed(
                f"event {stored.position} ({stored.type}) raised while replaying from blank: "
                f"{exc!r}"
            ) from exc

    def state(self, key: StateKey) -> State:
        state = self.states.get(key)
        return blank_for(key) if state is None else state


def _log_chunks(
    store: Store, end: int, chunk_size: int = _CHUNK
) -> Iterator[list[tuple[StoredEvent, list[StateKey]]]]:
    """The log up to ``end`` in chunks, each event with the states it touched."""
    position = 0
    while position < end:
        with store.reader() as reader:
            chunk = [e for e in reader.events_after(position, chunk_size) if e.position <= end]
            if not chunk:
                return
            links: dict[int, list[StateKey]] = {}
            for link in reader.links_between(position, chunk[-1].position):
                links.setdefault(link.position, []).append(link.key)
        yield [(e, links.get(e.position, [])) for e in chunk]
        position = chunk[-1].position


def replay_encodings(
    store: Store,
    reconstitutor: StateReconstitutor,
    *,
    start: int,
    end: int,
    keys: Sequence[StateKey] | None = None,
    check: Callable[[], None] = lambda: None,
    progress: Progress | None = None,
) -> dict[StateKey, str]:
    """One replay from blank: canonical JSON of each compared state as of ``end``.

    Without ``keys``, the whole log streams through ``apply`` and the states
    touched by an event in ``(start, end]`` are compared; with ``keys``, just
    those states are rebuilt by a plan that ignores snapshots. ``check`` is
    called between chunks (it raises to stop).
    """
    if keys is not None:
        out: dict[StateKey, str] = {}
        for i in range(0, len(keys), 200):
            check()
            part = list(keys[i : i + 200])
            with store.reader() as reader:
                built = rebuild(reconstitutor, reader, part, end)
            out.update((k, encode_state(built[k])) for k in part)
            if progress is not None:
                progress("replay", min(i + 200, len(keys)), len(keys))
        return out
    blank = _FromBlank()
    compared: dict[StateKey, None] = {}
    for chunk in _log_chunks(store, end):
        check()
        for stored, touched in chunk:
            blank.play(stored, touched)
            if stored.position > start:
                compared.update(dict.fromkeys(touched))
        if progress is not None:
            progress("replay", chunk[-1][0].position, end)
    return {k: encode_state(blank.state(k)) for k in compared}


def digest(encodings: Mapping[StateKey, str]) -> str:
    """sha256 over every (state, canonical JSON), sorted by state."""
    h = hashlib.sha256()
    for key in sorted(encodings):
        h.update(f"{key.type}\0{key.id}\0{encodings[key]}\n".encode())
    return h.hexdigest()


# --------------------------------------------------------------------------- bisection


def _projection(state: State, fields: Sequence[str]) -> dict[str, str]:
    data = json.loads(encode_state(state))
    out = {f: _canon(data.get(f, _MISSING)) for f in fields if f != _LAST_EVENT}
    if _LAST_EVENT in fields:
        out[_LAST_EVENT] = str(state.last_event_id)
    return out


@attrs.frozen
class Divergence:
    """Where :func:`locate_divergence` found a snapshot's differing fields to come from."""

    event: int | None
    event_type: str | None
    nondeterministic: bool
    rebuilds: int


def locate_divergence(
    reconstitutor: StateReconstitutor,
    store: Store,
    key: StateKey,
    position: int,
    fields: Sequence[str],
) -> Divergence:
    """Find, by bisection, the event the snapshot's differing ``fields`` come from.

    Let ``c_0 = 0`` (blank, before any event) and ``c_1 < … < c_n`` be the
    positions ``<= position`` of the events that touch ``key``. ``R(c)`` is the
    state rebuilt from the log at ``c``, from blank, snapshots ignored; each
    rebuild is a fresh replay. Only ``fields`` (those on which the snapshot and
    ``R(position)`` differ) are compared; ``R(c_n)`` equals ``R(position)``.

    1. Two rebuilds at ``c_n`` are compared. When they disagree, the log does
       not determine ``fields``: some ``apply`` is nondeterministic (wall
       clock, unseeded randomness...). ``unstable(i)`` holds when two
       rebuilds at ``c_i`` disagree; ``unstable(0)`` is false (blank is blank)
       and ``unstable(n)`` true. The answer is the first event after which
       the fields are no longer reproducible: bisection keeps ``lo`` with
       ``not unstable(lo)`` and ``hi`` with ``unstable(hi)`` until they are
       adjacent and answers ``c_hi`` (``nondeterministic=True``).
    2. Otherwise the log is reproducible and the snapshot disagrees with it.
       ``settled(i)`` holds when ``R(c_i)`` equals ``R(c_n)`` on ``fields``.
       If ``settled(0)``, the log never moves the fields off their blank
       values: the answer is ``None``. Otherwise bisection as above answers
       ``c_hi`` with ``settled(hi)`` and ``not settled(hi - 1)``: the event
       after which the log takes the values the snapshot contradicts, while
       just before it the log held other values.

    In both cases, when the fields reach their final (or unreproducible)
    values once and keep them (set-once fields, counters, growing lists: the
    usual case), ``c_hi`` is exactly the earliest event after which the state
    rebuilt from the log disagrees with the snapshot in that way and stays
    so; a field that leaves its final value and later returns to it can make
    bisection stop at an earlier visit of that value. A nondeterminism that
    happens to repeat a value in two rebuilds goes unseen by that probe.

    At most ``2 * (ceil(log2(n)) + 1)`` states are rebuilt (``rebuilds``).
    """
    rebuilds = 0
    with store.reader() as reader:
        links = reader.links({key: (0, position)})
        candidates = [0, *sorted({lk.position for lk in links if lk.key == key})]
        cache: dict[int, dict[str, str]] = {}

        def at(i: int, *, fresh: bool = False) -> dict[str, str]:
            nonlocal rebuilds
            q = candidates[i]
            if q == 0:
                return _projection(blank_for(key), fields)
            if not fresh and q in cache:
                return cache[q]
            rebuilds += 1
            found = _projection(rebuild(reconstitutor, reader, [key], q)[key], fields)
            cache.setdefault(q, found)
            return found

        def bisect(holds: Callable[[int], bool]) -> int:
            lo, hi = 0, len(candidates) - 1
            while hi - lo > 1:
                mid = (lo + hi) // 2
                if holds(mid):
                    hi = mid
                else:
                    lo = mid
            return hi

        last = len(candidates) - 1
        final = at(last)
        nondeterministic = last > 0 and at(last, fresh=True) != final
        if nondeterministic:
            hi = bisect(lambda i: at(i) != at(i, fresh=True))
        elif at(0) == final:
            return Divergence(None, None, False, rebuilds)
        else:
            hi = bisect(lambda i: at(i) == final)
        first = candidates[hi]
        kind = next(iter(reader.events([first]))).type
    return Divergence(first, kind, nondeterministic, rebuilds)


# --------------------------------------------------------------------------- checks


def _compare(record: SnapshotRecord, state: State) -> SnapshotMismatch | None:
    log_json = encode_state(state)
    error: str | None = None
    try:
        snap_json = encode_state(state_from_snapshot(record))
    except UnknownTypeError:
        raise
    except DecodeError as exc:
        snap_json, error = record.data, str(exc)
    if error is None and snap_json == log_json and record.last_event_id == state.last_event_id:
        return None
    diffs = list(field_diffs(snap_json, log_json))
    if record.last_event_id != state.last_event_id:
        diffs.append(FieldDiff(_LAST_EVENT, record.last_event_id, state.last_event_id))
    return SnapshotMismatch(record.key, record.position, tuple(diffs), error)


class _Run:
    """The state of one verification run: deadline, findings, what was left unchecked."""

    def __init__(
        self,
        engine: Engine,
        time_budget: float | None,
        clock: Callable[[], float],
        progress: Progress | None,
    ) -> None:
        self.engine = engine
        self.store = engine.store
        self.reconstitutor = engine.reconstitutor
        self.clock = clock
        self.started = clock()
        self.deadline = None if time_budget is None else self.started + time_budget
        self.progress = progress
        self.snapshots = SnapshotCheck(False, 0, (), ())
        self.not_checked: list[str] = []
        self.errors: list[str] = []

    def check_time(self) -> None:
        """Raise _OutOfTime once the budget is spent."""
        if self.deadline is not None and self.clock() >= self.deadline:
            raise _OutOfTime

    def remaining(self) -> float | None:
        return None if self.deadline is None else max(0.0, self.deadline - self.clock())

    def report(self, stage: str, done: int, total: int) -> None:
        if self.progress is not None:
            self.progress(stage, done, total)


_SYNC = "snapshot sync"
_SNAPSHOTS = "snapshots vs log"
_REPLAY = "replay determinism"


def verify(
    engine: Engine,
    *,
    sample: int | None = None,
    seed: int = 0,
    start: int | None = None,
    end: int | None = None,
    time_budget: float | None = None,
    progress: Progress | None = None,
    apps: Sequence[str] = (),
    url: str | None = None,
    subprocess_replay: bool | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> VerifyReport:
    """Check the engine's store: snapshots against the log, replay determinism, snapshot sync.

    - ``sample``: check only this many states, drawn with ``random.Random(seed)``
      from the states the range touches or snapshots.
    - ``start``, ``end``: compare snapshots at positions in ``[start, end]`` and
      states touched by events in ``(start, end]`` (default: the whole log).
    - ``time_budget``: seconds; when spent, stop cleanly and list in
      ``not_checked`` what was left.
    - ``progress(stage, done, total)``: called as work advances.
    - ``apps``: modules defining the domain's classes; with them (and a store
      another process can open: ``url``, by default the store's own URL) the
      second replay runs in a subprocess with another ``PYTHONHASHSEED``.
      ``subprocess_replay`` forces it on (True) or off (False).
    - ``clock``: the time source for ``time_budget`` (tests pass a fake one).

    Nothing here reads or changes ``engine.repository``. An unknown event or
    state type (the module defining it was not imported) raises
    :class:`UnknownTypeError`; every other problem is reported.
    """
    run = _Run(engine, time_budget, clock, progress)
    with engine.store.reader() as reader:
        head = reader.head()
    lo = 0 if start is None else start
    hi = head if end is None else end
    if lo < 0 or hi < lo or hi > head:
        raise ValueError(f"bad position range {lo}..{hi}: the log holds positions 0..{head}")
    if sample is not None and sample < 1:
        raise ValueError("sample must be a positive number of states")

    sync: SyncReport | None = None
    replay = ReplayCheck(False, "not run", (), (), None)
    sample_info: tuple[int, int, int] | None = None
    remaining = [_SYNC, _SNAPSHOTS, _REPLAY]
    try:
        run.check_time()
        run.report("sync", 0, 1)
        sync = engine.snapshot_sync()
        run.report("sync", 1, 1)
        remaining.remove(_SYNC)
        keys: list[StateKey] | None = None
        if sample is not None:
            universe = _universe(run.store, lo, hi)
            if sample < len(universe):
                keys = sorted(random.Random(seed).sample(universe, sample))
                sample_info = (len(keys), len(universe), seed)
        if keys is None:
            first = _check_streaming(run, lo, hi)
            remaining.remove(_SNAPSHOTS)
        else:
            _check_sampled(run, keys, lo, hi)
            remaining.remove(_SNAPSHOTS)
            with run.store.reader() as reader:
                touched = [k for k in keys if _touched_in(reader, k, lo, hi)]
            first = replay_encodings(
                run.store, run.reconstitutor, start=lo, end=hi, keys=touched, check=run.check_time
            )
        replay = _check_replay(run, first, keys is not None, lo, hi, apps, url, subprocess_replay)
        remaining.remove(_REPLAY)
    except _OutOfTime:
        run.not_checked.extend(remaining)
    except _ReplayFailed as exc:
        run.errors.append(str(exc))
    except DecodeError as exc:
        if isinstance(exc, UnknownTypeError):
            raise
        run.errors.append(f"the log cannot be read: {exc}")
    _locate_all(run)
    return VerifyReport(
        url=engine.store.url,
        head=head,
        start=lo,
        end=hi,
        sample=sample_info,
        snapshots=run.snapshots,
        replay=replay,
        sync=sync,
        not_checked=tuple(run.not_checked),
        errors=tuple(run.errors),
        elapsed=run.clock() - run.started,
    )


def _universe(store: Store, lo: int, hi: int) -> list[StateKey]:
    """The states touched by an event in ``(lo, hi]`` or snapshotted at a position in it."""
    found: set[StateKey] = set()
    position = lo
    while position < hi:
        upto = min(hi, position + 50_000)
        with store.reader() as reader:
            found.update(link.key for link in reader.links_between(position, upto))
        position = upto
    with store.reader() as reader:
        found.update(r.key for r in reader.iter_snapshots() if lo <= r.position <= hi)
    return sorted(found)


def _check_streaming(run: _Run, lo: int, hi: int) -> dict[StateKey, str]:
    """One pass from blank: compare every snapshot as the stream passes its position.

    Sets ``run.snapshots`` (also when the time budget stops it part-way) and
    returns the first replay: the canonical JSON of every state touched in
    ``(lo, hi]``, as of ``hi``.
    """
    groups: dict[int, list[SnapshotRecord]] = {}
    with run.store.reader() as reader:
        for record in reader.iter_snapshots():
            if lo <= record.position <= hi:
                groups.setdefault(record.position, []).append(record)
    pending = sorted(groups)
    mismatches: list[SnapshotMismatch] = []
    states: dict[StateKey, None] = {}
    checked = 0
    blank = _FromBlank()
    compared: dict[StateKey, None] = {}

    def compare_upto(position: int) -> None:
        nonlocal checked
        while pending and pending[0] <= position:
            for record in groups.pop(pending.pop(0)):
                states[record.key] = None
                checked += 1
                found = _compare(record, blank.state(record.key))
                if found is not None:
                    mismatches.append(found)

    try:
        for chunk in _log_chunks(run.store, hi):
            run.check_time()
            for stored, touched in chunk:
                compare_upto(stored.position - 1)
                blank.play(stored, touched)
                if stored.position > lo:
                    compared.update(dict.fromkeys(touched))
            run.report("snapshots", chunk[-1][0].position, hi)
        run.check_time()
        compare_upto(hi)
    except _OutOfTime:
        left = sum(len(g) for g in groups.values())
        if left:
            run.not_checked.append(
                f"{left} snapshot(s) at positions {pending[0]}..{pending[-1]} (of {_SNAPSHOTS})"
            )
        raise
    finally:
        run.snapshots = SnapshotCheck(True, checked, tuple(states), tuple(mismatches))
    return {k: encode_state(blank.state(k)) for k in compared}


def _check_sampled(run: _Run, keys: list[StateKey], lo: int, hi: int) -> None:
    """Rebuild just the sampled states (and what their events couple them with)."""
    groups: dict[int, list[SnapshotRecord]] = {}
    with run.store.reader() as reader:
        for history in reader.snapshots(keys, hi).values():
            for record in history:
                if record.position >= lo:
                    groups.setdefault(record.position, []).append(record)
    mismatches: list[SnapshotMismatch] = []
    states: dict[StateKey, None] = {}
    checked = 0
    order = sorted(groups)
    done = 0
    try:
        for position in order:
            run.check_time()
            records = groups[position]
            with run.store.reader() as reader:
                built = rebuild(run.reconstitutor, reader, [r.key for r in records], position)
            for record in records:
                states[record.key] = None
                checked += 1
                found = _compare(record, built[record.key])
                if found is not None:
                    mismatches.append(found)
            done += 1
            run.report("snapshots", done, len(order))
    except _OutOfTime:
        left = order[done:]
        run.not_checked.append(
            f"{sum(len(groups[p]) for p in left)} snapshot(s) of sampled states at positions "
            f"{left[0]}..{left[-1]} (of {_SNAPSHOTS})"
        )
        raise
    finally:
        run.snapshots = SnapshotCheck(True, checked, tuple(sorted(states)), tuple(mismatches))


def _touched_in(reader: StoreReader, key: StateKey, lo: int, hi: int) -> bool:
    return any(link.key == key for link in reader.links({key: (lo, hi)}))


def _check_replay(
    run: _Run,
    first: dict[StateKey, str],
    sampled: bool,
    lo: int,
    hi: int,
    apps: Sequence[str],
    url: str | None,
    forced: bool | None,
) -> ReplayCheck:
    """Replay again from blank (in a subprocess when possible) and compare with ``first``."""
    target = url if url is not None else run.store.url
    in_memory = target in ("sqlite://", "sqlite:///:memory:")
    use_subprocess = (bool(apps) and not in_memory) if forced is None else forced
    keys = sorted(first) if sampled else None
    mode = "in-process"
    second: dict[StateKey, str] | None = None
    if use_subprocess:
        if in_memory:
            raise ValueError("a subprocess cannot open an in-memory store")
        run.check_time()
        seed = _other_hash_seed()
        mode = f"second replay in a subprocess with PYTHONHASHSEED={seed}"
        try:
            second = _replay_in_subprocess(run, target, apps, seed, keys, lo, hi)
        except subprocess.TimeoutExpired:
            raise _OutOfTime from None
        except _SubprocessFailed as exc:
            mode = f"in-process (the subprocess failed: {exc})"
    if second is None:
        second = replay_encodings(
            run.store,
            run.reconstitutor,
            start=lo,
            end=hi,
            keys=keys,
            check=run.check_time,
            progress=run.progress,
        )
    mismatches = []
    for key in sorted(set(first) | set(second)):
        a, b = first.get(key), second.get(key)
        if a != b:
            diffs = (
                field_diffs(a, b)
                if a is not None and b is not None
                else (FieldDiff("(state)", a or _MISSING, b or _MISSING),)
            )
            mismatches.append(ReplayMismatch(key, diffs))
    return ReplayCheck(True, mode, tuple(sorted(first)), tuple(mismatches), digest(first))


def _locate_all(run: _Run) -> None:
    """Find the first differing event of each snapshot mismatch, while time allows."""
    check = run.snapshots
    todo = [m for m in check.mismatches if m.error is None]
    if not todo:
        return
    located: list[SnapshotMismatch] = []
    done = 0
    try:
        for m in check.mismatches:
            if m.error is not None:
                located.append(m)
                continue
            run.check_time()
            found = locate_divergence(
                run.reconstitutor, run.store, m.state, m.position, [d.field for d in m.diffs]
            )
            located.append(
                attrs.evolve(
                    m,
                    located=True,
                    first_event=found.event,
                    first_event_type=found.event_type,
                    nondeterministic=found.nondeterministic,
                    rebuilds=found.rebuilds,
                )
            )
            done += 1
            run.report("locate", done, len(todo))
    except _OutOfTime:
        located.extend(check.mismatches[len(located) :])
        run.not_checked.append(
            f"locating the first differing event of {len(todo) - done} snapshot mismatch(es)"
        )
    except _ReplayFailed as exc:
        located.extend(check.mismatches[len(located) :])
        run.errors.append(str(exc))
    run.snapshots = attrs.evolve(check, mismatches=tuple(located))


# --------------------------------------------------------------------------- subprocess


class _SubprocessFailed(Exception):
    pass


def _other_hash_seed() -> str:
    """A PYTHONHASHSEED that differs from this process's."""
    current = os.environ.get("PYTHONHASHSEED", "")
    if current.isdigit():
        return str((int(current) + 1) % 4_294_967_296)
    return "0"  # this process hashes with a random seed (or one it was not told)


def _replay_in_subprocess(
    run: _Run,
    url: str,
    apps: Sequence[str],
    seed: str,
    keys: list[StateKey] | None,
    lo: int,
    hi: int,
) -> dict[StateKey, str]:
    with tempfile.TemporaryDirectory(prefix="playthrough-verify-") as tmp:
        spec = Path(tmp) / "spec.json"
        out = Path(tmp) / "states.jsonl"
        spec.write_text(
            json.dumps(
                {
                    "url": url,
                    "apps": list(apps),
                    "start": lo,
                    "end": hi,
                    "keys": None if keys is None else [list(k) for k in keys],
                    "out": str(out),
                }
            ),
            encoding="utf-8",
        )
        env = dict(os.environ)
        env["PYTHONHASHSEED"] = seed
        paths = [p or os.getcwd() for p in sys.path]
        env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
        run.report("replay", 0, hi)
        done = subprocess.run(
            [sys.executable, "-c", _CHILD, str(spec)],
            env=env,
            capture_output=True,
            text=True,
            timeout=run.remaining(),
            check=False,
        )
        if done.returncode != 0:
            tail = (done.stderr or "").strip().splitlines()[-1:] or [f"exit {done.returncode}"]
            raise _SubprocessFailed(tail[0])
        found: dict[StateKey, str] = {}
        with out.open(encoding="utf-8") as lines:
            for line in lines:
                row = json.loads(line)
                found[StateKey(row["type"], row["id"])] = row["data"]
        run.report("replay", hi, hi)
        return found


_CHILD = (
    "import sys; from playthrough._verify import _child_main; sys.exit(_child_main(sys.argv[1]))"
)


def _child_main(spec_path: str) -> int:
    """Entry point of the subprocess that runs the second replay."""
    import importlib

    try:
        spec = json.loads(Path(spec_path).read_text(encoding="utf-8"))
        for module in spec["apps"]:
            importlib.import_module(module)
        keys = None if spec["keys"] is None else [StateKey(t, i) for t, i in spec["keys"]]
        store = open_store(spec["url"])
        try:
            found = replay_encodings(
                store, StateReconstitutor(), start=spec["start"], end=spec["end"], keys=keys
            )
        finally:
            store.close()
        with open(spec["out"], "w", encoding="utf-8") as out:
            for key, data in found.items():
                out.write(json.dumps({"type": key.type, "id": key.id, "data": data}) + "\n")
    except Exception:  # noqa: BLE001 - the parent reports the last line
        traceback.print_exc()
        return 3
    return 0
