"""The store contract's cases for the lifecycle, in order.

LifecycleContract: completions, pending handlers, the schedule, subject keys.
"""

from __future__ import annotations

from collections.abc import Iterable

from .._errors import (
    CancelRefused,
    ConcurrencyError,
    HandledElsewhere,
)
from .._stores import (
    SnapshotRecord,
)
from .._stores._base import (
    CommitExtras,
    Completion,
    ScheduleRow,
)
from ._contract_base import A1, A2, FIRED_AT, ContractBase, ev, raises_exactly


class LifecycleContract(ContractBase):
    """The cases of the lifecycle; a store with the lifecycle passes them."""

    def test_completions_and_reopenings_are_written_with_the_append(self) -> None:
        store = self.store
        store.append([ev((A1, 0)), ev((A2, 0))], {}, extras=CommitExtras(completed=((A2, 1),)))
        with store.reader() as r:
            assert r.completions([A1, A2]) == {A2: Completion(A2, 2, "Thing")}
        store.append([ev((A2, 0))], {A2: 2}, extras=CommitExtras(reopened=(A2,)))
        with store.reader() as r:
            assert r.completions([A2]) == {}

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
        from .._personal import clear_values

        asked: list[tuple[list[tuple[str, str]], str, bytes]] = []

        def reveal(rows: Iterable[tuple[str, str]], subject: str, key: bytes) -> set[str]:
            asked.append((list(rows), subject, key))
            return clear_values(rows, subject, key)

        assert store.forget_subject("s:ada", reveal) is True
        # The store handed the subject's sealed rows to the core to open: it never decrypts.
        # (Pure: a store may call it again, as the async one replays its code.)
        assert asked and set(map(repr, asked)) == {
            repr(([("Thing", sealed)], "s:ada", first["s:ada"]))
        }
        asked.clear()
        assert store.forget_subject("s:ada", reveal) is False
        assert asked == []  # no key: nothing to open
        with store.reader() as r:
            assert r.subject_keys(["s:ada"]) == {}
            assert r.snapshots([A1], 10) == {}  # the snapshots of the subject's states go
            assert [s.position for s in r.snapshots([A2], 10)[A2]] == [2]  # no other state's

    def test_event_reads_return_sealed_values_the_core_opens_until_forgotten(self) -> None:
        from .._personal import FORGOTTEN, PersonalSpec, clear_values, seal, unsealing

        store = self.store
        key = store.ensure_subject_keys({"1": b"\x01" * 32})["1"]
        spec = PersonalSpec(("name",), "who")
        sealed = seal('{"name":"Ada","who":1}', "Thing", spec, "1", key)
        assert "Ada" not in sealed
        store.append([ev((A1, 0), data=sealed), ev((A2, 0), data='{"name":"Bob"}')], {})
        with store.reader() as r:
            # The store returns the events as stored, from every event read.
            assert [e.data for e in r.events_after(0, 10)] == [sealed, '{"name":"Bob"}']
            assert [e.data for e in r.events([1, 2])] == [sealed, '{"name":"Bob"}']
            assert [e.data for e in r.iter_events()] == [sealed, '{"name":"Bob"}']
            # The core opens them with the keys it reads through the same reader.
            opened = unsealing(r)
            assert [e.data for e in opened.events_after(0, 10)] == [
                '{"name":"Ada","who":1}',
                '{"name":"Bob"}',
            ]
            assert [e.data for e in opened.iter_events()] == [
                '{"name":"Ada","who":1}',
                '{"name":"Bob"}',
            ]
        store.forget_subject("1", clear_values)
        with store.reader() as r:
            assert [e.data for e in r.events([1, 2])] == [sealed, '{"name":"Bob"}']
            assert [e.data for e in unsealing(r).events([1, 2])] == [
                f'{{"name":"{FORGOTTEN}","who":1}}',
                '{"name":"Bob"}',
            ]
