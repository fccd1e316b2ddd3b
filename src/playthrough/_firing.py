"""Firing: validate an event, apply it to the live states, queue it in the unit of work.

Then its ``fired`` hooks run; what they fire is queued behind it, for the same
commit, and if one raises the event and everything they fired are undone
together (the unit of work's ``mark`` / ``rollback``).
"""

from __future__ import annotations

import inspect
import time
import typing
import uuid
from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any, TypeVar, cast

import attrs

from . import _telemetry
from ._binding import Bound, direct_keys
from ._clock import Clock, aware
from ._errors import (
    DecodeError,
    DuplicateEvent,
    EventRejected,
    PlaythroughError,
    ReconstitutionError,
    StateMutationError,
)
from ._lifecycle import Completions, completable
from ._loading import Loader
from ._log import encode_metadata, new_correlation
from ._model import Event, Hook, State, StateKey, binding
from ._playing import APPLY_ONLY, EventPlayer, in_apply, is_async_hook, playing, run_hook
from ._serialization import check_depth, decode, encode_event
from ._slots import (
    fired_data,
    forget_binding,
    mark_fired,
    mark_record,
    set_data,
    set_key,
    set_links,
    unfire,
)
from ._steps import Await, Steps
from ._work import Mark, Saved, UnitOfWork, fields_of, restore

E = TypeVar("E", bound=Event)

#: How deep ``fired`` hooks may nest (an event fired by a fired hook of an event
#: fired by a fired hook ...) before ``fire`` refuses the whole chain.
MAX_FIRED_DEPTH = 32


