"""The checks' orchestration: :func:`verify` over a store, a reconstitutor and a sync check."""

from __future__ import annotations

import random
import subprocess
import time
from collections import deque
from collections.abc import Callable, Sequence

import attrs

from .._binding import direct_keys
from .._errors import (
    ArchivedRangeError,
    CorruptionError,
    DecodeError,
    PlaythroughError,
    UnknownTypeError,
)
from .._model import Event, State, StateKey, binding
from .._personal import unsealing
from .._reconstitution import StateReconstitutor
from .._serialization import encode_state, state_from_snapshot
from .._snapshots import SyncReport
from .._stores import SnapshotRecord, Store, StoredEvent, StoreReader, parse_store_url
from .._stores._base import archived_until
from .._upcasting import snapshot_problem
from .bisect import locate_divergence
from .options import VerifyOptions
from .rebuild import (
    LOG_PAGE,
    FromBlank,
    Progress,
    ReplayFailed,
    digest,
    encodings,
    rebuild,
    replay_encodings,
)
from .report import (
    DETERMINISM,
    HEADS,
    LAST_EVENT,
    LINKS,
    MISSING,
    SNAPSHOTS,
    SYNC,
    DeterminismCheck,
    DeterminismMismatch,
    FieldDiff,
    LinkCheck,
    LinkMismatch,
    SnapshotCheck,
    SnapshotMismatch,
    VerifyInterrupted,
    VerifyReport,
    field_diffs,
)
from .subprocess_replay import (
    SubprocessFailed,
    SubprocessReplay,
    other_hash_seed,
    replay_in_subprocess,
)


class _OutOfTime(Exception):
    """The time budget ran out; the caller records what was not checked."""


# What stops a run part-way: the budget, or Ctrl-C (a partial report, then VerifyInterrupted).
_STOP = (_OutOfTime, KeyboardInterrupt)

EVERY = 256
"""Rows (events, snapshots, states) between two looks at the clock, in every check."""


class _Skipped(Exception):
    """The determinism check was not asked for."""


