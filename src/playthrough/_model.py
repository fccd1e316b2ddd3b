"""Events, ``state_id`` and the inspection of an event class's hooks.

The type registry and :class:`State` are in ``_states``, the states one event
touches and binds to its hooks in ``_binding``; this module re-exports them, so
``playthrough._model`` stays the one import path for the model.
An Event subclass is inspected at definition time: its ``state_id`` fields and
the parameters of its hooks are bound once, so that firing and replaying an
event only has to look values up.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import attrs

from ._binding import Binding as Binding
from ._binding import Bound as Bound
from ._binding import BoundHook as BoundHook
from ._binding import binding as binding
from ._binding import flat_hook_keys as flat_hook_keys
from ._binding import hook_keys as hook_keys
from ._binding import touched_keys as touched_keys
from ._errors import DefinitionError

# The key and the id codec live in _keys: the stores import them without the model.
from ._keys import StateIdValue as StateIdValue
from ._keys import StateKey as StateKey
from ._keys import decode_id as decode_id
from ._keys import encode_id as encode_id
from ._states import SingletonState as SingletonState
from ._states import State as State
from ._states import _check_storable, _defining_scope, _register, _type_name_for
from ._states import key_of as key_of
from ._states import registry as registry
from ._states import writable_states as writable_states

# The metadata key under which state_id() records the state class of a field.
_STATE_FIELD = "playthrough.state"

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
    # No apply hook takes two or more states: an event of the class couples
    # nothing (unless a list-valued id field gives one hook several).
    one_state_applies: bool = attrs.field(init=False)
    # Events of the class are keyed without a Binding (``direct_keys``): no
    # many-field and no coupling apply hook. With (attribute, state type name)
    # of each id field, and each validate hook with the index of each of its
    # states' keys in ``direct_keys``' list (fields, then singletons).
    direct: bool = attrs.field(init=False)
    field_types: tuple[tuple[str, str], ...] = attrs.field(init=False)
    validate_sources: tuple[tuple[Hook, tuple[int, ...]], ...] = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        phases = {p: tuple(h for h in self.hooks if h.phase == p) for p in PHASES}
        object.__setattr__(self, "phases", phases)
        one_state = all(sum(1 for p in h.params if not p.engine) <= 1 for h in phases["apply"])
        object.__setattr__(self, "one_state_applies", one_state)
        keys = tuple(StateKey(s._pt_type_name, "") for s in self.singletons)
        object.__setattr__(self, "singleton_keys", keys)
        direct = one_state and not any(f.many for f in self.fields)
        object.__setattr__(self, "direct", direct)
        types = tuple((f.name, f.state_class._pt_type_name) for f in self.fields)
        object.__setattr__(self, "field_types", types)
        fields = {f.name: i for i, f in enumerate(self.fields)}
        ones = {s: len(self.fields) + i for i, s in enumerate(self.singletons)}

        def source(p: HookParam) -> int:
            if p.singleton is not None:
                return ones[p.singleton]
            assert p.field is not None
            return fields[p.field.name]

        sources = tuple(
            (h, tuple(source(p) for p in h.params if not p.engine)) for h in phases["validate"]
        )
        object.__setattr__(self, "validate_sources", sources)

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
        "_pt_links",
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
