"""Handlers are recorded in the store, never silently dropped.

A failing handle hook does not stop the handlers of later events; what it
fired is discarded (it never rides along with a later commit); HandlerFailed
lists every failure; the store keeps the failed (or crash-interrupted)
handlers pending, and ``run_pending_handlers`` / ``playthrough handlers`` run
them again.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import ClassVar

import attrs
import pytest
from click.testing import CliRunner

from playthrough import Engine, Event, State, state_id
from playthrough._cli import main
from playthrough.errors import ConfigurationError, HandlerFailed


@attrs.define
class Box(State, type_name="t.handlers.Box"):
    items: int = 0
    notes: int = 0


@attrs.define
class Noted(Event, type_name="t.handlers.Noted"):
    box_id: int = state_id(Box)

    def apply(self, box: Box) -> None:
        box.notes += 1


class Outbox:
    """Side effects the handlers perform, and which boxes should make them fail."""

    sent: ClassVar[list[int]] = []
    broken: ClassVar[set[int]] = set()
    crash: ClassVar[set[int]] = set()
    # Run (once each) inside the next handler, after it fired: another runner, say.
    meanwhile: ClassVar[list[Callable[[], object]]] = []


class Crash(BaseException):
    """Stands for the process dying inside a handler."""


@attrs.define
class Put(Event, type_name="t.handlers.Put"):
    box_id: int = state_id(Box)

    def apply(self, box: Box) -> None:
        box.items += 1

    def handle(self, engine: Engine) -> None:
        engine.fire(Noted(box_id=self.box_id))  # fired before the failure below
        while Outbox.meanwhile:
            Outbox.meanwhile.pop(0)()
        if self.box_id in Outbox.crash:
            raise Crash()
        if self.box_id in Outbox.broken:
            raise OSError(f"mail server down for box {self.box_id}")
        Outbox.sent.append(self.box_id)


@pytest.fixture(autouse=True)
def outbox() -> Iterator[None]:
    Outbox.sent.clear()
    Outbox.broken.clear()
    Outbox.crash.clear()
    Outbox.meanwhile.clear()
    yield


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'handlers.db'}"


def pending(engine: Engine) -> list[int]:
    with engine.store.reader() as reader:
        return reader.pending_handlers(100)


def test_a_failing_handler_does_not_drop_later_handlers_or_leak_its_events(url: str) -> None:
    Outbox.broken.update({1, 3})
    with Engine.open(url) as engine:
        for box in (1, 2, 3, 4):
            engine.fire(Put(box_id=box))
        with pytest.raises(HandlerFailed) as info:
            engine.commit().raise_for_failures()
        error = info.value
        assert Outbox.sent == [2, 4]  # the handlers after the failure ran
        assert [e.id for e, _ in error.failures] == [1, 3]  # every failure is listed
        assert "box 1" in str(error) and "box 3" in str(error)
        assert error.event is error.failures[0][0] and isinstance(error.__cause__, OSError)
        # The committed events, including what the successful handlers fired:
        assert [type(e).__name__ for e in error.committed] == [
            "Put",
            "Put",
            "Put",
            "Put",
            "Noted",
            "Noted",
        ]
        assert engine.pending == ()  # the failed handlers' Noted events were discarded
        assert pending(engine) == [1, 3]
        engine.fire(Noted(box_id=9))  # an unrelated commit carries nothing else
        assert [type(e).__name__ for e in engine.commit()] == ["Noted"]
        assert engine.load(Box, 1).notes == 0 and engine.load(Box, 2).notes == 1

        Outbox.broken.clear()  # the mail server is back
        ran = engine.admin.run_pending_handlers()
        assert [e.id for e in ran] == [1, 3] and Outbox.sent == [2, 4, 1, 3]
        assert pending(engine) == []
        assert engine.load(Box, 1).notes == 1 and engine.load(Box, 3).notes == 1
        assert engine.admin.run_pending_handlers() == []


def test_handlers_cut_short_by_a_crash_stay_pending_for_another_process(url: str) -> None:
    Outbox.crash.add(1)
    with Engine.open(url) as engine:
        engine.fire(Put(box_id=1))
        engine.fire(Put(box_id=2))
        with pytest.raises(Crash):
            engine.commit()
        assert engine.head() == 2  # committed before the handlers ran
    Outbox.crash.clear()
    with Engine.open(url) as later:
        assert pending(later) == [1, 2]
        assert [e.id for e in later.admin.run_pending_handlers()] == [1, 2]
        assert Outbox.sent == [1, 2] and pending(later) == []
        assert later.load(Box, 1).notes == 1


def test_a_handler_failing_again_stays_pending(url: str) -> None:
    Outbox.broken.add(1)
    with Engine.open(url) as engine:
        engine.fire(Put(box_id=1))
        with pytest.raises(HandlerFailed):
            engine.commit().raise_for_failures()
        with pytest.raises(HandlerFailed, match="box 1"):
            engine.admin.run_pending_handlers()
        assert pending(engine) == [1] and engine.load(Box, 1).notes == 0


def test_successful_handlers_leave_nothing_pending(url: str) -> None:
    with Engine.open(url) as engine:
        engine.fire(Put(box_id=1))
        engine.fire(Noted(box_id=1))  # no handle hook: never recorded as pending
        committed = engine.commit()
        assert [e.caused_by for e in committed] == [None, None, 1]
        assert pending(engine) == []


def test_cli_handlers_runs_what_is_pending(url: str, tmp_path: Path) -> None:
    Outbox.broken.add(1)
    with Engine.open(url) as engine:
        engine.fire(Put(box_id=1))
        with pytest.raises(HandlerFailed):
            engine.commit().raise_for_failures()
    runner = CliRunner()
    result = runner.invoke(main, ["handlers", url, "--app", __name__])
    assert result.exit_code == 1, result.output
    assert "failed again for 1 event(s)" in result.output and "box 1" in result.output
    Outbox.broken.clear()
    result = runner.invoke(main, ["handlers", url, "--app", __name__])
    assert result.exit_code == 0, result.output
    assert "ran the pending handlers of 1 event(s)" in result.output
    assert Outbox.sent == [1]


def test_stateless_replay_safe_handle_hooks_run_in_replay(url: str) -> None:
    calls: list[int | None] = []

    @attrs.define
    class Pinged(Event, type_name="t.handlers.Pinged"):
        box_id: int = state_id(Box)
        replay_handle: ClassVar[bool] = True

        def apply(self, box: Box) -> None:
            box.items += 1

        def handle(self) -> None:  # takes no state
            calls.append(self.id)

    with Engine.open(url) as engine:
        engine.fire(Pinged(box_id=1))
        engine.commit()
        assert calls == [1]
        engine.admin.replay()
        assert calls == [1, 1]


# --------------------------------------------------------------------------- several runners


def _pending_put(url: str, *boxes: int) -> None:
    """Commit Puts whose handlers fail, so they stay pending for the runners."""
    Outbox.broken.update(boxes)
    with Engine.open(url) as engine:
        for box in boxes:
            engine.fire(Put(box_id=box))
        with pytest.raises(HandlerFailed):
            engine.commit().raise_for_failures()
    Outbox.broken.clear()


def test_two_runners_of_one_handler_commit_its_events_once(any_url: str) -> None:
    """The second runner's completion is refused (HandledElsewhere): nothing of it is written."""
    _pending_put(any_url, 1)
    with Engine.open(any_url) as first, Engine.open(any_url) as second:
        # While the first runner is inside the handler, the second runs it to the end.
        Outbox.meanwhile.append(lambda: second.admin.run_pending_handlers())
        ran = first.admin.run_pending_handlers()  # no HandlerFailed: losing the race is no failure
        assert ran == []  # the first did not complete it, the second did
        assert Outbox.sent == [1, 1]  # side effects outside the store: at least once
        assert pending(first) == []
        with first.store.reader() as reader:
            noted = [e for e in reader.events_after(0, 100) if e.type == "t.handlers.Noted"]
        assert len(noted) == 1  # ... but its events are committed once
        assert first.load(Box, 1).notes == 1


