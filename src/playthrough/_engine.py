"""Engine: fire, commit and load, over one store, as one unit of work with rooms.

The Engine holds the unit of work (``_work``: pending events, the identity
map) and the stages of a commit (``_loading``, ``_firing``, ``_append``); the
rest is in its rooms (``_rooms``, ``_scheduling``), built from the store and
the unit of work, never from the Engine.
"""

from __future__ import annotations

import functools
import inspect
import os
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar, cast

from . import _options, _retry
from ._append import Append, Commit
from ._archive import ArchiveReader
from ._clock import Clock, SystemClock
from ._errors import ConfigurationError, EventRejected, PlaythroughError
from ._firing import MAX_FIRED_DEPTH, Firing
from ._handlers import CommitResult, Handlers
from ._lifecycle import Completions
from ._loading import Loader
from ._log import encode_metadata
from ._model import Event, State, key_of
from ._moved import MovedMethods
from ._reconstitution import Plan, StateReconstitutor, explain_steps
from ._repository import StateRepository
from ._rooms import Admin, Followers, Log, States
from ._scheduling import LEASE, ScheduleQueue, Scheduler
from ._snapshots import SnapshotCoordinator
from ._steps import run_reader, run_sync
from ._stores import Store, open_store, parse_store_url, resolve_store_url, store_options
from ._work import UnitOfWork

if TYPE_CHECKING:
    from ._connect import Connection

__all__ = ["LEASE", "MAX_EVENT_BYTES", "MAX_FIRED_DEPTH", "Engine"]

S = TypeVar("S", bound=State)
T = TypeVar("T")
E = TypeVar("E", bound=Event)

_ENGINE_OPTIONS = (
    "snapshot_every",
    "snapshot_after_events",
    "snapshot_history",
    "head_values",
    "max_states",
    "max_event_bytes",
    "archive",
    "clock",
    "raise_handler_failures",
)

#: The default largest event (its JSON, in UTF-8 bytes) ``fire`` accepts.
MAX_EVENT_BYTES = 64 << 20


@functools.cache
def _engine_defaults() -> dict[str, Any]:
    return {
        name: p.default
        for name, p in inspect.signature(Engine.__init__).parameters.items()
        if p.kind is inspect.Parameter.KEYWORD_ONLY
    }


def _check_engine_options(given: Mapping[str, Any]) -> None:
    """ConfigurationError for a bad engine option; those not given take their defaults."""
    defaults = _engine_defaults()
    values = {**defaults, **{k: v for k, v in given.items() if k in defaults}}
    _options.engine(
        snapshot_every=values["snapshot_every"],
        snapshot_after_events=values["snapshot_after_events"],
        snapshot_history=values["snapshot_history"],
        max_states=values["max_states"],
        max_event_bytes=values["max_event_bytes"],
    )


