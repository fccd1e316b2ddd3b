"""Which states an event touches and which each of its hooks takes, bound per event."""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeAlias

from ._keys import StateKey, encode_id
from ._slots import set_binding

if TYPE_CHECKING:
    from ._model import Event, EventSpec, Hook, Phase, StateField


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
BoundHook: TypeAlias = (
    "tuple[Hook, Bound, tuple[StateKey, ...]]"  # a hook, its arguments' keys, flattened
)


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
            if self.spec.one_state_applies and not any(
                is_list for _, is_list in self._by_field.values()
            ):
                # No apply hook takes two states: nothing is coupled, and the
                # hooks need not be bound to tell.
                self._groups = tuple(range(len(self.touched)))
            else:
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


def direct_keys(event: Event) -> tuple[list[StateKey | None], tuple[StateKey, ...]] | None:
    """The event's keys without a Binding, for a class whose hooks couple nothing.

    Each id field's key (None for a None id), then the singletons' keys; and the
    touched keys, once each, in declaration order (as ``Binding.touched``).
    None when the event must be bound: its class has a many-field or an apply
    hook taking two states (``EventSpec.direct``), or an id field holds a list.
    """
    spec = type(event)._pt_spec
    if not spec.direct:
        return None
    slots: list[StateKey | None] = []
    for name, type_name in spec.field_types:
        value = getattr(event, name)
        if value is None:
            slots.append(None)  # "this event does not touch that state"
        elif isinstance(value, (list, tuple)):
            return None  # hooks then get a list: the general path
        else:
            slots.append(StateKey(type_name, encode_id(value)))
    slots.extend(spec.singleton_keys)
    if len(slots) == 1:
        return slots, (() if slots[0] is None else (slots[0],))
    return slots, tuple(dict.fromkeys(k for k in slots if k is not None))


def links(event: Event) -> tuple[tuple[StateKey, int], ...]:
    """Each touched key with its coupling group (see ``Binding.groups``)."""
    kept: tuple[tuple[StateKey, int], ...] | None = getattr(event, "_pt_links", None)
    if kept is not None:
        return kept  # set by fire for an event keyed without a Binding
    cached: Binding | None = getattr(event, "_pt_binding", None)
    if cached is None:
        direct = direct_keys(event)
        if direct is not None:
            return tuple((k, i) for i, k in enumerate(direct[1]))  # nothing is coupled
        cached = binding(event)
    return tuple(zip(cached.touched, cached.groups, strict=True))


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
