"""Heads values: the commit stores each touched state's value in its heads row.

A load of a state whose value is current reads that one row and plays
nothing; every other load plans as before and writes back what it brought to
the head. These tests hold that to the reference replay (properties), count
the statements, bound the identity map structurally and upgrade old stores.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import attrs
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

import playthrough
from playthrough import Engine, Event, State
from playthrough._cli import main
from playthrough._model import StateKey, key_of
from playthrough._serialization import encode_state
from playthrough._stores import SnapshotRecord, SQLiteStore, Store
from playthrough._stores._base import SCHEMA_VERSION, HeadRow
from playthrough.errors import ConcurrencyError, ConfigurationError, EventRejected, StoreError
from playthrough.testing import reference_states, stored_events

from .domain import Bump, Copy, Feed, Hub, Node, Swap
from .strategies import Op, events, operations
from .test_reconstitution_properties import (
    EXAMPLES,
    FIRING,
    PLACEMENTS,
    check_any_snapshot_placement_loads_like_a_full_replay,
    check_firing_after_a_load_from_snapshots_commits_correctly,
    expected,
    ref_class,
    run_history,
    snapshot_of,
)
from .valueless import ValuelessStore

PROPERTY = settings(
    max_examples=max(40, EXAMPLES // 2),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
REFS: list[int | None] = [1, 2, 3, 4, None]


def heads_of(store: SQLiteStore) -> dict[StateKey, tuple[int, str | None, int | None]]:
    with store.reader() as reader:
        keys = [
            StateKey(t, i)
            for t, i in store._conn.execute("SELECT state_type, state_id FROM pt_heads")
        ]
        return {k: tuple(row)[:3] for k, row in reader.heads(keys).items()}  # type: ignore[misc]


# ---------------------------------------------------------------------- properties


@PROPERTY
@given(**PLACEMENTS)
def test_the_placement_property_holds_without_heads_values(
    ops: list[Op], load_order: list[int | None], time_travel: list[tuple[int | None, float]]
) -> None:
    """The unchanged property, on a store that keeps no values (the old behaviour)."""
    check_any_snapshot_placement_loads_like_a_full_replay(
        ValuelessStore, ops, load_order, time_travel
    )


@PROPERTY
@given(**FIRING)
def test_the_firing_property_holds_without_heads_values(
    ops: list[Op], more: list[Event], first: int | None
) -> None:
    check_firing_after_a_load_from_snapshots_commits_correctly(ValuelessStore, ops, more, first)


SEVERAL_ENGINES = {
    "ops": operations(),
    "engines": st.lists(st.booleans(), min_size=2, max_size=4),
    "order": st.lists(st.integers(0, 3), min_size=1, max_size=30),
    "batch": st.lists(events(), min_size=1, max_size=30),
}


@PROPERTY
@given(**SEVERAL_ENGINES)
def test_fresh_loads_after_commits_by_several_engines_equal_the_replay(
    ops: list[Op], engines: list[bool], order: list[int], batch: list[Event]
) -> None:
    check_several_engines(ops, engines, order, batch)


def check_several_engines(
    ops: list[Op], engines: list[bool], order: list[int], batch: list[Event]
) -> None:
    """Engines (some writing values, some not) interleave commits on one store; any
    engine's refused commit writes nothing; a fresh engine's loads equal the replay."""
    store = SQLiteStore()
    committed: list[Event] = []
    run_history(Engine(store), ops, committed)
    writers = [Engine(store, head_values=v) for v in engines]
    for n, event in zip(order, batch, strict=False):
        writer = writers[n % len(writers)]
        try:
            writer.fire(event)
            committed.extend(writer.commit())
        except EventRejected:
            pass
        except ConcurrencyError:
            writer.refresh()  # another engine moved a state: reload and go on
    fresh = Engine(store)
    for ref in REFS:
        cls, sid = ref_class(ref)
        assert snapshot_of(fresh.load(cls, sid)) == expected(committed, ref)
    again = Engine(store)  # after the write-backs of the first fresh engine
    assert [snapshot_of(s) for s in again.load_many(Node, [1, 2, 3, 4])] == [
        expected(committed, r) for r in [1, 2, 3, 4]
    ]
    store.close()


def _copy(ops: list[Op]) -> list[Op]:
    """The same history with fresh event objects (an event is fired once)."""
    return [(op[0], _twin(op[1])) if op[0] == "fire" else op for op in ops]


def _twin(event: Event) -> Event:
    """A new, unfired event with the same fields."""
    return attrs.evolve(event)  # type: ignore[misc]


@PROPERTY
@given(
    ops=operations(),
    limit=st.integers(1, 4),
    more=st.lists(st.tuples(events(), st.booleans()), min_size=1, max_size=25),
)
def test_a_state_evicted_and_reloaded_mid_history_equals_one_never_evicted(
    ops: list[Op], limit: int, more: list[tuple[Event, bool]]
) -> None:
    """Two stores get the same history; one engine's identity map holds at most
    ``limit`` states (pending ones excepted), the other's is unbounded. After every
    step both engines see the same states, and what they commit replays alike."""
    stores = SQLiteStore(), SQLiteStore()
    run_history(Engine(stores[0]), ops, [])
    run_history(Engine(stores[1]), _copy(ops), [])
    bounded = Engine(stores[0], max_states=limit)
    unbounded = Engine(stores[1], max_states=None)
    for event, commit in more:
        outcome = []
        for engine, e in ((bounded, event), (unbounded, _twin(event))):
            try:
                engine.fire(e)
                outcome.append(True)
            except EventRejected:
                outcome.append(False)
        assert outcome[0] == outcome[1]
        if commit:
            bounded.commit()
            unbounded.commit()
        for ref in REFS:
            cls, sid = ref_class(ref)
            assert snapshot_of(bounded.load(cls, sid)) == snapshot_of(unbounded.load(cls, sid))
            pending = len(bounded._work.keys)
            assert len(bounded.repository) <= max(limit, pending)
    bounded.commit()
    unbounded.commit()
    for ref in REFS:
        cls, sid = ref_class(ref)
        a, b = Engine(stores[0]).load(cls, sid), Engine(stores[1]).load(cls, sid)
        assert snapshot_of(a) == snapshot_of(b)
    for store in stores:
        store.close()


# ---------------------------------------------------------------------- what a load reads


def _bank(store: SQLiteStore, *, values: bool = True) -> list[Event]:
    """Nodes 1..4 coupled by copies and swaps, all fed into the hub."""
    writer = Engine(store, head_values=values)
    committed: list[Event] = []
    for n in (1, 2, 3, 4):
        writer.fire(Bump(node_id=n, amount=n))
        committed += writer.commit()
    for a, b in [(1, 2), (2, 3), (3, 4), (4, 1)] * 5:
        writer.fire(Swap(a_id=a, b_id=b))
        committed += writer.commit()
        writer.fire(Feed(node_id=a))
        committed += writer.commit()
    return committed


class _Count:
    def __init__(self, store: Store) -> None:
        self.store = store

    def __enter__(self) -> _Count:
        self.start = self.store.statements
        return self

    def __exit__(self, *exc: object) -> None:
        self.n = self.store.statements - self.start


def test_a_commit_writes_the_values_of_the_states_it_touched() -> None:
    store = SQLiteStore()
    committed = _bank(store)
    truth = reference_states(committed)
    heads = heads_of(store)
    assert set(heads) == set(truth)
    for key, (last, value, value_position) in heads.items():
        assert last == value_position == truth[key].last_event_id
        assert value == encode_state(truth[key])


def test_a_load_of_current_values_is_one_statement_for_one_state_or_many() -> None:
    store = SQLiteStore()
    committed = _bank(store)
    truth = reference_states(committed)
    engine = Engine(store)
    with _Count(store) as one:
        node = engine.load(Node, 3)
    assert snapshot_of(node) == snapshot_of(truth[key_of(Node, 3)])
    with _Count(store) as many:
        nodes = engine.load_many(Node, [1, 2, 4, 99])
    assert one.n == many.n == 1
    assert [snapshot_of(n) for n in nodes[:3]] == [
        snapshot_of(truth[key_of(Node, i)]) for i in (1, 2, 4)
    ]
    assert nodes[3] == Node() and nodes[3].last_event_id is None  # never touched: blank
    assert engine.explain(Node, 3).events_played == 0


def test_the_heads_value_is_what_the_load_returns() -> None:
    """Tampering with a stored value shows in the load (it is really read), and
    verify reports the mismatch with the state and position."""
    store = SQLiteStore()
    _bank(store)
    store._conn.execute(
        "UPDATE pt_heads SET value = '{\"value\":12345}' WHERE state_type = 't.Node' "
        "AND state_id = '2'"
    )
    engine = Engine(store)
    assert engine.load(Node, 2).value == 12345
    report = engine.admin.verify(subprocess_replay=False)
    assert not report.ok
    (mismatch,) = report.snapshots.mismatches
    assert mismatch.state == key_of(Node, 2)


def test_a_store_without_values_gets_fast_after_one_load_of_the_group() -> None:
    store = SQLiteStore()
    committed = _bank(store, values=False)
    assert all(v is None for _, v, _ in heads_of(store).values())
    engine = Engine(store)
    with _Count(store) as first:
        engine.load(Node, 1)
    plan = engine.explain(Node, 1)
    # One plan played the whole coupled group to the head: every state of it is
    # in the identity map, and its values were written back.
    with _Count(store) as rest:
        engine.load_many(Node, [2, 3, 4])
        engine.load(Hub)
    assert rest.n == 0 and first.n > 1
    assert plan.events_played == 0  # the value written back is current
    truth = reference_states(committed)
    assert all(
        value == encode_state(truth[k]) and vp == last
        for k, (last, value, vp) in heads_of(store).items()
    )
    with _Count(store) as cold:
        Engine(store).load_many(Node, [1, 2, 3, 4])
    assert cold.n == 1


def test_a_write_back_never_overwrites_a_newer_head() -> None:
    store = SQLiteStore()
    _bank(store, values=False)
    stale = SnapshotRecord(key_of(Node, 1), 3, 3, '{"value":-1}')
    assert store.write_values([stale]) == 0  # node 1's last event is not 3
    with store.reader() as r:
        last = r.state_heads([key_of(Node, 1)])[key_of(Node, 1)]
    good = SnapshotRecord(key_of(Node, 1), last, last, '{"value":7}')
    assert store.write_values([good]) == 1
    assert store.write_values([good]) == 0  # already current: nothing to write


def test_commits_without_values_leave_an_older_value_that_is_still_exact() -> None:
    store = SQLiteStore()
    committed = _bank(store)
    other = Engine(store, head_values=False)
    other.fire(Bump(node_id=1, amount=100))
    committed += other.commit()
    last, value, vp = heads_of(store)[key_of(Node, 1)]
    assert value is not None and vp is not None and vp < last
    fresh = Engine(store, head_values=False)
    plan = fresh.explain(Node, 1)
    assert plan.states[key_of(Node, 1)].start == vp  # the old value is a snapshot
    assert snapshot_of(fresh.load(Node, 1)) == snapshot_of(
        reference_states(committed)[key_of(Node, 1)]
    )


def test_drop_snapshots_forgets_values_too() -> None:
    store = SQLiteStore()
    committed = _bank(store)
    engine = Engine(store)
    engine.admin.drop_snapshots([(Node, 1)])
    assert heads_of(store)[key_of(Node, 1)][1] is None
    assert heads_of(store)[key_of(Node, 2)][1] is not None
    engine.admin.drop_snapshots()
    assert all(v is None for _, v, _ in heads_of(store).values())
    assert snapshot_of(Engine(store).load(Node, 1)) == expected(committed, 1)


def test_a_full_replay_stores_current_values() -> None:
    store = SQLiteStore()
    committed = _bank(store)
    engine = Engine(store)
    engine.admin.replay(snapshot_every=3, chunk_size=2)
    truth = reference_states(committed)
    for k, (last, value, vp) in heads_of(store).items():
        assert vp == last and value == encode_state(truth[k])


# ---------------------------------------------------------------------- snapshot_every


def test_snapshot_every_writes_what_changed_not_what_is_in_memory() -> None:
    store = SQLiteStore()
    setup = Engine(store)
    for n in range(1, 201):
        setup.fire(Bump(node_id=n, amount=1))
    setup.commit()
    engine = Engine(store, snapshot_every=1)
    engine.load_many(Node, range(1, 201))  # 200 states in memory
    engine.fire(Bump(node_id=7, amount=1))
    engine.commit()
    snaps = list(store._conn.execute("SELECT state_type, state_id FROM pt_snapshots"))
    assert snaps == [("t.Node", "7")]


# ---------------------------------------------------------------------- the identity map


def test_the_identity_map_stays_bounded_over_many_distinct_states() -> None:
    store = SQLiteStore()
    engine = Engine(store, max_states=50)
    for n in range(5_000):
        engine.fire(Bump(node_id=n, amount=1))
        if n % 100 == 99:
            assert len(engine.repository) <= 100  # the pending ones are kept until commit
            engine.commit()
            assert len(engine.repository) <= 50
        engine.load(Node, n // 2)
        assert len(engine.repository) <= max(50, len(engine._work.keys))
    engine.commit()
    assert len(engine.repository) <= 50
    assert engine.load(Node, 4_999).value == 1 and engine.load(Node, 0).value == 1


def test_pending_states_are_never_evicted() -> None:
    engine = Engine(SQLiteStore(), max_states=2)
    engine.fire(Bump(node_id=0, amount=5))
    engine.fire(Bump(node_id=1, amount=5))
    engine.fire(Bump(node_id=2, amount=5))
    held = engine.load(Node, 0)
    for n in range(10, 20):
        engine.load(Node, n)
    assert len(engine.repository) == 3  # over the bound: all three are pending
    assert engine.load(Node, 0) is held
    engine.commit()
    assert len(engine.repository) <= 2
    assert [Engine(engine.store).load(Node, n).value for n in range(3)] == [5, 5, 5]
    assert held.value == 5


def test_trimming_costs_constant_work_per_fire_when_pending_states_exceed_the_bound() -> None:
    # Once more states are pending than max_states allows, trimming must not
    # scan them again on every fire (that made one large commit quadratic).
    limit, fires = 50, 2_000
    engine = Engine(SQLiteStore(), max_states=limit)
    for n in range(fires):
        engine.fire(Bump(node_id=n, amount=1))
    repository = engine._work.own_repository
    assert len(repository) == fires  # all pending, none evicted
    assert repository.examined <= 2 * fires  # quadratic was ~ fires**2 / 2
    assert engine.load(Node, 0).value == 1  # set-aside states are still found
    engine.commit()
    assert len(repository) <= limit  # evictable again once committed
    assert repository.examined <= 4 * fires
    engine.fire(Bump(node_id=fires - 1, amount=1))
    engine.discard()
    assert len(repository) <= limit
    assert [Engine(engine.store).load(Node, n).value for n in (0, fires - 1)] == [1, 1]


def test_max_states_must_be_positive() -> None:
    with pytest.raises(ConfigurationError, match="max_states must be at least 1"):
        Engine(SQLiteStore(), max_states=0)


# ---------------------------------------------------------------------- one store, many engines


def test_an_engine_per_request_borrows_the_store(tmp_path: Path) -> None:
    store = playthrough.connect(f"sqlite:///{tmp_path / 'app.db'}")
    try:
        with _Count(store.store) as made:
            engines = [store.engine() for _ in range(100)]
        assert made.n == 0  # creating an engine sends nothing
        with store.engine() as engine:
            engine.fire(Bump(node_id=1, amount=3))
        # Closing it committed and left the store open for the next request.
        with store.engine() as engine:
            assert engine.load(Node, 1).value == 3
        engines[0].close()
        assert Engine(store).load(Node, 1).value == 3
    finally:
        store.close()


def test_engine_open_closes_the_store_it_opened() -> None:
    engine = Engine.open("sqlite://")
    engine.close()
    with pytest.raises(StoreError, match="the store on sqlite:// is closed"):
        with engine.store.reader() as reader:
            reader.head()


@pytest.mark.parametrize("where", ["memory", "file"])
def test_threads_share_one_sqlite_store(tmp_path: Path, where: str) -> None:
    url = "sqlite://" if where == "memory" else f"sqlite:///{tmp_path / 't.db'}"
    store = playthrough.connect(url)
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            for _ in range(40):
                while True:  # the hub is shared: a request retries when another moved it
                    try:
                        with store.engine() as engine:  # one engine per "request"
                            engine.fire(Bump(node_id=n, amount=1))
                            engine.fire(Feed(node_id=n))
                        break
                    except ConcurrencyError:
                        continue
                with store.engine() as engine:
                    engine.load(Node, n)
                    engine.load(Hub)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        assert not errors, errors
        truth = reference_states(stored_events(store.store))
        with store.engine() as engine:
            for n in range(6):
                assert snapshot_of(engine.load(Node, n)) == snapshot_of(truth[key_of(Node, n)])
            assert len(engine.load(Hub).seen) == 6 * 40
            assert engine.admin.verify(subprocess_replay=False).ok
    finally:
        store.close()


# ---------------------------------------------------------------------- schema upgrade, CLI


def _as_version_1(path: Path) -> None:
    """Turn a store file into what schema version 1 wrote (no value columns)."""
    conn = sqlite3.connect(path)
    # what schema version 4 added
    conn.execute("DROP TABLE pt_commits")
    conn.execute("DROP TABLE pt_pending_handlers")
    conn.execute("DROP INDEX pt_events_by_key")
    conn.execute("ALTER TABLE pt_events DROP COLUMN event_key")
    for table, column in [
        ("pt_heads", "value"),
        ("pt_heads", "value_position"),
        # schema version 3 (schema evolution)
        ("pt_heads", "value_version"),
        ("pt_heads", "value_fingerprint"),
        ("pt_events", "version"),
        ("pt_snapshots", "version"),
        ("pt_snapshots", "fingerprint"),
        # schema version 4 (the read side; its indexes go first)
        ("pt_events", "metadata"),
        ("pt_events", "correlation"),
    ]:
        if column == "metadata":
            conn.execute("DROP INDEX pt_events_by_cause")
            conn.execute("DROP INDEX pt_events_by_correlation")
        conn.execute(f"ALTER TABLE {table} DROP COLUMN {column}")
    for table in (
        "pt_followers",
        "pt_completed",
        "pt_schedule",
        "pt_subject_keys",
        "pt_archived_keys",
        "pt_forgotten",
        "pt_archived_personal",
        "pt_subject_events",
    ):
        conn.execute(f"DROP TABLE {table}")  # later versions' tables
    conn.execute("DROP TRIGGER pt_events_subjects")
    conn.execute("UPDATE pt_meta SET value = '1' WHERE key = 'schema_version'")
    conn.commit()
    conn.close()


def test_a_version_1_store_is_upgraded_on_open_and_its_values_filled(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    store = SQLiteStore(str(path))
    committed = _bank(store, values=False)
    store.close()
    _as_version_1(path)
    conn = sqlite3.connect(path)
    assert "value" not in [c[1] for c in conn.execute("PRAGMA table_info(pt_heads)")]
    conn.close()
    result = CliRunner().invoke(
        main, ["snapshot", f"sqlite:///{path}", "--every", "3", "--no-progress"]
    )
    assert result.exit_code == 0, result.output
    assert "at most" in result.output
    store = SQLiteStore(str(path))
    try:
        assert store._conn.execute(
            "SELECT value FROM pt_meta WHERE key = 'schema_version'"
        ).fetchone() == (str(SCHEMA_VERSION),)
        truth = reference_states(committed)
        heads = heads_of(store)
        assert set(heads) == set(truth)
        for k, (last, value, vp) in heads.items():
            assert vp == last and value == encode_state(truth[k])
        with _Count(store) as count:
            Engine(store).load_many(Node, [1, 2, 3, 4])
        assert count.n == 1
    finally:
        store.close()


def test_the_fill_pass_keeps_memory_bounded() -> None:
    store = SQLiteStore()
    writer = Engine(store, head_values=False)
    for n in range(300):
        writer.fire(Bump(node_id=n, amount=1))
        if n % 10 == 9:
            writer.commit()
    writer.commit()
    report = Engine(store).admin.fill_head_values(snapshot_every=20, chunk_size=5)
    assert report.played == 300 and report.peak_states <= 20
    assert all(vp == last for last, _, vp in heads_of(store).values())


def test_a_store_from_a_newer_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    SQLiteStore(str(path)).close()
    conn = sqlite3.connect(path)
    conn.execute("UPDATE pt_meta SET value = '99' WHERE key = 'schema_version'")
    conn.commit()
    conn.close()
    with pytest.raises(playthrough.errors.SchemaVersionError, match="99"):
        SQLiteStore(str(path))


def _blank_values(state: State, what: str = "") -> str:
    """Mutation 1: the commit stores a blank value instead of the state's."""
    return encode_state(type(state)())