class Engine(MovedMethods):
    """Fires events, commits them to a store and loads states back: a unit of work.

    Not thread-safe: give each thread (or request) its own engine over one
    shared store (``playthrough.connect(url)``); creating one is cheap and
    closing it leaves the store open. ``Engine.open(url)`` opens a store of its
    own, which ``close()`` closes.

    The rest lives in rooms, built from the store and the unit of work:
    ``engine.log`` (events, causes, history, export), ``engine.states``
    (find, count, info), ``engine.scheduler`` (schedule, cancel, run_due),
    ``engine.followers`` (run, reset; called: their status) and
    ``engine.admin`` (snapshots, replay, verify, archive, import, forget,
    pending handlers).

    - ``head_values`` (default on): every commit writes the touched states'
      values into their heads rows, and a load that had to play events writes
      back the values it brought to the head; a later load of a state whose
      value is current reads one row and plays nothing.
    - ``max_states`` bounds the identity map (least recently used states are
      evicted between operations; states with pending events never are);
      ``None``: unbounded.
    - ``max_event_bytes`` (default 64 MiB): ``fire`` refuses an event whose JSON
      is larger, naming its size; events are rows, not a blob store.
    - ``raise_handler_failures`` (default off): ``commit()`` raises
      ``HandlerFailed`` when a ``handle`` hook raised after the commit, instead
      of reporting it in the ``CommitResult`` it returns.
    """

    scheduler: Scheduler

    def __init__(
        self,
        store: Store | Connection,
        *,
        snapshot_every: int | None = None,
        snapshot_after_events: int | None = None,
        snapshot_history: int = 3,
        head_values: bool = True,
        max_states: int | None = 10_000,
        max_event_bytes: int = MAX_EVENT_BYTES,
        archive: str | os.PathLike[str] | Sequence[str | os.PathLike[str]] | None = None,
        clock: Clock | None = None,
        raise_handler_failures: bool = False,
    ) -> None:
        _options.engine(
            snapshot_every=snapshot_every,
            snapshot_after_events=snapshot_after_events,
            snapshot_history=snapshot_history,
            max_states=max_states,
            max_event_bytes=max_event_bytes,
        )
        if not isinstance(store, Store):  # a Connection (playthrough.connect): its store
            store = store.store
        if not isinstance(raise_handler_failures, bool):
            raise ConfigurationError(
                f"raise_handler_failures takes True or False, not {raise_handler_failures!r}"
            )
        self.store = store
        self._owns_store = False
        self._closed = False
        if archive is None:
            self._archive: ArchiveReader | None = None
        else:
            paths = [archive] if isinstance(archive, str | os.PathLike) else list(archive)
            self._archive = ArchiveReader(paths, store)
        clock = clock if clock is not None else SystemClock()
        self.reconstitutor = reconstitutor = StateReconstitutor()
        completions = Completions(store)
        queue = ScheduleQueue()
        self._work = work = UnitOfWork([completions, queue])
        self.coordinator = coordinator = SnapshotCoordinator(
            store,
            reconstitutor,
            work,
            every=snapshot_every,
            after_events=snapshot_after_events,
            history=snapshot_history,
        )
        # The stages of a commit, each built from the ones below it (see _append).
        self._loader = loader = Loader(
            store,
            reconstitutor,
            work,
            coordinator,
            head_values=head_values,
            max_states=max_states,
            archive=self._archive,
        )
        self._firing = firing = Firing(work, loader, completions, clock, max_event_bytes)
        firing.hook_shells = (self, self)
        self._append = append = Append(work, coordinator, head_values=head_values)
        self._handlers = handlers = Handlers(work, loader, append, firing)
        self._commit = commit = Commit(
            work,
            append,
            handlers,
            completions,
            loader,
            raise_handler_failures=raise_handler_failures,
        )
        # The rooms: never given the Engine. The scheduler is built now (the clock
        # setter reaches it); the others when first used, as most engines (one per
        # request) never use them.
        self.scheduler = Scheduler(store, clock, work, queue, firing, commit)

    @functools.cached_property
    def log(self) -> Log:
        """``engine.log``: events, causes, effects, history, export."""
        return Log(self.store, self.reconstitutor, self._archive)

    @functools.cached_property
    def states(self) -> States:
        """``engine.states``: find, count, info, completion."""
        return States(self.store, self.reconstitutor, self._work)

    @functools.cached_property
    def followers(self) -> Followers:
        """``engine.followers``: run, reset; called: their status."""
        return Followers(self.store)

    @functools.cached_property
    def admin(self) -> Admin:
        """``engine.admin``: snapshots, replay, verify, archive, import, forget, handlers."""
        return Admin(self.store, self.reconstitutor, self._work, self.coordinator, self._handlers)

    # ------------------------------------------------------------------ settings

    @property
    def clock(self) -> Clock:
        """Where the engine reads the time: ``fired_at`` and due scheduled events."""
        return self._firing.clock

    @clock.setter
    def clock(self, clock: Clock) -> None:
        self._firing.clock = clock
        self.scheduler._clock = clock

    @property
    def head_values(self) -> bool:
        """Whether commits write the touched states' values into their heads rows."""
        return self._append.head_values

    @property
    def max_states(self) -> int | None:
        """The bound of the identity map (None: unbounded)."""
        return self._loader.max_states

    @property
    def max_event_bytes(self) -> int:
        """The largest event (its JSON, in UTF-8 bytes) ``fire`` accepts."""
        return self._firing.max_event_bytes

    @property
    def raise_handler_failures(self) -> bool:
        """``commit()`` raises HandlerFailed instead of reporting handler failures."""
        return self._commit.raise_handler_failures

    @property
    def hook_shells(self) -> tuple[object, object]:
        """What hooks get as their engine: (plain def, async def) hooks."""
        return self._firing.hook_shells

    @hook_shells.setter
    def hook_shells(self, shells: tuple[object, object]) -> None:
        self._firing.hook_shells = shells

    @property
    def last_commit_id(self) -> str | None:
        """The id of the last commit this engine sent (see ``was_committed``)."""
        return self._append.last_commit_id

    @property
    def snapshot_error(self) -> Exception | None:
        """The last failure of the automatic snapshot policy after a commit (logged too)."""
        return self._commit.snapshot_error

    @property
    def snapshots(self) -> SnapshotCoordinator:
        """Deprecated: the snapshot coordinator, now ``Engine.coordinator``."""
        warnings.warn(
            "Engine.snapshots is deprecated (removed in 0.3.0); the coordinator is "
            "Engine.coordinator",
            DeprecationWarning,
            stacklevel=2,
        )
        return self.coordinator

    @classmethod
    def open(cls, url: str | None = None, **options: Any) -> Engine:
        """Open an engine on the store a URL names.

        Without ``url``, the ``PLAYTHROUGH_URL`` environment variable names it;
        neither is a ``ConfigurationError`` (an in-memory store is ``"sqlite://"``).
        Options that name Engine arguments (``snapshot_every``, …) go to the
        engine, those the store takes to the store; any other option is a
        ``ConfigurationError`` listing the valid ones.
        """
        parsed = parse_store_url(url)  # reads PLAYTHROUGH_URL when url is None
        valid_store = store_options(parsed.kind)
        unknown = sorted(set(options) - set(_ENGINE_OPTIONS) - set(valid_store))
        if unknown:
            raise ConfigurationError(
                f"unknown option{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}: "
                f"the engine takes {', '.join(_ENGINE_OPTIONS)}; the {parsed.kind} store "
                f"takes {', '.join(valid_store)}"
            )
        engine_opts = {k: options.pop(k) for k in _ENGINE_OPTIONS if k in options}
        _check_engine_options(engine_opts)  # before the store is opened (or created)
        store = open_store(resolve_store_url(url), **options)
        try:
            engine = cls(store, **engine_opts)
        except BaseException:
            store.close()
            raise
        engine._owns_store = True
        return engine

    def __repr__(self) -> str:
        return f"<Engine on {self.store.url}>"

    # ------------------------------------------------------------------ context

    def __enter__(self) -> Engine:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if exc_type is None and self._work.has_queued():
                self.commit()
            else:
                self.discard()
        finally:
            self.close()

    def close(self) -> None:
        """Close the engine; the store too when the engine opened it (``Engine.open``).

        Pending events are never committed: closing with some warns (ResourceWarning).
        """
        if not self._closed:
            self._closed = True
            if self._work.events:
                _warn_pending(self, len(self._work.events), stacklevel=2)
                self.discard()
            if self._archive is not None:
                self._archive.close()
            if self._owns_store:
                self.store.close()

    def __del__(self) -> None:
        # Like an unclosed file: an engine dropped with events it never
        # committed says so, since those events are lost.
        work = getattr(self, "_work", None)
        if getattr(self, "_closed", True) or work is None or not work.events:
            return
        _warn_pending(self, len(work.events), stacklevel=2)

    # ------------------------------------------------------------------ repository

    @property
    def repository(self) -> StateRepository:
        """The current (live) repository: the identity map ``load`` and ``fire`` use."""
        return self._work.repository

    @contextmanager
    def use_repository(self, repository: StateRepository) -> Iterator[StateRepository]:
        """Make ``repository`` the current one for the block (pending events must be committed)."""
        with self._work.using(repository) as used:
            yield used

    def refresh(self) -> None:
        """Drop every state held in memory; the next load reads the store.

        Pending events are discarded too, since the states they changed are gone.
        """
        self.discard()
        self._work.repository.clear()

    @property
    def pending(self) -> tuple[Event, ...]:
        return tuple(self._work.events)

    def head(self) -> int:
        """The store's largest committed position."""
        with self.store.reader() as reader:
            return reader.head()

    # ------------------------------------------------------------------ loading

    def load(self, state_class: type[S], state_id: Any = None, *, at: int | None = None) -> S:
        """The state as this engine knows it; with ``at``, as it was at that position."""
        key = key_of(state_class, state_id)
        loader = self._loader
        if at is not None:
            return cast(S, loader.at([key], at)[key])
        loader.guard(key)
        state = self._work.repository.get(key)
        if state is None:
            state = loader.live([key])[key]
            loader.trim()
        return state  # type: ignore[return-value]  # the key is of state_class (no cast call)

    def load_or_fail(self, state_class: type[S], state_id: Any = None) -> S:
        """Like :meth:`load`, but ``NotFoundError`` for a state no event ever touched.

        ``load`` gives such a state blank (every field at its default); this is
        for an id that comes from outside (a URL, a form) and must exist. A
        state touched only by this engine's pending events is found.
        """
        return self._loader.found(state_class, state_id, self.load(state_class, state_id))

    def load_many(self, state_class: type[S], ids: Iterable[Any]) -> list[S]:
        """Several states of one type, loaded together (one statement when their values
        are current, else one plan)."""
        keys = [key_of(state_class, i) for i in ids]
        loader = self._loader
        for key in keys:
            loader.guard(key)
        repository = self._work.repository
        found = {k: s for k in keys if (s := repository.get(k)) is not None}
        found.update(loader.live([k for k in dict.fromkeys(keys) if k not in found]))
        loader.trim()
        return [cast(S, found[k]) for k in keys]

    def explain(
        self, state_class: type[State], state_id: Any = None, *, at: int | None = None
    ) -> Plan:
        """The plan a load of this state would run (nothing is loaded or changed)."""
        key = key_of(state_class, state_id)
        with self.store.reader() as reader:
            return run_reader(explain_steps(self.reconstitutor, key, at), reader)

    # ------------------------------------------------------------------ firing

    def fire(
        self, event: E, *, metadata: Mapping[str, Any] | None = None, key: str | None = None
    ) -> E:
        """Validate and apply an event to the live states and queue it for commit.

        ``metadata`` (a JSON-able dict, merged over those of enclosing
        ``engine.metadata(...)`` blocks) is stored with the event and read back
        as ``event.metadata``. If a ``validate`` hook raises (``EventRejected``
        or anything else), no state changes and nothing is queued; the
        exception propagates. An event
        touching a completed state raises ``StateCompleted`` (unless its class
        sets ``touches_completed = True``).

        ``key`` makes the event idempotent: it is stored with the event under a
        unique constraint, and committing an event whose key is already in the
        log raises ``DuplicateEvent`` and writes nothing of that commit (a
        retry after ``CommitOutcomeUnknown``, a redelivered message).
        """
        return run_sync(self._firing.fire_steps(event, None, metadata, key), self.store)

    def fire_if_valid(
        self, event: E, *, metadata: Mapping[str, Any] | None = None, key: str | None = None
    ) -> E | None:
        """Fire ``event`` unless it is refused (``EventRejected``, ``StateCompleted``):
        then nothing is queued and ``None`` is returned. Other errors propagate."""
        try:
            return self.fire(event, metadata=metadata, key=key)
        except EventRejected:
            return None

    def is_valid(self, event: Event) -> bool:
        """Whether firing ``event`` now would be accepted (``Event.is_valid(engine)``).

        Fires it (validate, apply, its ``fired`` hooks) and undoes all of it:
        nothing stays queued or changed, and the event stays unfired. False
        when it is refused (``EventRejected``, ``StateCompleted``); other errors
        propagate.
        """
        return run_sync(self._firing.is_valid_steps(event), self.store)

    def discard(self) -> None:
        """Forget pending events and drop the states they changed from memory."""
        if self._work.fired_chain:
            raise PlaythroughError(
                "discard() from inside a fired hook: raise instead, which undoes the event "
                "and everything its fired hooks fired"
            )
        self._work.discard()

    @contextmanager
    def transaction(self) -> Iterator[Engine]:
        """Commit at the end of the block; discard everything pending if it raises.

        Events scheduled or cancelled in the block are written with its commit.
        """
        work = self._work
        work.transactions += 1
        try:
            yield self
        except BaseException:
            work.transactions -= 1
            self.discard()
            raise
        work.transactions -= 1
        self.commit()

    @contextmanager
    def metadata(self, correlation: str | None = None, **values: Any) -> Iterator[None]:
        """Store ``values`` as metadata with every event fired in the block.

        Blocks nest (inner values win; ``fire(..., metadata=)`` wins over
        both). ``correlation`` gives the block's root events that correlation
        id instead of a fresh one per event.
        """
        work = self._work
        previous = work.metadata, work.correlation
        work.metadata = encode_metadata(work.metadata, values) or {}
        if correlation is not None:
            if not isinstance(correlation, str) or not correlation:
                raise TypeError(f"correlation must be a non-empty str, not {correlation!r}")
            work.correlation = correlation
        try:
            yield
        finally:
            work.metadata, work.correlation = previous

    # ------------------------------------------------------------------ committing

    def commit(self) -> CommitResult:
        """Append pending events atomically, then run their ``handle`` hooks.

        Returns the committed events (with their positions), including those
        fired by handlers, as a ``CommitResult`` (a list). If the append fails,
        nothing is written, the pending events are dropped along with the
        states they changed, and the error propagates (``CommitOutcomeUnknown``
        when the store cannot tell whether the commit was written;
        ``was_committed`` answers later).

        Once the append has committed, nothing raises as a failed commit:
        handlers that raise are logged (ERROR), listed in the result's
        ``failures`` and stay pending in the store for a retry
        (``engine.admin.run_pending_handlers()``); ``result.raise_for_failures()``
        or ``Engine(raise_handler_failures=True)`` raise them as one
        ``HandlerFailed`` instead (after every other handler ran; it carries
        the committed events). A failure of the automatic snapshot policy is
        logged and kept in ``snapshot_error``.
        """
        return run_sync(self._commit.steps(), self.store)

    def retry(
        self,
        work: Callable[[Engine], T],
        *,
        attempts: int = _retry.ATTEMPTS,
        backoff: float = _retry.BACKOFF,
        max_backoff: float = _retry.MAX_BACKOFF,
    ) -> T:
        """Run ``work(engine)`` and commit; on ConcurrencyError wait (jittered) and run it again.

        ``work`` fires events (loading what it needs); it is run from scratch
        each time, on the states other writers committed meanwhile. Waits are
        random in ``[0, min(max_backoff, backoff * 2**n))`` after n failures;
        after ``attempts`` the last ConcurrencyError propagates. Returns what
        ``work`` returned. The defaults carry 32 concurrent writers on one hot
        state through on PostgreSQL (13 attempts at most, measured; 30 leave a
        margin). A conflict that is retried is logged at DEBUG, only the last
        attempt's at WARNING.
        """
        return _retry.retry(self, work, attempts=attempts, backoff=backoff, max_backoff=max_backoff)

    def was_committed(self, commit_id: str) -> bool:
        """Whether the commit with this id (``CommitOutcomeUnknown.commit_id``) is in the log."""
        with self.store.reader() as reader:
            return reader.commit_positions(commit_id) is not None


def _warn_pending(engine: Engine, count: int, stacklevel: int) -> None:
    warnings.warn(
        f"{engine!r} closed with {count} pending event{'s' if count != 1 else ''} never "
        "committed (they are lost): commit() or discard() them before closing",
        ResourceWarning,
        stacklevel=stacklevel + 1,
    )
