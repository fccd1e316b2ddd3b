"""The store contract: one abstract test case every store must pass.

A store proves itself by subclassing :class:`StoreContract` and providing
``make_store`` (a fresh, empty, isolated store) and, where it can,
``reopen_store`` (a second handle on the same data). See test_store_sqlite.py.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Iterator

import pytest

from playthrough import ConcurrencyError, SchemaVersionError, Store, StoreError
from playthrough._model import StateKey
from playthrough._stores import NewEvent, SnapshotRecord

A1 = StateKey("Acct", "1")
A2 = StateKey("Acct", "2")
HUB = StateKey("Hub", "")


def ev(*links: tuple[StateKey, int], data: str = "{}", caused_by: int | None = None) -> NewEvent:
    return NewEvent(
        type="Thing",
        data=data,
        links=tuple(links),
        caused_by=caused_by,
        fired_at="2026-01-01T00:00:00+00:00",
    )


class StoreContract(abc.ABC):
    @abc.abstractmethod
    def make_store(self) -> Store: ...

    def reopen_store(self, store: Store) -> Store | None:
        """A second, independent handle on the same data (None: not possible)."""
        return None

    @pytest.fixture
    def store(self) -> Iterator[Store]:
        s = self.make_store()
        try:
            yield s
        finally:
            s.close()

    # ------------------------------------------------------------------ log

    def test_empty_store(self, store: Store) -> None:
        with store.reader() as r:
            assert r.head() == 0
            assert r.events_after(0, 10) == []
            assert r.state_heads([A1]) == {}
            assert r.snapshots([A1], 100) == {}
            assert r.links({A1: (0, 100)}) == []
            assert r.meta("anything") is None

    def test_append_assigns_increasing_positions(self, store: Store) -> None:
        first = store.append([ev((A1, 0)), ev((A2, 0))], {A1: None, A2: None})
        second = store.append([ev((A1, 0))], {A1: first[0]})
        assert len(first) == 2 and len(second) == 1
        assert first[0] < first[1] < second[0]
        with store.reader() as r:
            assert r.head() == second[0]
            assert [e.position for e in r.events_after(0, 10)] == [*first, *second]
            assert r.state_heads([A1, A2]) == {A1: second[0], A2: first[1]}

    def test_events_round_trip(self, store: Store) -> None:
        data = '{"amount":5,"note":"é"}'
        (p,) = store.append([ev((A1, 0), data=data)], {A1: None})
        (q,) = store.append([ev((A2, 0), caused_by=p)], {A2: None})
        with store.reader() as r:
            [e1, e2] = list(r.events([p, q]))
        assert (e1.type, e1.data, e1.caused_by) == ("Thing", data, None)
        assert e2.caused_by == p
        assert e1.fired_at.startswith("2026-01-01T00:00:00")

    def test_events_after_pages_in_order(self, store: Store) -> None:
        positions = store.append([ev((A1, 0)) for _ in range(25)], {A1: None})
        with store.reader() as r:
            page1 = r.events_after(0, 10)
            page2 = r.events_after(page1[-1].position, 10)
            page3 = r.events_after(page2[-1].position, 10)
        assert [e.position for e in page1 + page2 + page3] == positions

    def test_events_by_position_many_chunks(self, store: Store) -> None:
        positions = store.append([ev((A1, 0)) for _ in range(1200)], {A1: None})
        wanted = positions[::2]
        with store.reader() as r:
            assert [e.position for e in r.events(wanted)] == wanted

    # ------------------------------------------------------------------ links

    def test_links_return_whole_events(self, store: Store) -> None:
        (p1,) = store.append([ev((A1, 0), (HUB, 0))], {A1: None, HUB: None})
        (p2,) = store.append([ev((A2, 0), (HUB, 1))], {A2: None, HUB: p1})
        (p3,) = store.append([ev((A1, 0))], {A1: p1})
        with store.reader() as r:
            got = {(link.position, link.key, link.group) for link in r.links({A1: (0, p3)})}
            assert got == {(p1, A1, 0), (p1, HUB, 0), (p3, A1, 0)}
            hub = {(link.position, link.key) for link in r.links({HUB: (p1, p2)})}
            assert hub == {(p2, A2), (p2, HUB)}
            assert r.links({A1: (p1, p1)}) == []
            between = r.links_between(p1, p2)
        assert {(link.position, link.key, link.group) for link in between} == {
            (p2, A2, 0),
            (p2, HUB, 1),
        }

    def test_links_for_many_keys_at_once(self, store: Store) -> None:
        keys = [StateKey("Acct", str(i)) for i in range(700)]
        positions = store.append([ev((k, 0)) for k in keys], dict.fromkeys(keys))
        with store.reader() as r:
            got = r.links({k: (0, positions[-1]) for k in keys})
        assert sorted(link.position for link in got) == positions

    # ------------------------------------------------------------------ concurrency

    def test_stale_expectation_writes_nothing(self, store: Store) -> None:
        (p,) = store.append([ev((A1, 0))], {A1: None})
        with pytest.raises(ConcurrencyError, match="Acct"):
            store.append([ev((A1, 0)), ev((A2, 0))], {A1: None, A2: None})
        with pytest.raises(ConcurrencyError):
            store.append([ev((A1, 0))], {A1: p - 1 if p > 1 else 999})
        with store.reader() as r:
            assert r.head() == p
            assert r.state_heads([A1, A2]) == {A1: p}
            assert len(r.events_after(0, 10)) == 1
            assert [link.position for link in r.links({A2: (0, 100)})] == []

    def test_second_handle_sees_commits_and_conflicts(self, store: Store) -> None:
        other = self.reopen_store(store)
        if other is None:
            pytest.skip("this store has no second handle on the same data (in-memory)")
        try:
            (p,) = store.append([ev((A1, 0))], {A1: None})
            with other.reader() as r:
                assert r.head() == p
            with pytest.raises(ConcurrencyError):
                other.append([ev((A1, 0))], {A1: None})
            (q,) = other.append([ev((A1, 0))], {A1: p})
            assert q > p
            with store.reader() as r:
                assert r.state_heads([A1]) == {A1: q}
        finally:
            other.close()

    def test_reader_is_a_consistent_view(self, store: Store) -> None:
        other = self.reopen_store(store)
        if other is None:
            pytest.skip("this store has no second handle on the same data (in-memory)")
        try:
            store.append([ev((A1, 0))], {A1: None})
            with store.reader() as r:
                before = r.head()
                other.append([ev((A2, 0))], {A2: None})
                assert r.head() == before
                assert r.state_heads([A2]) == {}
            with store.reader() as r:
                assert r.head() > before
        finally:
            other.close()

    # ------------------------------------------------------------------ snapshots

    def test_snapshots_history_newest_first_and_trimmed(self, store: Store) -> None:
        for pos in (3, 7, 9, 12):
            store.write_snapshots([SnapshotRecord(A1, pos, pos - 1, f'{{"v":{pos}}}')], keep=3)
        with store.reader() as r:
            got = r.snapshots([A1, A2], 100)
            assert list(got) == [A1]
            assert [s.position for s in got[A1]] == [12, 9, 7]
            assert got[A1][0].data == '{"v":12}' and got[A1][0].last_event_id == 11
            assert [s.position for s in r.snapshots([A1], 8)[A1]] == [7]
            assert sorted((s.key, s.position) for s in r.iter_snapshots()) == [
                (A1, 7),
                (A1, 9),
                (A1, 12),
            ]

    def test_snapshot_rewrite_same_position_replaces(self, store: Store) -> None:
        store.write_snapshots([SnapshotRecord(HUB, 5, None, '{"a":1}')], keep=3)
        store.write_snapshots([SnapshotRecord(HUB, 5, 4, '{"a":2}')], keep=3)
        with store.reader() as r:
            [snap] = r.snapshots([HUB], 5)[HUB]
        assert (snap.data, snap.last_event_id) == ('{"a":2}', 4)

    def test_drop_snapshots(self, store: Store) -> None:
        store.write_snapshots(
            [SnapshotRecord(A1, 1, 1, "{}"), SnapshotRecord(A2, 1, 1, "{}")], keep=3
        )
        assert store.drop_snapshots([A1]) == 1
        with store.reader() as r:
            assert list(r.snapshots([A1, A2], 10)) == [A2]
        assert store.drop_snapshots() == 1
        with store.reader() as r:
            assert r.snapshots([A1, A2], 10) == {}

    def test_meta_written_with_snapshots(self, store: Store) -> None:
        store.write_snapshots([SnapshotRecord(A1, 1, 1, "{}")], keep=3, meta={"k": "v"})
        with store.reader() as r:
            assert r.meta("k") == "v"
        store.write_snapshots([], keep=3, meta={"k": None})
        with store.reader() as r:
            assert r.meta("k") is None

    # ------------------------------------------------------------------ errors

    def test_bad_rows_roll_back_whole_batch(self, store: Store) -> None:
        bad = NewEvent(type="Thing", data="{}", links=((A1, 0),), caused_by=None, fired_at=None)  # type: ignore[arg-type]
        with pytest.raises((StoreError, ConcurrencyError, TypeError, ValueError)):
            store.append([ev((A2, 0)), bad], {A1: None, A2: None})
        with store.reader() as r:
            assert r.head() == 0
            assert r.state_heads([A1, A2]) == {}

    def test_schema_version_from_the_future_is_refused(self, store: Store) -> None:
        other = self.bump_schema_version(store)
        if other is None:
            pytest.skip("this store cannot be reopened")
        with pytest.raises(SchemaVersionError, match="newer"):
            other()

    def bump_schema_version(self, store: Store) -> Callable[[], Store] | None:
        """Write a future schema version and return a callable that reopens the store."""
        return None
