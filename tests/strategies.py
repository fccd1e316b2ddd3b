"""Hypothesis strategies for the tests, kept in one place."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from playthrough import Event

from .domain import Bump, Copy, Feed, Spread, Swap, Tick

NODE_IDS = st.integers(min_value=1, max_value=4)


def events() -> st.SearchStrategy[Event]:
    """Events over a pool of four nodes and the hub, so they collide on states."""
    return st.one_of(
        st.builds(Bump, node_id=NODE_IDS, amount=st.integers(-5, 20)),
        st.builds(Copy, src_id=NODE_IDS, dst_id=NODE_IDS),
        st.builds(Swap, a_id=NODE_IDS, b_id=NODE_IDS),
        st.builds(Feed, node_id=NODE_IDS),
        st.builds(Tick, node_id=NODE_IDS),
        st.builds(Spread, node_ids=st.lists(NODE_IDS, min_size=1, max_size=3)),
    )


# A state reference: a node id, or None for the hub.
state_refs = st.one_of(NODE_IDS, st.none())

Op = tuple[Any, ...]


def operations() -> st.SearchStrategy[list[Op]]:
    """A history: fire events, commit in random batches, place snapshots anywhere.

    ("snapshot", refs, fraction) snapshots exactly those states as they were at
    position int(fraction * head): behind, at or between other snapshots.
    """
    fire = st.tuples(st.just("fire"), events())
    commit = st.just(("commit",))
    snapshot = st.tuples(
        st.just("snapshot"),
        st.lists(state_refs, min_size=1, max_size=5, unique=True),
        st.floats(min_value=0, max_value=1),
    )
    drop = st.tuples(st.just("drop"), st.lists(state_refs, min_size=1, max_size=2, unique=True))
    return st.lists(
        st.one_of(fire, fire, fire, fire, commit, snapshot, drop), min_size=1, max_size=40
    )