def test_a_refused_completion_does_not_stop_the_runner_s_other_handlers(any_url: str) -> None:
    _pending_put(any_url, 1, 2)
    with Engine.open(any_url) as first, Engine.open(any_url) as second:
        Outbox.meanwhile.append(lambda: second.admin.run_pending_handlers(limit=1))
        ran = first.admin.run_pending_handlers()
        assert [e.id for e in ran] == [2]  # box 1 was completed by the second runner
        assert pending(first) == []
        assert first.load(Box, 1).notes == 1 and first.load(Box, 2).notes == 1


def test_handlers_serve_runs_pass_after_pass_and_reports_failures(url: str) -> None:
    from playthrough._handlers import serve

    _pending_put(url, 1, 2)
    Outbox.broken.add(2)
    lines: list[str] = []
    pauses: list[float] = []
    with Engine.open(url) as engine:
        done = serve(engine, interval=0.5, passes=3, echo=lines.append, sleep=pauses.append)
        assert done == 0  # box 1 completed but box 2 failed in the same pass
        assert pending(engine) == [2]
        Outbox.broken.clear()
        assert serve(engine, interval=0.5, passes=3, echo=lines.append, sleep=pauses.append) == 1
        assert pending(engine) == []
    text = "\n".join(lines)
    assert "handlers failed for 1 event(s), they stay pending:" in text
    assert "mail server down for box 2" in text
    assert "ran the handlers of Put at position 2" in text
    # Passes that completed nothing pause; the last pass does not.
    assert pauses == [0.5, 0.5, 0.5]


