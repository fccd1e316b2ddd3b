"""Full replay: rebuild every state from the log, from blank, with bounded memory.

"Replay" in playthrough means only this: dropping the snapshots and playing
the whole log again (``engine.admin.replay()``, :class:`ReplayReport`). Playing
single events is the :class:`~playthrough._playing.EventPlayer`'s job.
"""

from __future__ import annotations

import itertools
import multiprocessing
import pickle
import traceback
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from multiprocessing.connection import Connection
from typing import NamedTuple

import attrs

from ._errors import ConfigurationError, PlaythroughError
from ._model import Phase, State, StateKey, registry
from ._personal import unsealing
from ._playing import EventPlayer
from ._reconstitution import StateReconstitutor, known_positions
from ._records import SnapshotRecord, StoredEvent, missing_event
from ._serialization import blank_for, decode_event, encode_state_checked, state_from_snapshot
from ._stores import Store
from ._stores._base import reader_epoch
from ._upcasting import snapshot_problem, snapshot_record

__all__ = ["REPLAY_META", "ReplayReport", "full_replay"]

REPLAY_META = "replay_position"


class _Where(NamedTuple):
    """Names a state of a set in an error (formatted only then)."""

    key: StateKey
    position: int

    def __str__(self) -> str:
        return f"{self.key} at {self.position}"


@attrs.frozen
class ReplayReport:
    """What a full replay did: memory is bounded by ``peak_states``, not by the log."""

    played: int
    snapshot_sets: int
    peak_states: int
    position: int
    resumed_from: int


def full_replay(
    store: Store,
    *,
    snapshot_history: int,
    progress: Callable[[int, int], None] | None,
    snapshot_every: int,
    chunk_size: int,
    resume: bool,
    fill: bool = False,
    workers: int = 1,
) -> ReplayReport:
    """Drop snapshots and stream the whole log through ``apply`` from blank.

    Every ``snapshot_every`` events the states touched since the last set are
    written as an aligned set (with the replay's position, in the same
    transaction) and dropped from memory, so memory does not grow with the log;
    a state touched again later restarts from that snapshot. An interrupted
    replay resumes from the last set written. ``snapshot_history`` is how many
    snapshots each state keeps. Each set also stores the heads value of every
    state in it that is at its head (the store keeps only those).

    ``fill``: the same pass without dropping anything or running handlers, to
    give every state a current heads value (``playthrough snapshot``).

    ``workers`` > 1: the coupling components are replayed in that many processes
    (see :func:`_parallel_replay`), writing the same rows.
    """
    if workers > 1 and not fill:
        return _parallel_replay(
            store,
            snapshot_history=snapshot_history,
            progress=progress,
            snapshot_every=snapshot_every,
            chunk_size=chunk_size,
            resume=resume,
            workers=workers,
        )
    with store.reader() as reader:
        saved = reader.meta(REPLAY_META)
        total = reader.head()
        # A forget during the replay: its sets are refused (StaleForgetError), never
        # written with values read before the key was deleted.
        epoch = reader_epoch(reader)
    if fill:
        position = 0
    elif resume and saved is not None:
        position = int(saved)
    else:
        store.drop_snapshots(None)
        store.write_snapshots([], snapshot_history, meta={REPLAY_META: "0"})
        position = 0
    sets = _Sets(store, snapshot_history, epoch, ("apply",) if fill else ("apply", "handle"))
    sets.write_meta = not fill
    resumed_from = position

    def pages() -> Iterator[_Page]:
        nonlocal total
        last = position
        for page in store.read_log(after=position, chunk=chunk_size, view=unsealing):
            end = page[-1].event.position if page else last
            yield page, None, end
            last = end
            total = max(total, end)
            if progress is not None:
                progress(end, total)

    played, end = sets.run(pages(), position, snapshot_every, None)
    return ReplayReport(played, sets.sets, sets.peak, end, resumed_from)


#: One page of a replay: (stored event, the states it plays on) in log order, every
#: event's linked states by position (None: the states it plays on are all of them),
#: and the last position the page covers.
_Page = tuple[
    Sequence[tuple[StoredEvent, list[StateKey]]], Mapping[int, list[StateKey]] | None, int
]


