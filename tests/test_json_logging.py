"""The JSON log formatter, and -h as --help."""

from __future__ import annotations

import json
import logging

import pytest
from click.testing import CliRunner

from playthrough import Engine
from playthrough._cli import main
from playthrough.examples.bank import Deposited
from playthrough.logging import JSONFormatter


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


def test_commit_records_become_json_with_their_facts() -> None:
    handler = _Collect()
    handler.setFormatter(JSONFormatter())
    log = logging.getLogger("playthrough")
    log.addHandler(handler)
    old = log.level
    log.setLevel(logging.DEBUG)
    try:
        with Engine.open("sqlite://") as engine:
            engine.fire(Deposited(account_id=1, amount=5))
            engine.commit()
    finally:
        log.setLevel(old)
        log.removeHandler(handler)
    records = [json.loads(line) for line in handler.lines]
    commit = next(r for r in records if "event_count" in r)
    assert commit["level"] == "DEBUG" and commit["logger"] == "playthrough"
    assert commit["event_count"] == 1 and commit["first_position"] == 1
    assert commit["time"].endswith("+00:00") and commit["message"]


def test_exceptions_and_odd_values() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed %s", ("it",), None)
        import sys

        record.exc_info = sys.exc_info()
    record.thing = object()
    data = json.loads(JSONFormatter().format(record))
    assert data["message"] == "failed it" and "ValueError: boom" in data["exception"]
    assert data["thing"].startswith("<object object")


@pytest.mark.parametrize("flag", ["-h", "--help"])
def test_h_is_help(flag: str) -> None:
    result = CliRunner().invoke(main, ["history", flag])
    assert result.exit_code == 0 and "Every event that touched a state" in result.output
