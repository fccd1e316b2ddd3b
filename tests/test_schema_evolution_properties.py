"""Property: old histories read under new classes load exactly like a replay of the upcast log.

Histories are written in three phases under the ``old``, ``mid`` and ``new``
(or ``stale``) classes of ``evolution_domain``, with snapshots placed anywhere
in each phase (so old-version snapshots are stored next to current ones). Then,
under the newest classes, every wallet is loaded at the head and in the past in
a fresh engine and compared with (1) ``reference_states`` over the whole log
decoded (upcast) by the newest classes and (2) a plain arithmetic model of the
operations. ``stale`` changes the state's shape without a version bump: its old
snapshots must not be used, and the loads must still be exact.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from playthrough import Engine, Event
from playthrough._model import key_of
from playthrough._serialization import decode_event, encode_state
from playthrough._stores import SQLiteStore, Store
from playthrough.testing import reference_states

from .evolution_domain import activate, deposit, move

WALLETS = 4
EXAMPLES = int(os.environ.get("PT_EXAMPLES", "60"))

op = st.one_of(
    st.tuples(st.just("dep"), st.integers(0, WALLETS - 1), st.integers(1, 9)),
    st.tuples(
        st.just("move"), st.integers(0, WALLETS - 1), st.integers(1, WALLETS - 1), st.integers(1, 9)
    ),
    st.tuples(
        st.just("snap"),
        st.lists(st.integers(0, WALLETS - 1), min_size=1, max_size=WALLETS, unique=True),
        st.floats(0, 1),
    ),
    st.tuples(st.just("commit")),
)
phases = st.lists(st.lists(op, max_size=12), min_size=3, max_size=3)
# Also run against PostgreSQL below (a schema per example).
HISTORIES = {
    "final": st.sampled_from(["new", "stale"]),
    "phase_ops": phases,
    "travel": st.lists(st.floats(0, 1), max_size=2),
}


@pytest.fixture(autouse=True)
def _restore_registry() -> Iterator[None]:
    yield
    activate("new")  # leave one consistent world registered for other tests


Op = tuple[Any, ...]


def write_phase(engine: Engine, world: str, ops: list[Op], model: dict[int, list[int]]) -> None:
    classes = activate(world)
    for item in ops:
        kind = item[0]
        if kind == "dep":
            _, wallet, units = item
            engine.fire(deposit(world, classes, wallet, units))
            model[wallet][0] += units
            model[wallet][1] += 1
        elif kind == "move":
            _, source, offset, units = item
            target = (source + offset) % WALLETS
            engine.fire(move(world, classes, source, target, units))
            moved = min(units, model[source][0])
            model[source][0] -= moved
            model[target][0] += moved
        elif kind == "commit":
            engine.commit()
        else:
            _, wallets, fraction = item
            engine.commit()
            at = int(fraction * engine.head())
            engine.admin.snapshot([(classes["Wallet"], w) for w in wallets], at=at)
    engine.commit()


def upcast_log(store: Store) -> list[Event]:
    with store.reader() as reader:
        return [decode_event(e) for e in reader.events_after(0, 10**9)]


def check(store: Store, final: str, phase_ops: list[list[Op]], travel: list[float]) -> None:
    model = {w: [0, 0] for w in range(WALLETS)}
    for world, ops in zip(("old", "mid", final), phase_ops, strict=True):
        # A deploy: a new process (engine) with the new code. Engines here share one
        # in-memory store, so none is closed.
        write_phase(Engine(store), world, ops, model)
    classes = activate(final)
    wallet = classes["Wallet"]
    log = upcast_log(store)
    head = log[-1].id if log else 0
    assert head is not None
    for fraction in [1.0, *travel]:
        at = int(fraction * head)
        reference = reference_states(log, upto=at)
        engine = Engine(store)  # fresh: no identity map, every load is planned
        for w in range(WALLETS):
            state: Any = engine.load(wallet, w) if at == head else engine.load(wallet, w, at=at)
            ref = reference.get(key_of(wallet, w))
            expected = encode_state(ref if ref is not None else wallet())
            assert encode_state(state) == expected, (w, at)
            if at == head:
                assert (state.cents, state.deposits) == (model[w][0] * 100, model[w][1])
                if final == "stale":
                    deposits: list[Any] = [e for e in log if type(e).__name__ == "NewDeposited"]
                    mine = [e.cents for e in deposits if e.wallet_id == w]
                    assert state.deposited == sum(mine)


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(**HISTORIES)
def test_old_histories_load_like_a_replay_of_the_upcast_log(
    final: str, phase_ops: list[list[Op]], travel: list[float]
) -> None:
    check(SQLiteStore(":memory:"), final, phase_ops, travel)


@pytest.mark.postgres
@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(**HISTORIES)
def test_old_histories_load_like_a_replay_of_the_upcast_log_on_postgres(
    pg_store_factory: Callable[[], Store],
    final: str,
    phase_ops: list[list[Op]],
    travel: list[float],
) -> None:
    check(pg_store_factory(), final, phase_ops, travel)


def test_the_stale_world_really_holds_unusable_snapshots() -> None:
    """The property is not vacuous: old snapshots exist, and ``stale`` cannot use them."""
    store = SQLiteStore(":memory:")
    ops: list[Op] = [("dep", 1, 5), ("snap", [1], 1.0)]
    model = {w: [0, 0] for w in range(WALLETS)}
    for world, phase in zip(("old", "mid", "stale"), [ops, ops, [("dep", 1, 1)]], strict=True):
        write_phase(Engine(store, head_values=False), world, phase, model)
    classes = activate("stale")
    text = Engine(store).explain(classes["Wallet"], 1).explain()
    assert text.count("NOT USED") == 2, text  # a v1 and a v2 snapshot, both unusable
    assert "blank (no snapshot used)" in text
    classes = activate("new")
    plan = Engine(store).explain(classes["Wallet"], 1)
    # ``new`` keeps Wallet's shape history (v1 and v2 upcast to v3), but Deposited
    # moved from v2 to v3: both snapshots were made by other event classes, so
    # neither is used and the load replays from blank.
    assert plan.explain().count("the event classes that can touch") == 2, plan.explain()
    assert plan.states[key_of(classes["Wallet"], 1)].start == 0
