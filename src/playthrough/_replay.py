"""Full replay: rebuild every state from the log, from blank, with bounded memory.

"Replay" in playthrough means only this: dropping the snapshots and playing
the whole log again (``engine.admin.replay()``, :class:`ReplayReport`). Playing
single events is the :class:`~playthrough._playing.EventPlayer`'s job.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import attrs

from ._model import Phase, State, StateKey
from ._personal import unsealing
from ._playing import EventPlayer
from ._reconstitution import StateReconstitutor, known_positions
from ._records import SnapshotRecord
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
    """
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
    states: dict[StateKey, State] = {}
    played = 0
    since = 0
    sets = 0
    peak = 0
    resumed_from = position

    # The set written last, by state: a state touched again restarts from its record
    # here, the row just written, without reading it back.
    last_set: dict[StateKey, SnapshotRecord] = {}

    def flush(at: int, *, done: bool) -> None:
        records = [
            snapshot_record(k, at, s, encode_state_checked(s, _Where(k, at)))
            for k, s in states.items()
        ]
        nonlocal sets, last_set
        meta = None if fill else {REPLAY_META: None if done else str(at)}
        store.write_snapshots(records, snapshot_history, meta=meta, epoch=epoch)
        # A state's value is exact at its last event; the store keeps it only
        # where that is still the state's last event (the others are not current).
        store.write_values(
            [
                r._replace(position=r.last_event_id)  # same version and fingerprint
                for r in records
                if r.last_event_id is not None
            ],
            epoch,
        )
        sets += 1
        states.clear()
        last_set = {r.key: r for r in records}

    phases: tuple[Phase, ...] = ("apply",) if fill else ("apply", "handle")
    player = EventPlayer(states, phases)

    def restart(keys: list[StateKey], before: int) -> None:
        """Bring back states not held: from their newest snapshot at or before ``before``.

        Every snapshot there was written by this replay, so the newest one is the
        state as of ``before`` (blank when there is none): for a state in the last
        set, that set's record. One this code cannot use (an interrupted replay
        resumed by other code) is rebuilt by a plan: exact.
        """
        unread = []
        for k in keys:
            record = last_set.get(k)
            if record is None:
                unread.append(k)
            else:
                states[k] = state_from_snapshot(record)
        if unread:
            _restart_stored(unread, before)

    def _restart_stored(keys: list[StateKey], before: int) -> None:
        with store.reader() as reader:
            found = known_positions(reader, reader.snapshots(keys, before))
            unusable = []
            for k in keys:
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

    play = player.play
    for page in store.read_log(after=position, chunk=chunk_size, view=unsealing):
        missing = list(dict.fromkeys(k for entry in page for k in entry.keys if k not in states))
        if missing:
            restart(missing, position)
        # Every state of the page is held until a flush inside it drops them: only
        # then is each event's state asked for. States only grow between flushes, so
        # the peak is their number just before a flush, or at the end of the page.
        flushed = False
        for stored, keys in page:
            if flushed:
                dropped = [k for k in keys if k not in states]
                if dropped:
                    restart(dropped, stored.position)
            play(decode_event(stored, keys), stored.position, keys)
            since += 1
            if since >= snapshot_every:
                peak = max(peak, len(states))
                flush(stored.position, done=False)
                since = 0
                flushed = True
        if page:
            played += len(page)
            position = page[-1].event.position
        peak = max(peak, len(states))
        total = max(total, position)
        if progress is not None:
            progress(position, total)
    flush(position, done=True)
    return ReplayReport(played, sets, peak, position, resumed_from)
