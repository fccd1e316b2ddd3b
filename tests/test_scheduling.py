"""Scheduled events: stored with the commit that schedules them, fired once when due."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

import attrs
import pytest

from playthrough import Engine, Event, state_id
from playthrough._firing import Firing
from playthrough._scheduling import Scheduler
from playthrough._steps import Steps, run_sync
from playthrough._stores import SQLiteStore
from playthrough._stores import sqlite as sqlite_module
from playthrough._stores._base import CommitExtras, ScheduleRow
from playthrough.errors import CancelRefused, PlaythroughError, ScheduleNotFound
from playthrough.testing import ManualClock, Scenario

from .sched_domain import (
    TIMEOUT,
    Broken,
    Counter,
    Order,
    OrderPlaced,
    PaymentReceived,
    PaymentTimedOut,
    Ping,
)

START = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)


@pytest.fixture
def engine(clock: ManualClock) -> Engine:
    return Engine(SQLiteStore(), clock=clock)


def test_a_payment_timeout_fires_when_due_with_its_due_time_as_now(
    engine: Engine, clock: ManualClock
) -> None:
    engine.fire(OrderPlaced(order_id=1))
    engine.commit()
    order = engine.load(Order, 1)
    schedule = engine.scheduler.scheduled(order.timeout_id)
    assert (schedule.status, schedule.due_at) == ("pending", START + TIMEOUT)
    clock.advance(minutes=14, seconds=59)
    assert engine.scheduler.run_due() == []
    clock.advance(minutes=3)  # the worker runs late: the hooks still see the due time
    [done] = engine.scheduler.run_due()
    assert (done.id, done.status, done.event_type) == (
        order.timeout_id,
        "fired",
        "sched.PaymentTimedOut",
    )
    assert done.position == engine.head()
    loaded = engine.load(Order, 1)
    assert loaded.timed_out_at == START + TIMEOUT
    assert loaded.closed
    # ... and as the log replays it, from blank
    assert engine.load(Order, 1, at=engine.head()).timed_out_at == START + TIMEOUT
    assert engine.scheduler.run_due() == []  # fired once


def test_the_payment_cancels_the_timeout_in_its_handler(engine: Engine, clock: ManualClock) -> None:
    engine.fire(OrderPlaced(order_id=1))
    engine.commit()
    engine.fire(PaymentReceived(order_id=1))
    engine.commit()
    timeout_id = engine.load(Order, 1).timeout_id
    assert engine.scheduler.scheduled(timeout_id).status == "cancelled"
    clock.advance(hours=1)
    assert engine.scheduler.run_due() == []
    assert engine.scheduler.cancel(timeout_id) is False  # already cancelled


def test_scheduling_inside_a_transaction_is_written_with_its_commit(engine: Engine) -> None:
    with pytest.raises(RuntimeError), engine.transaction():
        schedule_id = engine.scheduler.schedule(Ping(counter_id=1), after=timedelta(minutes=1))
        raise RuntimeError("boom")
    with pytest.raises(ScheduleNotFound):
        engine.scheduler.scheduled(schedule_id)
    engine.fire(Ping(counter_id=1))
    kept = engine.scheduler.schedule(Ping(counter_id=2), after=timedelta(minutes=1))
    with engine.store.reader() as reader:
        assert reader.schedule(kept) is None  # not yet: it goes with the commit
    engine.commit()
    assert engine.scheduler.scheduled(kept).status == "pending"
    engine.fire(Ping(counter_id=1))
    dropped = engine.scheduler.schedule(Ping(counter_id=3), after=timedelta(minutes=1))
    engine.discard()
    with pytest.raises(ScheduleNotFound):
        engine.scheduler.scheduled(dropped)


def test_scheduling_outside_a_commit_is_written_at_once(engine: Engine, clock: ManualClock) -> None:
    at = START + timedelta(hours=2)
    schedule_id = engine.scheduler.schedule(Ping(counter_id=1, n=7), at=at)
    other = Engine(engine.store)
    assert other.scheduler.scheduled(schedule_id).due_at == at
    assert engine.scheduler.cancel(schedule_id) is True
    assert other.scheduler.scheduled(schedule_id).status == "cancelled"
    with pytest.raises(ScheduleNotFound, match="no scheduled event has the id 'nope'"):
        engine.scheduler.cancel("nope")


def test_bad_schedule_arguments_are_refused(engine: Engine) -> None:
    with pytest.raises(TypeError, match="exactly one of"):
        engine.scheduler.schedule(Ping(counter_id=1))
    with pytest.raises(TypeError, match="exactly one of"):
        engine.scheduler.schedule(Ping(counter_id=1), at=START, after=timedelta(1))
    with pytest.raises(ValueError, match="no time zone"):
        engine.scheduler.schedule(Ping(counter_id=1), at=datetime(2030, 1, 1))
    with pytest.raises(TypeError, match="state id"):
        engine.scheduler.schedule(Ping(counter_id=1.5), after=timedelta(1))  # type: ignore[arg-type]
    with engine.store.reader() as reader:
        assert reader.schedules() == []


def test_rejected_and_failing_scheduled_events_are_recorded(
    engine: Engine, clock: ManualClock
) -> None:
    engine.fire(OrderPlaced(order_id=1))
    engine.commit()
    engine.scheduler.schedule(PaymentTimedOut(order_id=1), after=timedelta(minutes=1))
    engine.scheduler.schedule(Broken(counter_id=1), after=timedelta(minutes=2))
    clock.advance(minutes=20)
    results = engine.scheduler.run_due()
    # By due time: this timeout closes the order, Broken raises, and the handler's
    # timeout (due at 15 minutes) is refused: the order is completed.
    assert [r.status for r in results] == ["fired", "failed", "rejected"]
    failed = results[1]
    assert failed.error == "RuntimeError: this hook always fails"
    with engine.store.reader() as reader:
        [rejected] = reader.schedules("rejected")
    assert "StateCompleted" in (rejected.error or "")
    assert "completed by sched.PaymentTimedOut" in (rejected.error or "")
    assert engine.load(Counter, 1) == Counter()


def test_each_engine_has_its_own_lease_owner_name_which_stays() -> None:
    store = SQLiteStore()
    one, two = Engine(store), Engine(store)
    assert one.scheduler.owner == one.scheduler.owner != two.scheduler.owner
    assert len(one.scheduler.owner) == 32
    two.scheduler.owner = "worker-2"
    assert two.scheduler.owner == "worker-2"


def test_a_row_fired_by_another_worker_after_its_lease_ran_out_is_not_fired_again(
    tmp_path: Path, clock: ManualClock
) -> None:
    url = str(tmp_path / "s.db")
    slow = Engine(SQLiteStore(url), clock=clock)
    fast = Engine(SQLiteStore(url), clock=clock)
    schedule_id = slow.scheduler.schedule(Ping(counter_id=1), after=timedelta(minutes=1))
    clock.advance(minutes=1)
    [row] = slow.store.claim_due(
        "2030-01-01T12:01:00.000000+00:00", "2030-01-01T12:01:30.000000+00:00", "slow", 10
    )
    clock.advance(minutes=1)  # slow's lease ran out while it was stuck; fast takes the row
    [fired] = fast.scheduler.run_due()
    assert fired.status == "fired"
    slow.scheduler.owner = "slow"
    # slow wakes up and fires the row it still holds, driven as run_due drives it:
    # the append is refused (the row was fired under its key), nothing is written twice
    late = run_sync(slow.scheduler._fire_one(row), slow.store)
    assert late.status == "pending"
    assert late.error is not None and late.error.startswith("retry: ")
    assert slow.pending == ()
    assert slow.load(Counter, 1).hits == 1
    assert slow.head() == 1
    assert slow.scheduler.scheduled(schedule_id).position == fired.position


def test_a_crash_inside_the_append_leaves_the_row_pending_and_fires_it_once_later(
    engine: Engine, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The event and its row's move to 'fired' are one transaction: no window between them."""
    schedule_id = engine.scheduler.schedule(Ping(counter_id=1), after=timedelta(minutes=1))
    clock.advance(minutes=5)
    original = sqlite_module.SQLiteStore._write_extras

    def crash(*args: object, **kwargs: object) -> None:
        raise OSError("power cut")

    monkeypatch.setattr(sqlite_module.SQLiteStore, "_write_extras", crash)
    with pytest.raises(OSError, match="power cut"):
        engine.scheduler.run_due()
    assert engine.head() == 0  # the event was rolled back with the row
    monkeypatch.setattr(sqlite_module.SQLiteStore, "_write_extras", original)
    clock.advance(minutes=10)  # the crashed worker's lease has run out
    [done] = engine.scheduler.run_due()
    assert (done.id, done.status) == (schedule_id, "fired")
    assert engine.load(Counter, 1).hits == 1
    assert engine.scheduler.run_due() == []