class _Sets:
    """The states a replay holds between two snapshot sets: playing, writing, restarting."""

    def __init__(
        self, store: Store, history: int, epoch: int | None, phases: tuple[Phase, ...]
    ) -> None:
        self.store = store
        self.history = history
        self.epoch = epoch
        self.states: dict[StateKey, State] = {}
        self.player = EventPlayer(self.states, phases)
        #: The set written last, by state: a state touched again restarts from its
        #: record here, the row just written, without reading it back.
        self.last_set: dict[StateKey, SnapshotRecord] = {}
        self.write_meta = True  # a single-process replay records its position per set
        self.sets = 0
        self.peak = 0

    def run(
        self, pages: Iterable[_Page], position: int, every: int, until: int | None
    ) -> tuple[int, int]:
        """Play the pages from ``position``; a set after every position ``position + k *
        every`` and at the end (``until``, else the last page's end). Returns (events
        played, the end).

        A part of a parallel replay plays only some positions: a set due at a position
        it does not play is written before its next event, with what it holds then
        (what it held at that position: nothing of its own happened in between).
        """
        states, restart, flush = self.states, self.restart, self.flush
        play = self.player.play
        due = position + every
        played = 0
        for page, linked, end in pages:
            while due <= position:  # a part: sets due in the last page, after its events
                self.peak = max(self.peak, len(states))
                flush(due, done=False)
                due += every
            missing = list(dict.fromkeys(k for _, keys in page for k in keys if k not in states))
            if missing:
                restart(missing, position)
            # Every state of the page is held until a set inside it drops them: only
            # then is each event's state asked for. States only grow between sets, so
            # the peak is their number just before a set, or at the end of the page.
            flushed = False
            for stored, keys in page:
                at = stored.position
                if at > due:  # sets due at positions this part does not play
                    while due < at:
                        self.peak = max(self.peak, len(states))
                        flush(due, done=False)
                        due += every
                    flushed = True
                if flushed:
                    dropped = [k for k in keys if k not in states]
                    if dropped:
                        restart(dropped, at)
                play(decode_event(stored, keys if linked is None else linked.get(at, [])), at, keys)
                if at == due:
                    self.peak = max(self.peak, len(states))
                    flush(at, done=False)
                    due += every
                    flushed = True
            played += len(page)
            position = end
            self.peak = max(self.peak, len(states))
        end = position if until is None else until
        while due <= end:
            self.peak = max(self.peak, len(states))
            flush(due, done=False)
            due += every
        flush(end, done=True)
        return played, end

    def flush(self, at: int, *, done: bool) -> None:
        records = [
            snapshot_record(k, at, s, encode_state_checked(s, _Where(k, at)))
            for k, s in self.states.items()
        ]
        meta = {REPLAY_META: None if done else str(at)} if self.write_meta else None
        self.store.write_snapshots(records, self.history, meta=meta, epoch=self.epoch)
        # A state's value is exact at its last event; the store keeps it only
        # where that is still the state's last event (the others are not current).
        self.store.write_values(
            [
                r._replace(position=r.last_event_id)  # same version and fingerprint
                for r in records
                if r.last_event_id is not None
            ],
            self.epoch,
        )
        self.sets += 1
        self.states.clear()
        self.last_set = {r.key: r for r in records}

    def restart(self, keys: list[StateKey], before: int) -> None:
        """Bring back states not held: from their newest snapshot at or before ``before``.

        Every snapshot there was written by this replay, so the newest one is the
        state as of ``before`` (blank when there is none): for a state in the last
        set, that set's record. One this code cannot use (an interrupted replay
        resumed by other code) is rebuilt by a plan: exact.
        """
        states = self.states
        unread = []
        for k in keys:
            record = self.last_set.get(k)
            if record is None:
                unread.append(k)
            else:
                states[k] = state_from_snapshot(record)
        if not unread:
            return
        with self.store.reader() as reader:
            found = known_positions(reader, reader.snapshots(unread, before))
            unusable = []
            for k in unread:
                history = found.get(k)
                if not history:
                    states[k] = blank_for(k)
                elif snapshot_problem(history[0]) is None:
                    states[k] = state_from_snapshot(history[0])
                else:
                    unusable.append(k)
            if unusable:
                built, _ = StateReconstitutor().reconstitute(reader, unusable, before)
                states.update({k: built[k] for k in unusable})


