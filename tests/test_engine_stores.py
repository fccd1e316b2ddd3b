"""The engine on every store a URL opens (a SQLite file, a PostgreSQL schema): what users do
through ``Engine.open(url)``.

- two engines on one store see each other's commits, and a stale one is refused with
  ConcurrencyError, writing nothing, then succeeds after a refresh;
- time travel, snapshots, the sync check and a full replay agree across stores;
- an engine made over a closed store refuses with a StoreError naming the store.

The reconstitution and schema-evolution properties run on PostgreSQL beside SQLite in
their own modules (``*_on_postgres``).
"""

from __future__ import annotations

import pytest

from playthrough import Engine, connect
from playthrough.errors import ConcurrencyError, StoreError

from .pg_domain import Account, Audited, Auditor, Opened, Transfer


def test_an_engine_over_a_closed_store_refuses_naming_it(any_url: str) -> None:
    connection = connect(any_url)
    url = connection.store.url
    connection.close()
    with Engine(connection) as engine:
        with pytest.raises(StoreError, match="closed") as caught:
            engine.load(Account, 1)
        assert url in str(caught.value)
        with pytest.raises(StoreError, match="closed"):
            engine.fire(Opened(account_id=1, amount=100))  # it loads the account
        assert engine.pending == ()


def test_two_engines_share_a_store(any_url: str) -> None:
    with Engine.open(any_url) as a, Engine.open(any_url) as b:
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
    with Engine.open(any_url) as fresh:
        assert [s.balance for s in fresh.load_many(Account, [1, 2])] == [0, 150]
        assert fresh.load(Account, 2, at=moved.id).balance == 80


def test_snapshots_time_travel_and_replay(any_url: str) -> None:
    with Engine.open(any_url, snapshot_history=2) as engine:
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
    with Engine.open(any_url) as fresh:
        assert [a.balance for a in fresh.load_many(Account, range(3))] == expected_now
        assert [fresh.load(Account, n, at=middle).balance for n in range(3)] == expected_then
        assert fresh.load(Auditor).seen_total == hub_now
        assert fresh.admin.drop_snapshots([(Account, 0)]) >= 1
        report = fresh.admin.replay(chunk_size=5, snapshot_every=7)
        assert report.played == fresh.head()
    with Engine.open(any_url) as again:
        assert [a.balance for a in again.load_many(Account, range(3))] == expected_now
        assert again.load(Auditor).seen_total == hub_now
