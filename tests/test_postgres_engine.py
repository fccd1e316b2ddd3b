"""The engine on PostgreSQL: what users do through ``Engine.open("postgresql://...")``.

- two engines on one schema see each other's commits, and a stale one is refused
  with ConcurrencyError, writing nothing, then succeeds after a refresh;
- time travel, snapshots, the sync check and a full replay give the SQLite results;
- the reconstitution property tests of test_reconstitution_properties.py, and the
  schema-evolution property of test_schema_evolution_properties.py, run against
  PostgreSQL stores (a schema per Hypothesis example).
"""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings

from playthrough import Engine, Event
from playthrough._stores import Store
from playthrough._stores.postgres import PostgresStore
from playthrough.errors import ConcurrencyError

from . import test_reconstitution_properties as props
from . import test_schema_evolution_properties as evolution
from .evolution_domain import activate
from .pg_domain import Account, Audited, Auditor, Opened, Transfer
from .strategies import Op

pytestmark = pytest.mark.postgres


def test_two_engines_share_a_schema(pg_url: str, pg_schema: str) -> None:
    with Engine.open(pg_url, schema=pg_schema) as a, Engine.open(pg_url, schema=pg_schema) as b:
        a.fire(Opened(account_id=1, amount=100))
        a.fire(Opened(account_id=2, amount=50))
        [first, _] = a.commit()
        assert b.load(Account, 1).balance == 100  # b sees a's commit
        a.fire(Transfer(source_id=1, target_id=2, amount=30))
        [moved] = a.commit()
        assert moved.id is not None and first.id is not None and moved.id > first.id
        # b still holds account 1 as of before the transfer: its commit is refused.
        b.fire(Transfer(source_id=1, target_id=2, amount=100))
        with pytest.raises(ConcurrencyError, match=r"pgstress\.Account\(1\)"):
            b.commit()
        assert b.pending == ()
        assert a.head() == b.head() == moved.id  # nothing of b's commit was written
        b.refresh()
        assert b.load(Account, 1).balance == 70
        b.fire(Transfer(source_id=1, target_id=2, amount=70))
        b.commit()
    with Engine.open(f"{pg_url}?schema={pg_schema}") as fresh:
        assert [s.balance for s in fresh.load_many(Account, [1, 2])] == [0, 150]
        assert fresh.load(Account, 2, at=moved.id).balance == 80


def test_snapshots_time_travel_and_replay(pg_url: str, pg_schema: str) -> None:
    with Engine.open(pg_url, schema=pg_schema, snapshot_history=2) as engine:
        for n in range(3):
            engine.fire(Opened(account_id=n, amount=10 * (n + 1)))
        engine.commit()
        positions = []
        for n in range(9):
            engine.fire(Transfer(source_id=n % 3, target_id=(n + 1) % 3, amount=1))
            engine.fire(Audited(account_id=n % 3))
            positions.append(engine.commit()[-1].id)
        middle = positions[4]
        assert middle is not None
        expected_now = [a.balance for a in engine.load_many(Account, range(3))]
        expected_then = [engine.load(Account, n, at=middle).balance for n in range(3)]
        hub_now = engine.load(Auditor).seen_total
        engine.admin.snapshot([(Account, 1)], at=middle)  # out of step with its partners
        engine.admin.snapshot()
        assert engine.admin.snapshot_sync().in_sync
    with Engine.open(pg_url, schema=pg_schema) as fresh:
        assert [a.balance for a in fresh.load_many(Account, range(3))] == expected_now
        assert [fresh.load(Account, n, at=middle).balance for n in range(3)] == expected_then
        assert fresh.load(Auditor).seen_total == hub_now
        assert fresh.admin.drop_snapshots([(Account, 0)]) >= 1
        report = fresh.admin.replay(chunk_size=5, snapshot_every=7)
        assert report.played == fresh.head()
    with Engine.open(pg_url, schema=pg_schema) as again:
        assert [a.balance for a in again.load_many(Account, range(3))] == expected_now
        assert again.load(Auditor).seen_total == hub_now


# ---------------------------------------------------------------------- properties


@pytest.fixture
def store_factory(pg_url: str, pg_schema: str) -> Iterator[props.StoreFactory]:
    """Each call: a store on a new schema (one per Hypothesis example), all dropped afterwards."""
    made: list[tuple[str, Store]] = []

    def make() -> Store:
        schema = f"{pg_schema}_{len(made)}"
        store = PostgresStore(pg_url, schema=schema)
        made.append((schema, store))
        return store

    yield make
    with psycopg.connect(pg_url, autocommit=True) as conn:
        for schema, store in made:
            store.close()
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


ON_POSTGRES = settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@ON_POSTGRES
@given(**props.PLACEMENTS)
def test_any_snapshot_placement_loads_like_a_full_replay(
    store_factory: props.StoreFactory,
    ops: list[Op],
    load_order: list[int | None],
    time_travel: list[tuple[int | None, float]],
) -> None:
    props.check_any_snapshot_placement_loads_like_a_full_replay(
        store_factory, ops, load_order, time_travel
    )


@ON_POSTGRES
@given(**props.FIRING)
def test_firing_after_a_load_from_snapshots_commits_correctly(
    store_factory: props.StoreFactory, ops: list[Op], more: list[Event], first: int | None
) -> None:
    props.check_firing_after_a_load_from_snapshots_commits_correctly(
        store_factory, ops, more, first
    )


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(**evolution.HISTORIES)
def test_old_histories_load_like_the_upcast_log_on_postgres(
    store_factory: props.StoreFactory,
    final: str,
    phase_ops: list[list[evolution.Op]],
    travel: list[float],
) -> None:
    try:
        evolution.check(store_factory(), final, phase_ops, travel)
    finally:
        activate("new")