def test_run_due_refuses_to_mix_with_pending_events(engine: Engine) -> None:
    engine.fire(Ping(counter_id=1))
    with pytest.raises(PlaythroughError, match="before run_due"):
        engine.scheduler.run_due()


def test_a_concurrent_change_to_a_state_leaves_the_row_for_the_next_pass(
    tmp_path: Path, clock: ManualClock
) -> None:
    url = str(tmp_path / "c.db")
    worker = Engine(SQLiteStore(url), clock=clock)
    other = Engine(SQLiteStore(url), clock=clock)
    worker.load(Counter, 1)  # the worker holds counter 1 ...
    other.fire(Ping(counter_id=1, n=1))
    other.commit()  # ... which another writer then changes
    worker.scheduler.schedule(Ping(counter_id=1, n=2), after=timedelta(minutes=1))
    clock.advance(minutes=1)
    [first] = worker.scheduler.run_due()
    assert first.status == "pending"  # ConcurrencyError: nothing written, lease given back
    [second] = worker.scheduler.run_due()
    assert second.status == "fired"
    assert worker.load(Counter, 1).seen == [1, 2]


def test_scenario_when_fifteen_minutes_pass(playthrough_scenario: Scenario) -> None:
    playthrough_scenario.given(OrderPlaced(order_id=1))
    placed_at = playthrough_scenario.history[0].fired_at
    assert placed_at is not None
    playthrough_scenario.when_time_passes(minutes=15)
    assert [r.status for r in playthrough_scenario.due] == ["fired"]
    playthrough_scenario.then_committed(PaymentTimedOut(order_id=1))
    order = playthrough_scenario.engine.load(Order, 1)
    assert order.timed_out_at == placed_at + TIMEOUT