def verify(
    store: Store,
    reconstitutor: StateReconstitutor,
    options: VerifyOptions = VerifyOptions(),  # noqa: B008 - frozen
    *,
    sync_check: Callable[[], SyncReport] | None,
    progress: Progress | None = None,
    clock: Callable[[], float] | None = None,
) -> VerifyReport:
    """Check a store: heads and links, snapshots against the log, determinism, snapshot sync.

    What is checked is ``options`` (a :class:`VerifyOptions`, whose fields are named below).

    0. **Heads and snapshot metadata against the links** (``_metadata_problems``):
       errors naming the rows. **Links against payloads**, in the stream of
       check 1 (not with a sample): each event's states derived again from its
       payload must be its stored links (``LinkCheck``).

    1. **Snapshots against the log.** Every stored snapshot must equal the
       state rebuilt from the log at its position, from blank, in states of
       the verifier's own. Without a sample, the log streams once through
       ``apply`` and each snapshot is compared as the stream passes its
       position; with a sample, ``reconstitutor`` rebuilds just the sampled
       states with a plan that ignores snapshots. A mismatch names the state,
       the position, the fields that differ and, found by bisection
       (``locate_divergence``), the event they come from.
    2. **Determinism.** The log is replayed twice from blank and every
       state's canonical JSON must be byte-identical. With ``apps`` (the
       modules defining the domain's classes) and a store another process can
       open (``url``, by default ``store.url``), the second replay runs in a
       subprocess with another ``PYTHONHASHSEED``; ``subprocess_replay``
       forces that on (True) or off (False).
    3. **Snapshot sync**: ``sync_check()`` (None: not checked). Coupled
       snapshots out of sync cost a rewind on load, not a wrong result: they
       are warnings, failures only with ``strict_sync``.

    ``sample`` checks only this many states, drawn with ``random.Random(seed)``
    from those the range touches or snapshots; ``start``/``end`` compare
    snapshots at positions in ``[start, end]`` and states touched by events in
    ``(start, end]`` (rebuilding still starts from blank at 0);
    ``determinism=False`` runs only the snapshot (and sync) checks;
    ``time_budget`` (seconds of ``clock``, default ``time.monotonic``) stops cleanly, listing in
    ``not_checked`` what was left; ``progress(stage, done, total)`` is called
    as work advances. Every check looks at the clock every ``EVERY`` rows; Ctrl-C
    raises :class:`VerifyInterrupted` carrying the partial report.

    An unknown event or state type (its module was not imported) raises
    :class:`UnknownTypeError`; a bad range or sample raises ``ValueError``;
    every other problem is reported.
    """
    sample, seed = options.sample, options.seed
    start, end, time_budget = options.start, options.end, options.time_budget
    strict_sync, determinism = options.strict_sync, options.determinism
    apps, url, subprocess_replay = options.apps, options.url, options.subprocess_replay
    run = _Run(store, reconstitutor, time_budget, clock or time.monotonic, progress)
    with store.reader() as reader:
        head = reader.head()
        cut = archived_until(reader)
    # An archived log is checked from its cut: the base snapshots there stand
    # for the archived events (the report's start says so).
    lo = max(cut, 0 if start is None else start)
    hi = head if end is None else end
    if lo < 0 or hi < lo or hi > head:
        raise ValueError(f"bad position range {lo}..{hi}: the log holds positions 0..{head}")
    if sample is not None and sample < 1:
        raise ValueError("sample must be a positive number of states")

    sync: SyncReport | None = None
    determinism_check = DeterminismCheck(False, "not run", (), (), None)
    sample_info: tuple[int, int, int] | None = None
    remaining = [HEADS, SNAPSHOTS, LINKS, DETERMINISM]
    early: SubprocessReplay | None = None
    if sync_check is not None:
        remaining.insert(1, SYNC)
    try:
        run.check_time()
        run.report("heads", 0, 2)
        with store.reader() as reader:
            run.errors.extend(_metadata_problems(reader, run))
        run.report("heads", 2, 2)
        remaining.remove(HEADS)
        if sync_check is not None:
            run.check_time()
            run.report("sync", 0, 1)
            sync = sync_check()
            run.report("sync", 1, 1)
            remaining.remove(SYNC)
        keys: list[StateKey] | None = None
        if sample is not None:
            universe = _universe(run, store, lo, hi)
            if sample < len(universe):
                keys = sorted(random.Random(seed).sample(universe, sample))
                sample_info = (len(keys), len(universe), seed)
        if keys is None:
            if determinism:  # the second replay runs meanwhile, when it runs in a subprocess
                early = _start_second_replay(run, lo, hi, apps, url, subprocess_replay)
            first = _check_streaming(run, lo, hi)
            remaining.remove(SNAPSHOTS)
            remaining.remove(LINKS)
            if lo == 0 and hi == head:  # every state at the head: check the completion index
                from .._lifecycle import completion_mismatches

                run.check_time()
                run.errors.extend(completion_mismatches(store, first))
        else:
            remaining.remove(LINKS)  # the links check streams the whole log: not with a sample
            _check_sampled(run, keys, lo, hi)
            remaining.remove(SNAPSHOTS)
        if not determinism:
            remaining.remove(DETERMINISM)
            raise _Skipped
        if keys is not None:
            touched = []
            for i, k in enumerate(keys, 1):
                run.tick(i)
                with store.reader() as reader:
                    if _touched_in(reader, k, lo, hi):
                        touched.append(k)
            first = replay_encodings(
                store,
                reconstitutor,
                start=lo,
                end=hi,
                keys=touched,
                check=run.check_time,
                every=EVERY,
            )
        determinism_check = _check_determinism(
            run, first, keys is not None, lo, hi, apps, url, subprocess_replay, early
        )
        remaining.remove(DETERMINISM)
    except _Skipped:
        pass
    except _STOP as exc:
        run.not_checked.extend(remaining)
        run.interrupted = isinstance(exc, KeyboardInterrupt)
    except ReplayFailed as exc:
        run.errors.append(str(exc))
    except DecodeError as exc:
        if isinstance(exc, UnknownTypeError):
            raise
        run.errors.append(f"the log cannot be read: {exc}")
    except CorruptionError as exc:
        run.errors.append(str(exc))
    except ArchivedRangeError:
        raise  # a request this store cannot serve, not a finding about it
    except PlaythroughError as exc:  # any other stored value the library cannot handle
        run.errors.append(str(exc))
    finally:
        if early is not None:
            early.close()  # ends it if a check stopped the run before its result was read
    if not run.interrupted:
        _locate_all(run)
    report = VerifyReport(
        url=store.url,
        head=head,
        start=lo,
        end=hi,
        sample=sample_info,
        snapshots=run.snapshots,
        determinism=determinism_check,
        sync=sync,
        not_checked=tuple(run.not_checked),
        errors=tuple(run.errors),
        elapsed=run.clock() - run.started,
        strict_sync=strict_sync,
        unused_snapshots=tuple(run.unused_snapshots),
        links=run.links,
        interrupted=run.interrupted,
    )
    if run.interrupted:
        raise VerifyInterrupted(report)
    return report


