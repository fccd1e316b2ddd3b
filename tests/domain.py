"""A test domain of interdependent states, used by the engine and reconstitution tests.

Hooks read one state and write another (Copy), swap two (Swap: a circular
coupling), feed a singleton hub (Feed), touch a state and the hub through two
single-state hooks that couple nothing (Tick), and take a list of states
(Spread). Every state keeps a ``seen`` list of what its hooks read, so an event
that saw another state at the wrong position leaves a trace.
"""

from __future__ import annotations

import attrs

from playthrough import Event, SingletonState, State, state_id
from playthrough.errors import EventRejected

MOD = 1_000_003


@attrs.define
class Node(State, type_name="t.Node"):
    value: int = 0
    seen: list[int] = attrs.field(factory=list)


@attrs.define
class Hub(SingletonState, type_name="t.Hub"):
    total: int = 0
    ticks: int = 0
    seen: list[int] = attrs.field(factory=list)


@attrs.define
class Bump(Event, type_name="t.Bump"):
    node_id: int = state_id(Node)
    amount: int = 1

    def apply(self, node: Node) -> None:
        node.value = (node.value + self.amount) % MOD


@attrs.define
class Copy(Event, type_name="t.Copy"):
    """Reads ``src`` while changing ``dst``; rejected when src holds 13."""

    src_id: int = state_id(Node)
    dst_id: int = state_id(Node)

    def validate(self, src: Node) -> None:
        if src.value == 13:
            raise EventRejected("unlucky source")

    def apply(self, src: Node, dst: Node) -> None:
        dst.seen.append(src.value)
        dst.value = (dst.value * 3 + src.value + 1) % MOD


@attrs.define
class Swap(Event, type_name="t.Swap"):
    a_id: int = state_id(Node)
    b_id: int = state_id(Node)

    def apply(self, a: Node, b: Node) -> None:
        if a is b:
            a.value = (a.value + 7) % MOD
            return
        a.value, b.value = (b.value + 1) % MOD, (a.value * 2) % MOD


@attrs.define
class Feed(Event, type_name="t.Feed"):
    """Couples a node with the hub: each reads the other."""

    node_id: int = state_id(Node)

    def apply(self, node: Node, hub: Hub) -> None:
        hub.seen.append(node.value)
        hub.total = (hub.total + node.value) % MOD
        node.value = (node.value + hub.total) % MOD


@attrs.define
class Tick(Event, type_name="t.Tick"):
    """Touches a node and the hub with one single-state hook each: couples nothing."""

    node_id: int = state_id(Node)

    def apply_node(self, node: Node) -> None:
        node.value = (node.value * 2 + 1) % MOD

    def apply_hub(self, hub: Hub) -> None:
        hub.ticks += 1


@attrs.define
class Spread(Event, type_name="t.Spread"):
    """One event touching a list of states of one type."""

    node_ids: list[int] = state_id(Node, many=True)

    def apply(self, nodes: list[Node]) -> None:
        total = sum(n.value for n in nodes)
        for i, n in enumerate(nodes):
            n.seen.append(total)
            n.value = (n.value + total + i) % MOD


ALL_EVENTS = (Bump, Copy, Swap, Feed, Tick, Spread)