def test_scenario_time_passing_before_the_timeout_fires_nothing(
    playthrough_scenario: Scenario,
) -> None:
    playthrough_scenario.given(OrderPlaced(order_id=1), PaymentReceived(order_id=1))
    playthrough_scenario.when_time_passes(minutes=15).then_committed()
    assert playthrough_scenario.due == []


# --------------------------------------------------------------------------- two processes

WORKERS = 2
SCHEDULED = 60


def _workers(url: str, env: dict[str, str]) -> list[subprocess.CompletedProcess[str]]:
    command = [
        sys.executable,
        "-c",
        "from playthrough._cli import main; main()",
        "scheduler",
        url,
        "--app",
        "tests.sched_domain",
        "--until-idle",
        "--limit",
        "5",
    ]
    procs = [
        subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(WORKERS)
    ]
    out = []
    for p in procs:
        stdout, stderr = p.communicate(timeout=120)
        out.append(subprocess.CompletedProcess(p.args, p.returncode, stdout, stderr))
    return out


def _check_two_workers(url: str, open_engine: Callable[[], Engine]) -> None:
    engine = open_engine()
    past = datetime.now(UTC) - timedelta(seconds=1)
    with engine.transaction():
        ids = [
            engine.scheduler.schedule(Ping(counter_id=n % 3, n=n), at=past)
            for n in range(SCHEDULED)
        ]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    results = _workers(url, env)
    for r in results:
        assert r.returncode == 0, r.stderr
    lines = [line for r in results for line in r.stdout.splitlines()]
    fired = [line.split()[0] for line in lines if ": fired at position" in line]
    assert sorted(fired) == sorted(ids)  # every one fired, none twice
    with engine.store.reader() as reader:
        rows = reader.schedules()
        assert reader.head() == SCHEDULED
    assert {r.status for r in rows} == {"fired"}
    assert len({r.position for r in rows}) == SCHEDULED
    seen = sorted(n for c in range(3) for n in engine.load(Counter, c).seen)
    assert seen == list(range(SCHEDULED))
    engine.close()


