"""EventPlayer: plays globally ordered events on a set of states with chosen hooks enabled.

Firing live (validate + apply on the live repository), reconstituting a state
(apply on a scoped dict, only on the states the plan tracks), a full replay
(apply, and handle where the event allows it) and a time-travel load all play
events through an EventPlayer; they differ only in their hooks, their states
and which states take part in each event.

While a hook runs, :func:`now` is the time the event was first fired and
:func:`event_random` a generator seeded by the event, so hooks that use them
give the same result on every replay.
"""

from __future__ import annotations

import hashlib
import inspect
import random
from collections.abc import Callable, Collection, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

from ._errors import ReconstitutionError
from ._model import (
    PHASES,
    Bound,
    Event,
    Hook,
    Phase,
    State,
    StateKey,
    binding,
    encode_id,
    hook_keys,
    writable_states,
)
from ._slots import set_last_event_id

APPLY_ONLY: tuple[Phase, ...] = ("apply",)

_current_event: ContextVar[Event | None] = ContextVar("playthrough_current_event", default=None)
_replaying: ContextVar[bool] = ContextVar("playthrough_replaying", default=False)


def is_replaying() -> bool:
    """Whether the hook running now is replaying a stored event, not firing a new one.

    True while a load, a time-travel load, ``replay()`` or ``verify`` plays an
    event (``apply``, and ``handle`` under ``replay_handle = True``); False at
    fire time (``validate``, ``apply``, ``fired``), in ``handle`` after the
    commit, and outside hooks. For work a replay must skip (Verbs'
    ``unlessReplaying``); state changes must not depend on it, or replays
    would differ from the live run.
    """
    return _replaying.get()


def now() -> datetime:
    """The current time as the engine sees it.

    Inside a hook this is when the event was first fired (UTC), on the first
    run and on every replay alike; elsewhere it is the wall clock.
    """
    event = _current_event.get()
    if event is not None and event.fired_at is not None:
        return event.fired_at
    return datetime.now(UTC)


def hook_time() -> datetime | None:
    """The ``fired_at`` of the event whose hook is running, else None."""
    event = _current_event.get()
    return event.fired_at if event is not None else None


def event_random() -> random.Random:
    """A random generator seeded by the event being played (deterministic on replay).

    Each call returns a fresh generator with the same seed, so draw all the
    numbers a hook needs from one generator.
    """
    event = _current_event.get()
    if event is None:
        raise RuntimeError("event_random() is only available while an event hook runs")
    from ._personal import without_personal

    fired = event.fired_at.isoformat() if event.fired_at else ""
    # Personal fields are left out: forgetting a person must not change other values.
    data = without_personal(type(event), _replayed_data(event))
    digest = hashlib.sha256(f"{type(event)._pt_type_name}|{fired}|{data}".encode()).digest()
    return random.Random(int.from_bytes(digest[:16], "big"))


def _replayed_data(event: Event) -> str:
    """The event's JSON as a replay sees it: encoded, decoded and encoded again.

    A value that does not survive JSON unchanged (``5`` given to a ``float``
    field comes back as ``5.0``) would otherwise seed the live run and the
    replays differently; one round trip is a fixed point, so every path agrees.
    """
    from ._errors import DecodeError
    from ._serialization import decode, encode_event

    data = encode_event(event)
    try:
        replayed = decode(type(event), data, f"event {type(event)._pt_type_name}")
    except DecodeError:
        return data
    return encode_event(replayed)


def is_async_hook(event: Event, name: str) -> bool:
    """Whether the hook ``name`` of ``event``'s class is an ``async def``."""
    return inspect.iscoroutinefunction(getattr(type(event), name))


def in_apply() -> bool:
    """Whether an ``apply`` hook is running (only then are some states writable)."""
    return writable_states.get() is not None


@contextmanager
def playing(event: Event) -> Iterator[None]:
    token = _current_event.set(event)
    try:
        yield
    finally:
        _current_event.reset(token)


def hook_args(
    event: Event,
    hook: Hook,
    states: Mapping[StateKey, State],
    engine: object = None,
    bound: Bound | None = None,
) -> list[Any]:
    """The arguments of a hook: its states (a list for a many-field), or the engine."""
    if bound is None:
        bound = hook_keys(event, hook)
    values = iter(bound)
    args: list[Any] = []
    for p in hook.params:
        if p.engine:
            args.append(engine)
            continue
        item = next(values)
        if item is None:
            args.append(None)  # a None state id: the event does not touch that state
        else:
            args.append([states[k] for k in item] if isinstance(item, list) else states[item])
    return args