class _Run:
    """One verification run: its collaborators, deadline, findings, what was left unchecked."""

    def __init__(
        self,
        store: Store,
        reconstitutor: StateReconstitutor,
        time_budget: float | None,
        clock: Callable[[], float],
        progress: Progress | None,
    ) -> None:
        self.store = store
        self.reconstitutor = reconstitutor
        self.clock = clock
        self.started = clock()
        self.deadline = None if time_budget is None else self.started + time_budget
        self.progress = progress
        self.snapshots = SnapshotCheck(False, 0, (), ())
        self.links = LinkCheck(False, 0, ())
        self.not_checked: list[str] = []
        self.errors: list[str] = []
        self.unused_snapshots: list[str] = []
        self.interrupted = False

    def usable(self, record: SnapshotRecord) -> bool:
        """Whether loads use this snapshot; the ones they do not are noted (not compared)."""
        problem = snapshot_problem(record)
        if problem is not None:
            self.unused_snapshots.append(
                f"{record.source} of {record.key} at {record.position} is not used by loads "
                f"(not compared): {problem}; `playthrough snapshot` rewrites it"
            )
        return problem is None

    def check_time(self) -> None:
        """Raise _OutOfTime once the budget is spent."""
        if self.deadline is not None and self.clock() >= self.deadline:
            raise _OutOfTime

    def tick(self, count: int) -> None:
        """Look at the clock every ``EVERY`` rows (``count``: rows done so far)."""
        if count % EVERY == 0:
            self.check_time()

    def remaining(self) -> float | None:
        return None if self.deadline is None else max(0.0, self.deadline - self.clock())

    def report(self, stage: str, done: int, total: int) -> None:
        if self.progress is not None:
            self.progress(stage, done, total)


def _universe(run: _Run, store: Store, lo: int, hi: int) -> list[StateKey]:
    """The states touched by an event in ``(lo, hi]`` or snapshotted at a position in it."""
    found: set[StateKey] = set()
    position = lo
    while position < hi:
        run.check_time()
        upto = min(hi, position + EVERY * 64)
        with store.reader() as reader:
            found.update(link.key for link in reader.links_between(position, upto))
        position = upto
    with store.reader() as reader:
        found.update(r.key for r in reader.iter_snapshots() if lo <= r.position <= hi)
    return sorted(found)


def _compare(record: SnapshotRecord, state: State) -> SnapshotMismatch | None:
    """None when the snapshot equals the state the log gives; else what differs.

    A snapshot holding the very bytes of the log's state (and its last event) is
    equal without decoding it; any other is decoded and encoded again first (a
    snapshot written by other code may spell the same state differently).
    """
    log_json = encode_state(state)
    if record.data == log_json and record.last_event_id == state.last_event_id:
        return None
    error: str | None = None
    try:
        snap_json = encode_state(state_from_snapshot(record))
    except UnknownTypeError:
        raise
    except DecodeError as exc:
        snap_json, error = record.data, str(exc)
    if error is None and snap_json == log_json and record.last_event_id == state.last_event_id:
        return None
    diffs = [attrs.evolve(d, a_is_found=True) for d in field_diffs(log_json, snap_json)]
    if record.last_event_id != state.last_event_id:
        diffs.append(
            FieldDiff(LAST_EVENT, state.last_event_id, record.last_event_id, a_is_found=True)
        )
    return SnapshotMismatch(record.key, record.position, tuple(diffs), error, source=record.source)


