"""States, events, ``state_id`` and the type registry.

A subclass of :class:`State` or :class:`Event` registers itself under a stable
type name when it is defined; stored rows name that type, never a module path.
An Event subclass is inspected at definition time: its ``state_id`` fields and
the parameters of its hooks are bound once, so that firing and replaying an
event only has to look values up.
"""

from __future__ import annotations

import inspect
import sys
import typing
from collections.abc import Callable, Iterable, Iterator
from contextvars import ContextVar
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar, Literal, TypeVar

import attrs

from ._errors import DefinitionError, StateMutationError, UnknownTypeError

# The key and the id codec live in _keys: the stores import them without the model.
from ._keys import StateIdValue as StateIdValue
from ._keys import StateKey as StateKey
from ._keys import decode_id as decode_id
from ._keys import encode_id as encode_id
from ._slots import set_binding
from ._versions import check_upcasters, class_aliases, class_version

# The metadata key under which state_id() records the state class of a field.
_STATE_FIELD = "playthrough.state"

# --------------------------------------------------------------------------- registry


_V = TypeVar("_V")


class _Table(dict[str, _V]):
    """A registry table that moves the registry's generation on every change, so
    caches derived from the set of classes (``_upcasting.value_mark``) recompute
    however the table is changed (a class definition, or a test swapping classes)."""

    def __setitem__(self, key: str, value: _V) -> None:
        super().__setitem__(key, value)
        registry.generation += 1

    def __delitem__(self, key: str) -> None:
        super().__delitem__(key)
        registry.generation += 1

    def pop(self, key: str, *default: Any) -> Any:
        registry.generation += 1
        return super().pop(key, *default)

    def clear(self) -> None:
        super().clear()
        registry.generation += 1

    def update(self, *args: Any, **kwargs: Any) -> None:
        super().update(*args, **kwargs)
        registry.generation += 1


class _Registry:
    """Maps stable type names to State and Event classes (one namespace each)."""

    def __init__(self) -> None:
        self.states: dict[str, type[State]] = _Table()
        self.events: dict[str, type[Event]] = _Table()
        self.generation = 0

    def check(self, table: dict[str, Any], name: str, cls: type, kind: str) -> None:
        """Refuse ``name`` (a type name or an alias) when another class holds it."""
        old = table.get(name)
        if old is not None and (old.__module__, old.__qualname__) != (
            cls.__module__,
            cls.__qualname__,
        ):
            how = "an alias" if name in old._pt_aliases else "the type name"
            raise DefinitionError(
                f"{kind} type name {name!r} is already taken by "
                f"{old.__module__}.{old.__qualname__} (as {how}); give "
                f"{cls.__module__}.{cls.__qualname__} its own name with "
                f"`class {cls.__name__}({kind}, type_name=...)` or drop the alias"
            )

    def add(self, table: dict[str, Any], name: str, cls: type, kind: str) -> None:
        self.check(table, name, cls, kind)
        table[name] = cls

    def state_class(self, name: str, where: str = "") -> type[State]:
        try:
            return self.states[name]
        except KeyError:
            raise UnknownTypeError(
                f"unknown state type {name!r}{where}: no State subclass with that type name "
                "is defined; import the module that defines it"
            ) from None

    def event_class(self, name: str, where: str = "") -> type[Event]:
        try:
            return self.events[name]
        except KeyError:
            raise UnknownTypeError(
                f"unknown event type {name!r}{where}: no Event subclass with that type name "
                "is defined; import the module that defines it"
            ) from None


registry = _Registry()


def _type_name_for(cls: type, given: str | None) -> str:
    # attrs re-creates slotted classes without the class keywords, so the name
    # chosen for the first class object is carried in its namespace.
    if given is None:
        given = cls.__dict__.get("_pt_type_name")
    if given is None:
        given = cls.__qualname__
    if not isinstance(given, str) or not given:
        raise DefinitionError(f"type_name of {cls.__qualname__} must be a non-empty string")
    return given


