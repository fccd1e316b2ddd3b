"""The store contract's cases for maintenance, in order.

MaintenanceContract: import, export tables, archive, stored versions, the fixed rows of a script.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

from .._archive import check_cut
from .._errors import (
    ArchivedRangeError,
    ConcurrencyError,
    StoreError,
)
from .._model import StateKey
from .._stores import (
    FollowerRow,
    ImportedEvent,
    ImportPage,
    Link,
    LinkedEntry,
    NewEvent,
    SealedEvent,
    SnapshotRecord,
    StoreReader,
    TransferTables,
)
from .._stores._base import (
    SCHEMA_VERSION,
    CommitExtras,
    Completion,
    HeadRow,
    HeadValue,
    LogReader,
    ScheduleRecord,
    ScheduleRow,
)
from ._contract_base import A1, A2, FIRED_AT, HUB, ContractBase, ev, raises_exactly


def guard(until: int, base: Sequence[SnapshotRecord]) -> Callable[[LogReader], None]:
    """The archive module's guard of the cut, as the archive hands it to the store."""
    return lambda reader: check_cut(reader, until, base)


class MaintenanceContract(ContractBase):
    """The cases of maintenance; a store with maintenance passes them."""

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

    def test_import_pages_keep_every_column_and_link(self) -> None:
        store = self.store
        full = (2, "Thing", '{"n":2}', 1, FIRED_AT, 3, '{"m":1}', "c-2")
        pages = [
            ImportPage(
                [(1, "Thing", '{"n":1}', None, FIRED_AT, 1, None, None)], [("Acct", "1", 1, 0)]
            ),
            ImportPage(
                [full, (3, "Other", '{"n":3}', None, FIRED_AT, 2, None, "c-3")],
                [("Acct", "1", 2, 0), ("Acct", "2", 2, 1), ("Acct", "2", 3, 0)],
            ),
            ImportPage([], []),
        ]
        assert store.import_pages(iter(pages), after=0) == 3
        with store.reader() as r:
            assert r.head() == 3
            assert r.state_heads([A1, A2]) == {A1: 2, A2: 3}
            events = r.events_after(0, 10)
            assert [(e.position, e.type, e.data, e.caused_by, e.version) for e in events] == [
                (1, "Thing", '{"n":1}', None, 1),
                (2, "Thing", '{"n":2}', 1, 3),
                (3, "Other", '{"n":3}', None, 2),
            ]
            assert [(e.metadata, e.correlation) for e in events] == [
                (None, None),
                ('{"m":1}', "c-2"),
                (None, "c-3"),
            ]
            assert sorted(r.links_between(0, 3)) == sorted(
                [Link(1, A1, 0), Link(2, A1, 0), Link(2, A2, 1), Link(3, A2, 0)]
            )

    def test_import_pages_refuse_a_gap_inside_a_page_and_write_nothing(self) -> None:
        store = self.store

        def row(p: int) -> tuple[object, ...]:
            return (p, "Thing", f'{{"n":{p}}}', None, FIRED_AT, 1, None, None)

        ok = ImportPage([row(1), row(2)], [("Acct", "1", 1, 0)])
        for wrong, message in (
            ([row(3), row(5), row(4)], "position 5 where 4 was expected"),
            ([row(3), row(3)], "position 3 where 4 was expected"),
            ([row(4)], "position 4 where 3 was expected"),
        ):
            with raises_exactly(StoreError, message):
                store.import_pages([ok, ImportPage(wrong, [])], after=0)
            with store.reader() as r:
                assert r.head() == 0
                assert r.state_heads([A1]) == {}

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

    def test_sealed_reads_return_the_stored_text_and_never_decode(self) -> None:
        from .._personal import PersonalSpec, clear_values, seal

        store = self.store
        key = store.ensure_subject_keys({"1": b"\x02" * 32})["1"]
        sealed = seal('{"name":"Ada","who":1}', "Thing", PersonalSpec(("name",), "who"), "1", key)
        store.append([ev((A1, 0), data=sealed), ev((A2, 0), data="{}")], {})
        for _ in range(2):  # before and after the key is gone: the stored text
            with store.reader() as r:
                rows = r.events_after_sealed(0, 10)
            assert [(e.position, e.data) for e in rows] == [(1, sealed), (2, "{}")]
            assert all(isinstance(e, SealedEvent) for e in rows)
            store.forget_subject("1", clear_values)

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

    def test_archive_deletes_the_range_and_keeps_its_base_snapshots(self) -> None:
        store = self.store
        for _ in range(4):
            store.append([ev((A1, 0), (A2, 0))], {})
        store.write_snapshots([SnapshotRecord(A1, 1, 1, "old")], keep=3)
        base = [SnapshotRecord(A1, 2, 2, "a1@2"), SnapshotRecord(A2, 2, 2, "a2@2")]
        with raises_exactly(StoreError, "before the head"):
            store.archive(4, base, None, guard(4, base))
        with raises_exactly(StoreError, "not 3"):
            store.archive(3, base, None, guard(3, base))
        assert store.archive(2, base, {"archived_chain": "c" * 64}, guard(2, base)) == 2
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
            store.archive(2, [], None, guard(2, []))

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
