"""The store contract: the test cases every store must pass, for pytest.

A store proves itself by subclassing :class:`StoreContract` in a ``Test*``
class and providing ``make_store`` (a fresh, empty, isolated store) and, where
it can, ``reopen_store`` (a second, independent handle on the same data) and
``bump_schema_version``::

    class TestMyStore(StoreContract):
        def make_store(self) -> Store:
            return MyStore(...)

Pytest fixtures of the subclass (autouse ones, say a temporary directory) have
run by the time a case first asks for ``self.store``. The module imports
nothing from pytest at import, so ``playthrough.testing`` works without it.
"""

from __future__ import annotations

import abc
import re
import threading
import unittest
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import NoReturn

from .._errors import (
    ArchivedRangeError,
    CancelRefused,
    ConcurrencyError,
    DuplicateEvent,
    HandledElsewhere,
    SchemaVersionError,
    StoreError,
)
from .._model import StateKey
from .._stores import (
    Condition,
    EventQuery,
    FollowerRow,
    ImportedEvent,
    Link,
    LinkedEntry,
    NewEvent,
    Order,
    SealedEvent,
    SnapshotRecord,
    Store,
    StoredEvent,
    StoreReader,
    TransferTables,
)
from .._stores._base import (
    SCHEMA_VERSION,
    CommitExtras,
    Completion,
    HeadRow,
    HeadValue,
    ScheduleRecord,
    ScheduleRow,
)

__all__ = ["A1", "A2", "HUB", "StoreContract", "ev", "raises_exactly"]

A1 = StateKey("Acct", "1")
A2 = StateKey("Acct", "2")
HUB = StateKey("Hub", "")
FIRED_AT = "2026-01-01T00:00:00+00:00"


def ev(
    *links: tuple[StateKey, int],
    data: str = "{}",
    caused_by: int | None = None,
    version: int = 1,
) -> NewEvent:
    """A ``Thing`` event touching ``links`` (state key, coupling group)."""
    return NewEvent(
        type="Thing",
        data=data,
        links=tuple(links),
        caused_by=caused_by,
        fired_at=FIRED_AT,
        version=version,
    )


def _skip(reason: str) -> NoReturn:
    try:
        import pytest
    except ImportError:  # unittest.SkipTest: pytest reports it as a skip too
        raise unittest.SkipTest(reason) from None
    pytest.skip(reason)


@contextmanager
def raises_exactly(kind: type[Exception], match: str | None = None) -> Iterator[list[Exception]]:
    """Expect the block to raise ``kind`` itself (not a subclass), its text matching ``match``."""
    caught: list[Exception] = []
    try:
        yield caught
    except Exception as exc:
        if type(exc) is not kind:
            raise AssertionError(
                f"expected {kind.__name__}, got {type(exc).__name__}: {exc}"
            ) from exc
        if match is not None and not re.search(match, str(exc)):
            raise AssertionError(f"{kind.__name__} {str(exc)!r} does not match {match!r}") from exc
        caught.append(exc)
        return
    raise AssertionError(f"expected {kind.__name__}, nothing was raised")