def _check_streaming(run: _Run, lo: int, hi: int) -> dict[StateKey, str]:
    """One pass from blank: compare every snapshot as the stream passes its position.

    Sets ``run.snapshots`` (also when the time budget stops it part-way) and
    returns the first replay: the canonical JSON of every state touched in
    ``(lo, hi]``, as of ``hi``.
    """
    groups: dict[int, list[SnapshotRecord]] = {}
    with run.store.reader() as reader:
        for record in reader.iter_snapshots():
            if lo <= record.position <= hi and run.usable(record):
                groups.setdefault(record.position, []).append(record)
    blank = FromBlank(run.store)
    # On an archived log the base snapshots at the cut are the start, not a claim to check.
    if blank.start:
        groups.pop(blank.start, None)
    pending = deque(sorted(groups))
    mismatches: list[SnapshotMismatch] = []
    states: dict[StateKey, None] = {}
    checked = 0
    compared: dict[StateKey, None] = {}
    links = _LinkTally()

    def compare_upto(position: int) -> None:
        nonlocal checked
        while pending and pending[0] <= position:
            records = groups[pending[0]]
            for i, record in enumerate(records):
                if i and i % EVERY == 0:
                    try:
                        run.check_time()
                    except _OutOfTime:
                        groups[pending[0]] = records[i:]  # the rest is not checked
                        raise
                states[record.key] = None
                checked += 1
                found = _compare(record, blank.state(record.key))
                if found is not None:
                    mismatches.append(found)
            del groups[pending.popleft()]

    try:
        pages = run.store.read_log(after=blank.start, until=hi, chunk=LOG_PAGE, view=unsealing)
        for chunk in pages:
            run.check_time()
            for stored, touched in chunk:
                run.tick(stored.position)
                compare_upto(stored.position - 1)
                event = blank.play(stored, touched)
                if stored.position > lo:
                    compared.update(dict.fromkeys(touched))
                    links.compare(stored, event, touched)
            run.report("snapshots", chunk[-1][0].position, hi)
        run.check_time()
        compare_upto(hi)
    except _STOP:
        left = sum(len(g) for g in groups.values())
        if left:
            run.not_checked.append(
                f"{left} snapshot(s) at positions {pending[0]}..{pending[-1]} (of {SNAPSHOTS})"
            )
        raise
    finally:
        run.snapshots = SnapshotCheck(True, checked, tuple(states), tuple(mismatches))
        run.links = LinkCheck(True, links.checked, tuple(links.mismatches), links.upcast)
    return encodings(blank, compared, run.tick)


class _LinkTally:
    """The links check, event by event as the log streams past.

    Each event's links are derived again from its payload, by the code fire
    uses (``binding``), and compared with the stored ones. An event upcast from
    an older version is not compared: an upcaster may drop a field that named
    a state (one naming a new state is refused when it is decoded).
    """

    def __init__(self) -> None:
        self.checked = 0
        self.upcast = 0
        self.mismatches: list[LinkMismatch] = []

    def compare(self, stored: StoredEvent, event: Event, linked: list[StateKey]) -> None:
        if stored.version != type(event)._pt_version:
            self.upcast += 1
            return
        self.checked += 1
        direct = direct_keys(event)  # a class whose hooks couple nothing: no Binding built
        derived = binding(event).touched if direct is None else direct[1]
        if len(derived) == len(linked) and all(k in derived for k in linked):
            return
        have = set(linked)
        self.mismatches.append(
            LinkMismatch(
                stored.position,
                stored.type,
                missing=tuple(k for k in derived if k not in have),
                extra=tuple(sorted(have.difference(derived))),
            )
        )


def _check_sampled(run: _Run, keys: list[StateKey], lo: int, hi: int) -> None:
    """Rebuild just the sampled states (and what their events couple them with)."""
    groups: dict[int, list[SnapshotRecord]] = {}
    with run.store.reader() as reader:
        for history in reader.snapshots(keys, hi).values():
            for record in history:
                if record.position >= lo and run.usable(record):
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
    except _STOP:
        left = order[done:]
        run.not_checked.append(
            f"{sum(len(groups[p]) for p in left)} snapshot(s) of sampled states at positions "
            f"{left[0]}..{left[-1]} (of {SNAPSHOTS})"
        )
        raise
    finally:
        run.snapshots = SnapshotCheck(True, checked, tuple(sorted(states)), tuple(mismatches))


def _touched_in(reader: StoreReader, key: StateKey, lo: int, hi: int) -> bool:
    return any(link.key == key for link in reader.links({key: (lo, hi)}))


