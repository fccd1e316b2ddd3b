"""Engine: fire, commit and load, over one store and one current StateRepository."""

from __future__ import annotations

import copy
import functools
import inspect
import itertools
import logging
import os
import time
import typing
import uuid
import warnings
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from decimal import Decimal
from types import TracebackType
from typing import IO, TYPE_CHECKING, Any, TypeVar, cast

import attrs

from . import _followers, _logging, _options, _retry, _telemetry
from ._archive import ArchiveReader, ArchiveReport, archive_log
from ._clock import Clock, SystemClock, aware
from ._errors import (
    ConcurrencyError,
    ConfigurationError,
    DecodeError,
    DuplicateEvent,
    EventRejected,
    NotFoundError,
    PlaythroughError,
    ReconstitutionError,
    StaleForgetError,
    StateMutationError,
)
from ._followers import FollowerReport, FollowerStatus, Projection
from ._handlers import (
    CommitResult,
    has_handlers,
    is_async_hook,
    run_handlers_steps,
    run_pending,
)
from ._history import History, state_history
from ._lifecycle import Completions, completable
from ._log import (
    EventLog,
    StateRefArg,
    encode_metadata,
    metadata_text,
    new_correlation,
)
from ._model import (
    Event,
    State,
    StateKey,
    binding,
    key_of,
)
from ._personal import clear_values, new_key, personal_spec, seal, subject_of
from ._playing import APPLY_ONLY, EventPlayer, in_apply, playing, run_hook
from ._query import StateInfo, StateQueries, _completed_check
from ._reconstitution import Plan, StateReconstitutor, checked_plan
from ._replay import ReplayReport, full_replay
from ._repository import StateRepository
from ._scheduling import ScheduledEvent, Scheduler
from ._serialization import check_depth, decode, encode_event, encode_state_checked
from ._slots import (
    fired_data,
    forget_binding,
    mark_fired,
    mark_record,
    set_data,
    set_key,
    set_last_event_id,
    set_position,
    unfire,
)
from ._snapshots import SnapshotCoordinator, SyncReport
from ._steps import Await, Read, Steps, call, run_reader, run_sync
from ._stores import (
    NewEvent,
    Store,
    open_store,
    parse_store_url,
    resolve_store_url,
    store_options,
)
from ._stores._base import (
    CommitExtras,
    Completion,
    HeadValue,
    archived_until_steps,
    check_archived,
    refuse_archived,
)
from ._transfer import BinaryWriter, TransferReport, export_log, import_log
from ._typecheck import check_state_types
from ._upcasting import current_value_shape
from ._values import current_states, write_back_steps

if TYPE_CHECKING:
    from ._connect import Connection
    from ._verify import VerifyOptions, VerifyReport

logger = logging.getLogger("playthrough")

S = TypeVar("S", bound=State)
T = TypeVar("T")
E = TypeVar("E", bound=Event)

StateRef = tuple[type[State], Any]

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

#: How deep ``fired`` hooks may nest (an event fired by a fired hook of an event
#: fired by a fired hook ...) before ``fire`` refuses the whole chain.
MAX_FIRED_DEPTH = 32


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


_LEASE = timedelta(minutes=5)  # how long run_due() holds a due row while firing it