class StoreContract(abc.ABC):
    """The cases every :class:`~playthrough._stores.Store` must pass (subclass it in tests)."""

    _store: Store | None = None

    @abc.abstractmethod
    def make_store(self) -> Store:
        """A fresh, empty store that no other test sees."""

    def reopen_store(self, store: Store) -> Store | None:
        """A second, independent handle on the same data (None: not possible)."""
        return None

    def bump_schema_version(self, store: Store) -> Callable[[], Store] | None:
        """Write a future schema version and return a callable that reopens the store."""
        return None

    @property
    def store(self) -> Store:
        """This case's store, made on first use and closed after the case."""
        if self._store is None:
            self._store = self.make_store()
        return self._store

    def teardown_method(self) -> None:
        store, self._store = self._store, None
        if store is not None:
            store.close()

    def _second_handle(self, store: Store) -> Store:
        other = self.reopen_store(store)
        if other is None:
            _skip("this store has no second handle on the same data")
        return other

    # ------------------------------------------------------------------ lifecycle (schema 2, 3)

    def test_completions_and_reopenings_are_written_with_the_append(self) -> None:
        store = self.store
        store.append([ev((A1, 0)), ev((A2, 0))], {}, extras=CommitExtras(completed=((A2, 1),)))
        with store.reader() as r:
            assert r.completions([A1, A2]) == {A2: Completion(A2, 2, "Thing")}
        store.append([ev((A2, 0))], {A2: 2}, extras=CommitExtras(reopened=(A2,)))
        with store.reader() as r:
            assert r.completions([A2]) == {}

    def test_schedule_rows_are_claimed_once_and_fired_by_one_append(self) -> None:
        store = self.store
        row = ScheduleRow("s1", "2030-01-01T00:00:00.000000+00:00", "Thing", "{}", FIRED_AT)
        later = ScheduleRow("s2", "2031-01-01T00:00:00.000000+00:00", "Thing", "{}", FIRED_AT)
        assert store.append([], {}, extras=CommitExtras(schedule=(row, later))) == []
        now, lease = "2030-06-01T00:00:00.000000+00:00", "2030-06-01T00:05:00.000000+00:00"
        [claimed] = store.claim_due(now, lease, "w1", 10)
        assert (claimed.id, claimed.status, claimed.lease_owner) == ("s1", "pending", "w1")
        assert store.claim_due(now, lease, "w2", 10) == []  # leased by w1
        assert store.append([ev((A1, 0))], {}, extras=CommitExtras(fired=(("s1", 0),))) == [1]
        with raises_exactly(ConcurrencyError, "s1"):  # no longer pending: nothing written
            store.append([ev((A2, 0))], {}, extras=CommitExtras(fired=(("s1", 0),)))
        with store.reader() as r:
            assert r.head() == 1
            fired = r.schedule("s1")
            assert fired is not None and (fired.status, fired.position) == ("fired", 1)
        # A cancel is checked: s1 fired, so the commit cancelling it (and s2) is refused.
        with raises_exactly(CancelRefused, r"s1 \(now fired\)"):
            store.append([ev((A2, 0))], {}, extras=CommitExtras(cancel=("s2", "s1")))
        with store.reader() as r:
            assert r.head() == 1
            assert [(x.id, x.status) for x in r.schedules()] == [
                ("s1", "fired"),
                ("s2", "pending"),
            ]
        store.append([], {}, extras=CommitExtras(cancel=("s2",)))
        store.append([], {}, extras=CommitExtras(cancel=("s2",)))  # already cancelled: fine
        with store.reader() as r:
            assert [(x.id, x.status) for x in r.schedules()] == [
                ("s1", "fired"),
                ("s2", "cancelled"),
            ]
        assert store.finish_schedule("s2", "w1", "failed", "x") is False  # not pending

    def test_a_failed_schedule_row_is_rearmed_and_others_are_not(self) -> None:
        store = self.store
        rows = tuple(
            ScheduleRow(i, "2030-01-01T00:00:00.000000+00:00", "Thing", "{}", FIRED_AT)
            for i in ("s1", "s2", "s3")
        )
        store.append([], {}, extras=CommitExtras(schedule=rows))
        now, lease = "2030-06-01T00:00:00.000000+00:00", "2030-06-01T00:05:00.000000+00:00"
        assert len(store.claim_due(now, lease, "w1", 10)) == 3
        assert store.finish_schedule("s1", "w1", "failed", "boom") is True
        assert store.finish_schedule("s2", "w1", "rejected", "no") is True
        later = "2030-07-01T00:00:00.000000+00:00"
        assert store.rearm_schedule("s1", later) is True
        assert store.rearm_schedule("s3", later) is True  # pending (leased): re-armed too
        assert store.rearm_schedule("s2", later) is False  # rejected: left alone
        assert store.rearm_schedule("nope", later) is False
        with store.reader() as r:
            again = r.schedule("s1")
            assert again is not None
            assert (again.status, again.due_at, again.error, again.lease_owner) == (
                "pending",
                later,
                None,
                None,
            )
            rejected = r.schedule("s2")
            assert rejected is not None and rejected.status == "rejected"
        assert [r.id for r in store.claim_due(now, lease, "w2", 10)] == []  # not due yet
        assert [r.id for r in store.claim_due(later, lease, "w2", 10)] == ["s1", "s3"]

    def test_subject_keys_are_kept_once_and_forgotten(self) -> None:
        store = self.store
        first = store.ensure_subject_keys({"s:ada": b"k" * 32})
        assert first == {"s:ada": b"k" * 32}
        assert store.ensure_subject_keys({"s:ada": b"z" * 32}) == first  # the first one stays
        from .._personal import PersonalSpec, seal

        spec = PersonalSpec(("name",), "who")
        sealed = seal('{"name":"Ada","who":"s:ada"}', "Thing", spec, "s:ada", first["s:ada"])
        store.append([ev((A1, 0), data=sealed), ev((A2, 0))], {})
        store.write_snapshots(
            [SnapshotRecord(A1, 2, 1, "{}"), SnapshotRecord(A2, 2, 2, "{}")], keep=3
        )
        assert store.forget_subject("s:ada") is True
        assert store.forget_subject("s:ada") is False
        with store.reader() as r:
            assert r.subject_keys(["s:ada"]) == {}
            assert r.snapshots([A1], 10) == {}  # the snapshots of the subject's states go
            assert [s.position for s in r.snapshots([A2], 10)[A2]] == [2]  # no other state's

    def test_event_reads_decrypt_personal_values_until_the_key_is_forgotten(self) -> None:
        from .._personal import FORGOTTEN, PersonalSpec, seal

        store = self.store
        key = store.ensure_subject_keys({"1": b"\x01" * 32})["1"]
        spec = PersonalSpec(("name",), "who")
        sealed = seal('{"name":"Ada","who":1}', "Thing", spec, "1", key)
        assert "Ada" not in sealed
        store.append([ev((A1, 0), data=sealed), ev((A2, 0), data='{"name":"Bob"}')], {})
        with store.reader() as r:
            assert [e.data for e in r.events_after(0, 10)] == [
                '{"name":"Ada","who":1}',
                '{"name":"Bob"}',
            ]
        store.forget_subject("1")
        with store.reader() as r:
            assert [e.data for e in r.events([1, 2])] == [
                f'{{"name":"{FORGOTTEN}","who":1}}',
                '{"name":"Bob"}',
            ]

    # ------------------------------------------------------------------ import

    def _imported(self, position: int, *links: tuple[StateKey, int]) -> ImportedEvent:
        return ImportedEvent(position, "Thing", f'{{"n":{position}}}', None, FIRED_AT, links)

    def test_import_keeps_positions_links_and_moves_heads(self) -> None:
        store = self.store
        rows = [
            self._imported(1, (A1, 0)),
            self._imported(2, (A1, 0), (A2, 0), (HUB, 1)),
            self._imported(3, (A2, 0)),
        ]
        assert store.import_events(iter(rows), after=0) == 3
        with store.reader() as r:
            assert r.head() == 3
            assert r.state_heads([A1, A2, HUB]) == {A1: 2, A2: 3, HUB: 2}
            assert [e.data for e in r.events_after(0, 10)] == ['{"n":1}', '{"n":2}', '{"n":3}']
        log = [e for page in store.read_linked_log() for e in page]
        assert [(e.event.position, sorted(e.links)) for e in log] == [
            (1, [Link(1, A1, 0)]),
            (2, sorted([Link(2, A1, 0), Link(2, A2, 0), Link(2, HUB, 1)])),
            (3, [Link(3, A2, 0)]),
        ]
        assert all(isinstance(e, LinkedEntry) for e in log)
        # appends continue after the import and are checked against the moved heads
        with raises_exactly(ConcurrencyError):
            store.append([ev((A1, 0))], {A1: 1})
        assert store.append([ev((A1, 0))], {A1: 2}) == [4]
        assert store.import_events([self._imported(5, (A2, 0))], after=4) == 1
        with store.reader() as r:
            assert r.state_heads([A2]) == {A2: 5}

    def test_import_refuses_a_gap_or_a_wrong_head_and_writes_nothing(self) -> None:
        store = self.store
        store.append([ev((A1, 0))], {A1: None})
        with raises_exactly(StoreError, "head is 1"):
            store.import_events([self._imported(1, (A2, 0))], after=0)
        with raises_exactly(StoreError, "position 4 where 3 was expected"):
            store.import_events([self._imported(2, (A2, 0)), self._imported(4, (A2, 0))], after=1)
        with store.reader() as r:
            assert r.head() == 1
            assert r.state_heads([A2]) == {}

    def test_an_import_whose_source_fails_writes_nothing(self) -> None:
        store = self.store

        def failing() -> Iterator[ImportedEvent]:
            yield self._imported(1, (A1, 0))
            raise ValueError("checksum mismatch")

        try:
            store.import_events(failing(), after=0)
        except ValueError as exc:
            assert "checksum" in str(exc)
        else:
            raise AssertionError("the source's error was swallowed")
        with store.reader() as r:
            assert r.head() == 0
            assert r.events_after(0, 10) == []
            assert r.state_heads([A1]) == {}

    # ------------------------------------------------------------------ transfer

    def test_sealed_reads_return_the_stored_text_and_never_decode(self) -> None:
        from .._personal import PersonalSpec, seal

        store = self.store
        key = store.ensure_subject_keys({"1": b"\x02" * 32})["1"]
        sealed = seal('{"name":"Ada","who":1}', "Thing", PersonalSpec(("name",), "who"), "1", key)
        store.append([ev((A1, 0), data=sealed), ev((A2, 0), data="{}")], {})
        for _ in range(2):  # before and after the key is gone: the stored text
            with store.reader() as r:
                rows = r.events_after_sealed(0, 10)
            assert [(e.position, e.data) for e in rows] == [(1, sealed), (2, "{}")]
            assert all(isinstance(e, SealedEvent) for e in rows)
            store.forget_subject("1")

    def _tables(self) -> TransferTables:
        due = "2030-01-01T00:00:00.000000+00:00"
        return TransferTables(
            schedule=(
                ScheduleRecord(
                    "s1", due, "Thing", "{}", "pending", None, None, FIRED_AT, None, None
                ),
                ScheduleRecord("s2", due, "Thing", "{}", "fired", 1, None, FIRED_AT, None, None, 2),
            ),
            pending_handlers=(2,),
            completed=(Completion(A1, 1, "Thing"),),
            followers=(FollowerRow("f", 1, FIRED_AT),),
            subject_keys=(("s:ada", "a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2U="),),
        )

    def test_transfer_rows_read_every_carried_table(self) -> None:
        store = self.store
        store.ensure_subject_keys({"s:ada": b"keykeykeykeykeykeykeykeykeykeyke"})
        store.append(
            [ev((A1, 0)), NewEvent("Thing", "{}", ((A2, 0),), None, FIRED_AT, needs_handling=True)],
            {},
            extras=CommitExtras(
                completed=((A1, 0),),
                schedule=(
                    ScheduleRow("s1", "2030-01-01T00:00:00.000000+00:00", "Thing", "{}", FIRED_AT),
                    ScheduleRow(
                        "s2", "2030-01-01T00:00:00.000000+00:00", "Thing", "{}", FIRED_AT, 2
                    ),
                ),
            ),
        )
        with store.follow("f", 1) as batch:
            assert batch is not None
            batch.advance(1)
        with store.reader() as r:
            got = r.transfer_tables()
            assert r.transfer_tables(["completed"]) == TransferTables(completed=got.completed)
        want = self._tables()
        assert got._replace(schedule=None, followers=None) == want._replace(
            schedule=None, followers=None
        )
        assert [(x.id, x.status, x.version) for x in got.schedule or ()] == [
            ("s1", "pending", 1),
            ("s2", "pending", 2),
        ]
        assert [(f.name, f.position) for f in got.followers or ()] == [("f", 1)]

    def test_import_writes_the_carried_tables_in_its_transaction(self) -> None:
        store = self.store
        store.append(
            [],
            {},
            extras=CommitExtras(schedule=(ScheduleRow("old", FIRED_AT, "T", "{}", FIRED_AT),)),
        )
        seen: list[int] = []

        def tables(reader: StoreReader) -> TransferTables:
            seen.append(reader.head())  # the imported events are visible
            return self._tables()

        rows = [self._imported(1, (A1, 0)), self._imported(2, (A2, 0))]
        assert store.import_events(iter(rows), 0, tables) == 2
        assert seen == [2]
        with store.reader() as r:
            assert r.transfer_tables() == self._tables()  # the carried tables replace
            assert r.subject_keys(["s:ada"]) == {"s:ada": b"keykeykeykeykeykeykeykeykeykeyke"}
        # A table left out (None) stays as it is; a refusal writes nothing at all.
        kept = store.import_events([self._imported(3, (A1, 0))], 2, lambda r: TransferTables())
        assert kept == 1

        def refusing(reader: StoreReader) -> TransferTables:
            raise StoreError("keys missing")

        with raises_exactly(StoreError, "keys missing"):
            store.import_events([self._imported(4, (A1, 0))], 3, refusing)
        other_key = TransferTables(subject_keys=(("s:ada", "b3RoZXI="),))
        with raises_exactly(StoreError, "another key"):
            store.import_events([self._imported(4, (A1, 0))], 3, lambda r: other_key)
        with store.reader() as r:
            assert r.head() == 3
            assert r.transfer_tables() == self._tables()
            assert r.state_heads([A1]) == {A1: 3}

    # ------------------------------------------------------------------ archive

    def test_archive_deletes_the_range_and_keeps_its_base_snapshots(self) -> None:
        store = self.store
        for _ in range(4):
            store.append([ev((A1, 0), (A2, 0))], {})
        store.write_snapshots([SnapshotRecord(A1, 1, 1, "old")], keep=3)
        base = [SnapshotRecord(A1, 2, 2, "a1@2"), SnapshotRecord(A2, 2, 2, "a2@2")]
        with raises_exactly(StoreError, "before the head"):
            store.archive(4, base)
        with raises_exactly(StoreError, "not 3"):
            store.archive(3, base)
        assert store.archive(2, base, {"archived_chain": "c" * 64}) == 2
        with store.reader() as r:
            assert r.head() == 4
            assert r.meta("archived_chain") == "c" * 64
            assert [e.position for e in r.events_after(0, 10)] == [3, 4]
            assert sorted(r.links({A1: (0, 4)})) == sorted(
                [Link(3, A1, 0), Link(3, A2, 0), Link(4, A1, 0), Link(4, A2, 0)]
            )
            assert [s.position for s in r.snapshots([A1], 10)[A1]] == [2]
            assert r.meta("archived_until") == "2"
        with raises_exactly(ArchivedRangeError, r"positions 1\.\.2 were archived"):
            next(store.read_log())
        assert [e.event.position for page in store.read_log(after=2) for e in page] == [3, 4]
        # newer snapshots never trim the base away, and dropping snapshots keeps it
        store.write_snapshots([SnapshotRecord(A1, 3, 3, "x"), SnapshotRecord(A1, 4, 4, "y")], 1)
        with store.reader() as r:
            assert [s.position for s in r.snapshots([A1], 10)[A1]] == [4, 2]
        assert store.drop_snapshots() == 1
        assert store.drop_snapshots([A2]) == 0
        with store.reader() as r:
            assert {k: [s.data for s in v] for k, v in r.snapshots([A1, A2], 10).items()} == {
                A1: ["a1@2"],
                A2: ["a2@2"],
            }
        assert store.append([ev((A1, 0))], {A1: 4}) == [5]
        with raises_exactly(StoreError, "must be after the archived"):
            store.archive(2, [])

    # ------------------------------------------------------------------ log

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

    # ------------------------------------------------------------------ links

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
        assert {(link.position, link.key, link.group) for link in between} == {
            (p2, A2, 0),
            (p2, HUB, 1),
        }

    def test_links_for_many_keys_at_once(self) -> None:
        store = self.store
        keys = [StateKey("Acct", str(i)) for i in range(700)]
        positions = store.append([ev((k, 0)) for k in keys], dict.fromkeys(keys))
        with store.reader() as r:
            got = r.links({k: (0, positions[-1]) for k in keys})
        assert sorted(link.position for link in got) == positions

    # ------------------------------------------------------------------ concurrency

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

    # ------------------------------------------------------------------ snapshots

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

    # ------------------------------------------------------------------ heads values

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

    def test_a_commit_without_a_value_keeps_the_older_one_as_a_snapshot(self) -> None:
        store = self.store
        (p,) = store.append([ev((A1, 0))], {A1: None}, {A1: '{"a":1}'})
        (q,) = store.append([ev((A1, 0))], {A1: p})
        row = store.heads([A1])[A1]
        assert row == HeadRow(q, '{"a":1}', p) and not row.fresh
        with store.reader() as r:
            assert r.snapshots([A1], q) == {A1: [SnapshotRecord(A1, p, p, '{"a":1}')]}
            assert r.snapshots([A1], p - 1) == {}

    def test_a_value_and_a_snapshot_at_one_position_are_one_candidate(self) -> None:
        store = self.store
        store.append([ev((A1, 0))], {A1: None}, {A1: '{"a":1}'})
        store.write_snapshots([SnapshotRecord(A1, 1, 1, '{"a":1}')], keep=3)
        with store.reader() as r:
            assert [s.position for s in r.snapshots([A1], 5)[A1]] == [1]
            assert len(list(r.iter_snapshots())) == 2  # both are checked by verify

    def test_values_keep_their_class_version_and_fingerprint(self) -> None:
        store = self.store
        (p,) = store.append([ev((A1, 0))], {A1: None}, {A1: HeadValue('{"a":1}', 2, "f2")})
        assert store.heads([A1]) == {A1: HeadRow(p, '{"a":1}', p, 2, "f2")}
        with store.reader() as r:
            assert r.snapshots([A1], p) == {A1: [SnapshotRecord(A1, p, p, '{"a":1}', 2, "f2")]}
            assert [tuple(v) for v in r.snapshot_versions()] == [("Acct", 2, "f2", 1)]
        # The same position written by another class shape replaces the value.
        assert store.write_values([SnapshotRecord(A1, p, p, '{"b":1}', 3, "f3")]) == 1
        assert store.heads([A1]) == {A1: HeadRow(p, '{"b":1}', p, 3, "f3")}
        (q,) = store.append([ev((A1, 0))], {A1: p})  # no value: the old one keeps its marks
        assert store.heads([A1]) == {A1: HeadRow(q, '{"b":1}', p, 3, "f3")}

    def test_write_values_only_where_still_exact(self) -> None:
        store = self.store
        (p,) = store.append([ev((A1, 0)), ev((A2, 0))][:1], {A1: None})
        (q,) = store.append([ev((A2, 0))], {A2: None})
        assert store.write_values([SnapshotRecord(A1, q, q, '{"x":0}')]) == 0  # not A1's head
        assert store.write_values([SnapshotRecord(A1, p, p, '{"a":1}')]) == 1
        assert store.write_values([SnapshotRecord(A1, p, p, '{"a":1}')]) == 0  # already current
        assert store.heads([A1, A2]) == {A1: HeadRow(p, '{"a":1}', p), A2: HeadRow(q, None, None)}

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

    # ------------------------------------------------------------------ errors

    def test_schema_version_from_the_future_is_refused(self) -> None:
        store = self.store
        other = self.bump_schema_version(store)
        if other is None:
            _skip("this store cannot be reopened")
        with raises_exactly(SchemaVersionError, match="newer"):
            other()

    # ------------------------------------------------------------------ paging

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

    # ------------------------------------------------------------------ misuse

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

    def test_readers_do_not_nest(self) -> None:
        store = self.store
        with store.reader() as r:
            with raises_exactly(StoreError, match="do not nest"):
                with store.reader():
                    pass
            assert r.head() == 0
        with store.reader() as r:
            assert r.head() == 0

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

    # ------------------------------------------------------------------ rollback

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

    # ------------------------------------------------------------------ commit order

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

    # ------------------------------------------------------------------ same rows everywhere

    def test_a_fixed_script_gives_these_exact_rows(self) -> None:
        """Every store, given the same operations, holds the same rows: these."""
        store = self.store
        assert store.append([ev((A1, 0), (HUB, 0), data='{"a":1}')], {A1: None, HUB: None}) == [1]
        assert store.append(
            [ev((A2, 0), (HUB, 1), caused_by=1), ev((A2, 0), data='{"b":"é"}', version=3)],
            {A2: None, HUB: 1},
        ) == [2, 3]
        with raises_exactly(ConcurrencyError, match=r"Hub \(known last event 1, store has 2\)"):
            store.append([ev((HUB, 0))], {HUB: 1})
        assert store.append([ev((A1, 0), (HUB, 2))], {A1: 1}) == [4]  # HUB unchecked
        store.write_snapshots(
            [SnapshotRecord(A2, 3, 3, '{"s":3}'), SnapshotRecord(HUB, 2, 2, '{"h":2}')],
            keep=1,
            meta={"replay": "4"},
        )
        store.write_snapshots([SnapshotRecord(HUB, 4, 4, '{"h":4}', 2, "f1")], keep=1)
        with store.reader() as r:
            assert r.head() == 4
            assert [tuple(e) for e in r.iter_events()] == [
                (1, "Thing", '{"a":1}', None, FIRED_AT, 1, None, None),
                (2, "Thing", "{}", 1, FIRED_AT, 1, None, None),
                (3, "Thing", '{"b":"é"}', None, FIRED_AT, 3, None, None),
                (4, "Thing", "{}", None, FIRED_AT, 1, None, None),
            ]
            assert [tuple(v) for v in r.event_versions()] == [
                ("Thing", 1, None, 3),
                ("Thing", 3, None, 1),
            ]
            assert sorted(r.links_between(0, 4)) == [
                Link(1, A1, 0),
                Link(1, HUB, 0),
                Link(2, A2, 0),
                Link(2, HUB, 1),
                Link(3, A2, 0),
                Link(4, A1, 0),
                Link(4, HUB, 2),
            ]
            assert sorted(r.links({A2: (0, 4)})) == [
                Link(2, A2, 0),
                Link(2, HUB, 1),
                Link(3, A2, 0),
            ]
            assert r.state_heads([A1, A2, HUB, StateKey("Acct", "3")]) == {A1: 4, A2: 3, HUB: 4}
            assert list(r.iter_snapshots()) == [
                SnapshotRecord(A2, 3, 3, '{"s":3}', 1, None),
                SnapshotRecord(HUB, 4, 4, '{"h":4}', 2, "f1"),
            ]
            assert [tuple(v) for v in r.snapshot_versions()] == [
                ("Acct", 1, None, 1),
                ("Hub", 2, "f1", 1),
            ]
            assert r.meta("replay") == "4"
            assert r.meta("schema_version") == str(SCHEMA_VERSION)

    # ------------------------------------------------------------------ commit ids, keys, handlers

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

    def test_pending_handlers_are_recorded_and_cleared_with_the_append(self) -> None:
        store = self.store
        handled = ev((A1, 0))._replace(needs_handling=True)
        assert store.append([handled, ev((A2, 0)), handled], {A1: None, A2: None}) == [1, 2, 3]
        with store.reader() as r:
            assert r.pending_handlers(10) == [1, 3]
            assert r.pending_handlers(1) == [1]
        # The handler of 1 fired an event: stored together with "1 is handled".
        assert store.append([ev((A2, 0))], {A2: 2}, handled=[1]) == [4]
        # A second runner completing 1 again is refused (checked before its
        # events, even before its stale state): nothing of it is written.
        with raises_exactly(HandledElsewhere, r"position\(s\) 1 "):
            store.append([ev((A2, 0))], {A2: 2}, handled=[1])
        with raises_exactly(HandledElsewhere, r"position\(s\) 1 "):
            store.append([], {}, handled=[1, 3])  # 3 is still pending: stays so
        with store.reader() as r:
            assert r.head() == 4 and r.pending_handlers(10) == [3]
        assert store.append([], {}, handled=[3]) == []  # the handler of 3 fired nothing
        store.mark_handled([3])  # unchecked: already gone is fine
        with store.reader() as r:
            assert r.pending_handlers(10) == []

    # ------------------------------------------------------------------ the read side

    def test_find_events_filters_and_metadata(self) -> None:
        store = self.store
        store.append(
            [
                ev((A1, 0), data='{"n":1}')._replace(metadata='{"user":"ada"}', correlation="c1"),
                ev((A2, 0), caused_by=1)._replace(correlation="c1"),
                ev((A1, 0), (A2, 0))._replace(type="Other", correlation="c2"),
            ],
            {A1: None, A2: None},
        )
        with store.reader() as r:
            first = r.find_events(EventQuery(), 10)
            assert [tuple(e) for e in first] == [
                (1, "Thing", '{"n":1}', None, FIRED_AT, 1, '{"user":"ada"}', "c1"),
                (2, "Thing", "{}", 1, FIRED_AT, 1, None, "c1"),
                (3, "Other", "{}", None, FIRED_AT, 1, None, "c2"),
            ]

            def positions(query: EventQuery, limit: int = 10) -> list[int]:
                return [e.position for e in r.find_events(query, limit)]

            assert positions(EventQuery(after=1)) == [2, 3]
            assert positions(EventQuery(upto=2)) == [1, 2]
            assert positions(EventQuery(), limit=1) == [1]
            assert positions(EventQuery(types=("Other",))) == [3]
            assert positions(EventQuery(types=())) == []
            assert positions(EventQuery(key=A1)) == [1, 3]
            assert positions(EventQuery(key=A2, after=2)) == [3]
            assert positions(EventQuery(caused_by=1)) == [2]
            assert positions(EventQuery(correlation="c1")) == [1, 2]
            assert positions(EventQuery(key=A1, types=("Thing",), correlation="c1")) == [1]

    def test_state_info(self) -> None:
        store = self.store
        store.append([ev((A1, 0)), ev((A2, 0)), ev((A1, 0))], {A1: None, A2: None})
        store.write_snapshots([SnapshotRecord(A1, 1, 1, "{}")], keep=3)
        with store.reader() as r:
            info = r.state_info(A1)
            assert info is not None
            assert (info.created_position, info.last_position, info.events) == (1, 3, 2)
            assert (info.created_at, info.last_at) == (FIRED_AT, FIRED_AT)
            assert (info.snapshot_position, info.value_position) == (1, None)
            assert r.state_info(StateKey("Acct", "9")) is None

    def test_state_values_are_written_only_where_the_head_holds(self) -> None:
        store = self.store
        store.append([ev((A1, 0)), ev((A2, 0))], {A1: None, A2: None})
        with store.reader() as r:
            assert r.stale_states("Acct", 10) == [(A1, 1), (A2, 2)]
            assert r.stale_states("Acct", 1) == [(A1, 1)]
        # A2's value claims position 1, but its last event is 2: not written.
        assert (
            store.write_values(
                [SnapshotRecord(A1, 1, 1, '{"b":5}'), SnapshotRecord(A2, 1, 1, '{"b":7}')]
            )
            == 1
        )
        with store.reader() as r:
            assert r.stale_states("Acct", 10) == [(A2, 2)]
        assert store.write_values([SnapshotRecord(A2, 2, 2, '{"b":7}')]) == 1
        store.append([ev((A1, 0))], {A1: 1})  # A1's value is stale again
        with store.reader() as r:
            assert r.stale_states("Acct", 10) == [(A1, 3)]
            assert r.query_states("Acct", [], [], None) == [
                ("1", '{"b":5}', 1),
                ("2", '{"b":7}', 2),
            ]
            assert r.state_info(A1) is not None

    def test_json_filters(self) -> None:
        store = self.store
        keys = [StateKey("Acct", str(n)) for n in range(1, 6)]
        store.append([ev((k, 0)) for k in keys], dict.fromkeys(keys))
        values = [
            '{"b":150,"o":"ada","t":["vip","x"],"a":{"c":"Oslo"},"f":{"x":1},"n":null,"on":true}',
            '{"b":50,"o":"bob","t":[],"a":{"c":"Rome"},"f":{},"n":"z","on":false}',
            '{"b":101.5,"o":"ada","t":["x"],"a":{"c":""},"f":{"x":2},"n":null,"on":true}',
            '{"b":-5,"o":"Åsa","t":["vip"],"a":{},"f":{"x":1,"y":2},"n":null,"on":false}',
            '{"b":"150","o":"cy","t":"vip","a":null,"f":{},"n":null,"on":1}',
        ]
        store.write_values(
            [
                SnapshotRecord(k, n, n, v)
                for n, (k, v) in enumerate(zip(keys, values, strict=True), 1)
            ]
        )

        def ids(
            *conditions: Condition, order: tuple[Order, ...] = (), limit: int | None = None
        ) -> list[str]:
            with store.reader() as r:
                found = [i for i, _, _ in r.query_states("Acct", conditions, order, limit)]
                assert r.count_states("Acct", conditions) == len(
                    [i for i, _, _ in r.query_states("Acct", conditions, (), None)]
                )
            return found

        c = Condition
        assert ids() == ["1", "2", "3", "4", "5"]
        assert ids(c(("b",), "eq", 150)) == ["1"]  # not the string "150"
        assert ids(c(("b",), "eq", "150")) == ["5"]
        assert ids(c(("b",), "gt", 100)) == ["1", "3"]
        assert ids(c(("b",), "gte", 101.5), c(("b",), "lte", 101.5)) == ["3"]
        assert ids(c(("b",), "lt", 0)) == ["4"]
        assert ids(c(("b",), "ne", 150)) == ["2", "3", "4", "5"]
        assert ids(c(("o",), "in", ["bob", "cy"])) == ["2", "5"]
        assert ids(c(("o",), "in", [])) == []
        assert ids(c(("o",), "gt", "b")) == ["2", "4", "5"]  # by code point: "Å" > "c"
        assert ids(c(("t",), "contains", ["vip"])) == ["1", "4"]  # not the string "vip"
        assert ids(c(("t",), "contains", ["vip", "x"])) == ["1"]
        assert ids(c(("t",), "contains", [])) == ["1", "2", "3", "4"]
        assert ids(c(("f",), "contains", {"x": 1})) == ["1", "4"]
        assert ids(c(("a", "c"), "eq", "Oslo")) == ["1"]
        assert ids(c(("a", "c"), "isnull", True)) == ["4", "5"]
        assert ids(c(("n",), "isnull", False)) == ["2"]
        assert ids(c(("n",), "eq", None)) == ["1", "3", "4", "5"]
        assert ids(c(("on",), "eq", True)) == ["1", "3"]  # not the number 1
        assert ids(c(("on",), "eq", 1)) == ["5"]
        assert ids(c(("t",), "eq", ["x"])) == ["3"]
        assert ids(c(("a",), "eq", {"c": "Rome"})) == ["2"]
        assert ids(c(("missing",), "eq", 1)) == []
        # Mixed kinds order as SQLite orders JSON values: null, numbers, then text.
        assert ids(order=(Order(("b",), True),)) == ["5", "1", "3", "2", "4"]
        assert ids(order=(Order(("n",)), Order(("b",)))) == ["4", "3", "1", "5", "2"]
        numeric = [c(("b",), "gt", -100)]
        assert ids(*numeric, order=(Order(("b",), True),)) == ["1", "3", "2", "4"]
        assert ids(*numeric, order=(Order(("b",)),), limit=2) == ["4", "2"]
        assert ids(order=(Order(("o",)), Order(("b",), True))) == ["1", "3", "2", "5", "4"]

    def test_follow_commits_position_and_writes_together(self) -> None:
        store = self.store
        store.append([ev((A1, 0)), ev((A2, 0)), ev((A1, 0))], {A1: None, A2: None})
        with store.follow("f", 2) as batch:
            assert batch is not None
            assert (batch.start, [e.position for e in batch.events]) == (0, [1, 2])
            batch.tx.execute("CREATE TABLE IF NOT EXISTS contract_rm (n BIGINT PRIMARY KEY)")
            for e in batch.events:
                batch.tx.execute("INSERT INTO contract_rm VALUES (?)", (e.position,))
            batch.advance(2)
        with store.reader() as r:
            [row] = r.followers()
            assert (row.name, row.position) == ("f", 2)
            assert isinstance(row, FollowerRow)

        class Boom(Exception):
            pass

        try:
            with store.follow("f", 10) as batch:
                assert batch is not None
                assert (batch.start, [e.position for e in batch.events]) == (2, [3])
                batch.tx.execute("INSERT INTO contract_rm VALUES (?)", (3,))
                batch.advance(3)
                raise Boom
        except Boom:
            pass
        with store.follow("f", 10) as batch:  # nothing of the failed batch was kept
            assert batch is not None
            assert (batch.start, [e.position for e in batch.events]) == (2, [3])
            assert batch.tx.execute("SELECT n FROM contract_rm ORDER BY n") == [(1,), (2,)]
            batch.advance(3)
        with store.follow("other", 0) as batch:
            assert batch is not None and batch.start == 0 and batch.events == []
        with store.reader() as r:
            assert [(f.name, f.position) for f in r.followers()] == [("f", 3), ("other", 0)]