@attrs.define(eq=False, repr=False, slots=False)
class Firing:
    """The firing stage: from an event object to a pending event in the unit of work."""

    work: UnitOfWork
    loader: Loader
    completions: Completions
    clock: Clock
    max_event_bytes: int
    # Firing live plays one event with apply on the touched live states.
    _live_player: EventPlayer = attrs.field(
        init=False, factory=lambda: EventPlayer({}, APPLY_ONLY, replaying=False)
    )
    #: What ``fired`` hooks get as their engine: (plain def, async def) hooks.
    hook_shells: tuple[object, object] = attrs.field(default=(None, None), init=False)

    def fire_steps(
        self,
        event: E,
        fired_at: datetime | None = None,
        metadata: Mapping[str, Any] | None = None,
        key: str | None = None,
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
            pending = self.work.events
            if not (pending and pending[-1] is event):
                unfire(event)
            _telemetry.fired(type(event)._pt_type_name, time.perf_counter() - started, exc)
            raise
        if _telemetry.observed():
            _telemetry.fired(type(event)._pt_type_name, time.perf_counter() - started)
        return fired

    def _fire_unfired(
        self,
        event: E,
        fired_at: datetime | None,
        metadata: Mapping[str, Any] | None,
        key: str | None,
    ) -> Steps[E]:
        work = self.work
        if key is not None:
            if not isinstance(key, str) or not key:
                raise TypeError(f"an event key must be a non-empty str, not {key!r}")
            if key in work.event_keys:
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
        # An event whose hooks couple nothing is keyed straight from its id fields
        # (``direct_keys``, which checks the ids' types as binding does); any
        # other is bound. Either checks the ids first, for the clearer error.
        direct = direct_keys(event)
        if direct is None:
            binding(event)
        if _normalise(event, data):  # (which drops that binding if a value changed)
            data = encode_event(event)
            if direct is not None:
                direct = direct_keys(event)
        stored_metadata = encode_metadata(work.metadata, metadata)
        event_binding = binding(event) if direct is None else None
        keys = list(direct[1] if direct is not None else binding(event).touched)
        repository = work.repository
        live: dict[StateKey, State] = {}
        missing = []
        for k in keys:
            state = repository.get(k)
            if state is None:
                missing.append(k)
            else:
                live[k] = state
        completions = self.completions
        fired_hooks = type(event)._pt_spec.phases["fired"]
        mark = work.mark() if fired_hooks else None
        if missing:
            if not type(event).touches_completed:
                yield from completions.refuse_stored(event, missing)  # before rehydrating them
            live.update((yield from self.loader.live_steps(missing)))
        was = (
            completions.refuse_live(event, {k: live[k] for k in keys if completable(k)})
            if any(type(s)._pt_completable for s in live.values())
            else None
        )
        mark_fired(
            event,
            fired_at=fired_at if fired_at is not None else aware(self.clock.now()),
            caused_by=work.caused_by,
        )
        backups = {k: fields_of(s) for k, s in live.items()}
        mark_record(
            event, correlation=work.correlation or new_correlation(), metadata=stored_metadata
        )
        spec = type(event)._pt_spec
        if spec.phases["validate"]:
            validators: list[tuple[Hook, Bound]]
            if direct is not None:
                slots = direct[0]
                validators = [(h, [slots[i] for i in s]) for h, s in spec.validate_sources]
            else:
                assert event_binding is not None
                validators = [(h, b) for h, b, _ in event_binding.of_phase("validate")]
            try:
                with playing(event):
                    for hook, bound in validators:
                        run_hook(event, hook, live, bound=bound)
                # Assignments are refused by State.__setattr__; a change made in place
                # (a list appended to) is found here, undone, and refused too.
                _refuse_changes(event, live, backups, "a validate hook")
            except BaseException:
                for k, saved in backups.items():
                    restore(live[k], saved)
                unfire(event)
                if missing:  # the states loaded for it stay within max_states
                    self.loader.trim()
                raise
        player = self._live_player
        player.states = live
        try:
            player.play(event, None, keys)
        except BaseException:
            for k, saved in backups.items():
                restore(live[k], saved)
            unfire(event)
            raise
        if was:
            completions.after_apply(event, live, was)
        set_data(event, data)
        set_key(event, key)
        if direct is not None:  # nothing is coupled: the append stores these as they are
            set_links(event, tuple((k, i) for i, k in enumerate(keys)))
        work.add(event, keys, key)
        for savepoint in work.savepoints:  # so a failing outer fired hook undoes this too
            for k, before in backups.items():
                if k not in savepoint:
                    savepoint[k] = (live[k], before)
        if missing:
            self.loader.trim()
        if mark is not None:
            undo = {k: (live[k], f) for k, f in backups.items()}
            yield from self._run_fired_steps(event, mark, undo)
        return event

    def _run_fired_steps(self, event: Event, mark: Mark, saved: Saved) -> Steps[None]:
        """Run ``event``'s ``fired`` hooks: what they fire is queued behind it, for the same
        commit. If one raises, the event and everything they fired are undone together.

        A hook gets ``hook_shells[0]`` as its engine (``[1]`` when it is ``async def``,
        awaited by the async engine): the sync Engine itself, unless an async engine
        drives this core."""
        work = self.work
        chain = work.fired_chain
        name = type(event).__qualname__
        previous = work.correlation
        chain.append(name)
        work.savepoints.append(saved)
        try:
            if len(chain) > MAX_FIRED_DEPTH:
                shown = " -> ".join([*chain[:3], "...", *chain[-3:]])
                raise PlaythroughError(
                    f"fired hooks nested more than {MAX_FIRED_DEPTH} deep ({shown}): a fired "
                    "hook that fires its own kind of event again without end? Nothing of "
                    "the chain was queued"
                )
            work.correlation = event.correlation  # what it fires shares the correlation
            with playing(event):
                for hook, bound, hook_keys in binding(event).of_phase("fired"):
                    repository = work.repository
                    missing = [k for k in hook_keys if repository.get(k) is None]
                    if missing:
                        yield from self.loader.live_steps(missing)
                    states = {k: cast(State, repository.get(k)) for k in hook_keys}
                    plain, awaited = self.hook_shells
                    given = awaited if is_async_hook(event, hook.name) else plain
                    result = run_hook(event, hook, states, given, bound)
                    if inspect.isawaitable(result):
                        yield Await(result)
        except BaseException:
            work.rollback(mark, saved)
            raise
        finally:
            chain.pop()
            work.savepoints.pop()
            work.correlation = previous

    def is_valid_steps(self, event: Event) -> Steps[bool]:
        """Fire ``event`` and undo all of it; False when it is refused (``EventRejected``).
        As store requests: the seam both engines drive."""
        work = self.work
        mark = work.mark()
        saved: Saved = {}
        work.savepoints.append(saved)
        try:
            yield from self.fire_steps(event)
        except EventRejected:
            return False
        finally:
            work.savepoints.pop()
        work.rollback(mark, saved)
        return True


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