def run_hook(
    event: Event,
    hook: Hook,
    states: Mapping[StateKey, State],
    engine: object = None,
    bound: Bound | None = None,
) -> Any:
    return _call(event, hook, hook_args(event, hook, states, engine, bound))


def _call(event: Event, hook: Hook, args: list[Any]) -> Any:
    fn: Callable[..., Any] = getattr(event, hook.name)
    if hook.phase == "apply":
        # The states this hook was given (its event declares them) are the only
        # ones it may write; see State.__setattr__.
        mine = frozenset(
            id(s)
            for a in args
            for s in (a if isinstance(a, list) else (a,))
            if isinstance(s, State)
        )
        writable = writable_states.set(mine)
        try:
            return fn(*args)
        finally:
            writable_states.reset(writable)
    return fn(*args)


class EventPlayer:
    """Plays events in global order over ``states`` with the ``phases`` enabled.

    ``states`` maps each tracked state key to its object. For every event the
    caller names the states taking part; a hook runs when every state it takes
    is taking part. ``last_event_id`` of the taking-part states moves to the
    event's position.

    Each event class is compiled once per player (:func:`_compile`): its hooks
    for the enabled phases, the plain functions to call and where each argument
    comes from, so playing one event reads its id fields, makes their keys and
    calls the hooks, with no per-event lookup of hooks or bindings.
    """

    def __init__(
        self,
        states: dict[StateKey, State],
        phases: Collection[Phase] = APPLY_ONLY,
        *,
        replaying: bool = True,
    ) -> None:
        self.states = states
        self.replaying = replaying  # False only for the engine's live (fire time) player
        self.phases = frozenset(phases)
        self._phases = [p for p in PHASES if p in self.phases]  # validate, apply, handle
        self.played = 0
        self._compiled: dict[type[Event], _Plan | None] = {}

    def play(self, event: Event, position: int | None, taking_part: Collection[StateKey]) -> None:
        cls = type(event)
        try:
            plan = self._compiled[cls]
        except KeyError:
            plan = self._compiled[cls] = _compile(cls, self._phases)
        if plan is None:
            self._play_bound(event, position, taking_part)
            return
        fields, constants, hooks = plan
        keys: list[StateKey | None] = []
        for name, type_name in fields:
            value = getattr(event, name)
            kind = type(value)
            if kind is int:
                keys.append(_key(StateKey, (type_name, str(value))))
            elif value is None:
                keys.append(None)  # "this event does not touch that state"; its hooks get None
            elif kind is str:
                keys.append(_key(StateKey, (type_name, "s:" + value)))
            elif isinstance(value, (list, tuple)):
                self._play_bound(event, position, taking_part)  # hooks then get a list
                return
            else:
                keys.append(_key(StateKey, (type_name, encode_id(value))))
        keys.extend(constants)
        states = self.states
        token = _current_event.set(event)
        replaying = _replaying.set(self.replaying)
        try:
            for fn, name, is_apply, is_handle, sources in hooks:
                if len(sources) == 1:  # one state (or one None): most hooks
                    k = keys[sources[0]]
                    if k is None:
                        if not is_handle:
                            continue
                        fn(event, None)
                        continue
                    if k not in taking_part:
                        continue
                    try:
                        state = states[k]
                    except KeyError as exc:
                        raise self._missing(cls, position, name, exc) from None
                    if is_apply:
                        writable = writable_states.set(frozenset((id(state),)))
                        try:
                            fn(event, state)
                        finally:
                            writable_states.reset(writable)
                    else:
                        fn(event, state)
                    continue
                wanted = [keys[i] for i in sources]
                runs = is_handle  # a stateless hook: only a replay-safe handle runs
                for k in wanted:
                    if k is not None:
                        if k not in taking_part:
                            runs = False
                            break
                        runs = True
                if not runs:
                    continue
                try:
                    args = [None if k is None else states[k] for k in wanted]
                except KeyError as exc:
                    raise self._missing(cls, position, name, exc) from None
                if is_apply:
                    # The states this hook was given (its event declares them) are the
                    # only ones it may write; see State.__setattr__.
                    writable = writable_states.set(
                        frozenset([id(a) for a in args if a is not None])
                    )
                    try:
                        fn(event, *args)
                    finally:
                        writable_states.reset(writable)
                else:
                    fn(event, *args)
        finally:
            _replaying.reset(replaying)
            _current_event.reset(token)
        if position is not None:
            get = states.get
            for k in taking_part:
                held = get(k)
                if held is not None:
                    _set_slot(held, "_pt_last_event_id", position)
        self.played += 1

    @staticmethod
    def _missing(
        cls: type[Event], position: int | None, hook: str, exc: KeyError
    ) -> ReconstitutionError:
        return ReconstitutionError(
            f"event {cls._pt_type_name} at position {position}: hook "
            f"{hook} needs {exc.args[0]}, which the plan does not hold"
        )

    def _play_bound(
        self, event: Event, position: int | None, taking_part: Collection[StateKey]
    ) -> None:
        """The general path, through the event's Binding: list-valued id fields."""
        spec = type(event)._pt_spec
        b = binding(event)
        token = _current_event.set(event)
        replaying = _replaying.set(self.replaying)
        try:
            for phase in self._phases:
                if phase == "handle" and not spec.replay_handle:
                    continue
                for hook, bound, keys in b.of_phase(phase):
                    if not keys:
                        # A stateless hook: validate/apply ones change nothing played
                        # here; a replay-safe handle runs once per event.
                        if phase != "handle":
                            continue
                    elif not all(k in taking_part for k in keys):
                        continue
                    try:
                        args = hook_args(event, hook, self.states, None, bound)
                    except KeyError as exc:
                        raise ReconstitutionError(
                            f"event {type(event)._pt_type_name} at position {position}: hook "
                            f"{hook.name} needs {exc.args[0]}, which the plan does not hold"
                        ) from None
                    _call(event, hook, args)
        finally:
            _replaying.reset(replaying)
            _current_event.reset(token)
        if position is not None:
            for k in taking_part:
                state = self.states.get(k)
                if state is not None:
                    set_last_event_id(state, position)
        self.played += 1