def _check_storable(cls: type) -> None:
    """Refuse fields whose values would not read back equal from the store (see _storable)."""
    if cls.__module__ == __name__:
        return  # SingletonState: no fields
    from ._storable import own_annotations, storable_problem

    for name, annotation in own_annotations(cls, _defining_scope()).items():
        problem = storable_problem(cls, name, annotation)
        if problem is not None:
            raise DefinitionError(f"{cls.__qualname__}.{name}: {problem}")


def _register(
    cls: type,
    name: str,
    version: int | None,
    aliases: Iterable[str] | None,
    table: dict[str, Any],
    kind: str,
) -> None:
    """Give ``cls`` its type name, version and aliases, checked, and register every name."""
    number = class_version(cls, version)
    others = class_aliases(cls, aliases, name)
    check_upcasters(cls, number, every_step=kind == "Event")
    for alias in others:  # every name is checked before any is taken
        registry.check(table, alias, cls, kind)
    registry.check(table, name, cls, kind)
    cls._pt_type_name = name  # type: ignore[attr-defined]
    cls._pt_version = number  # type: ignore[attr-defined]
    cls._pt_aliases = others  # type: ignore[attr-defined]
    for taken in (name, *others):
        table[taken] = cls


# --------------------------------------------------------------------------- states


# The states the running ``apply`` hook may write (their ids), or None outside one.
writable_states: ContextVar[frozenset[int] | None] = ContextVar(
    "playthrough_writable_states", default=None
)