class Engine:
    """Fires events, commits them to a store and loads states back.

    Not thread-safe: give each thread (or request) its own engine over one
    shared store (``playthrough.connect(url)``); creating one is cheap and
    closing it leaves the store open. ``Engine.open(url)`` opens a store of its
    own, which ``close()`` closes.

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
        if not isinstance(store, Store):  # a Connection (playthrough.connect): its store
            store = store.store
        _options.engine(
            snapshot_every=snapshot_every,
            snapshot_after_events=snapshot_after_events,
            snapshot_history=snapshot_history,
            max_states=max_states,
            max_event_bytes=max_event_bytes,
        )
        self.store = store
        self.head_values = head_values
        self.max_states = max_states
        self.max_event_bytes = max_event_bytes
        if not isinstance(raise_handler_failures, bool):
            raise ConfigurationError(
                f"raise_handler_failures takes True or False, not {raise_handler_failures!r}"
            )
        #: ``commit()`` raises HandlerFailed instead of reporting handler failures.
        self.raise_handler_failures = raise_handler_failures
        self._owns_store = False
        if archive is None:
            self._archive: ArchiveReader | None = None
        else:
            paths = [archive] if isinstance(archive, str | os.PathLike) else list(archive)
            self._archive = ArchiveReader(paths, store)
        #: Where the engine reads the time: ``fired_at`` and due scheduled events.
        self.clock: Clock = clock if clock is not None else SystemClock()
        self.reconstitutor = StateReconstitutor()
        self.coordinator = SnapshotCoordinator(
            store,
            self.reconstitutor,
            _LiveView(self),
            every=snapshot_every,
            after_events=snapshot_after_events,
            history=snapshot_history,
        )
        self._repository = self._own_repository = StateRepository()
        # The store's forget epoch when the states in memory were loaded (None: not
        # known yet); a commit or snapshot from an older epoch is refused.
        self._epoch: int | None = None
        self._pending: list[Event] = []
        self._pending_keys: dict[StateKey, None] = {}
        self._pending_event_keys: dict[str, None] = {}
        #: The id of the last commit this engine sent (see ``was_committed``).
        self.last_commit_id: str | None = None
        #: The last failure of the automatic snapshot policy after a commit (logged too).
        self.snapshot_error: Exception | None = None
        self._caused_by: int | None = None
        # Correlation of the event whose handle hooks run (or given by metadata(correlation=)).
        self._correlation: str | None = None
        self._metadata: dict[str, Any] = {}
        # Firing live plays one event with apply on the touched live states.
        self._live_player = EventPlayer({}, APPLY_ONLY, replaying=False)
        self._log = EventLog(self)
        self._queries = StateQueries(self)
        self._committing = False
        self._transactions = 0
        self._closed = False
        self._completions = Completions(store)
        self._scheduler = Scheduler(self)
        # While fired hooks run: the event types from the outermost fire inward, and per
        # level the states' fields before that level's events changed them (to undo it).
        self._fired_chain: list[str] = []
        #: What ``fired`` hooks get as their engine: (plain def, async def) hooks.
        self.hook_shells: tuple[object, object] = (self, self)
        self._savepoints: list[dict[StateKey, tuple[State, dict[str, Any]]]] = []

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
            if exc_type is None and (self._pending or self._scheduler.has_queued()):
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
            if self._pending:
                _warn_pending(self, len(self._pending), stacklevel=2)
                self.discard()
            if self._archive is not None:
                self._archive.close()
            if self._owns_store:
                self.store.close()

    def __del__(self) -> None:
        # Like an unclosed file: an engine dropped with events it never
        # committed says so, since those events are lost.
        if getattr(self, "_closed", True) or not getattr(self, "_pending", None):
            return
        _warn_pending(self, len(self._pending), stacklevel=2)

    # ------------------------------------------------------------------ repository

    @property
    def repository(self) -> StateRepository:
        """The current (live) repository: the identity map ``load`` and ``fire`` use."""
        return self._repository

    @contextmanager
    def use_repository(self, repository: StateRepository) -> Iterator[StateRepository]:
        """Make ``repository`` the current one for the block (pending events must be committed)."""
        if self._pending:
            raise PlaythroughError("commit or discard pending events before swapping repositories")
        previous = self._repository
        self._repository = repository
        try:
            yield repository
        finally:
            self._repository = previous

    def refresh(self) -> None:
        """Drop every state held in memory; the next load reads the store.

        Pending events are discarded too, since the states they changed are gone.
        """
        self.discard()
        self._repository.clear()

    @property
    def pending(self) -> tuple[Event, ...]:
        return tuple(self._pending)

    def _pending_types(self) -> set[str]:
        """The type names of the states this engine's uncommitted events touch."""
        return {k.type for k in self._pending_keys}

    def head(self) -> int:
        """The store's largest committed position."""
        with self.store.reader() as reader:
            return reader.head()

    # ------------------------------------------------------------------ loading

    def load(self, state_class: type[S], state_id: Any = None, *, at: int | None = None) -> S:
        """The state as this engine knows it; with ``at``, as it was at that position."""
        key = key_of(state_class, state_id)
        if at is not None:
            return cast(S, self._load_at([key], at)[key])
        self._guard_apply(key)
        state = self._repository.get(key)
        if state is None:
            state = self._load_live([key])[key]
            self._trim()
        return cast(S, state)

    def load_or_fail(self, state_class: type[S], state_id: Any = None) -> S:
        """Like :meth:`load`, but ``NotFoundError`` for a state no event ever touched.

        ``load`` gives such a state blank (every field at its default); this is
        for an id that comes from outside (a URL, a form) and must exist. A
        state touched only by this engine's pending events is found.
        """
        return self._found(state_class, state_id, self.load(state_class, state_id))

    def _found(self, state_class: type[S], state_id: Any, state: S) -> S:
        """``state``, or NotFoundError when no event (stored or pending here) touched it."""
        if state.last_event_id is None and key_of(state_class, state_id) not in self._pending_keys:
            raise NotFoundError(
                f"no {state_class.__qualname__} with id {state_id!r}: no event ever touched it"
            )
        return state

    def load_many(self, state_class: type[S], ids: Iterable[Any]) -> list[S]:
        """Several states of one type, loaded together (one statement when their values
        are current, else one plan)."""
        keys = [key_of(state_class, i) for i in ids]
        for key in keys:
            self._guard_apply(key)
        repository = self._repository
        found = {k: s for k in keys if (s := repository.get(k)) is not None}
        found.update(self._load_live([k for k in dict.fromkeys(keys) if k not in found]))
        self._trim()
        return [cast(S, found[k]) for k in keys]

    def explain(
        self, state_class: type[State], state_id: Any = None, *, at: int | None = None
    ) -> Plan:
        """The plan a load of this state would run (nothing is loaded or changed)."""
        key = key_of(state_class, state_id)
        with self.store.reader() as reader:
            if at is None:  # what a live load plays: its plan brings every state to the head
                return checked_plan(self.reconstitutor, reader, [key], reader.head(), to_head=True)
            refuse_archived(reader, at, f"explaining a load at {at}")
            return checked_plan(self.reconstitutor, reader, [key], at)

    def history(
        self, state_class: type[State], state_id: Any = None, *, at: int | None = None
    ) -> History:
        """Every event that touched this state up to ``at`` (default: the head), oldest
        first, each with its position, time, type, metadata, cause and the fields it
        changed (before -> after). One plan, played once; exact like every load."""
        return state_history(self, key_of(state_class, state_id), at)

    def _guard_apply(self, key: StateKey) -> None:
        if in_apply():
            raise ReconstitutionError(
                f"an apply hook tried to load {key}: apply may only touch the states its event "
                "declares (reconstitution depends on knowing every state an event touched)"
            )

    def _load_live(self, keys: Sequence[StateKey]) -> dict[StateKey, State]:
        if not keys:
            return {}
        return run_sync(self._load_live_steps(keys), self.store)

    def _load_live_steps(self, keys: Sequence[StateKey]) -> Steps[dict[StateKey, State]]:
        """Load states missing from the identity map, put them in it and return them.

        One statement when every heads value is current (or the state was
        never touched); otherwise one plan for all of them, played to the head
        (every state it holds comes out current and joins the map), and the
        values it brought to the head are written back.
        """
        if not keys:
            return {}
        started = time.perf_counter()
        rows = yield call("heads", keys)
        seen = getattr(rows, "epoch", None)
        if seen is not None and (self._epoch is None or not len(self._repository)):
            self._epoch = seen
        states = current_states(rows, keys)
        if states is None:
            states, plan = yield Read(self._to_head_steps(keys))
            _logging.loaded(plan, time.perf_counter() - started)
            if self.head_values:
                yield from write_back_steps(plan, states, rows, self._epoch)
            self.coordinator.after_load(plan, states)
        repository = self._repository
        out: dict[StateKey, State] = {}
        for key, state in states.items():
            held = repository.get(key)
            if held is None:
                repository.put(key, state)
                held = state
            out[key] = held
        return {k: out[k] for k in keys}

    def _to_head_steps(self, keys: Sequence[StateKey]) -> Steps[tuple[dict[StateKey, State], Plan]]:
        """In one read transaction: the head, then the plan playing ``keys`` to it."""
        at = yield call("head")
        return (yield from self.reconstitutor.reconstitute_steps(keys, at, to_head=True))

    def _trim(self) -> None:
        """Evict least recently used states beyond ``max_states`` (never pending ones)."""
        limit = self.max_states
        own = self._own_repository
        if limit is not None and self._repository is own and len(own) > limit:
            own.trim(limit, self._pending_keys)

    def _load_at(self, keys: Sequence[StateKey], at: int) -> dict[StateKey, State]:
        started = time.perf_counter()
        with self.store.reader() as reader:
            cut, found = run_reader(self._load_at_steps(keys, at), reader)
        if found is None:
            # Before the cut: the archived events, read from the archive files.
            assert self._archive is not None
            with self._archive.store(cut).reader() as archived:
                found = self.reconstitutor.reconstitute(archived, keys, at)
        states, plan = found
        _logging.loaded(plan, time.perf_counter() - started, self.store)
        return states

    def _load_at_steps(
        self, keys: Sequence[StateKey], at: int
    ) -> Steps[tuple[int, tuple[dict[StateKey, State], Plan] | None]]:
        """In one read: the archive cut, and the states at ``at`` (None: before the cut,
        to read from the archive files this engine was given)."""
        head = yield call("head")
        if at < 0 or at > head:
            raise ValueError(f"position {at} is outside the log (0..{head})")
        cut = yield from archived_until_steps()
        if at >= cut:
            return cut, (yield from self.reconstitutor.reconstitute_steps(keys, at))
        if self._archive is None:
            check_archived(cut, at, f"a load at position {at}")
        return cut, None

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
        return run_sync(self._fire_steps(event, None, metadata, key), self.store)

    def _fire_steps(
        self,
        event: E,
        fired_at: datetime | None,
        metadata: Mapping[str, Any] | None,
        key: str | None,
    ) -> Steps[E]:
        """``fire`` as store requests: the seam both engines drive."""
        if not isinstance(event, Event):
            raise TypeError(f"fire() takes an Event, not {type(event).__name__}")
        if event.id is not None or fired_data(event) is not None:
            raise PlaythroughError(
                f"{type(event).__qualname__} was already fired (an event object is fired "
                "once: it records its position); to fire the same values again, fire a "
                "copy: engine.fire(attrs.evolve(event))"
            )
        # A binding cached before this fire (or by a refused one) was computed from
        # the field values of then: bind afresh. A refused fire leaves nothing cached,
        # so the same object, corrected and fired again, binds to its new ids.
        forget_binding(event)
        started = time.perf_counter()
        try:
            fired = yield from self._fire_unfired(event, fired_at, metadata, key)
        except BaseException as exc:
            if not (self._pending and self._pending[-1] is event):
                unfire(event)
            _telemetry.fired(type(event)._pt_type_name, time.perf_counter() - started, exc)
            raise
        _telemetry.fired(type(event)._pt_type_name, time.perf_counter() - started)
        return fired

    def _fire_unfired(
        self,
        event: E,
        fired_at: datetime | None,
        metadata: Mapping[str, Any] | None,
        key: str | None,
    ) -> Steps[E]:
        if key is not None:
            if not isinstance(key, str) or not key:
                raise TypeError(f"an event key must be a non-empty str, not {key!r}")
            if key in self._pending_event_keys:
                raise DuplicateEvent(
                    f"event key {key!r} is already given to an event pending in this engine",
                    key,
                    None,
                )
        if in_apply():
            raise ReconstitutionError("an apply hook may not fire events; fire them from handle")
        data = encode_event(event)
        check_depth(event, data)
        if len(data) * 4 > self.max_event_bytes and len(data.encode()) > self.max_event_bytes:
            raise PlaythroughError(
                f"{type(event).__qualname__} is {len(data.encode()):,} bytes as JSON, more than "
                f"the largest event this engine accepts ({self.max_event_bytes:,} bytes, "
                "Engine(max_event_bytes=...)); store large payloads elsewhere and put a "
                "reference in the event"
            )
        # Normalise first, then bind: the keys must be computed from the values
        # every replay decodes (a UUID id given as a string is a UUID from here on),
        # and the stored JSON is that of the normalised values.
        binding(event)  # checks the ids' types first, for the clearer error
        if _normalise(event, data):  # (which drops that binding if a value changed)
            data = encode_event(event)
        stored_metadata = encode_metadata(self._metadata, metadata)
        keys = list(binding(event).touched)
        repository = self._repository
        live: dict[StateKey, State] = {}
        missing = []
        for k in keys:
            state = repository.get(k)
            if state is None:
                missing.append(k)
            else:
                live[k] = state
        completions = self._completions
        fired_hooks = type(event)._pt_spec.phases["fired"]
        mark = self._mark() if fired_hooks else None
        if missing:
            if not type(event).touches_completed:
                yield from completions.refuse_stored(event, missing)  # before rehydrating them
            live.update((yield from self._load_live_steps(missing)))
        was = (
            completions.refuse_live(event, {k: live[k] for k in keys if completable(k)})
            if any(type(s)._pt_completable for s in live.values())
            else None
        )
        mark_fired(
            event,
            fired_at=fired_at if fired_at is not None else aware(self.clock.now()),
            caused_by=self._caused_by,
        )
        backups = {k: _fields(s) for k, s in live.items()}
        mark_record(
            event, correlation=self._correlation or new_correlation(), metadata=stored_metadata
        )
        validators = binding(event).of_phase("validate")
        if validators:
            try:
                with playing(event):
                    for hook, bound, _ in validators:
                        run_hook(event, hook, live, bound=bound)
                # Assignments are refused by State.__setattr__; a change made in place
                # (a list appended to) is found here, undone, and refused too.
                _refuse_changes(event, live, backups, "a validate hook")
            except BaseException:
                for k, saved in backups.items():
                    _restore(live[k], saved)
                unfire(event)
                if missing:  # the states loaded for it stay within max_states
                    self._trim()
                raise
        player = self._live_player
        player.states = live
        try:
            player.play(event, None, keys)
        except BaseException:
            for k, saved in backups.items():
                _restore(live[k], saved)
            unfire(event)
            raise
        if was:
            completions.after_apply(event, live, was)
        set_data(event, data)
        set_key(event, key)
        if key is not None:
            self._pending_event_keys[key] = None
        self._pending.append(event)
        for k in keys:
            self._pending_keys[k] = None
        for savepoint in self._savepoints:  # so a failing outer fired hook undoes this too
            for k, before in backups.items():
                if k not in savepoint:
                    savepoint[k] = (live[k], before)
        if missing:
            self._trim()
        if mark is not None:
            undo = {k: (live[k], f) for k, f in backups.items()}
            yield from self._run_fired_steps(event, mark, undo)
        return event

    def _mark(self) -> tuple[Any, ...]:
        """What ``_rollback`` needs to undo the events queued from here on."""
        scheduler = self._scheduler
        return (
            len(self._pending),
            len(self._pending_keys),
            len(self._pending_event_keys),
            list(scheduler.queued),
            list(scheduler.cancelled),
            dict(scheduler.firing),
            dict(self._completions.pending),
        )

    def _rollback(
        self, mark: tuple[Any, ...], saved: Mapping[StateKey, tuple[State, dict[str, Any]]]
    ) -> None:
        """Undo every event queued since ``mark``: their states' fields, the queue, the rest."""
        pending, keys, event_keys, queued, cancelled, firing, completions = mark
        for state, fields in saved.values():
            _restore(state, fields)
        for event in self._pending[pending:]:
            unfire(event)
        del self._pending[pending:]
        for key in list(self._pending_keys)[keys:]:
            del self._pending_keys[key]
        self._own_repository.release()  # the states trim set aside may be pending no more
        for event_key in list(self._pending_event_keys)[event_keys:]:
            del self._pending_event_keys[event_key]
        scheduler = self._scheduler
        scheduler.queued[:] = queued
        scheduler.cancelled[:] = cancelled
        scheduler.firing.clear()
        scheduler.firing.update(firing)
        self._completions.pending.clear()
        self._completions.pending.update(completions)

    def _run_fired_steps(
        self,
        event: Event,
        mark: tuple[Any, ...],
        saved: dict[StateKey, tuple[State, dict[str, Any]]],
    ) -> Steps[None]:
        """Run ``event``'s ``fired`` hooks: what they fire is queued behind it, for the same
        commit. If one raises, the event and everything they fired are undone together.

        A hook gets ``hook_shells[0]`` as its engine (``[1]`` when it is ``async def``,
        awaited by the async engine): the sync Engine itself, unless an async engine
        drives this core."""
        chain = self._fired_chain
        name = type(event).__qualname__
        previous = self._correlation
        chain.append(name)
        self._savepoints.append(saved)
        try:
            if len(chain) > MAX_FIRED_DEPTH:
                shown = " -> ".join([*chain[:3], "...", *chain[-3:]])
                raise PlaythroughError(
                    f"fired hooks nested more than {MAX_FIRED_DEPTH} deep ({shown}): a fired "
                    "hook that fires its own kind of event again without end? Nothing of "
                    "the chain was queued"
                )
            self._correlation = event.correlation  # what it fires shares the correlation
            with playing(event):
                for hook, bound, hook_keys in binding(event).of_phase("fired"):
                    repository = self._repository
                    missing = [k for k in hook_keys if repository.get(k) is None]
                    if missing:
                        yield from self._load_live_steps(missing)
                    states = {k: cast(State, repository.get(k)) for k in hook_keys}
                    plain, awaited = self.hook_shells
                    given = awaited if is_async_hook(event, hook.name) else plain
                    result = run_hook(event, hook, states, given, bound)
                    if inspect.isawaitable(result):
                        yield Await(result)
        except BaseException:
            self._rollback(mark, saved)
            raise
        finally:
            chain.pop()
            self._savepoints.pop()
            self._correlation = previous

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
        return run_sync(self._is_valid_steps(event), self.store)

    def _is_valid_steps(self, event: Event) -> Steps[bool]:
        """``is_valid`` as store requests: the seam both engines drive."""
        mark = self._mark()
        saved: dict[StateKey, tuple[State, dict[str, Any]]] = {}
        self._savepoints.append(saved)
        try:
            yield from self._fire_steps(event, None, None, None)
        except EventRejected:
            return False
        finally:
            self._savepoints.pop()
        self._rollback(mark, saved)
        return True

    def discard(self) -> None:
        """Forget pending events and drop the states they changed from memory."""
        if self._fired_chain:
            raise PlaythroughError(
                "discard() from inside a fired hook: raise instead, which undoes the event "
                "and everything its fired hooks fired"
            )
        for event in self._pending:
            unfire(event)
        for key in self._pending_keys:
            self._repository.forget(key)
        self._pending.clear()
        self._pending_keys.clear()
        self._own_repository.release()
        self._completions.clear()
        self._scheduler.clear()
        self._pending_event_keys.clear()

    @contextmanager
    def transaction(self) -> Iterator[Engine]:
        """Commit at the end of the block; discard everything pending if it raises.

        Events scheduled or cancelled in the block are written with its commit.
        """
        self._transactions += 1
        try:
            yield self
        except BaseException:
            self._transactions -= 1
            self.discard()
            raise
        self._transactions -= 1
        self.commit()

    def _flush_steps(self) -> Steps[None]:
        """Write queued schedule changes now, unless a commit is being built or running
        (then they go with its append, in the same transaction)."""
        if self._pending or self._committing or self._transactions:
            return
        yield from self._commit_steps(*self.hook_shells)

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
        (``run_pending_handlers()``); ``result.raise_for_failures()`` or
        ``Engine(raise_handler_failures=True)`` raise them as one
        ``HandlerFailed`` instead (after every other handler ran; it carries
        the committed events). A failure of the automatic snapshot policy is
        logged and kept in ``snapshot_error``.
        """
        return run_sync(self._commit_steps(self, self), self.store)

    def _commit_steps(self, shell: object, async_shell: object) -> Steps[CommitResult]:
        """``commit`` as store requests; the hooks get ``shell`` (``async_shell`` when
        ``async def``) as their engine: the seam both engines drive."""
        if self._committing:
            raise PlaythroughError("commit() from inside a handle hook: fire events instead")
        if self._fired_chain:
            raise PlaythroughError(
                "commit() from inside a fired hook: what it fires joins the commit of its event"
            )
        if not self._pending and not self._scheduler.has_queued():
            return CommitResult()
        self._committing = True
        try:
            committed = yield from self._commit_batch_steps()
            failures = yield from run_handlers_steps(
                self, shell, async_shell, list(committed), committed
            )
        finally:
            self._committing = False
            self._evict_completed()
        self._snapshot_policy()
        self._trim()
        result = CommitResult(committed, failures)
        if self.raise_handler_failures:
            result.raise_for_failures()
        return result

    def _snapshot_policy(self) -> None:
        """The ``snapshot_every`` policy: best effort, since the commit already stands."""
        try:
            self.coordinator.after_commit()
        except Exception as exc:
            self.snapshot_error = exc
            logger.warning(
                "automatic snapshot after a commit failed (the commit stands; the next "
                "snapshot or load reads the log): %r",
                exc,
                exc_info=True,
            )

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
        from ._retry import retry

        return retry(self, work, attempts=attempts, backoff=backoff, max_backoff=max_backoff)

    def was_committed(self, commit_id: str) -> bool:
        """Whether the commit with this id (``CommitOutcomeUnknown.commit_id``) is in the log."""
        with self.store.reader() as reader:
            return reader.commit_positions(commit_id) is not None

    def run_pending_handlers(self, limit: int = 1_000) -> list[Event]:
        """Run the handlers the store records as not completed; return their events.

        Those are handlers that raised, or that a crash cut short between the
        commit and their completion. Raises ``HandlerFailed`` if some fail again
        (the others still run). Handlers are at-least-once: a handler that was
        running elsewhere when this is called may run twice.
        """
        if self._pending:
            raise PlaythroughError("commit or discard pending events before running handlers")
        if self._committing:
            raise PlaythroughError("run_pending_handlers() from inside a handle hook")
        self._committing = True
        try:
            return run_pending(self, limit)
        finally:
            self._committing = False

    def _evict_completed(self) -> None:
        """Drop the states this commit completed from the identity map (see _lifecycle)."""
        evict = self._completions.evict
        for key in evict:
            state = self._repository.get(key)
            if state is not None and key not in self._pending_keys and state.is_complete():
                self._repository.forget(key)
        evict.clear()

    def _commit_batch(self, handled: Sequence[int] = ()) -> list[Event]:
        return run_sync(self._commit_batch_steps(handled), self.store)

    def _commit_batch_steps(self, handled: Sequence[int] = ()) -> Steps[list[Event]]:
        """Append the pending events (checked), as store requests: the seam of both engines."""
        batch = list(self._pending)
        commit_id = uuid.uuid4().hex
        self.last_commit_id = commit_id
        if not batch:
            # Schedule changes alone, or a handler's completion with nothing fired:
            # one append of no events, checked like any other (see Store.append).
            schedule, cancel, _ = self._scheduler.take([])
            try:
                yield call(
                    "append",
                    [],
                    {},
                    commit_id=commit_id,
                    handled=handled,
                    extras=CommitExtras((), (), schedule, cancel),
                )
            except BaseException:
                self.discard()
                raise
            return []
        keys = list(self._pending_keys)
        try:
            expected = {}
            values: dict[StateKey, HeadValue] | None = {} if self.head_values else None
            for k in keys:
                state = self._repository.get(k)
                if state is None:
                    raise PlaythroughError(f"{k} was dropped from memory while events were pending")
                expected[k] = state.last_event_id
                # Before anything is written: the values an apply stored must be of
                # the declared types, or a replay would not give them back.
                check_state_types(k, state)
                if values is not None:
                    # The live state after the whole batch: exact once the heads
                    # check passes, so its value rides in the same statement.
                    cls = type(state)
                    data = encode_state_checked(state, f"the value of {k}")
                    values[k] = HeadValue(data, *current_value_shape(cls))
            rows = []
            keys_of = yield from self._subject_keys(batch)
            for event in batch:
                b = binding(event)
                fired = event.fired_at
                assert fired is not None
                data = encode_event(event)
                spec = personal_spec(type(event))
                if spec is not None:
                    subject = subject_of(event, spec)
                    data = seal(data, type(event)._pt_type_name, spec, subject, keys_of[subject])
                rows.append(
                    NewEvent(
                        type=type(event)._pt_type_name,
                        data=data,
                        links=tuple(zip(b.touched, b.groups, strict=True)),
                        caused_by=event.caused_by,
                        fired_at=fired.isoformat(),
                        version=type(event)._pt_version,
                        key=event.idempotency_key,
                        needs_handling=has_handlers(event),
                        metadata=metadata_text(event),
                        correlation=event.correlation,
                    )
                )
            completed, reopened = self._completions.take(batch)
            schedule, cancel, firing = self._scheduler.take(batch)
            extras = CommitExtras(completed, reopened, schedule, cancel, firing)
            started = time.perf_counter()
            positions = yield call(
                "append",
                rows,
                expected,
                values,
                commit_id=commit_id,
                handled=handled,
                extras=None if extras.empty else extras,
                epoch=self._epoch,
            )
            _logging.committed(
                positions, time.perf_counter() - started, _logging.event_types(batch)
            )
        except ConcurrencyError as exc:
            _logging.conflict(len(batch), exc, _logging.event_types(batch))
            self.discard()
            if isinstance(exc, StaleForgetError):
                self.drop_forgotten()
            raise
        except Exception as exc:
            _logging.commit_failed(len(batch), exc, _logging.event_types(batch))
            self.discard()
            raise
        except BaseException:
            self.discard()
            raise
        last: dict[StateKey, int] = {}
        for event, position, row in zip(batch, positions, rows, strict=True):
            set_position(event, position)
            for key, _ in row.links:
                last[key] = position
        for key, position in last.items():
            state = self._repository.get(key)
            if state is not None:
                set_last_event_id(state, position)
        self._pending.clear()
        self._pending_keys.clear()
        self._own_repository.release()  # no longer pending: evictable again
        self._pending_event_keys.clear()
        self.coordinator.committed(last)
        return batch

    def _subject_keys(self, batch: list[Event]) -> Steps[dict[str, bytes]]:
        """The keys of the data subjects of the batch's personal fields (created if new).

        Written in their own transaction before the append: a key whose events
        then fail to commit encrypts nothing and is harmless.
        """
        subjects = {
            subject_of(e, spec): None for e in batch if (spec := personal_spec(type(e))) is not None
        }
        if not subjects:
            return {}
        found = yield call("ensure_subject_keys", {s: new_key() for s in subjects})
        return cast(dict[str, bytes], found)

    def forget(self, subject: Any) -> bool:
        """Erase a data subject's personal data: delete their key (crypto-shredding).

        ``subject`` is the value of the events' ``data_subject`` field. Afterwards
        their personal fields read as ``playthrough.FORGOTTEN`` in every load,
        replay and export; every other field stays exact. In the same
        transaction the snapshots and heads values of the states the subject's
        events touched are dropped (they may hold derived personal values;
        loads rebuild them from the log; no other state is touched), their
        clear values are scrubbed out of an archive's base snapshots and the
        schedule's error texts, and followers are told
        (``Projection.on_forgotten``). Every engine that loaded states before
        has its next commit or snapshot refused (``StaleForgetError``), so none
        can write the data back. This engine's states are dropped from memory.
        Returns False when the subject had no key. Events of the subject
        committed later get a new key; the old values stay forgotten.
        """
        return run_sync(self._forget_steps(subject), self.store)

    def _forget_steps(self, subject: Any) -> Steps[bool]:
        if self._pending or self._scheduler.has_queued():
            raise PlaythroughError("commit or discard pending events before forget()")
        from ._model import encode_id

        started = time.perf_counter()
        encoded = encode_id(subject)
        gone: bool = yield call("forget_subject", encoded, clear_values)
        _logging.forgotten(encoded, gone, time.perf_counter() - started)
        self.drop_forgotten()
        return gone

    def drop_forgotten(self) -> None:
        """Drop every state from memory and the forget epoch they were loaded at.

        Done by ``forget`` and when a commit or snapshot is refused with
        StaleForgetError (another engine forgot a subject): the next load reads
        the store's truth, where the subject's personal values read FORGOTTEN.
        """
        self._repository.clear()
        self._epoch = None

    # ------------------------------------------------------------------ lifecycle

    def completion(self, state_class: type[State], state_id: Any = None) -> Completion | None:
        """Whether the store records this state completed: the position and type of the
        event that completed it, or None."""
        key = key_of(state_class, state_id)
        with self.store.reader() as reader:
            return reader.completions([key]).get(key)

    def schedule(
        self, event: Event, *, at: datetime | None = None, after: timedelta | None = None
    ) -> str:
        """Store ``event`` to be fired at ``at`` (an aware datetime) or ``after`` from now.

        Returns the schedule id. Called while a commit is being built (pending
        events, a ``transaction()`` block, a ``handle`` hook), the row is written
        by that commit's append; otherwise at once. Due events are fired by
        :meth:`run_due` or ``playthrough scheduler``.
        """
        return self._scheduler.schedule(event, at, after)

    def cancel(self, schedule_id: str) -> bool:
        """Cancel a scheduled event; False if it was already fired or cancelled.

        Unknown ids raise ``ScheduleNotFound``. Like :meth:`schedule`, the change
        goes with the commit being built, if any; that commit is refused with
        ``CancelRefused`` (nothing written) if the event fired meanwhile. Called
        on its own, the cancel is written at once and answers False instead: an
        event is never both cancelled and fired.
        """
        return self._scheduler.cancel(schedule_id)

    def reschedule(self, schedule_id: str, *, at: datetime | None = None) -> ScheduledEvent:
        """Re-arm a ``failed`` (or ``pending``) scheduled event: pending again, due at ``at``.

        ``at`` (an aware datetime) defaults to now, so the next :meth:`run_due`
        fires it. Its error and lease are cleared. Unknown ids raise
        ``ScheduleNotFound``; a row that fired, was cancelled or was rejected
        raises ``PlaythroughError`` (nothing changes). Written at once.
        """
        return self._scheduler.reschedule(schedule_id, at)

    def scheduled(self, schedule_id: str) -> ScheduledEvent:
        """A scheduled event's row: due time, status, the fired event's position, error."""
        return self._scheduler.record(schedule_id)

    def run_due(self, *, limit: int = 100, lease: timedelta = _LEASE) -> list[ScheduledEvent]:
        """Fire the scheduled events due by ``clock.now()`` (one pass, at most ``limit``).

        Each is fired with its due time as ``fired_at`` and committed on its own;
        the commit marks its row fired in the same transaction, so no event is
        fired twice, by several workers or after a crash. Rows are leased for
        ``lease`` so concurrent workers take different ones. Returns the rows
        handled, with their outcome (``fired``, ``rejected``, ``failed``, or
        ``pending`` when a concurrent change made it retry on the next pass).
        """
        return self._scheduler.run_due(limit, lease)

    # ------------------------------------------------------------------ snapshots

    def snapshot(self, refs: Iterable[StateRef] | None = None, *, at: int | None = None) -> int:
        """Write an event-aligned snapshot set and return its position.

        Without ``refs``: every state in memory plus the states coupled with
        them, as of the store's head. With ``refs`` (``[(Account, 1), (Ledger, None)]``):
        exactly those states, as they were at ``at`` (default: the head).
        """
        keys = None if refs is None else [key_of(cls, i) for cls, i in refs]
        return self.coordinator.write_set(keys, at)

    def drop_snapshots(self, refs: Iterable[StateRef] | None = None) -> int:
        """Forget stored snapshots (all, or those of the given states); returns how many."""
        keys = None if refs is None else [key_of(cls, i) for cls, i in refs]
        return self.store.drop_snapshots(keys)

    def snapshot_sync(self) -> SyncReport:
        """Which coupled states have snapshots that disagree on their position."""
        return self.coordinator.check_sync()

    def replay(
        self,
        *,
        progress: Callable[[int, int], None] | None = None,
        snapshot_every: int = 10_000,
        chunk_size: int = 2_000,
        resume: bool = True,
    ) -> ReplayReport:
        """Rebuild every state from the log with bounded memory; see ``full_replay``.

        ``progress(position, head)`` is called after each chunk; an interrupted
        replay resumes from its last snapshot set when ``resume`` is true.
        """
        if self._pending:
            raise PlaythroughError("commit or discard pending events before a replay")
        with self.store.reader() as reader:
            refuse_archived(reader, 0, "a full replay")
        started = time.perf_counter()
        report = full_replay(
            self.store,
            snapshot_history=self.coordinator.history,
            progress=progress,
            snapshot_every=snapshot_every,
            chunk_size=chunk_size,
            resume=resume,
        )
        self._repository.clear()
        _logging.replayed(report, time.perf_counter() - started, self.store)
        return report

    def fill_head_values(
        self,
        *,
        progress: Callable[[int, int], None] | None = None,
        snapshot_every: int = 10_000,
        chunk_size: int = 2_000,
    ) -> ReplayReport:
        """Give every state a current heads value in one pass over the log, in bounded memory.

        For stores written without heads values (before schema version 2, or
        with ``head_values=False``): afterwards a cold load of any state reads
        one row. Stored snapshots are kept; the pass adds a snapshot set every
        ``snapshot_every`` events (how memory stays bounded). Handlers do not run.
        """
        if self._pending:
            raise PlaythroughError("commit or discard pending events before filling values")
        report = full_replay(
            self.store,
            snapshot_history=self.coordinator.history,
            progress=progress,
            snapshot_every=snapshot_every,
            chunk_size=chunk_size,
            resume=False,
            fill=True,
        )
        self._repository.clear()
        return report

    def verify(
        self,
        options: VerifyOptions | None = None,
        *,
        progress: Callable[[str, int, int], None] | None = None,
        clock: Callable[[], float] | None = None,
        **changes: Any,
    ) -> VerifyReport:
        """Check the store: heads and links, snapshots against the log, determinism, sync.

        Returns a ``VerifyReport`` (``.ok``: no wrong or irreproducible result).
        The live repository is untouched. Ctrl-C (a ``KeyboardInterrupt``) raises
        ``playthrough._verify.VerifyInterrupted``, a ``KeyboardInterrupt`` whose
        ``report`` holds what was found until then.

        What is checked is ``options`` (a ``VerifyOptions``: ``sample``, ``seed``,
        ``start``, ``end``, ``time_budget``, ``strict_sync``, ``apps``, ``url``,
        ``subprocess_replay``, ``determinism``), with ``changes`` to its fields
        given as keywords (``engine.verify(sample=100)``; any other keyword is a
        ``TypeError``). ``progress(stage, done, total)`` is called as work
        advances; ``time_budget`` counts seconds of ``clock`` (by default
        ``time.monotonic``).

        See ``playthrough._verify.verify``.
        """
        from ._verify import VerifyOptions, verify

        options = attrs.evolve(options or VerifyOptions(), **changes)
        started = time.perf_counter()
        report = verify(
            self.store,
            self.reconstitutor,
            options,
            sync_check=self.snapshot_sync,
            progress=progress,
            clock=clock,
        )
        _telemetry.span(
            "verify",
            time.perf_counter() - started,
            {"ok": report.ok, "head": report.head, "snapshots_checked": report.snapshots.checked},
            store=self.store,
        )
        return report

    # ------------------------------------------------------------------ archival

    def archive(
        self,
        *,
        before: int | datetime,
        to: str | os.PathLike[str],
        progress: Callable[[str, int, int], None] | None = None,
        vacuum: bool = False,
    ) -> ArchiveReport:
        """Move the events before a position (or fired before a date) to an archive file.

        Writes a snapshot at the cut of every state touched before it, exports
        the archived events to ``to`` (gzip, the export format), then deletes
        them in one transaction. Loads at or after the cut and new commits work
        unchanged; loads before it and ``replay()`` raise ``ArchivedRangeError``
        unless the engine is opened with ``archive=`` (this file, and any
        earlier ones, in order). ``progress(stage, done, total)`` is called as
        it goes; ``vacuum=True`` gives the deleted rows' space back afterwards
        (``Store.vacuum``; without it a SQLite file keeps its size and reuses
        the free pages for new rows).
        """
        if self._pending:
            raise PlaythroughError("commit or discard pending events before archiving")
        return archive_log(
            self.store, self.reconstitutor, before=before, to=to, progress=progress, vacuum=vacuum
        )

    # ------------------------------------------------------------------ export / import

    def export(
        self,
        out: BinaryWriter,
        *,
        after: int = 0,
        progress: Callable[[int, int], None] | None = None,
        with_followers: bool = False,
        keys: bool = True,
    ) -> TransferReport:
        """Write the committed log after position ``after`` to a binary file, as JSON Lines.

        Header (with the log's running hash up to ``after``), one line per
        event (personal values stay sealed), trailer with count and SHA-256,
        then what the store needs besides the log: scheduled events, pending
        handlers, completions, the followers' positions (``with_followers``)
        and last the keys of the data subjects (not with ``keys=False``);
        constant memory in the log's length. Wrap ``out`` in
        ``gzip.open(path, "wb")`` to compress.
        """
        return export_log(
            self.store,
            out,
            after=after,
            progress=progress,
            with_followers=with_followers,
            keys=keys,
        )

    def import_log(
        self,
        source: IO[bytes],
        *,
        append: bool = False,
        progress: Callable[[int, int], None] | None = None,
        forgotten: bool = False,
    ) -> TransferReport:
        """Import an export (plain or gzip) keeping its positions, then check the snapshots.

        The store must be empty, or with ``append`` its head must be where the
        file starts and its log the one the file continues (the header's
        chain). A damaged or truncated file raises ``TransferError`` and
        writes nothing, as does sealed personal data whose keys the file does
        not carry, unless ``forgotten`` (then it reads as forgotten). Ends with
        verify's snapshot check when the store holds snapshots
        (``report.verify``); the domain's classes must be imported.
        """
        if self._pending:
            raise PlaythroughError("commit or discard pending events before an import")
        report = import_log(
            self.store, source, append=append, progress=progress, forgotten=forgotten
        )
        self._repository.clear()
        with self.store.reader() as reader:
            has_snapshots = next(reader.iter_snapshots(), None) is not None
        if has_snapshots:
            report = attrs.evolve(report, verify=self.verify(determinism=False))
        return report

    # ------------------------------------------------------------------ the log

    @contextmanager
    def metadata(self, correlation: str | None = None, **values: Any) -> Iterator[None]:
        """Store ``values`` as metadata with every event fired in the block.

        Blocks nest (inner values win; ``fire(..., metadata=)`` wins over
        both). ``correlation`` gives the block's root events that correlation
        id instead of a fresh one per event.
        """
        previous = self._metadata, self._correlation
        self._metadata = encode_metadata(self._metadata, values) or {}
        if correlation is not None:
            if not isinstance(correlation, str) or not correlation:
                raise TypeError(f"correlation must be a non-empty str, not {correlation!r}")
            self._correlation = correlation
        try:
            yield
        finally:
            self._metadata, self._correlation = previous

    def events(
        self,
        *,
        after: int = 0,
        types: Sequence[type[Event] | str] | None = None,
        state: StateRefArg | None = None,
        caused_by: int | None = None,
        correlation: str | None = None,
        limit: int | None = None,
    ) -> Iterator[Event]:
        """Committed events after ``after``, in order, decoded; every filter given must hold.

        Streams in pages (constant memory) up to the head as it was when
        iteration started. ``types``: Event classes (or type names); ``state``:
        ``(StateClass, id)``; ``caused_by``: direct effects of that position;
        ``correlation``: one business transaction.
        """
        return self._log.events(
            after=after,
            types=types,
            state=state,
            caused_by=caused_by,
            correlation=correlation,
            limit=limit,
        )

    def event(self, position: int) -> Event:
        """The committed event at ``position`` (``NotFoundError`` when there is none)."""
        return self._log.event(position)

    def causes(self, position: int) -> list[Event]:
        """The chain of events that caused the one at ``position``, root first."""
        return self._log.causes(position)

    def effects(self, position: int) -> list[Event]:
        """Every event caused, directly or not, by the one at ``position``, in order."""
        return self._log.effects(position)

    # ------------------------------------------------------------------ states by value

    def find(
        self,
        state_class: type[S],
        *,
        limit: int | None = None,
        order_by: str | Sequence[str] | None = None,
        completed: bool | None = None,
        **filters: Any,
    ) -> Iterator[S]:
        """Stored states of a type whose values match, as of the store's head.

        ``balance__gt=100``, ``owner="ada"``, ``tags__contains=["vip"]``,
        ``address__city="Oslo"``; ``order_by="-balance"``. Every state returned
        satisfies the filter as returned, at one cut of the committed log: this
        engine's live state when it is at the matched position, else the stored
        value, which replaces the older one in memory. Refused (PlaythroughError)
        while this engine has uncommitted events on the type. ``completed=False``
        (or True) keeps only the states that are not (or are) completed, for a
        class that declares completion.
        """
        if completed is None:
            return self._queries.find(state_class, filters, limit, order_by)
        return _completed_filter(self._queries, state_class, filters, limit, order_by, completed)

    def count(self, state_class: type[State], **filters: Any) -> int:
        """How many stored states of a type match (counted by the database)."""
        return self._queries.count(state_class, filters)

    def info(self, state_class: type[State], state_id: Any = None) -> StateInfo:
        """When a state was created and last changed, how many events, its newest snapshot."""
        return self._queries.info(state_class, state_id)

    # ------------------------------------------------------------------ followers

    def run(
        self,
        projection: Projection,
        *,
        until_idle: bool = False,
        poll_interval: float = 1.0,
        batch_size: int | None = None,
        stop: Callable[[], bool] | None = None,
    ) -> FollowerReport:
        """Feed every committed event after the follower's stored position to ``projection``.

        ``until_idle``: return once there is nothing left; otherwise poll every
        ``poll_interval`` seconds until ``stop()`` is true. Raises
        ``FollowerFailed`` (position unchanged) when a handler raises.
        """
        return _followers.run(
            self,
            projection,
            until_idle=until_idle,
            poll_interval=poll_interval,
            batch_size=batch_size,
            stop=stop,
        )

    def followers(self) -> list[FollowerStatus]:
        """Every follower's position and lag behind the head."""
        return _followers.statuses(self.store)

    def reset_follower(self, projection: Projection | str, position: int = 0) -> None:
        """Move a follower back (default: to 0, to re-project everything).

        Given a Projection, its ``reset(tx)`` clears the read model in the same transaction.
        Given a name, the follower must exist (a NotFoundError otherwise: a typo never
        creates a follower).
        """
        _followers.reset(self.store, projection, position)


def _warn_pending(engine: Engine, count: int, stacklevel: int) -> None:
    warnings.warn(
        f"{engine!r} closed with {count} pending event{'s' if count != 1 else ''} never "
        "committed (they are lost): commit() or discard() them before closing",
        ResourceWarning,
        stacklevel=stacklevel + 1,
    )


class _LiveView:
    """The engine's live states and pending events, as the SnapshotCoordinator sees them."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def live_states(self) -> Iterable[tuple[StateKey, State]]:
        return self._engine.repository.items()

    def live_state(self, key: StateKey) -> State | None:
        return self._engine.repository.get(key)

    def has_pending(self) -> bool:
        return bool(self._engine.pending)

    def pending_keys(self) -> Collection[StateKey]:
        return self._engine._pending_keys.keys()

    def epoch(self) -> int | None:
        return self._engine._epoch

    def drop_forgotten(self) -> None:
        self._engine.drop_forgotten()


def _completed_filter(
    queries: Any,
    cls: type[S],
    filters: dict[str, Any],
    limit: int | None,
    order_by: str | Sequence[str] | None,
    completed: bool,
) -> Iterator[S]:
    """``find(..., completed=...)``: the matching states, then those whose completion is as
    asked (the limit counts the kept ones, so it is applied after the filter)."""
    _completed_check(cls, limit, completed)
    kept = (s for s in queries.find(cls, filters, None, order_by) if s.is_complete() == completed)
    return itertools.islice(kept, limit) if limit is not None else kept


_ATOMIC = (int, float, str, bool, bytes, type(None))


def _normalise(event: Event, data: str) -> bool:
    """Give the event the field values a replay will decode from ``data``.

    ``5`` given to a ``float`` field is replayed as ``5.0``, a tuple as a list:
    the live ``apply`` must see what every later playthrough sees, or live
    states (and snapshots taken from them) would differ from replayed ones.
    """
    cls = type(event)
    exact = _exact_fields(cls)
    if exact is not None and all(type(getattr(event, n)) is t for n, t in exact):
        return False  # plain scalars of exactly their declared types come back identical
    try:
        replayed = decode(cls, data, f"event {cls._pt_type_name}")
    except DecodeError as exc:
        raise TypeError(
            f"{cls.__qualname__} holds a value that would not come back the same from "
            f"storage: {exc}"
        ) from exc
    for a in attrs.fields(cast(Any, cls)):
        object.__setattr__(event, a.name, getattr(replayed, a.name))
    forget_binding(event)  # bound from the values as given: stale
    return True


_EXACT: dict[type, tuple[tuple[str, type], ...] | None] = {}
_ROUND_TRIP = (int, str, bool, float, uuid.UUID, Decimal)


def _exact_fields(cls: type) -> tuple[tuple[str, type], ...] | None:
    """(name, type) of every field when all are types JSON gives back unchanged, else None."""
    if cls not in _EXACT:
        try:
            hints = typing.get_type_hints(cls)
        except Exception:  # noqa: BLE001 - unresolvable hints: always take the decode path
            hints = {}
        fields = [(a.name, hints.get(a.name)) for a in attrs.fields(cast(Any, cls))]
        ok = all(isinstance(t, type) and t in _ROUND_TRIP for _, t in fields)
        _EXACT[cls] = tuple((n, cast(type, t)) for n, t in fields) if ok else None
    return _EXACT[cls]


_FIELD_NAMES: dict[type, tuple[str, ...]] = {}


def _fields(state: State) -> dict[str, Any]:
    """A copy of a state's field values, to put back if an apply hook raises."""
    cls = type(state)
    names = _FIELD_NAMES.get(cls)
    if names is None:
        names = _FIELD_NAMES[cls] = tuple(a.name for a in attrs.fields(cast(Any, cls)))
    saved = {}
    for name in names:
        value = getattr(state, name)
        saved[name] = value if type(value) in _ATOMIC else copy.deepcopy(value)
    return saved


def _refuse_changes(
    event: Event, live: dict[StateKey, State], saved: dict[StateKey, dict[str, Any]], by: str
) -> None:
    """Raise StateMutationError if a state's fields differ from ``saved`` (the caller restores)."""
    for key, state in live.items():
        before = saved[key]
        for name, value in before.items():
            if getattr(state, name) != value:
                raise StateMutationError(
                    f"{key}: {by} of {type(event).__qualname__} changed field {name!r}; "
                    "only apply hooks may change states (the change was undone)"
                )


def _restore(state: State, saved: dict[str, Any]) -> None:
    for name, value in saved.items():
        object.__setattr__(state, name, value)
