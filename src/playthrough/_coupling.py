"""The type-level coupling graph: which event types touch which state types.

Read from the classes, no store: an event type touches the state types its
``state_id`` fields name and the singletons its ``validate``/``apply`` hooks
take. An ``apply`` hook that takes two or more states (or a ``many=True``
list) *couples* them: a load of one needs the others just before that event,
so coupled edges are what plans grow along. A state type touched by many event
types is a *hot spot*: every one of those events conflicts on it (a singleton
ledger touched by every event caps a store's write concurrency at one).

Hot spot: touched by at least two event types, and by the most of any state
type or by more than half of all event types.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import attrs

from ._model import Event, registry

__all__ = ["CouplingGraph", "EventNode", "StateNode", "coupling_graph"]


@attrs.frozen
class EventNode:
    type: str
    states: tuple[str, ...]  # state types touched, in declaration order
    coupled: tuple[str, ...]  # the state types an apply hook couples (empty: none)
    coupled_hooks: tuple[str, ...]  # names of the coupling apply hooks


@attrs.frozen
class StateNode:
    type: str
    event_types: tuple[str, ...]
    singleton: bool
    hot: bool


@attrs.frozen
class CouplingGraph:
    events: tuple[EventNode, ...]
    states: tuple[StateNode, ...]

    def to_dict(self) -> dict[str, Any]:
        edges = [
            {"event": e.type, "state": s, "coupled": s in e.coupled}
            for e in self.events
            for s in e.states
        ]
        return {
            "events": [
                {
                    "type": e.type,
                    "states": list(e.states),
                    "coupled": list(e.coupled),
                    "coupled_hooks": list(e.coupled_hooks),
                }
                for e in self.events
            ],
            "states": [
                {
                    "type": s.type,
                    "event_types": len(s.event_types),
                    "touched_by": list(s.event_types),
                    "singleton": s.singleton,
                    "hot": s.hot,
                }
                for s in self.states
            ],
            "edges": edges,
            "hot": [s.type for s in self.states if s.hot],
        }

    def to_mermaid(self) -> str:
        from ._pictures import graph_mermaid

        return graph_mermaid(self)

    def to_dot(self) -> str:
        from ._pictures import graph_dot

        return graph_dot(self)


def _in_modules(cls: type, modules: Sequence[str] | None) -> bool:
    if modules is None:
        return True
    name = cls.__module__
    return any(name == m or name.startswith(m + ".") for m in modules)


def coupling_graph(
    events: Iterable[type[Event]] | None = None, *, modules: Sequence[str] | None = None
) -> CouplingGraph:
    """The graph of ``events`` (default: every registered event class, those of
    ``modules`` and their submodules when given)."""
    classes = list(dict.fromkeys(registry.events.values() if events is None else events))
    classes = [c for c in classes if _in_modules(c, modules)]
    nodes: list[EventNode] = []
    touched_by: dict[str, list[str]] = {}
    singletons: set[str] = set()
    for cls in sorted(classes, key=lambda c: c._pt_type_name):
        spec = cls._pt_spec
        touched: list[str] = [f.state_class._pt_type_name for f in spec.fields]
        for single in spec.singletons:
            touched.append(single._pt_type_name)
            singletons.add(single._pt_type_name)
        touched = list(dict.fromkeys(touched))
        coupled: list[str] = []
        hooks: list[str] = []
        for hook in spec.by_phase("apply"):
            bound = [p for p in hook.params if p.field is not None or p.singleton is not None]
            many = any(p.field is not None and p.field.many for p in bound)
            if len(bound) >= 2 or many:
                hooks.append(hook.name)
                for p in bound:
                    state = p.field.state_class if p.field is not None else p.singleton
                    assert state is not None
                    coupled.append(state._pt_type_name)
        type_name = cls._pt_type_name
        nodes.append(
            EventNode(type_name, tuple(touched), tuple(dict.fromkeys(coupled)), tuple(hooks))
        )
        for s in touched:
            touched_by.setdefault(s, []).append(type_name)
    most = max((len(v) for v in touched_by.values()), default=0)
    total = len(nodes)
    states = tuple(
        StateNode(
            name,
            tuple(by),
            name in singletons,
            len(by) >= 2 and (len(by) == most or 2 * len(by) > total),
        )
        for name, by in sorted(touched_by.items(), key=lambda item: (-len(item[1]), item[0]))
    )
    return CouplingGraph(tuple(nodes), states)