class State:
    """Base class of event-sourced states. Subclass it with ``@attrs.define``.

    Every field needs a default: a state no event has touched loads blank.

    A state that can be *completed* (a closed order, a finished game) says how:
    ``complete_when = "closed"`` names a bool field, or an ``is_complete(self)``
    method decides. Firing an event that touches a completed state raises
    :class:`StateCompleted`, unless the event class sets
    ``touches_completed = True``; see ``engine.states.completion``.
    A state playthrough made (loaded, or blank for a load) is written only by
    the ``apply`` hooks of events that declare it; assigning a field anywhere
    else raises :class:`StateMutationError`.
    """

    __slots__ = ("_pt_id", "_pt_last_event_id")
    # Declared for type checkers only: a runtime annotation here would be resolved in
    # the ``playthrough`` namespace (``__module__``) by get_type_hints on every subclass.
    if TYPE_CHECKING:
        _pt_type_name: ClassVar[str]
        _pt_completable: ClassVar[bool]
        complete_when: ClassVar[str | None]
        _pt_version: ClassVar[int]
        _pt_aliases: ClassVar[tuple[str, ...]]
    complete_when = None
    _pt_completable = False
    _pt_version = 1
    _pt_aliases = ()

    def __init_subclass__(
        cls,
        type_name: str | None = None,
        version: int | None = None,
        aliases: Iterable[str] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init_subclass__(**kwargs)
        for reserved in ("id", "last_event_id"):
            if reserved in cls.__dict__ and not isinstance(cls.__dict__[reserved], property):
                raise DefinitionError(
                    f"{cls.__qualname__}.{reserved}: the name is reserved by playthrough"
                )
        name = _type_name_for(cls, type_name)
        _check_completion(cls)
        if aliases:
            # Links, heads and snapshots are keyed by the state's type name: rows under an
            # old name would be invisible to loads (a blank state, silently). A renamed
            # class keeps its stored name instead, which costs nothing.
            raise DefinitionError(
                f"{cls.__qualname__}: a State takes no aliases= (its stored rows are keyed "
                f"by its type name); to rename the class keep the stored name: "
                f"`class {cls.__name__}(State, type_name={next(iter(aliases))!r})`"
            )
        _check_storable(cls)
        _register(cls, name, version, aliases, registry.states, "State")

    def is_complete(self) -> bool:
        """Whether this state is completed (by default: the ``complete_when`` field)."""
        name = type(self).complete_when
        return bool(getattr(self, name)) if name is not None else False

    def __setattr__(self, name: str, value: Any) -> None:
        # A state becomes managed when playthrough marks it (blank_state, decoding);
        # before that (attrs' __init__, user-built values) fields are free. The running
        # apply hook's own states are the common case, so they are asked about first.
        allowed = writable_states.get()
        if allowed is not None and id(self) in allowed:
            object.__setattr__(self, name, value)
            return
        if hasattr(self, "_pt_last_event_id") and not name.startswith("_pt_"):
            which = type(self).__qualname__ + ("" if self.id is None else f"({self.id!r})")
            raise StateMutationError(
                f"{which}: cannot set {type(self).__qualname__}.{name} outside an apply "
                "hook of an event that declares this state; fire an event whose apply "
                "hook changes it (a change made elsewhere would be served from memory "
                "and snapshots, but no replay of the log would make it)"
            )
        object.__setattr__(self, name, value)

    @property
    def id(self) -> StateIdValue | None:
        """The id this state was loaded with (``None`` for a singleton)."""
        return getattr(self, "_pt_id", None)

    @property
    def last_event_id(self) -> int | None:
        """Global position of the last committed event that touched this state."""
        return getattr(self, "_pt_last_event_id", None)


def _check_completion(cls: type[State]) -> None:
    """Record whether a state class can complete; check ``complete_when`` names a field."""
    name = cls.complete_when
    cls._pt_completable = name is not None or cls.is_complete is not State.is_complete
    if name is None:
        return
    if not isinstance(name, str):
        raise DefinitionError(f"{cls.__qualname__}.complete_when must name a field, not {name!r}")
    fields = cls.__dict__.get("__attrs_attrs__")
    if fields is not None and name not in {a.name for a in fields}:
        raise DefinitionError(
            f"{cls.__qualname__}.complete_when names {name!r}, which is not a field of "
            f"{cls.__qualname__}"
        )


class SingletonState(State):
    """A state with exactly one instance; it loads without an id."""

    __slots__ = ()


def key_of(cls: type[State], state_id: object) -> StateKey:
    if not (isinstance(cls, type) and issubclass(cls, State)):
        raise TypeError(
            f"expected a State subclass, not {getattr(cls, '__qualname__', None) or repr(cls)}"
        )
    if issubclass(cls, SingletonState):
        if state_id is not None:
            raise TypeError(f"{cls.__qualname__} is a singleton and loads without an id")
        return StateKey(cls._pt_type_name, "")
    if state_id is None:
        raise TypeError(f"{cls.__qualname__} needs an id to load (only singletons load without)")
    return StateKey(cls._pt_type_name, encode_id(state_id))


# --------------------------------------------------------------------------- events


def state_id(state_class: type[State], *, many: bool = False, **field_kwargs: Any) -> Any:
    """An attrs field naming a state (or, with ``many=True``, a list of states) an event touches."""
    if not (isinstance(state_class, type) and issubclass(state_class, State)):
        raise DefinitionError(f"state_id() takes a State subclass, not {state_class!r}")
    if issubclass(state_class, SingletonState):
        raise DefinitionError(
            f"state_id({state_class.__qualname__}): a singleton has no id; "
            "take it as a hook parameter instead"
        )
    metadata = dict(field_kwargs.pop("metadata", None) or {})
    metadata[_STATE_FIELD] = (state_class, many)
    if many and "default" not in field_kwargs and "factory" not in field_kwargs:
        field_kwargs["factory"] = list
    return attrs.field(metadata=metadata, **field_kwargs)


Phase = Literal["validate", "apply", "fired", "handle"]
PHASES: tuple[Phase, ...] = ("validate", "apply", "fired", "handle")
# Hooks that may take the engine: they run once, never in a replay (``fired`` at fire
# time, before the commit; ``handle`` after it).
ENGINE_PHASES: tuple[Phase, ...] = ("fired", "handle")


@attrs.frozen
class StateField:
    name: str
    state_class: type[State]
    many: bool


@attrs.frozen
class HookParam:
    """One hook parameter: bound to a ``state_id`` field, or to a singleton."""

    name: str
    field: StateField | None
    singleton: type[SingletonState] | None
    engine: bool = False  # a fired or handle hook's ``engine`` parameter: the firing Engine


@attrs.frozen
class Hook:
    name: str
    phase: Phase
    params: tuple[HookParam, ...]


@attrs.frozen
class EventSpec:
    fields: tuple[StateField, ...]
    hooks: tuple[Hook, ...]
    # Singletons bound by validate/apply hooks: they are touched by every event of the class.
    singletons: tuple[type[SingletonState], ...]
    replay_handle: bool
    phases: dict[str, tuple[Hook, ...]] = attrs.field(init=False)
    singleton_keys: tuple[StateKey, ...] = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        phases = {p: tuple(h for h in self.hooks if h.phase == p) for p in PHASES}
        object.__setattr__(self, "phases", phases)
        keys = tuple(StateKey(s._pt_type_name, "") for s in self.singletons)
        object.__setattr__(self, "singleton_keys", keys)

    def by_phase(self, phase: Phase) -> tuple[Hook, ...]:
        return self.phases[phase]


def _declared_fields(cls: type) -> list[StateField]:
    found: dict[str, StateField] = {}
    for base in reversed(cls.__mro__[1:]):
        spec = base.__dict__.get("_pt_spec")
        if isinstance(spec, EventSpec):
            for f in spec.fields:
                found[f.name] = f
    processed = cls.__dict__.get("__attrs_attrs__")
    items: Iterator[tuple[str, Any]]
    if processed is not None:
        items = ((a.name, a) for a in processed)
    else:
        items = iter(cls.__dict__.items())
    for name, value in items:
        meta = getattr(value, "metadata", None)
        if isinstance(meta, typing.Mapping) and _STATE_FIELD in meta:
            state_class, many = meta[_STATE_FIELD]
            found[name] = StateField(name, state_class, many)
    return list(found.values())


def hook_phase(name: str) -> Phase | None:
    """The phase a method name declares: ``apply``, ``validate``, ``fired``, ``handle``, or one of
    them followed by ``_`` and a suffix (``apply_account``); anything else is a plain method."""
    head, sep, suffix = name.partition("_")
    if head in PHASES and (not sep or suffix):
        return head
    return None


def _misspelt_phase(name: str) -> Phase | None:
    """The phase a method name almost declares: one letter dropped (``aply``) or two
    neighbours swapped (``appyl_account``). Such a method would silently never run."""
    head = name.partition("_")[0]
    for phase in PHASES:
        if phase == "fired" and head == "fire":
            continue  # a plain method named ``fire`` is not a misspelt ``fired``
        if len(head) == len(phase) - 1 and any(
            phase[:i] + phase[i + 1 :] == head for i in range(len(phase))
        ):
            return phase
        if len(head) == len(phase) and head != phase:
            diff = [i for i in range(len(phase)) if head[i] != phase[i]]
            if len(diff) == 2 and diff[1] == diff[0] + 1 and sorted(head) == sorted(phase):
                return phase
    return None


def _hook_functions(cls: type) -> list[tuple[str, Phase, Callable[..., Any]]]:
    hooks: dict[str, tuple[Phase, Callable[..., Any]]] = {}
    for base in reversed(cls.__mro__):
        for name, value in base.__dict__.items():
            if not callable(value) or not isinstance(value, typing.Callable):  # type: ignore[arg-type]
                continue
            phase = hook_phase(name)
            if phase is None:
                near = _misspelt_phase(name)
                if near is not None:
                    raise DefinitionError(
                        f"{cls.__qualname__}.{name} looks like a misspelt {near!r} hook and "
                        f"would never run; hooks are named {near} or {near}_<suffix>"
                    )
                continue
            hooks[name] = (phase, value)
    return [(name, phase, fn) for name, (phase, fn) in hooks.items()]


def _defining_scope() -> dict[str, Any]:
    """Local names of the scope that is defining the class (closest frame first).

    String annotations (``from __future__ import annotations``) may name classes
    defined in the same function as the event; ``get_type_hints`` only sees the
    module's globals, so the defining frames' locals are offered as well.
    """
    scope: dict[str, Any] = {}
    frame = sys._getframe(1)
    while frame is not None:
        module = frame.f_globals.get("__name__", "")
        if not module.startswith(("playthrough._model", "attr", "abc", "typing")):
            if frame.f_locals is frame.f_globals:
                break  # reached module level: get_type_hints reads globals itself
            for name, value in frame.f_locals.items():
                scope.setdefault(name, value)
        frame = frame.f_back  # type: ignore[assignment]
    return scope


def _annotation(fn: Callable[..., Any], param: inspect.Parameter, scope: dict[str, Any]) -> Any:
    ann = param.annotation
    if isinstance(ann, str):
        try:
            ann = typing.get_type_hints(fn, localns=scope).get(param.name, ann)
        except Exception:  # noqa: BLE001 - unresolvable names are matched by class name below
            pass
    return ann


def _class_named(ann: Any, candidates: list[type[State]]) -> Any:
    """Resolve a string annotation by class name among known states (for local classes)."""
    if not isinstance(ann, str):
        return ann
    text = ann.strip()
    inner = text
    for prefix in ("list[", "List[", "typing.List[", "Sequence[", "typing.Sequence["):
        if text.startswith(prefix) and text.endswith("]"):
            inner = text[len(prefix) : -1].strip()
            break
    matches = [c for c in candidates if c.__name__ == inner or c.__qualname__ == inner]
    if len(matches) == 1:
        return list[matches[0]] if inner != text else matches[0]  # type: ignore[valid-type]
    return ann


def _bind_param(
    cls: type,
    hook_name: str,
    phase: Phase,
    fn: Callable[..., Any],
    param: inspect.Parameter,
    fields: list[StateField],
    scope: dict[str, Any],
) -> HookParam:
    where = f"{cls.__qualname__}.{hook_name}"
    if param.kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD):
        raise DefinitionError(f"{where}: *args/**kwargs cannot bind to states")
    if param.name == "engine":
        if phase not in ENGINE_PHASES:
            raise DefinitionError(
                f"{where}: only fired and handle hooks can take the engine; "
                f"{phase} hooks take states"
            )
        return HookParam(param.name, None, None, engine=True)
    by_name = {f.name: f for f in fields}
    field = (
        by_name.get(param.name + "_id")
        or by_name.get(param.name + "_ids")
        or by_name.get(param.name)
    )
    if field is not None:
        return HookParam(param.name, field, None)
    ann = _annotation(fn, param, scope)
    if isinstance(ann, str):  # unresolvable: match by class name, declared fields first
        by_field_class = _class_named(ann, [f.state_class for f in fields])
        ann = (
            by_field_class
            if by_field_class is not ann
            else _class_named(ann, list(dict.fromkeys(registry.states.values())))
        )
    origin = typing.get_origin(ann)
    many = False
    if (origin is not None and origin in (list, typing.Sequence, tuple)) or (
        origin is not None and getattr(origin, "__name__", "") in ("list", "Sequence")
    ):
        args = typing.get_args(ann)
        ann = args[0] if args else None
        many = True
    if isinstance(ann, type) and issubclass(ann, SingletonState) and not many:
        return HookParam(param.name, None, ann)
    if isinstance(ann, type) and issubclass(ann, State):
        same = [f for f in fields if issubclass(f.state_class, ann) and f.many == many]
        if len(same) == 1:
            return HookParam(param.name, same[0], None)
        if len(same) > 1:
            raise DefinitionError(
                f"{where}: parameter {param.name!r} of type {ann.__qualname__} is ambiguous: "
                f"fields {', '.join(f.name for f in same)} all hold that type; "
                f"name the parameter after one of them"
            )
    raise DefinitionError(
        f"{where}: parameter {param.name!r} binds to no state: no field "
        f"{param.name + '_id'!r} or {param.name!r} declared with state_id(), and its annotation "
        f"({getattr(ann, '__qualname__', ann)!r}) is neither a singleton nor the type of exactly "
        "one declared state field"
    )


