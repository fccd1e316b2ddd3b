"""Reconstitution cases by hand: source document 003, double application, plans, repositories."""

from __future__ import annotations

from collections import Counter

import attrs
import pytest

from playthrough import (
    Engine,
    Event,
    State,
    state_id,
)
from playthrough._model import key_of
from playthrough._repository import StateRepository
from playthrough._stores import SQLiteStore
from playthrough.examples.bank import Account, Deposited, Ledger, Transferred
from playthrough.examples.game import (
    GameState,
    ItemGranted,
    PlayerEnabledModifier,
    PlayerJoined,
    PlayerState,
)
from playthrough.testing import reference_states

# ---------------------------------------------------------------------- document 003


def build_game_log(engine: Engine) -> list[Event]:
    """120 events: the player is snapshotted at 100, the game at 50, and event 60
    reads the player while changing the game."""
    committed: list[Event] = []
    engine.fire(PlayerJoined(player_id=1, game_id=1, name="ada"))
    committed += engine.commit()
    while engine.head() < 59:
        engine.fire(ItemGranted(player_id=1, item=f"coin{engine.head()}"))
        committed += engine.commit()
    engine.fire(ItemGranted(player_id=1, item="modifier_token"))  # 60
    committed += engine.commit()
    engine.fire(PlayerEnabledModifier(player_id=1, game_id=1, modifier_id="m60"))  # 61
    committed += engine.commit()
    while engine.head() < 120:
        engine.fire(ItemGranted(player_id=1, item=f"coin{engine.head()}"))
        committed += engine.commit()
    return committed


def test_document_003_player_at_100_game_at_50() -> None:
    store = SQLiteStore()
    writer = Engine(store, head_values=False)
    committed = build_game_log(writer)
    writer.admin.snapshot([(PlayerState, 1)], at=100)
    writer.admin.snapshot([(GameState, 1)], at=50)
    truth = reference_states(committed)

    fresh = Engine(store, head_values=False)
    game = fresh.load(GameState, 1)
    assert game == truth[key_of(GameState, 1)]
    assert game.active_modifiers == ["m60 by ada"]
    plan = fresh.explain(GameState, 1, at=fresh.head())  # the smallest plan (time travel)
    [player_plan] = [sp for sp in plan.states.values() if sp.key == key_of(PlayerState, 1)]
    # The player's snapshot (100) is past event 61, which needs it as of 60: rewound to blank
    # (its only snapshot), not loaded "from the future".
    assert player_plan.rewound and player_plan.start == 0 and player_plan.need == 60
    assert "REWOUND" in plan.explain()

    player = Engine(store, head_values=False).load(PlayerState, 1)
    assert player == truth[key_of(PlayerState, 1)]
    assert "modifier_token" not in player.items


def test_rewind_uses_an_older_snapshot_from_the_history() -> None:
    store = SQLiteStore()
    writer = Engine(store, head_values=False)
    committed = build_game_log(writer)
    writer.admin.snapshot([(PlayerState, 1)], at=40)
    writer.admin.snapshot([(PlayerState, 1)], at=100)
    writer.admin.snapshot([(GameState, 1)], at=50)
    plan = Engine(store, head_values=False).explain(GameState, 1, at=120)
    player_plan = plan.states[key_of(PlayerState, 1)]
    assert (player_plan.start, player_plan.newest_snapshot) == (40, 100)
    # Work: the player plays only (40, 60], the game only (50, 120].
    assert plan.events_played == len([p for p in range(41, 61)]) + 1
    assert (
        Engine(store, head_values=False).load(GameState, 1)
        == reference_states(committed)[key_of(GameState, 1)]
    )


# ---------------------------------------------------------------------- double application


applied: Counter[int] = Counter()


@attrs.define
class Pot(State, type_name="t.count.Pot"):
    coins: int = 0


@attrs.define
class Moved(Event, type_name="t.count.Moved"):
    """Moves a coin between pots and counts how often its apply runs."""

    src_id: int = state_id(Pot)
    dst_id: int = state_id(Pot)
    tag: int = 0

    def apply(self, src: Pot, dst: Pot) -> None:
        applied[self.tag] += 1
        src.coins -= 1
        dst.coins += 1