def _stale_is_fresh(self: HeadRow) -> bool:
    """Mutation 2: a value is taken as current even after a commit without values."""
    return self.value is not None


@pytest.mark.parametrize("mutation", ["blank_values", "stale_is_fresh"])
def test_the_several_engines_property_catches_broken_values(
    mutation: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import playthrough._append as append_module

    if mutation == "blank_values":
        monkeypatch.setattr(append_module, "encode_state_checked", _blank_values)
    else:
        monkeypatch.setattr(HeadRow, "fresh", property(_stale_is_fresh))

    @settings(
        max_examples=300,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.generate],
        report_multiple_bugs=False,
    )
    @given(**SEVERAL_ENGINES)
    def several_engines(
        ops: list[Op], engines: list[bool], order: list[int], batch: list[Event]
    ) -> None:
        check_several_engines(ops, engines, order, batch)

    with pytest.raises(AssertionError):
        several_engines()


def test_a_rejected_fire_keeps_the_map_within_max_states() -> None:
    """Found by the eviction property: validation loaded states, then refused."""
    store = SQLiteStore()
    writer = Engine(store)
    writer.fire(Bump(node_id=1, amount=13))
    writer.commit()
    bounded = Engine(store, max_states=1)
    bounded.load(Node, 2)
    with pytest.raises(EventRejected):
        bounded.fire(Copy(src_id=1, dst_id=3))  # node 1 holds 13: refused after loading
    assert len(bounded.repository) <= 1