def build_spec(cls: type) -> EventSpec:
    fields = _declared_fields(cls)
    scope = _defining_scope()
    hooks: list[Hook] = []
    singletons: dict[str, type[SingletonState]] = {}
    for name, phase, fn in _hook_functions(cls):
        try:
            sig = inspect.signature(fn)
        except (TypeError, ValueError) as exc:  # pragma: no cover - builtins only
            raise DefinitionError(f"{cls.__qualname__}.{name}: cannot read its signature") from exc
        params = list(sig.parameters.values())[1:]  # drop self
        bound = tuple(_bind_param(cls, name, phase, fn, p, fields, scope) for p in params)
        if phase == "apply" and not bound:
            raise DefinitionError(
                f"{cls.__qualname__}.{name}: an apply hook must take the states it changes "
                "(it runs for the states it takes; with none it would never run)"
            )
        hooks.append(Hook(name, phase, bound))
        if phase not in ENGINE_PHASES:
            for p in bound:
                if p.singleton is not None:
                    singletons[p.singleton._pt_type_name] = p.singleton
    replay_handle = bool(cls.__dict__.get("replay_handle", False)) or any(
        bool(b.__dict__.get("replay_handle", False)) for b in cls.__mro__[1:]
    )
    if replay_handle:
        for hook in hooks:
            if hook.phase == "handle" and any(p.engine for p in hook.params):
                # A replay has no engine to fire into (and must not fire: the
                # events a handle fired are in the log already).
                raise DefinitionError(
                    f"{cls.__qualname__}.{hook.name}: a class with replay_handle = True "
                    "cannot have a handle hook that takes the engine: replay() runs it "
                    "again with no engine to fire into, and the events it fired the "
                    "first time are already in the log. Move the firing to a class "
                    "without replay_handle, or drop the engine parameter"
                )
    return EventSpec(
        fields=tuple(fields),
        hooks=tuple(hooks),
        singletons=tuple(singletons.values()),
        replay_handle=replay_handle,
    )