def test_every_event_is_applied_exactly_once_per_load() -> None:
    store = SQLiteStore()
    writer = Engine(store, head_values=False)
    for tag in range(1, 41):
        writer.fire(Moved(src_id=tag % 3, dst_id=(tag + 1) % 3, tag=tag))
        writer.commit()
    # Mixed snapshots: pot 0 ahead, pot 1 behind, pot 2 in the middle.
    writer.admin.snapshot([(Pot, 0)], at=35)
    writer.admin.snapshot([(Pot, 1)], at=5)
    writer.admin.snapshot([(Pot, 2)], at=20)
    applied.clear()
    fresh = Engine(store, head_values=False)
    plan = fresh.explain(Pot, 1)
    pots = fresh.load_many(Pot, [1, 0, 2])
    assert all(n == 1 for n in applied.values()), f"applied twice: {+applied}"
    assert set(applied) == set(range(1 + min(sp.start for sp in plan.states.values()), 41))
    assert sum(p.coins for p in pots) == 0
    assert [p.coins for p in pots] == [
        sum(1 for t in range(1, 41) if (t + 1) % 3 == i)
        - sum(1 for t in range(1, 41) if t % 3 == i)
        for i in (1, 0, 2)
    ]


# ---------------------------------------------------------------------- coupling


def test_single_state_hooks_couple_nothing() -> None:
    store = SQLiteStore()
    writer = Engine(store, head_values=False)
    for i in range(1, 6):
        writer.fire(Deposited(account_id=i, amount=10 * i))  # touches account i and the ledger
    writer.commit()
    plan = Engine(store, head_values=False).explain(Account, 3)
    assert list(plan.states) == [key_of(Account, 3)] and plan.events_played == 1
    ledger_plan = Engine(store, head_values=False).explain(Ledger)
    assert list(ledger_plan.states) == [key_of(Ledger, None)] and ledger_plan.events_played == 5
    assert Engine(store, head_values=False).load(Ledger).deposited == 150


def test_aligned_snapshots_play_only_events_after_the_snapshot() -> None:
    store = SQLiteStore()
    writer = Engine(store, head_values=False)
    for i in range(1, 6):
        writer.fire(Deposited(account_id=i, amount=100))
    writer.commit()
    for n in range(30):
        writer.fire(Transferred(source_id=1 + n % 5, target_id=1 + (n + 1) % 5, amount=1))
        writer.commit()
    writer.admin.snapshot()  # every live state plus its partners, one position
    aligned_at = writer.head()
    writer.fire(Transferred(source_id=1, target_id=2, amount=1))
    writer.commit()
    plan = Engine(store, head_values=False).explain(Account, 2)
    assert all(sp.start == aligned_at for sp in plan.states.values())
    assert plan.events_played == 1


# ---------------------------------------------------------------------- repositories


def test_time_travel_does_not_touch_the_live_repository_or_snapshots() -> None:
    store = SQLiteStore()
    engine = Engine(store, head_values=False)
    engine.fire(Deposited(account_id=1, amount=5))
    engine.fire(Deposited(account_id=1, amount=7))
    engine.commit()
    live = engine.load(Account, 1)
    past = engine.load(Account, 1, at=1)
    assert (past.balance, past.last_event_id, live.balance) == (5, 1, 12)
    assert engine.load(Account, 1) is live and past is not live
    with store.reader() as r:
        assert list(r.iter_snapshots()) == []
    with pytest.raises(ValueError, match="outside the log"):
        engine.load(Account, 1, at=3)


def test_repository_is_an_identity_map() -> None:
    repository = StateRepository()
    key = key_of(Account, 1)
    state = Account(balance=3)
    repository.put(key, state)
    assert repository.get(key) is state and key in repository and len(repository) == 1
    assert list(repository.items()) == [(key, state)]
    repository.forget(key)
    assert repository.get(key) is None and key not in repository
    repository.put(key, state)
    repository.clear()
    assert len(repository) == 0


def test_a_plan_without_snapshots_starts_every_state_blank() -> None:
    store = SQLiteStore()
    writer = Engine(store)
    committed = build_game_log(writer)
    writer.admin.snapshot([(PlayerState, 1), (GameState, 1)], at=100)
    reconstitutor = writer.reconstitutor
    with store.reader() as reader:
        with_snapshots = reconstitutor.plan(reader, [key_of(GameState, 1)], 120)
        plan = reconstitutor.plan(reader, [key_of(GameState, 1)], 120, use_snapshots=False)
        states, _ = reconstitutor.reconstitute(
            reader, [key_of(GameState, 1)], 120, use_snapshots=False
        )
    assert with_snapshots.states[key_of(GameState, 1)].start == 100
    assert all(sp.start == 0 and sp.snapshot is None for sp in plan.states.values())
    assert all(sp.newest_snapshot is None for sp in plan.states.values())
    reference = reference_states(committed)
    assert states[key_of(GameState, 1)] == reference[key_of(GameState, 1)]


def test_swapped_repository_is_scoped_to_the_block() -> None:
    engine = Engine(SQLiteStore(), head_values=False)
    engine.fire(Deposited(account_id=1, amount=5))
    engine.commit()
    live = engine.load(Account, 1)
    scoped = StateRepository()
    with engine.use_repository(scoped):
        assert engine.repository is scoped
        loaded = engine.load(Account, 1)
        assert loaded is not live and loaded == live
    assert engine.repository.get(key_of(Account, 1)) is live