def test_two_scheduler_processes_fire_each_event_once_sqlite(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'two.db'}"
    _check_two_workers(url, lambda: Engine.open(url))


def test_two_scheduler_processes_fire_each_event_once_postgres(pg_url: str, pg_schema: str) -> None:
    url = f"{pg_url}?schema={pg_schema}"
    _check_two_workers(url, lambda: Engine.open(url))


def test_a_clock_giving_naive_times_is_refused_at_fire() -> None:
    class Naive:
        def now(self) -> datetime:
            return datetime(2030, 1, 1)

    engine = Engine(SQLiteStore(), clock=Naive())
    with pytest.raises(ValueError, match="no time zone"):
        engine.fire(Ping(counter_id=1))
    assert engine.pending == ()


def test_the_scheduler_command_fires_due_events_and_names_a_missing_app(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from playthrough._cli import main

    url = f"sqlite:///{tmp_path / 'cli.db'}"
    long_ago = "2000-01-01T00:00:00.000000+00:00"
    with Engine.open(url) as engine:
        past = datetime.now(UTC) - timedelta(minutes=1)
        first = engine.scheduler.schedule(Ping(counter_id=1, n=1), at=past)
    result = CliRunner().invoke(main, ["scheduler", url, "--once"])
    assert result.exit_code == 0, result.output
    assert f"{first} sched.Ping due " in result.output and ": fired at position 1" in result.output
    with Engine.open(url) as engine:
        engine.store.append(  # a row whose event type no imported module defines
            [],
            {},
            extras=CommitExtras(schedule=(ScheduleRow("x", long_ago, "nope", "{}", long_ago),)),
        )
        behind = engine.scheduler.schedule(Ping(counter_id=1, n=2), at=past)  # due after it
    result = CliRunner().invoke(main, ["scheduler", url, "--once"])
    assert result.exit_code == 0, result.output  # the pass went on
    assert "x nope due " in result.output and ": failed: UnknownTypeError:" in result.output
    assert "unknown event type 'nope'" in result.output
    assert f"{behind} sched.Ping due " in result.output
    with Engine.open(url) as engine:
        assert engine.scheduler.scheduled("x").status == "failed"
        assert engine.scheduler.scheduled(behind).status == "fired"


@attrs.define
class Numbered(Event, type_name="sched.Numbered", version=2):
    """Version 2 renamed ``n`` to ``number``; a row scheduled by version 1 is upcast."""

    counter_id: int = state_id(Counter)
    number: int = 0

    @staticmethod
    def upcast_v1(data: dict[str, Any]) -> dict[str, Any]:
        data = dict(data)
        data["number"] = data.pop("n")
        return data

    def apply(self, counter: Counter) -> None:
        counter.seen.append(self.number)


def test_a_row_scheduled_by_an_older_class_version_is_upcast_when_fired(
    engine: Engine, clock: ManualClock
) -> None:
    due = "2030-01-01T12:05:00.000000+00:00"
    old = ScheduleRow("old", due, "sched.Numbered", '{"counter_id":1,"n":5}', due, version=1)
    engine.store.append([], {}, extras=CommitExtras(schedule=(old,)))
    new_id = engine.scheduler.schedule(Numbered(counter_id=1, number=6), after=timedelta(minutes=6))
    assert engine.scheduler.scheduled(new_id).status == "pending"
    clock.advance(minutes=10)
    assert [r.status for r in engine.scheduler.run_due()] == ["fired", "fired"]
    assert engine.load(Counter, 1).seen == [5, 6]
    with engine.store.reader() as reader:
        assert [e.version for e in reader.events_after(0, 10)] == [2, 2]


# --------------------------------------------------------------------------- both stores


def test_a_cancel_riding_a_commit_is_refused_when_the_row_fired_meanwhile(
    any_url: str, clock: ManualClock
) -> None:
    with Engine.open(any_url, clock=clock) as app, Engine.open(any_url, clock=clock) as worker:
        schedule_id = app.scheduler.schedule(Ping(counter_id=1, n=1), after=timedelta(minutes=1))
        clock.advance(minutes=2)
        app.fire(Ping(counter_id=2, n=2))
        assert (
            app.scheduler.cancel(schedule_id) is True
        )  # still pending when asked: goes with the commit
        [fired] = worker.scheduler.run_due()  # ... but a worker fires it before that commit
        assert fired.status == "fired"
        with pytest.raises(CancelRefused, match=rf"{schedule_id} \(now fired\)"):
            app.commit()
        assert app.pending == ()
        assert app.scheduler.scheduled(schedule_id).status == "fired"
        assert app.head() == 1  # nothing of the refused commit was written
        assert app.load(Counter, 2).hits == 0


def test_cancel_on_its_own_answers_false_when_the_row_fired_meanwhile(
    any_url: str, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    with Engine.open(any_url, clock=clock) as app, Engine.open(any_url, clock=clock) as worker:
        schedule_id = app.scheduler.schedule(Ping(counter_id=1), after=timedelta(minutes=1))
        clock.advance(minutes=2)
        real = Scheduler.scheduled_steps

        def read_then_fire(self: Scheduler, sid: str) -> Steps[Any]:
            record = yield from real(self, sid)  # "pending", as cancel() reads it ...
            worker.scheduler.run_due()  # ... and the worker fires it right after
            return record

        monkeypatch.setattr(Scheduler, "scheduled_steps", read_then_fire)
        assert app.scheduler.cancel(schedule_id) is False  # never "cancelled" and "fired"
        monkeypatch.undo()
        assert app.scheduler.scheduled(schedule_id).status == "fired"
        assert app.load(Counter, 1).hits == 1


def test_an_unknown_type_row_is_marked_failed_and_the_pass_goes_on(
    any_url: str, clock: ManualClock
) -> None:
    with Engine.open(any_url, clock=clock) as engine:
        due = "2030-01-01T12:00:00.000000+00:00"
        engine.store.append(
            [], {}, extras=CommitExtras(schedule=(ScheduleRow("x", due, "nope", "{}", due),))
        )
        behind = engine.scheduler.schedule(Ping(counter_id=1), after=timedelta(minutes=1))
        clock.advance(minutes=5)
        unknown, fired = engine.scheduler.run_due()
        assert (unknown.id, unknown.status) == ("x", "failed")
        assert "UnknownTypeError" in (unknown.error or "")
        assert "unknown event type 'nope'" in (unknown.error or "")
        assert (fired.id, fired.status) == (behind, "fired")
        assert engine.scheduler.scheduled("x").error == unknown.error  # the reason is stored
        assert engine.scheduler.run_due() == []  # no longer due: the passes after it go on too


class Flaky:
    broken: ClassVar[bool] = True


@attrs.define
class FlakyPing(Event, type_name="sched.FlakyPing"):
    counter_id: int = state_id(Counter)

    def apply(self, counter: Counter) -> None:
        if Flaky.broken:
            raise RuntimeError("the hook raised once")
        counter.hits += 1


def test_reschedule_rearms_a_failed_row(any_url: str, clock: ManualClock) -> None:
    Flaky.broken = True
    with Engine.open(any_url, clock=clock) as engine:
        schedule_id = engine.scheduler.schedule(FlakyPing(counter_id=1), after=timedelta(minutes=1))
        clock.advance(minutes=2)
        [failed] = engine.scheduler.run_due()
        assert failed.status == "failed" and failed.error == "RuntimeError: the hook raised once"
        Flaky.broken = False  # fixed
        assert engine.scheduler.run_due() == []  # a failed row is never picked up on its own
        later = START + timedelta(hours=1)
        again = engine.scheduler.reschedule(schedule_id, at=later)
        assert (again.status, again.due_at, again.error) == ("pending", later, None)
        assert engine.scheduler.run_due() == []  # not due yet
        clock.advance(hours=1)
        [fired] = engine.scheduler.run_due()
        assert (fired.id, fired.status) == (schedule_id, "fired")
        assert engine.load(Counter, 1).hits == 1
        with pytest.raises(PlaythroughError, match="is fired: only a failed or pending"):
            engine.scheduler.reschedule(schedule_id)
        with pytest.raises(ScheduleNotFound):
            engine.scheduler.reschedule("nope")
        with pytest.raises(ValueError, match="no time zone"):
            engine.scheduler.reschedule(schedule_id, at=datetime(2030, 1, 1))
        assert engine.scheduler.scheduled(schedule_id).status == "fired"


def test_cli_lists_scheduled_rows_and_rearms_the_failed_ones(any_url: str) -> None:
    from click.testing import CliRunner

    from playthrough._cli import main

    Flaky.broken = True
    runner = CliRunner()
    past = datetime.now(UTC) - timedelta(minutes=1)
    with Engine.open(any_url) as engine:
        flaky = engine.scheduler.schedule(FlakyPing(counter_id=1), at=past)
        fine = engine.scheduler.schedule(Ping(counter_id=2), at=past + timedelta(days=365))
    result = runner.invoke(main, ["scheduler", any_url, "--once"])
    assert result.exit_code == 0 and f"{flaky} sched.FlakyPing" in result.output
    result = runner.invoke(main, ["scheduled", any_url, "--status", "failed"])
    assert result.exit_code == 0, result.output
    assert f"{flaky} sched.FlakyPing due " in result.output
    assert ": failed: RuntimeError: the hook raised once" in result.output
    assert fine not in result.output
    result = runner.invoke(main, ["scheduled", any_url])
    assert fine in result.output and flaky in result.output
    result = runner.invoke(main, ["scheduled", any_url, "--status", "rejected"])
    assert "no scheduled events with status rejected" in result.output
    # bad input: nothing changes
    assert runner.invoke(main, ["reschedule", any_url]).exit_code == 2
    assert runner.invoke(main, ["reschedule", any_url, flaky, "--all-failed"]).exit_code == 2
    naive = runner.invoke(main, ["reschedule", any_url, flaky, "--at", "2030-01-01T00:00"])
    assert naive.exit_code == 2 and "no time zone" in naive.output
    bad = runner.invoke(main, ["reschedule", any_url, flaky, "--at", "soon"])
    assert bad.exit_code == 2 and "not an ISO 8601 time" in bad.output
    unknown = runner.invoke(main, ["reschedule", any_url, "nope", fine])
    assert unknown.exit_code == 1  # the unknown id is reported, the other still re-armed
    assert "no scheduled event has the id 'nope'" in unknown.output
    with Engine.open(any_url) as engine:
        assert engine.scheduler.scheduled(flaky).status == "failed"
    Flaky.broken = False
    result = runner.invoke(main, ["reschedule", any_url, "--all-failed"])
    assert result.exit_code == 0, result.output
    assert f"{flaky} sched.FlakyPing due " in result.output and ": pending" in result.output
    assert (
        "no failed scheduled events"
        in runner.invoke(main, ["reschedule", any_url, "--all-failed"]).output
    )
    result = runner.invoke(main, ["scheduler", any_url, "--once"])
    assert result.exit_code == 0 and f"{flaky} sched.FlakyPing" in result.output
    with Engine.open(any_url) as engine:
        assert engine.scheduler.scheduled(flaky).status == "fired"
        assert engine.load(Counter, 1).hits == 1


def test_a_row_that_cannot_be_fired_is_marked_failed_and_the_pass_goes_on(
    any_url: str, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    from playthrough.errors import ReconstitutionError

    with Engine.open(any_url, clock=clock) as engine:
        stuck = engine.scheduler.schedule(Ping(counter_id=1, n=1), after=timedelta(minutes=1))
        behind = engine.scheduler.schedule(Ping(counter_id=2, n=2), after=timedelta(minutes=2))
        clock.advance(minutes=5)
        real = Firing.fire_steps

        def fire(self: Firing, event: Event, *args: Any) -> Steps[Event]:
            if args[-1] == f"schedule:{stuck}":  # the idempotency key of its row
                raise ReconstitutionError("Counter(1) cannot be rebuilt")
            return (yield from real(self, event, *args))

        monkeypatch.setattr(Firing, "fire_steps", fire)
        failed, fired = engine.scheduler.run_due()  # no exception: the pass went on
        assert (failed.id, failed.status) == (stuck, "failed")
        assert failed.error == "ReconstitutionError: Counter(1) cannot be rebuilt"
        assert (fired.id, fired.status) == (behind, "fired")
        assert engine.scheduler.scheduled(stuck).error == failed.error
        assert engine.load(Counter, 2).hits == 1 and engine.load(Counter, 1).hits == 0