class Event:
    """Base class of events. Subclass it with ``@attrs.define``.

    Declare the states an event touches with :func:`state_id` fields; write
    ``validate`` hooks (fire time only), ``apply`` hooks (fire time and every
    replay: deterministic), ``fired`` hooks (once, right after the event is
    fired: the events they fire join the same commit) and ``handle`` hooks
    (once, after the commit). A hook is a method named exactly ``apply``,
    ``validate``, ``fired`` or ``handle``, or one of
    those followed by ``_`` and a suffix (``apply_account``); other methods
    (``handled_message``) are plain methods. Hook parameters name the states
    the hook takes. An ``apply`` hook must take at least one state; a
    ``validate`` or ``handle`` hook that takes none runs once per event (at
    fire, after the commit).
    Set ``replay_handle = True`` on a class whose ``handle`` is safe to run
    again during :meth:`engine.admin.replay` (such a ``handle`` may not take the
    engine: a replay fires nothing, so the class is refused), and ``touches_completed = True`` on a
    class that may be fired on completed states (a reopening, an archival).
    Fields marked personal (``attrs.field(metadata={"personal": True})`` or
    ``Personal[str]``) are stored encrypted per data subject, named by the
    field ``data_subject`` names; see ``engine.admin.forget``.
    """

    __slots__ = (
        "_pt_binding",
        "_pt_caused_by",
        "_pt_correlation",
        "_pt_data",
        "_pt_fired_at",
        "_pt_key",
        "_pt_metadata",
        "_pt_position",
    )
    if TYPE_CHECKING:  # see State
        _pt_type_name: ClassVar[str]
        _pt_spec: ClassVar[EventSpec]
        _pt_version: ClassVar[int]
        _pt_aliases: ClassVar[tuple[str, ...]]
        replay_handle: ClassVar[bool]
        touches_completed: ClassVar[bool]
        data_subject: ClassVar[str | None]
    _pt_version = 1
    _pt_aliases = ()
    replay_handle = False
    touches_completed = False
    data_subject = None

    def __init_subclass__(
        cls,
        type_name: str | None = None,
        version: int | None = None,
        aliases: Iterable[str] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init_subclass__(**kwargs)
        if "id" in cls.__dict__ and not isinstance(cls.__dict__["id"], property):
            raise DefinitionError(f"{cls.__qualname__}.id: the name is reserved by playthrough")
        annotated = inspect.get_annotations(cls)
        for reserved in ("metadata", "correlation", "touched"):
            if reserved in annotated or (
                reserved in cls.__dict__ and not isinstance(cls.__dict__[reserved], property)
            ):
                raise DefinitionError(
                    f"{cls.__qualname__}.{reserved}: the name is reserved by playthrough "
                    f"(event.{reserved} is what the log stores with the event)"
                )
        name = _type_name_for(cls, type_name)
        _check_storable(cls)
        cls._pt_spec = build_spec(cls)
        if "__attrs_attrs__" in cls.__dict__:  # the attrs class: check personal fields now
            from ._personal import personal_spec

            personal_spec(cls)
        _register(cls, name, version, aliases, registry.events, "Event")

    def is_valid(self, engine: Any) -> bool:
        """Whether ``engine.fire(self)`` would be accepted now; see ``Engine.is_valid``.

        On the async engine, ``await engine.is_valid(event)`` (this refuses it: an
        unawaited answer would always read true)."""
        result = engine.is_valid(self)
        if not isinstance(result, bool):
            if inspect.iscoroutine(result):
                result.close()
            raise TypeError(
                f"{type(engine).__name__}.is_valid is awaited: use "
                f"await engine.is_valid({type(self).__qualname__}(...))"
            )
        return result

    @property
    def id(self) -> int | None:
        """Global position of this event once committed, else ``None``."""
        return getattr(self, "_pt_position", None)

    @property
    def caused_by(self) -> int | None:
        """Position of the event whose ``handle`` fired this one, if any."""
        return getattr(self, "_pt_caused_by", None)

    @property
    def idempotency_key(self) -> str | None:
        """The key given to ``engine.fire(event, key=...)`` (unique in the log), if any."""
        return getattr(self, "_pt_key", None)

    @property
    def fired_at(self) -> datetime | None:
        """When the event was first fired (UTC); replays see this as "now"."""
        return getattr(self, "_pt_fired_at", None)

    @property
    def metadata(self) -> dict[str, Any]:
        """What was stored with the event besides its fields (``fire(..., metadata=)``)."""
        return dict(getattr(self, "_pt_metadata", None) or {})

    @property
    def correlation(self) -> str | None:
        """The business transaction this event belongs to.

        A fresh id for an event fired by user code (or the one given with
        ``engine.metadata(correlation=...)``); events fired by a ``handle`` hook
        inherit their cause's. ``None`` before the event is fired.
        """
        return getattr(self, "_pt_correlation", None)

    @property
    def touched(self) -> tuple[StateKey, ...]:
        """The states this event touches (its ``state_id`` fields and bound singletons)."""
        return binding(self).touched


# --------------------------------------------------------------------------- binding


def _field_keys(event: Event, field: StateField) -> tuple[list[StateKey], bool]:
    """The keys a field names, and whether it holds a list (hooks then get a list)."""
    value = getattr(event, field.name)
    name = field.state_class._pt_type_name
    if field.many or isinstance(value, (list, tuple)):
        # None in a list names no state, like a None field: it touches nothing.
        return [StateKey(name, encode_id(v)) for v in value if v is not None], True
    if value is None:
        return [], False  # "this event does not touch that state"; its hooks get None
    return [StateKey(name, encode_id(value))], False


Bound = list[StateKey | list[StateKey] | None]
BoundHook = tuple[Hook, Bound, tuple[StateKey, ...]]  # a hook, its arguments' keys, flattened


class Binding:
    """Which states an event touches and which each of its hooks takes.

    Computed once per event and cached on it (fired and stored events are
    immutable); hook arguments are bound per phase on first use, and coupling
    groups only when a commit asks for them, so a replay binds only ``apply``.
    """

    # It holds the event's spec, not the event: the event caches its Binding, and a
    # reference back would make every fired or decoded event a garbage cycle.
    __slots__ = ("_by_field", "_groups", "_phases", "spec", "touched")

    def __init__(
        self,
        spec: EventSpec,
        touched: tuple[StateKey, ...],
        by_field: dict[str, tuple[list[StateKey], bool]],
    ) -> None:
        self.spec = spec
        self.touched = touched
        self._by_field = by_field
        self._phases: dict[str, list[BoundHook]] = {}
        self._groups: tuple[int, ...] | None = None

    def of_phase(self, phase: Phase) -> list[BoundHook]:
        found = self._phases.get(phase)
        if found is None:
            found = self._phases[phase] = [self._bind(hook) for hook in self.spec.phases[phase]]
        return found

    def _bind(self, hook: Hook) -> BoundHook:
        bound: Bound = []
        flat: list[StateKey] = []
        for p in hook.params:
            if p.engine:
                continue
            if p.singleton is not None:
                key = StateKey(p.singleton._pt_type_name, "")
                bound.append(key)
                flat.append(key)
            else:
                assert p.field is not None
                keys, is_list = self._by_field[p.field.name]
                if is_list:
                    bound.append(list(keys))
                    flat.extend(keys)
                elif not keys:
                    bound.append(None)  # a None id: the hook is given None
                else:
                    bound.append(keys[0])
                    flat.append(keys[0])
        return hook, bound, tuple(flat)

    @property
    def groups(self) -> tuple[int, ...]:
        """The coupling group of each touched key (see ``coupling groups`` in _stores/_base)."""
        if self._groups is None:
            flats = [flat for _, _, flat in self.of_phase("apply")]
            self._groups = tuple(_groups(list(self.touched), flats))
        return self._groups


def binding(event: Event) -> Binding:
    """The event's Binding (cached on the event: fired and stored events are immutable)."""
    cached: Binding | None = getattr(event, "_pt_binding", None)
    if cached is not None:
        return cached
    spec = type(event)._pt_spec
    by_field = {f.name: _field_keys(event, f) for f in spec.fields}
    if len(by_field) == 1 and not spec.singleton_keys:
        touched = tuple(dict.fromkeys(next(iter(by_field.values()))[0]))
    else:
        seen: dict[StateKey, None] = {}
        for keys, _ in by_field.values():
            seen.update(dict.fromkeys(keys))
        seen.update(dict.fromkeys(spec.singleton_keys))
        touched = tuple(seen)
    result = Binding(spec, touched, by_field)
    set_binding(event, result)
    return result


def touched_keys(event: Event) -> list[StateKey]:
    """Every state the event touches, once each, in declaration order."""
    return list(binding(event).touched)


def hook_keys(event: Event, hook: Hook) -> Bound:
    for h, bound, _ in binding(event).of_phase(hook.phase):
        if h is hook:
            return bound
    raise KeyError(hook.name)


def _groups(keys: list[StateKey], apply_hooks: list[tuple[StateKey, ...]]) -> list[int]:
    """Connected components of the touched keys under the multi-state apply hooks."""
    coupling = [flat for flat in apply_hooks if len(flat) > 1]
    if not coupling:
        return list(range(len(keys)))  # single-state hooks couple nothing
    group = {k: i for i, k in enumerate(keys)}
    for flat in coupling:
        inside = {group[k] for k in flat if k in group}
        if len(inside) > 1:
            target = min(inside)
            for k, g in group.items():
                if g in inside:
                    group[k] = target
    numbers: dict[int, int] = {}
    return [numbers.setdefault(group[k], len(numbers)) for k in keys]


def flat_hook_keys(event: Event, hook: Hook) -> list[StateKey]:
    """Every state a hook takes, a list argument's states spread out."""
    for h, _, flat in binding(event).of_phase(hook.phase):
        if h is hook:
            return list(flat)
    raise KeyError(hook.name)