def _subprocess_target(
    run: _Run, apps: Sequence[str], url: str | None, forced: bool | None
) -> str | None:
    """The URL the second replay's subprocess opens, or None: it runs in this process."""
    target = url if url is not None else run.store.url
    in_memory = parse_store_url(target).is_memory
    use_subprocess = (bool(apps) and not in_memory) if forced is None else forced
    if not use_subprocess:
        return None
    if in_memory:
        raise ValueError("a subprocess cannot open an in-memory store")
    return target


def _start_second_replay(
    run: _Run, lo: int, hi: int, apps: Sequence[str], url: str | None, forced: bool | None
) -> SubprocessReplay | None:
    """The whole log's second replay, started in its subprocess before the first one (it
    runs alongside the streaming check); None when it runs in this process, after."""
    target = _subprocess_target(run, apps, url, forced)
    if target is None:
        return None
    run.check_time()
    return SubprocessReplay(target, apps, other_hash_seed(), None, lo, hi)


def _check_determinism(
    run: _Run,
    first: dict[StateKey, str],
    sampled: bool,
    lo: int,
    hi: int,
    apps: Sequence[str],
    url: str | None,
    forced: bool | None,
    early: SubprocessReplay | None = None,
) -> DeterminismCheck:
    """Replay again from blank (in a subprocess when possible: ``early``, when it was
    started before the first replay) and compare with ``first``."""
    target = _subprocess_target(run, apps, url, forced)
    keys = sorted(first) if sampled else None
    mode = "in-process"
    second: dict[StateKey, str] | None = None
    if target is not None:
        run.check_time()
        seed = other_hash_seed()
        mode = f"second replay in a subprocess with PYTHONHASHSEED={seed}"
        try:
            if early is not None:
                run.report("determinism", 0, hi)
                second = early.result(run.remaining())
                run.report("determinism", hi, hi)
            else:
                second = replay_in_subprocess(
                    target, apps, seed, keys, lo, hi, timeout=run.remaining(), progress=run.progress
                )
        except subprocess.TimeoutExpired:
            raise _OutOfTime from None
        except SubprocessFailed as exc:
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
            every=EVERY,
        )
    mismatches = []
    for i, key in enumerate(sorted(set(first) | set(second)), 1):
        run.tick(i)
        a, b = first.get(key), second.get(key)
        if a != b:
            diffs = (
                field_diffs(a, b)
                if a is not None and b is not None
                else (FieldDiff("(state)", a or MISSING, b or MISSING),)
            )
            mismatches.append(DeterminismMismatch(key, diffs))
    return DeterminismCheck(True, mode, tuple(sorted(first)), tuple(mismatches), digest(first))


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
    except _STOP as exc:
        located.extend(check.mismatches[len(located) :])
        run.not_checked.append(
            f"locating the first differing event of {len(todo) - done} snapshot mismatch(es)"
        )
        run.interrupted = isinstance(exc, KeyboardInterrupt)
    except ReplayFailed as exc:
        located.extend(check.mismatches[len(located) :])
        run.errors.append(str(exc))
    except ArchivedRangeError:
        # Bisection rebuilds from blank; on an archived log the mismatches
        # stand, unlocated (the report says which were not located).
        located.extend(check.mismatches[len(located) :])
        run.not_checked.append(
            f"locating the first differing event of {len(todo) - done} snapshot mismatch(es): "
            "the start of the log is archived"
        )
    run.snapshots = attrs.evolve(check, mismatches=tuple(located))


_SHOWN = 20  # disagreements listed per kind


def _metadata_problems(reader: StoreReader, run: _Run) -> list[str]:
    """Heads rows and snapshot metadata that disagree with the links.

    A heads row behind its links makes the state uncommittable forever (every
    commit is refused as stale); a snapshot whose ``last_event_id`` is not the
    last event at or before its position makes loads start from a wrong place.
    """
    problems = []
    heads = reader.heads_disagreements(_SHOWN + 1)[:_SHOWN]
    run.report("heads", 1, 2)
    run.check_time()
    for key, have, want in heads:
        problems.append(
            f"heads row of {key} says its last event is {have}, its links say {want} "
            "(`playthrough repair URL` rebuilds heads from the links)"
        )
    for key, position, last, want in reader.snapshot_disagreements(_SHOWN + 1)[:_SHOWN]:
        problems.append(
            f"snapshot of {key} at position {position} says its last event is {last}, "
            f"its links say {want} (drop it: engine.admin.drop_snapshots([...]))"
        )
    return problems