# --------------------------------------------------------------------------- parallel


def _parallel_replay(
    store: Store,
    *,
    snapshot_history: int,
    progress: Callable[[int, int], None] | None,
    snapshot_every: int,
    chunk_size: int,
    resume: bool,
    workers: int,
) -> ReplayReport:
    """A full replay in ``workers`` processes, one share of the coupling components each.

    A state's value depends only on the ``apply`` hooks that take it, and a hook's
    states are coupled (one link group of its event): so the states split into
    components no hook crosses, and each component replays on its own, in log order,
    to the same values. The parent reads the links once and gives each component
    to a process (the heaviest first, to the least loaded); each process (forked,
    so it has the event classes) opens its own handle on the store, reads the
    pages of the log with the events that touch its states, plays each on its
    states alone, and writes its share of each snapshot set at the positions a
    single process would (every ``snapshot_every`` positions from the start, and
    the end), with the same rows. Events no state is linked to are decoded by the
    first process, as one process would decode them. Events appended meanwhile
    are played afterwards, in this process, from the sets just written.
    """
    with store.reader() as reader:
        stored_types = {row.type for row in reader.event_versions()}
    refused = sorted(
        name
        for name in stored_types
        if (cls := registry.events.get(name)) is not None and cls._pt_spec.replay_handle
    )
    if refused:
        raise ConfigurationError(
            f"replay(workers={workers}): the handle hooks of {', '.join(refused)} "
            "(replay_handle = True) run once per event in log order, which parallel "
            "processes do not give; replay with workers=1"
        )
    if "fork" not in multiprocessing.get_all_start_methods():
        raise ConfigurationError(
            f"replay(workers={workers}) forks its processes, which this platform does not "
            "offer; replay with workers=1"
        )
    probe = store.reopen()
    if probe is None:
        raise ConfigurationError(
            f"replay(workers={workers}): no other process can open {store.url} (an "
            "in-memory database); replay with workers=1"
        )
    probe.close()
    with store.reader() as reader:
        saved = reader.meta(REPLAY_META)
        until = reader.head()
        epoch = reader_epoch(reader)
    if resume and saved is not None:
        start = int(saved)
    else:
        store.drop_snapshots(None)
        store.write_snapshots([], snapshot_history, meta={REPLAY_META: "0"})
        start = 0
    owners = _owners(store, start, until, workers, chunk_size)
    context = multiprocessing.get_context("fork")
    running = []
    for index in range(workers):
        receive, send = context.Pipe(duplex=False)
        process = context.Process(
            target=_part_main,
            args=(store, send, index, workers, owners, start, until),
            kwargs={
                "every": snapshot_every,
                "chunk": chunk_size,
                "history": snapshot_history,
                "epoch": epoch,
            },
            name=f"playthrough-replay-{index}",
            daemon=True,
        )
        process.start()
        send.close()
        running.append((process, receive))
    peak, failures = 0, []
    for index, (process, receive) in enumerate(running):
        try:
            outcome = receive.recv()
        except (EOFError, OSError):
            outcome = ("failed", None, "it exited before reporting")
        except Exception as exc:  # noqa: BLE001 - an error that does not unpickle
            outcome = ("failed", None, f"its report could not be read: {exc!r}")
        finally:
            receive.close()
        process.join()
        if outcome[0] == "done":
            peak += outcome[1]
        else:
            failures.append((index, outcome[1], outcome[2]))
    if failures:
        index, error, text = failures[0]
        if isinstance(error, BaseException):
            raise error
        raise PlaythroughError(f"replay process {index} failed: {text}")
    # The log past the head read at the start (events appended meanwhile), here.
    store.write_snapshots([], snapshot_history, meta={REPLAY_META: str(until)})
    if progress is not None:
        progress(until, until)
    tail = full_replay(
        store,
        snapshot_history=snapshot_history,
        progress=progress,
        snapshot_every=snapshot_every,
        chunk_size=chunk_size,
        resume=True,
    )
    sets = (until - start) // snapshot_every + tail.snapshot_sets
    return ReplayReport(
        until - start + tail.played, sets, max(peak, tail.peak_states), tail.position, start
    )


