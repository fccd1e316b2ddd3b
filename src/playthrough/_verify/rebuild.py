"""Rebuilding states from the log, from blank, with snapshots ignored.

Two ways: :class:`FromBlank` streams the whole log through ``apply`` (the
reference semantics: every event once, in order); :func:`rebuild` asks the
reconstitutor for just some states, with a plan that ignores every snapshot.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping, Sequence

from .._errors import ArchivedRangeError, DecodeError, PlaythroughError
from .._model import Event, Phase, State, StateKey
from .._personal import unsealing
from .._playing import EventPlayer
from .._reconstitution import StateReconstitutor
from .._serialization import blank_for, decode_event, encode_state, state_from_snapshot
from .._stores import Store, StoredEvent, StoreReader
from .._stores._base import archived_until

#: ``progress(stage, done, total)``; stages: "heads", "sync", "snapshots", "determinism", "locate".
Progress = Callable[[str, int, int], None]

_APPLY: tuple[Phase, ...] = ("apply",)
LOG_PAGE = 2_000


class ReplayFailed(PlaythroughError):
    """An apply hook raised while the verifier rebuilt states from the log."""


def rebuild(
    reconstitutor: StateReconstitutor,
    reader: StoreReader,
    keys: Sequence[StateKey],
    at: int,
) -> dict[StateKey, State]:
    """The states as the log gives them at ``at``, rebuilt from blank (snapshots ignored)."""
    try:
        states, _ = reconstitutor.reconstitute(reader, keys, at, use_snapshots=False)
    except (DecodeError, ArchivedRangeError):
        raise
    except Exception as exc:
        raise ReplayFailed(f"rebuilding {', '.join(map(str, keys[:3]))} at {at}: {exc!r}") from exc
    return {k: states[k] for k in keys}


class FromBlank:
    """Streams the log through ``apply`` from blank, holding every state touched.

    On an archived log (see ``_archive``) the start is the cut: ``start`` is
    the last archived position and the states begin as its base snapshots,
    which stand for the archived events; the caller reads the log after
    ``start``.
    """

    def __init__(self, store: Store | None = None) -> None:
        self.states: dict[StateKey, State] = {}
        self._replay = EventPlayer(self.states, _APPLY)
        self.start = 0
        if store is not None:
            with store.reader() as reader:
                self.start = archived_until(reader)
                if self.start:
                    for record in reader.iter_snapshots():
                        if record.position == self.start:
                            self.states[record.key] = state_from_snapshot(record)

    def play(self, stored: StoredEvent, keys: list[StateKey]) -> Event:
        """Apply one stored event to the ``keys`` it is linked to; returns it decoded."""
        for k in keys:
            if k not in self.states:
                self.states[k] = blank_for(k)
        event = decode_event(stored, keys)
        try:
            self._replay.play(event, stored.position, keys)
        except Exception as exc:
            raise ReplayFailed(
                f"event {stored.position} ({stored.type}) raised while replaying from blank: "
                f"{exc!r}"
            ) from exc
        return event

    def state(self, key: StateKey) -> State:
        state = self.states.get(key)
        return blank_for(key) if state is None else state


def replay_encodings(
    store: Store,
    reconstitutor: StateReconstitutor,
    *,
    start: int,
    end: int,
    keys: Sequence[StateKey] | None = None,
    check: Callable[[], None] = lambda: None,
    progress: Progress | None = None,
    every: int = LOG_PAGE,
) -> dict[StateKey, str]:
    """One replay from blank: canonical JSON of each compared state as of ``end``.

    Without ``keys``, the whole log streams through ``apply`` and the states
    touched by an event in ``(start, end]`` are compared; with ``keys``, just
    those states are rebuilt by a plan that ignores snapshots. ``check`` is
    called every ``every`` events or states (it raises to stop).
    """

    def tick(count: int) -> None:
        if count % every == 0:
            check()

    if keys is not None:
        out: dict[StateKey, str] = {}
        step = min(200, every)
        for i in range(0, len(keys), step):
            check()
            part = list(keys[i : i + step])
            with store.reader() as reader:
                built = rebuild(reconstitutor, reader, part, end)
            out.update((k, encode_state(built[k])) for k in part)
            if progress is not None:
                progress("determinism", min(i + step, len(keys)), len(keys))
        return out
    blank = FromBlank(store)
    compared: dict[StateKey, None] = {}
    pages = store.read_log(after=blank.start, until=end, chunk=LOG_PAGE, view=unsealing)
    for chunk in pages:
        check()
        for stored, touched in chunk:
            tick(stored.position)
            blank.play(stored, touched)
            if stored.position > start:
                compared.update(dict.fromkeys(touched))
        if progress is not None:
            progress("determinism", chunk[-1][0].position, end)
    return encodings(blank, compared, tick)


def encodings(
    blank: FromBlank, keys: Iterable[StateKey], tick: Callable[[int], None]
) -> dict[StateKey, str]:
    """The canonical JSON of each of ``keys`` in ``blank``; ``tick(n)`` after n states."""
    out: dict[StateKey, str] = {}
    for i, key in enumerate(keys, 1):
        tick(i)
        out[key] = encode_state(blank.state(key))
    return out


def digest(encodings: Mapping[StateKey, str]) -> str:
    """sha256 over every (state, canonical JSON), sorted by state."""
    h = hashlib.sha256()
    for key in sorted(encodings):
        h.update(f"{key.type}\0{key.id}\0{encodings[key]}\n".encode())
    return h.hexdigest()
