"""The type registry and the base class of states.

A subclass of :class:`State` or :class:`Event` registers itself under a stable
type name when it is defined; stored rows name that type, never a module path.
Events, their ``state_id`` fields and their hooks are in :mod:`._model`.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from ._errors import DefinitionError, StateMutationError, UnknownTypeError
from ._keys import StateIdValue, StateKey, encode_id
from ._versions import check_upcasters, class_aliases, class_version

_new = tuple.__new__  # a NamedTuple without its Python-level __new__

if TYPE_CHECKING:
    from ._model import Event

# The modules that define classes (their frames are not the user's defining scope).
_OWN_MODULES = ("playthrough._model", "playthrough._states", "attr", "abc", "typing")

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


# Bound once: State.__setattr__ runs for every field an apply hook writes.
_writable = writable_states.get
_set = object.__setattr__


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
        allowed = _writable()
        if allowed is not None and id(self) in allowed:
            _set(self, name, value)
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
    return _new(StateKey, (cls._pt_type_name, encode_id(state_id)))


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
        if not module.startswith(_OWN_MODULES):
            if frame.f_locals is frame.f_globals:
                break  # reached module level: get_type_hints reads globals itself
            for name, value in frame.f_locals.items():
                scope.setdefault(name, value)
        frame = frame.f_back  # type: ignore[assignment]
    return scope