def test_sync_check_names_coupled_snapshots_that_disagree() -> None:
    store = SQLiteStore()
    engine = Engine(store, head_values=False)
    engine.fire(Deposited(account_id=1, amount=50))
    engine.commit()
    engine.fire(Transferred(source_id=1, target_id=2, amount=5))  # 2: couples 1, 2 and ledger
    engine.commit()
    engine.fire(Deposited(account_id=2, amount=1))
    engine.commit()
    engine.admin.snapshot([(Account, 1)], at=1)
    engine.admin.snapshot([(Account, 2)], at=3)
    report = engine.admin.snapshot_sync()
    assert not report.in_sync
    [pair] = report.out_of_sync
    assert (pair.state, pair.partner, pair.event) == (key_of(Account, 1), key_of(Account, 2), 2)
    assert "coupled by event 2" in str(report)
    engine.admin.snapshot([(Account, 1), (Account, 2), (Ledger, None)], at=3)
    assert engine.admin.snapshot_sync().in_sync


def test_drop_snapshots_forgets_and_loads_stay_exact() -> None:
    store = SQLiteStore()
    engine = Engine(store, head_values=False)
    engine.fire(Deposited(account_id=1, amount=50))
    engine.commit()
    engine.admin.snapshot()
    assert engine.admin.drop_snapshots([(Account, 1)]) >= 1
    assert (
        Engine(store, head_values=False).explain(Account, 1).states[key_of(Account, 1)].snapshot
        is None
    )
    assert Engine(store, head_values=False).load(Account, 1).balance == 50


# ---------------------------------------------------------------------- full replay

handled: list[int] = []


@attrs.define
class Audited(Event, type_name="t.replay.Audited"):
    """Its handle is safe to run again on a replay (it only records)."""

    pot_id: int = state_id(Pot)
    replay_handle = True

    def apply(self, pot: Pot) -> None:
        pot.coins += 2

    def handle(self, pot: Pot) -> None:
        handled.append(pot.coins)


@attrs.define
class Mailed(Event, type_name="t.replay.Mailed"):
    pot_id: int = state_id(Pot)

    def apply(self, pot: Pot) -> None:
        pot.coins += 1

    def handle(self) -> None:
        handled.append(-1)


def test_replay_runs_handle_only_where_the_event_allows_it() -> None:
    store = SQLiteStore()
    engine = Engine(store, head_values=False)
    for _ in range(3):
        engine.fire(Audited(pot_id=1))
        engine.fire(Mailed(pot_id=1))
    engine.commit()
    assert handled.count(-1) == 3
    handled.clear()
    report = engine.admin.replay()
    assert report.played == 6
    assert handled == [2, 5, 8]  # each Audited handle saw the pot as of its own event
    assert Engine(store, head_values=False).load(Pot, 1).coins == 9


def test_replay_memory_is_bounded_by_states_between_snapshot_sets() -> None:
    store = SQLiteStore()
    engine = Engine(store, head_values=False)
    for i in range(300):  # 300 distinct pots, 3 per event at most
        engine.fire(Moved(src_id=i, dst_id=i + 1000, tag=0))
    engine.commit()
    seen: list[tuple[int, int]] = []
    report = engine.admin.replay(
        snapshot_every=10, chunk_size=10, progress=lambda d, t: seen.append((d, t))
    )
    assert report.played == 300 and report.snapshot_sets >= 30
    assert report.peak_states <= 2 * 10  # two pots per event, ten events between sets
    assert seen[-1] == (300, 300)
    with store.reader() as r:
        assert len({s.key for s in r.iter_snapshots()}) == 600
    assert (
        Engine(store, head_values=False).load(Pot, 5).coins == -1
        and Engine(store, head_values=False).load(Pot, 1005).coins == 1
    )


def test_requirement_found_mid_round_is_scanned_with_its_links() -> None:
    """Regression: scanning the hub raised node 3's range in the same planning round,
    and node 3 was then scanned past the links fetched for it, so event 3's partner
    (node 2) never joined the plan ("inconsistent plan")."""
    from .domain import Copy, Feed, Hub, Node

    store = SQLiteStore()
    engine = Engine(store, head_values=False)
    history = [
        Feed(node_id=1),
        Copy(src_id=1, dst_id=3),
        Copy(src_id=2, dst_id=3),
        Feed(node_id=3),
        Feed(node_id=1),
    ]
    for event in history:
        engine.fire(event)
    committed = engine.commit()
    truth = reference_states(committed)
    for cls, sid in [(Node, 1), (Node, 2), (Node, 3), (Hub, None)]:
        assert Engine(store, head_values=False).load(cls, sid) == truth[key_of(cls, sid)]