def test_cli_handlers_forever_keeps_running_until_stopped(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import playthrough._handlers as handlers_module

    _pending_put(url, 1)
    naps: list[float] = []

    def sleep(seconds: float) -> None:
        naps.append(seconds)
        if len(naps) == 2:
            raise KeyboardInterrupt  # Ctrl-C while idle

    monkeypatch.setattr(handlers_module, "_pause", sleep)
    result = CliRunner().invoke(
        main, ["handlers", url, "--app", __name__, "--forever", "--interval", "0.25"]
    )
    assert result.exit_code == 0, result.output
    assert "ran the handlers of Put at position 1" in result.output
    assert naps == [0.25, 0.25]  # the pass that ran something did not pause
    assert Outbox.sent == [1]


# --------------------------------------------------------------------------- reported, not raised


def test_a_committed_commit_reports_its_failed_handlers_instead_of_raising(url: str) -> None:
    Outbox.broken.update({1})
    with Engine.open(url) as engine:
        engine.fire(Put(box_id=1))
        engine.fire(Put(box_id=2))
        result = engine.commit()  # the commit stands: no exception
        assert not result.ok
        assert [type(e).__name__ for e in result] == ["Put", "Put", "Noted"]
        failures = [(e.id, str(exc)) for e, exc in result.failures]
        assert failures == [(1, "mail server down for box 1")]
        assert pending(engine) == [1]  # kept for a retry
        with pytest.raises(HandlerFailed, match="box 1") as info:
            result.raise_for_failures()
        assert info.value.committed == list(result)
        assert engine.commit().ok  # nothing pending: an empty, successful result
        Outbox.broken.clear()
        assert [e.id for e in engine.admin.run_pending_handlers()] == [1]
        assert engine.load(Box, 1).notes == 1


def test_raise_handler_failures_keeps_the_old_behaviour(url: str) -> None:
    Outbox.broken.update({1})
    with Engine.open(url, raise_handler_failures=True) as engine:
        engine.fire(Put(box_id=1))
        with pytest.raises(HandlerFailed) as info:
            engine.commit()
        assert [e.id for e in info.value.committed] == [1]
        assert engine.head() == 1 and pending(engine) == [1]
    with pytest.raises(ConfigurationError, match="raise_handler_failures takes True or False"):
        Engine.open(url, raise_handler_failures="yes")
