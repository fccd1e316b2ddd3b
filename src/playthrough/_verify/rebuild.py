"""Rebuilding states from the log, from blank, with snapshots ignored.

Two ways: :class:`FromBlank` streams the whole log through ``apply`` (the
reference semantics: every event once, in order); :func:`rebuild` asks the
reconstitutor for just some states, over a reader that hides every snapshot.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence

from .._errors import DecodeError, PlaythroughError
from .._model import Phase, State, StateKey
from .._reconstitution import StateReconstitutor, blank_for, decode_event
from .._replay import Replay
from .._serialization import encode_state
from .._stores import Link, SnapshotRecord, Store, StoredEvent, StoreReader

#: ``progress(stage, done, total)``; stages: "sync", "snapshots", "determinism", "locate".
Progress = Callable[[str, int, int], None]

_APPLY: tuple[Phase, ...] = ("apply",)
_CHUNK = 2_000


class ReplayFailed(PlaythroughError):
    """An apply hook raised while the verifier rebuilt states from the log."""


# The one place the verifier hides snapshots from the planner. It goes once the
# planner has its own "ignore snapshots" option (planned on the core branch).
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
        raise ReplayFailed(f"rebuilding {', '.join(map(str, keys[:3]))} at {at}: {exc!r}") from exc
    return {k: states[k] for k in keys}


class FromBlank:
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
            raise ReplayFailed(
                f"event {stored.position} ({stored.type}) raised while replaying from blank: "
                f"{exc!r}"
            ) from exc

    def state(self, key: StateKey) -> State:
        state = self.states.get(key)
        return blank_for(key) if state is None else state


def log_chunks(
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
                progress("determinism", min(i + 200, len(keys)), len(keys))
        return out
    blank = FromBlank()
    compared: dict[StateKey, None] = {}
    for chunk in log_chunks(store, end):
        check()
        for stored, touched in chunk:
            blank.play(stored, touched)
            if stored.position > start:
                compared.update(dict.fromkeys(touched))
        if progress is not None:
            progress("determinism", chunk[-1][0].position, end)
    return {k: encode_state(blank.state(k)) for k in compared}


def digest(encodings: Mapping[StateKey, str]) -> str:
    """sha256 over every (state, canonical JSON), sorted by state."""
    h = hashlib.sha256()
    for key in sorted(encodings):
        h.update(f"{key.type}\0{key.id}\0{encodings[key]}\n".encode())
    return h.hexdigest()
