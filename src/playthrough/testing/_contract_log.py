"""The store contract's cases for the log, in order.

LogContract: the append and its checks, events, links, heads values, snapshots, read transactions.
"""

from __future__ import annotations

import threading

from .._errors import (
    ConcurrencyError,
    DuplicateEvent,
    SchemaVersionError,
    StoreError,
)
from .._model import StateKey
from .._stores import (
    Link,
    NewEvent,
    SnapshotRecord,
    Store,
    StoredEvent,
)
from .._stores._base import (
    HeadRow,
)
from ._contract_base import A1, A2, HUB, ContractBase, ev, raises_exactly, skip


class LogContract(ContractBase):
    """The cases of the log; a store with the log passes them."""

    def test_empty_store(self) -> None:
        store = self.store
        with store.reader() as r:
            assert r.head() == 0
            assert r.events_after(0, 10) == []
            assert r.state_heads([A1]) == {}
            assert r.snapshots([A1], 100) == {}
            assert r.links({A1: (0, 100)}) == []
            assert r.meta("anything") is None

    def test_append_assigns_increasing_positions(self) -> None:
        store = self.store
        first = store.append([ev((A1, 0)), ev((A2, 0))], {A1: None, A2: None})
        second = store.append([ev((A1, 0))], {A1: first[0]})
        assert len(first) == 2 and len(second) == 1
        assert first[0] < first[1] < second[0]
        with store.reader() as r:
            assert r.head() == second[0]
            assert [e.position for e in r.events_after(0, 10)] == [*first, *second]
            assert r.state_heads([A1, A2]) == {A1: second[0], A2: first[1]}

    def test_events_round_trip(self) -> None:
        store = self.store
        data = '{"amount":5,"note":"é"}'
        (p,) = store.append([ev((A1, 0), data=data)], {A1: None})
        (q,) = store.append([ev((A2, 0), caused_by=p)], {A2: None})
        with store.reader() as r:
            [e1, e2] = list(r.events([p, q]))
        assert (e1.type, e1.data, e1.caused_by) == ("Thing", data, None)
        assert e2.caused_by == p
        assert e1.fired_at.startswith("2026-01-01T00:00:00")

    def test_events_after_pages_in_order(self) -> None:
        store = self.store
        positions = store.append([ev((A1, 0)) for _ in range(25)], {A1: None})
        with store.reader() as r:
            page1 = r.events_after(0, 10)
            page2 = r.events_after(page1[-1].position, 10)
            page3 = r.events_after(page2[-1].position, 10)
        assert [e.position for e in page1 + page2 + page3] == positions

    def test_events_by_position_many_chunks(self) -> None:
        store = self.store
        positions = store.append([ev((A1, 0)) for _ in range(1200)], {A1: None})
        wanted = positions[::2]
        with store.reader() as r:
            assert [e.position for e in r.events(wanted)] == wanted

    def test_links_return_whole_events(self) -> None:
        store = self.store
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
            keys = r.linked_keys_between(0, p3)
            coupled = r.coupled_links_between(0, p3)
        assert {(link.position, link.key, link.group) for link in between} == {
            (p2, A2, 0),
            (p2, HUB, 1),
        }
        # The same links without their groups, each event's keys under its position.
        assert {p: sorted(k) for p, k in keys.items()} == {
            p1: sorted([A1, HUB]),
            p2: sorted([A2, HUB]),
            p3: [A1],
        }
        # Only p1's group holds two states: p2 links A2 and the hub in two groups.
        assert sorted(coupled) == sorted([Link(p1, A1, 0), Link(p1, HUB, 0)])

    def test_links_for_many_keys_at_once(self) -> None:
        store = self.store
        keys = [StateKey("Acct", str(i)) for i in range(700)]
        positions = store.append([ev((k, 0)) for k in keys], dict.fromkeys(keys))
        with store.reader() as r:
            got = r.links({k: (0, positions[-1]) for k in keys})
        assert sorted(link.position for link in got) == positions

    def test_iter_events_pages_the_log(self) -> None:
        store = self.store
        positions = store.append([ev((A1, 0), data=f'{{"n":{n}}}') for n in range(25)], {A1: None})
        with store.reader() as r:
            assert [e.position for e in r.iter_events()] == positions
            assert [e.position for e in r.iter_events(chunk=7)] == positions
            assert [e.position for e in r.iter_events(chunk=25)] == positions
            some = list(r.iter_events(after=positions[4], until=positions[11], chunk=3))
            assert [e.position for e in some] == positions[5:12]
            assert [e.data for e in some] == [f'{{"n":{n}}}' for n in range(5, 12)]
            assert list(r.iter_events(after=positions[-1])) == []
            assert list(r.iter_events(until=0)) == []
            assert list(r.iter_events(after=positions[3], until=positions[3])) == []
            assert [e.position for e in r.iter_events(until=positions[-1] + 100)] == positions
            assert all(isinstance(e, StoredEvent) for e in some)
            with raises_exactly(ValueError, match="chunk"):
                list(r.iter_events(chunk=0))

    def test_commit_ids_are_stored_with_their_positions(self) -> None:
        store = self.store
        assert store.append([ev((A1, 0)), ev((A2, 0))], {A1: None, A2: None}, commit_id="c-1") == [
            1,
            2,
        ]
        assert store.append([ev((A1, 0))], {A1: 1}) == [3]  # a fresh id when none is given
        with store.reader() as r:
            assert r.commit_positions("c-1") == (1, 2)
            assert r.commit_positions("never") is None
        with raises_exactly(ConcurrencyError, match="known last event"):
            store.append([ev((A1, 0))], {A1: 1}, commit_id="c-refused")
        with store.reader() as r:
            assert r.commit_positions("c-refused") is None  # refused: no row either

    def test_an_event_key_is_unique_in_the_log(self) -> None:
        store = self.store
        keyed = ev((A1, 0))._replace(key="order-1")
        assert store.append([keyed], {A1: None}) == [1]
        with raises_exactly(DuplicateEvent, match=r"'order-1'.*position 1") as caught:
            store.append([ev((A2, 0)), ev((A1, 0))._replace(key="order-1")], {A2: None, A1: 1})
        [duplicate] = caught
        assert isinstance(duplicate, DuplicateEvent)
        assert (duplicate.key, duplicate.position) == ("order-1", 1)
        with raises_exactly(DuplicateEvent, match="two events of one commit"):
            store.append([ev((A2, 0))._replace(key="k"), ev((A2, 0))._replace(key="k")], {})
        with store.reader() as r:
            assert r.head() == 1 and r.state_heads([A2]) == {}  # nothing of either was written
            assert r.event_keys(["order-1", "other"]) == {"order-1": 1}

    def test_stale_expectation_writes_nothing(self) -> None:
        store = self.store
        (p,) = store.append([ev((A1, 0))], {A1: None})
        with raises_exactly(ConcurrencyError, match="Acct"):
            store.append([ev((A1, 0)), ev((A2, 0))], {A1: None, A2: None})
        with raises_exactly(ConcurrencyError):
            store.append([ev((A1, 0))], {A1: p - 1 if p > 1 else 999})
        with store.reader() as r:
            assert r.head() == p
            assert r.state_heads([A1, A2]) == {A1: p}
            assert len(r.events_after(0, 10)) == 1
            assert [link.position for link in r.links({A2: (0, 100)})] == []

    def test_empty_append_writes_and_checks_nothing(self) -> None:
        store = self.store
        (p,) = store.append([ev((A1, 0))], {A1: None})
        assert store.append([], {}) == []
        assert store.append([], {A1: p}) == []
        assert store.append([], {A1: None, A2: 99}) == []  # nothing to commit: nothing checked
        with store.reader() as r:
            assert r.head() == p
            assert r.state_heads([A1, A2]) == {A1: p}
        store.write_snapshots([], keep=3)  # nothing to write
        with store.reader() as r:
            assert list(r.iter_snapshots()) == []

    def _assert_untouched(self, store: Store, p: int) -> None:
        """Only the event at ``p`` (touching A1) is stored, and the log continues at p + 1."""
        with store.reader() as r:
            assert r.head() == p
            assert [e.position for e in r.iter_events()] == [p]
            assert r.state_heads([A1, A2, HUB]) == {A1: p}
            assert r.links_between(0, p + 10) == [Link(p, A1, 0)]
        (q,) = store.append([ev((A2, 0))], {A2: None})
        assert q == p + 1

    def test_stale_state_at_the_check_writes_nothing(self) -> None:
        store = self.store
        (p,) = store.append([ev((A1, 0))], {A1: None})
        with raises_exactly(ConcurrencyError, match=r"Acct\(1\)"):
            store.append([ev((A2, 0)), ev((A1, 0), (HUB, 1))], {A2: None, A1: None, HUB: None})
        self._assert_untouched(store, p)

    def test_bad_first_event_writes_nothing(self) -> None:
        store = self.store
        (p,) = store.append([ev((A1, 0))], {A1: None})
        bad = NewEvent("Thing", "{}", ((A2, 0),), None, None)  # type: ignore[arg-type]
        with raises_exactly(StoreError, match="nothing was written"):
            store.append([bad, ev((HUB, 0))], {A2: None, HUB: None})
        self._assert_untouched(store, p)

    def test_bad_last_event_writes_nothing(self) -> None:
        store = self.store
        (p,) = store.append([ev((A1, 0))], {A1: None})
        bad = NewEvent("Thing", "{}", ((A1, 0),), None, None)  # type: ignore[arg-type]
        with raises_exactly(StoreError, match="nothing was written"):
            store.append([ev((A2, 0)), ev((A1, 0), (HUB, 1)), bad], {A1: p, A2: None, HUB: None})
        self._assert_untouched(store, p)

    def test_bad_link_after_good_events_writes_nothing(self) -> None:
        """The events are fine, a link is not: one state linked twice by one event."""
        store = self.store
        (p,) = store.append([ev((A1, 0))], {A1: None})
        with raises_exactly(StoreError, match="nothing was written"):
            store.append([ev((A2, 0)), ev((HUB, 0), (HUB, 1))], {A2: None, HUB: None})
        self._assert_untouched(store, p)

    def test_reader_is_a_consistent_view(self) -> None:
        store = self.store
        other = self._second_handle(store)
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

    def test_readers_do_not_nest(self) -> None:
        store = self.store
        with store.reader() as r:
            with raises_exactly(StoreError, match="do not nest"):
                with store.reader():
                    pass
            assert r.head() == 0
        with store.reader() as r:
            assert r.head() == 0

    def test_writes_inside_a_reader_are_refused_and_write_nothing(self) -> None:
        store = self.store
        (p,) = store.append([ev((A1, 0))], {A1: None})
        store.write_snapshots([SnapshotRecord(A1, p, p, "{}")], keep=3)
        with store.reader() as r:
            with raises_exactly(StoreError, match="inside a read transaction"):
                store.append([ev((A1, 0))], {A1: p})
            with raises_exactly(StoreError, match="inside a read transaction"):
                store.write_snapshots([SnapshotRecord(A2, p, p, "{}")], keep=3)
            with raises_exactly(StoreError, match="inside a read transaction"):
                store.drop_snapshots()
            assert r.head() == p  # the reader is still usable
        with store.reader() as r:
            assert r.head() == p
            assert r.state_heads([A1, A2]) == {A1: p}
            assert list(r.snapshots([A1, A2], p)) == [A1]
        (q,) = store.append([ev((A1, 0))], {A1: p})  # and so is the store
        assert q > p

    def test_a_closed_store_refuses_with_a_store_error_naming_it(self) -> None:
        store = self.store
        (p,) = store.append([ev((A1, 0))], {A1: None})
        store.close()
        store.close()  # closing again does nothing (and the case's teardown closes it once more)
        with raises_exactly(StoreError, match="closed") as caught:
            with store.reader() as r:
                r.head()
        assert store.url in str(caught[0])
        with raises_exactly(StoreError, match="closed"):
            store.heads([A1])
        with raises_exactly(StoreError, match="closed"):
            store.append([ev((A1, 0))], {A1: p})

    def test_append_writes_values_with_the_heads(self) -> None:
        store = self.store
        (p,) = store.append([ev((A1, 0), (HUB, 0))], {A1: None, HUB: None}, {A1: '{"a":1}'})
        q, r = store.append(
            [ev((A1, 0)), ev((A2, 0))], {A1: p, A2: None}, {A1: '{"a":2}', A2: '{"b":1}'}
        )
        assert store.heads([A1, A2, HUB, StateKey("Acct", "9")]) == {
            A1: HeadRow(q, '{"a":2}', q),  # exact at its last event of the batch
            A2: HeadRow(r, '{"b":1}', r),
            HUB: HeadRow(p, None, None),  # given no value
        }
        assert store.heads([A1])[A1].fresh and not store.heads([HUB])[HUB].fresh
        assert store.heads([]) == {}  # no keys: nothing to read (no malformed statement)
        with store.reader() as reader:
            assert reader.heads([]) == {}

    def test_a_commit_without_a_value_keeps_the_older_one_as_a_snapshot(self) -> None:
        store = self.store
        (p,) = store.append([ev((A1, 0))], {A1: None}, {A1: '{"a":1}'})
        (q,) = store.append([ev((A1, 0))], {A1: p})
        row = store.heads([A1])[A1]
        assert row == HeadRow(q, '{"a":1}', p) and not row.fresh
        with store.reader() as r:
            assert r.snapshots([A1], q) == {A1: [SnapshotRecord(A1, p, p, '{"a":1}')]}
            assert r.snapshots([A1], p - 1) == {}

    def test_a_large_snapshot_set_keeps_the_newest_of_each_state(self) -> None:
        """Hundreds of states in one set (a replay's page): each keeps its ``keep`` newest,
        and a state written twice at one position keeps the last record given."""
        store = self.store
        keys = [StateKey("Acct", str(n)) for n in range(300)]
        for p in (1, 2, 3, 4):
            records = [SnapshotRecord(k, p, p, f'{{"p":{p}}}') for k in keys]
            if p == 4:
                records.append(SnapshotRecord(keys[7], 4, 4, '{"p":"again"}'))
            store.write_snapshots(records, keep=2)
        with store.reader() as r:
            found = r.snapshots(keys, 10)
        assert set(found) == set(keys)
        assert {k: [s.position for s in found[k]] for k in keys} == {k: [4, 3] for k in keys}
        assert found[keys[7]][0].data == '{"p":"again"}'
        assert found[keys[8]][0].data == '{"p":4}'

    def test_a_value_and_a_snapshot_at_one_position_are_one_candidate(self) -> None:
        store = self.store
        store.append([ev((A1, 0))], {A1: None}, {A1: '{"a":1}'})
        store.write_snapshots([SnapshotRecord(A1, 1, 1, '{"a":1}')], keep=3)
        with store.reader() as r:
            assert [s.position for s in r.snapshots([A1], 5)[A1]] == [1]
            assert len(list(r.iter_snapshots())) == 2  # both are checked by verify

    def test_write_values_only_where_still_exact(self) -> None:
        store = self.store
        (p,) = store.append([ev((A1, 0)), ev((A2, 0))][:1], {A1: None})
        (q,) = store.append([ev((A2, 0))], {A2: None})
        assert store.write_values([SnapshotRecord(A1, q, q, '{"x":0}')]) == 0  # not A1's head
        assert store.write_values([SnapshotRecord(A1, p, p, '{"a":1}')]) == 1
        assert store.write_values([SnapshotRecord(A1, p, p, '{"a":1}')]) == 0  # already current
        assert store.heads([A1, A2]) == {A1: HeadRow(p, '{"a":1}', p), A2: HeadRow(q, None, None)}

    def test_write_values_of_many_states_counts_what_it_wrote(self) -> None:
        """Hundreds of values at once (a replay's snapshot set): written where exact,
        counted once each; a state given twice is written once."""
        store = self.store
        keys = [StateKey("Acct", str(n)) for n in range(300)]
        positions = store.append([ev((k, 0)) for k in keys], dict.fromkeys(keys))
        exact = [
            SnapshotRecord(k, p, p, f'{{"n":{p}}}') for k, p in zip(keys, positions, strict=True)
        ]
        stale = [r._replace(position=r.position - 1) for r in exact[1::2]]  # not their head
        assert store.write_values(exact[::2] + stale) == 150
        assert store.write_values(exact) == 150  # the other half: the first is current
        assert store.write_values(exact[:3] + exact[:1]) == 0
        heads = store.heads(keys)
        assert all(
            heads[k] == HeadRow(p, f'{{"n":{p}}}', p) for k, p in zip(keys, positions, strict=True)
        )

    def test_snapshots_history_newest_first_and_trimmed(self) -> None:
        store = self.store
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

    def test_snapshot_rewrite_same_position_replaces(self) -> None:
        store = self.store
        store.write_snapshots([SnapshotRecord(HUB, 5, None, '{"a":1}')], keep=3)
        store.write_snapshots([SnapshotRecord(HUB, 5, 4, '{"a":2}')], keep=3)
        with store.reader() as r:
            [snap] = r.snapshots([HUB], 5)[HUB]
        assert (snap.data, snap.last_event_id) == ('{"a":2}', 4)

    def test_drop_snapshots(self) -> None:
        store = self.store
        store.write_snapshots(
            [SnapshotRecord(A1, 1, 1, "{}"), SnapshotRecord(A2, 1, 1, "{}")], keep=3
        )
        assert store.drop_snapshots([A1]) == 1
        with store.reader() as r:
            assert list(r.snapshots([A1, A2], 10)) == [A2]
        assert store.drop_snapshots() == 1
        with store.reader() as r:
            assert r.snapshots([A1, A2], 10) == {}

    def test_drop_snapshots_forgets_values(self) -> None:
        store = self.store
        store.append([ev((A1, 0), (A2, 0))], {A1: None, A2: None}, {A1: "{}", A2: "{}"})
        store.drop_snapshots([A1])
        assert store.heads([A1, A2]) == {A1: HeadRow(1, None, None), A2: HeadRow(1, "{}", 1)}
        store.drop_snapshots()
        assert store.heads([A2]) == {A2: HeadRow(1, None, None)}

    def test_meta_written_with_snapshots(self) -> None:
        store = self.store
        store.write_snapshots([SnapshotRecord(A1, 1, 1, "{}")], keep=3, meta={"k": "v"})
        with store.reader() as r:
            assert r.meta("k") == "v"
        store.write_snapshots([], keep=3, meta={"k": None})
        with store.reader() as r:
            assert r.meta("k") is None

    def test_second_handle_sees_commits_and_conflicts(self) -> None:
        store = self.store
        other = self._second_handle(store)
        try:
            (p,) = store.append([ev((A1, 0))], {A1: None})
            with other.reader() as r:
                assert r.head() == p
            with raises_exactly(ConcurrencyError):
                other.append([ev((A1, 0))], {A1: None})
            (q,) = other.append([ev((A1, 0))], {A1: p})
            assert q > p
            with store.reader() as r:
                assert r.state_heads([A1]) == {A1: q}
        finally:
            other.close()

    def test_concurrent_appends_reach_a_follower_once_each_in_order(self) -> None:
        """Writers on their own handles append while a follower pages ``events_after``.

        The follower must see every event exactly once, in position order, and
        every position a writer was given: an event committing after a larger
        position was read would be skipped by the follower.
        """
        store = self.store
        writers, appends = 4, 25
        handles = [self._second_handle(store) for _ in range(writers + 1)]
        follower = handles.pop()
        given: list[list[int]] = [[] for _ in range(writers)]
        errors: list[BaseException] = []
        start = threading.Barrier(writers + 1)

        def write(n: int) -> None:
            key = StateKey("Writer", str(n))
            last: int | None = None
            try:
                start.wait(timeout=30)
                for i in range(appends):
                    batch = [ev((key, 0), (HUB, 1), data=f'{{"w":{n},"i":{i}}}')]
                    # HUB is shared and unchecked: every writer moves it.
                    (last,) = handles[n].append(batch, {key: last})
                    given[n].append(last)
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        threads = [threading.Thread(target=write, args=(n,)) for n in range(writers)]
        seen: list[int] = []
        try:
            for t in threads:
                t.start()
            start.wait(timeout=30)

            def all_done() -> bool:
                return not any(t.is_alive() for t in threads)

            while True:
                done = all_done()
                with follower.reader() as r:
                    page = r.events_after(seen[-1] if seen else 0, 10)
                for e in page:
                    assert not seen or e.position > seen[-1], (seen[-1], e.position)
                    seen.append(e.position)
                if done and not page:
                    break
            for t in threads:
                t.join(timeout=60)
        finally:
            for h in [*handles, follower]:
                h.close()
        assert errors == []
        told = sorted(p for ps in given for p in ps)
        assert len(told) == writers * appends
        assert seen == told
        with store.reader() as r:
            assert r.state_heads([HUB]) == {HUB: told[-1]}
            for n in range(writers):
                assert r.state_heads([StateKey("Writer", str(n))]) == {
                    StateKey("Writer", str(n)): given[n][-1]
                }

    def test_schema_version_from_the_future_is_refused(self) -> None:
        store = self.store
        other = self.bump_schema_version(store)
        if other is None:
            skip("this store cannot be reopened")
        with raises_exactly(SchemaVersionError, match="newer"):
            other()