_key = tuple.__new__  # a StateKey without NamedTuple's __new__ frame: the same value
_set_slot = object.__setattr__  # as _slots.set_last_event_id, without its frame

#: A compiled hook: its function, name, whether it is an apply or a handle hook, and
#: where each argument's key is in the event's key list (see ``_compile``).
_CompiledHook = tuple[Callable[..., Any], str, bool, bool, tuple[int, ...]]
#: (id fields as (attribute, state type name), constant keys, hooks in play order)
_Plan = tuple[tuple[tuple[str, str], ...], tuple[StateKey | None, ...], tuple[_CompiledHook, ...]]


def _compile(cls: type[Event], phases: Collection[Phase]) -> _Plan | None:
    """How a player with these phases plays events of ``cls``; None: through the Binding.

    The key list of one event is its id fields' keys (in declaration order), then
    the singletons' keys, then None (what an ``engine`` parameter is given in a
    player). A class with a many-field, or a hook that is not a plain function,
    plays through the general path.
    """
    spec = cls._pt_spec
    if any(f.many for f in spec.fields):
        return None
    index = {f.name: i for i, f in enumerate(spec.fields)}
    constants: dict[StateKey | None, int] = {}

    def constant(key: StateKey | None) -> int:
        return len(spec.fields) + constants.setdefault(key, len(constants))

    hooks: list[_CompiledHook] = []
    for phase in phases:
        if phase == "handle" and not spec.replay_handle:
            continue
        for hook in spec.phases[phase]:
            fn = inspect.getattr_static(cls, hook.name, None)
            if not inspect.isfunction(fn):
                return None
            sources: list[int] = []
            for p in hook.params:
                if p.engine:
                    sources.append(constant(None))
                elif p.singleton is not None:
                    sources.append(constant(StateKey(p.singleton._pt_type_name, "")))
                else:
                    assert p.field is not None
                    sources.append(index[p.field.name])
            hooks.append((fn, hook.name, phase == "apply", phase == "handle", tuple(sources)))
    fields = tuple((f.name, f.state_class._pt_type_name) for f in spec.fields)
    return fields, tuple(constants), tuple(hooks)