def _owners(store: Store, start: int, until: int, workers: int, chunk: int) -> dict[StateKey, int]:
    """Which process replays each coupled state (one an ``apply`` hook takes with another
    in (start, until]): whole components, heaviest (most links) first, each to the
    process with the fewest links so far. Every other state goes by :func:`_owner`'s hash.
    """
    parent: dict[StateKey, StateKey] = {}
    weight: dict[StateKey, int] = {}

    def root(k: StateKey) -> StateKey:
        while (up := parent[k]) != k:
            parent[k] = parent[up]  # halve the path
            k = up
        return k

    position = start
    step = max(chunk, 10_000)
    while position < until:
        upto = min(position + step, until)
        with store.reader() as reader:
            links = reader.coupled_links_between(position, upto)
        groups: dict[tuple[int, int], StateKey] = {}
        for link in links:
            key = link.key
            if key not in parent:
                parent[key] = key
                weight[key] = 0
            weight[key] += 1
            first = groups.setdefault((link.position, link.group), key)
            if first is not key:
                a, b = root(first), root(key)
                if a != b:
                    parent[b] = a
        position = upto
    components: dict[StateKey, list[StateKey]] = {}
    for k in parent:
        components.setdefault(root(k), []).append(k)
    load = [0] * workers
    owners: dict[StateKey, int] = {}
    sized = sorted(components.values(), key=lambda ks: (-sum(weight[k] for k in ks), ks[0]))
    for keys in sized:
        index = load.index(min(load))
        load[index] += sum(weight[k] for k in keys)
        owners.update(dict.fromkeys(keys, index))
    return owners


def _owner(key: StateKey, workers: int) -> int:
    """The process of a state no hook couples with another: a hash of its key (the same
    in every process, unlike ``hash``)."""
    return zlib.crc32(key.id.encode(), zlib.crc32(key.type.encode())) % workers


def _part_pages(
    store: Store,
    index: int,
    workers: int,
    owners: Mapping[StateKey, int],
    start: int,
    until: int,
    chunk: int,
) -> Iterator[_Page]:
    """The pages of (start, until] a single replay reads, with only the events that
    touch this part's states (and, in part 0, the events linked to no state)."""
    position = start
    while position < until:
        upto = min(position + chunk, until)
        with store.reader() as opened:
            reader = unsealing(opened)
            linked = reader.linked_keys_between(position, upto)
            own: dict[int, list[StateKey]] = {}
            for at, keys in linked.items():
                mine = [k for k in keys if owners.get(k, -1) == index]
                if len(mine) < len(keys):  # the rest may be uncoupled states of this part
                    mine = [
                        k
                        for k in keys
                        if owners.get(k, -1) == index
                        or (k not in owners and _owner(k, workers) == index)
                    ]
                if mine:
                    own[at] = mine
            if index == 0 and len(linked) < upto - position:
                own.update((at, []) for at in range(position + 1, upto + 1) if at not in linked)
            wanted = sorted(own)
            events = list(reader.events(wanted)) if wanted else []
        for expected, stored in itertools.zip_longest(wanted, events):
            if stored is None or stored.position != expected:
                raise missing_event(expected, "a parallel replay")
        yield [(e, own[e.position]) for e in events], linked, upto
        position = upto


def _part_main(
    store: Store,
    send: Connection,
    index: int,
    workers: int,
    owners: Mapping[StateKey, int],
    start: int,
    until: int,
    *,
    every: int,
    chunk: int,
    history: int,
    epoch: int | None,
) -> None:
    """A forked process's share of a parallel replay; reports ("done", peak states) or
    ("failed", the error if it pickles, its text) through ``send``."""
    try:
        own = store.reopen()  # the parent's connections are never used here
        assert own is not None
        try:
            sets = _Sets(own, history, epoch, ("apply", "handle"))
            sets.write_meta = False  # the parent records the position
            pages = _part_pages(own, index, workers, owners, start, until, chunk)
            sets.run(pages, start, every, until)
        finally:
            own.close()
        send.send(("done", sets.peak, ""))
    except BaseException as exc:  # noqa: BLE001 - reported to the parent, which raises
        text = "".join(traceback.format_exception_only(type(exc), exc)).strip()
        try:
            pickle.loads(pickle.dumps(exc))
            send.send(("failed", exc, text))
        except Exception:  # noqa: BLE001 - an error that does not travel: its text does
            send.send(("failed", None, text))
    finally:
        send.close()
