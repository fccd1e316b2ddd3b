"""The ``playthrough`` logger: silent by default, structured records when enabled."""

from __future__ import annotations

import logging
import subprocess
import sys

import pytest

from playthrough import Engine
from playthrough import _logging as pt_logging
from playthrough.errors import ConcurrencyError, HandlerFailed
from playthrough.examples.bank import Account, Deposited, Ledger, Transferred


def _records(caplog: pytest.LogCaptureFixture, level: int) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "playthrough" and r.levelno == level]


def test_the_logger_is_silent_by_default() -> None:
    code = (
        "import io, logging, sys\n"
        "import playthrough\n"
        "from playthrough.examples.bank import Deposited\n"
        "logging.lastResort = logging.StreamHandler(sys.stdout)\n"
        "logging.lastResort.setLevel(logging.DEBUG)\n"
        "logging.getLogger('playthrough').setLevel(logging.DEBUG)\n"
        "with playthrough.Engine.open('sqlite://') as e:\n"
        "    e.fire(Deposited(account_id=1, amount=1)); e.commit(); e.admin.snapshot()\n"
        "print('done')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout == "done\n" and out.stderr == ""
    assert any(isinstance(h, logging.NullHandler) for h in pt_logging.logger.handlers)


def test_commits_are_logged_at_debug_with_count_positions_and_duration(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="playthrough")
    with Engine.open("sqlite://") as engine:
        engine.fire(Deposited(account_id=1, amount=5))
        engine.commit()
        engine.fire(Deposited(account_id=1, amount=5))
        engine.fire(Deposited(account_id=2, amount=5))
        engine.commit()
    records = _records(caplog, logging.DEBUG)
    assert [(r.event_count, r.first_position, r.last_position) for r in records] == [  # type: ignore[attr-defined]
        (1, 1, 1),
        (2, 2, 3),
    ]
    assert all(r.duration_ms >= 0 for r in records)  # type: ignore[attr-defined]
    assert records[1].getMessage().startswith("committed 2 event(s) at positions 2..3")


def test_commits_are_not_logged_above_debug(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="playthrough")
    with Engine.open("sqlite://") as engine:
        engine.fire(Deposited(account_id=1, amount=5))
        engine.commit()
    assert caplog.records == []


def test_a_conflict_is_a_warning(caplog: pytest.LogCaptureFixture, tmp_path: object) -> None:
    caplog.set_level(logging.DEBUG, logger="playthrough")
    url = f"sqlite:///{tmp_path}/c.db"
    with Engine.open(url) as first, Engine.open(url) as second:
        first.fire(Deposited(account_id=1, amount=5))
        first.commit()
        second.load(Account, 1)
        first.fire(Deposited(account_id=1, amount=1))
        first.commit()
        second.fire(Deposited(account_id=1, amount=2))
        with pytest.raises(ConcurrencyError):
            second.commit()
    (warning,) = _records(caplog, logging.WARNING)
    assert warning.event_count == 1  # type: ignore[attr-defined]
    assert "Account" in warning.error and "refused" in warning.getMessage()  # type: ignore[attr-defined]


def test_snapshot_sets_are_info(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="playthrough")
    with Engine.open("sqlite://") as engine:
        engine.fire(Deposited(account_id=1, amount=5))
        engine.fire(Transferred(source_id=1, target_id=2, amount=5))
        engine.commit()
        engine.admin.snapshot()
    (record,) = _records(caplog, logging.INFO)
    assert (record.position, record.state_count) == (2, 3)  # type: ignore[attr-defined]


def test_a_rewind_is_logged_naming_the_rewound_state(caplog: pytest.LogCaptureFixture) -> None:
    # without heads values, so the load plans and plays
    with Engine.open("sqlite://", head_values=False) as engine:
        engine.fire(Deposited(account_id=1, amount=10))
        engine.fire(Deposited(account_id=2, amount=10))
        engine.fire(Transferred(source_id=1, target_id=2, amount=3))
        engine.commit()
        engine.admin.snapshot([(Account, 2), (Ledger, None)], at=3)
        engine.refresh()
        caplog.set_level(logging.INFO, logger="playthrough")
        assert engine.load(Account, 1).balance == 7
    (record,) = _records(caplog, logging.INFO)
    assert "rewound" in record.getMessage()
    assert "Account" in record.rewound[0] and "2" in record.rewound[0]  # type: ignore[attr-defined]
    assert record.events_played >= 2  # type: ignore[attr-defined]


def test_plain_loads_are_not_logged(caplog: pytest.LogCaptureFixture) -> None:
    # without heads values, so the load plans and plays
    with Engine.open("sqlite://", head_values=False) as engine:
        engine.fire(Deposited(account_id=1, amount=10))
        engine.commit()
        engine.refresh()
        caplog.set_level(logging.INFO, logger="playthrough")
        engine.load(Account, 1)
    assert caplog.records == []


def test_loads_that_play_many_events_are_info(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pt_logging, "MANY_EVENTS", 3)
    # without heads values, so the load plans and plays
    with Engine.open("sqlite://", head_values=False) as engine:
        for _ in range(4):
            engine.fire(Deposited(account_id=1, amount=1))
        engine.commit()
        engine.refresh()
        caplog.set_level(logging.INFO, logger="playthrough")
        engine.load(Account, 1)
        engine.load(Account, 1, at=2)  # two events: under the threshold
    (record,) = _records(caplog, logging.INFO)
    assert (record.events_played, record.position, len(record.targets)) == (4, 4, 1)  # type: ignore[attr-defined]


def test_a_failing_handler_is_an_error_with_its_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    import attrs

    from playthrough import Event, state_id

    @attrs.define
    class Noted(Event, type_name="test_logging.Noted"):
        account_id: int = state_id(Account)

        def apply(self, account: Account) -> None:
            account.balance += 1

        def handle(self) -> None:
            raise RuntimeError("mail server down")

    caplog.set_level(logging.INFO, logger="playthrough")
    with Engine.open("sqlite://") as engine:
        engine.fire(Noted(account_id=1))
        with pytest.raises(HandlerFailed):
            engine.commit().raise_for_failures()
    (record,) = _records(caplog, logging.ERROR)
    assert (record.hook, record.position) == ("handle", 1)  # type: ignore[attr-defined]
    assert record.event_type.endswith("Noted")  # type: ignore[attr-defined]
    assert record.exc_info is not None and "mail server down" in str(record.exc_info[1])


def test_a_full_replay_is_info(caplog: pytest.LogCaptureFixture) -> None:
    with Engine.open("sqlite://") as engine:
        engine.fire(Deposited(account_id=1, amount=1))
        engine.commit()
        caplog.set_level(logging.INFO, logger="playthrough")
        engine.admin.replay()
    replays = [r for r in _records(caplog, logging.INFO) if "full replay" in r.getMessage()]
    assert [(r.events_played, r.position) for r in replays] == [(1, 1)]  # type: ignore[attr-defined]
