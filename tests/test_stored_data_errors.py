"""Every failure reading stored data is a library error with context.

Tampered rows used to surface as raw ValueError/AttributeError with no hint of
where: a ``fired_at`` that is not a timestamp, a malformed UUID in a link, a
non-numeric schema version (see test_schema_migration), ``load(dict, 1)``, an
int past Python's digit limit inside verify.
"""

from __future__ import annotations

import sqlite3
import sys
from pathlib import Path
from typing import Any

import attrs
import pytest

from playthrough import Engine, Event, State, state_id
from playthrough.errors import DecodeError, PlaythroughError
from playthrough.examples.bank import Account, AccountOpened, Deposited


def _bank(tmp_path: Path) -> tuple[str, Path]:
    path = tmp_path / "bank.db"
    url = f"sqlite:///{path}"
    with Engine.open(url, head_values=False) as engine:  # loads play the log
        engine.fire(AccountOpened(account_id=1, owner="ada"))
        engine.fire(Deposited(account_id=1, amount=10))
        engine.commit()
    return url, path


def _sql(path: Path, statement: str, *params: Any) -> None:
    conn = sqlite3.connect(path)
    conn.execute(statement, params)
    conn.commit()
    conn.close()


def test_a_fired_at_that_is_not_a_timestamp_names_position_type_and_column(
    tmp_path: Path,
) -> None:
    url, path = _bank(tmp_path)
    _sql(path, "UPDATE pt_events SET fired_at = 'yesterday' WHERE position = 2")
    with Engine.open(url) as engine, pytest.raises(DecodeError) as info:
        engine.load(Account, 1)
    text = str(info.value)
    assert "position 2" in text and "bank.Deposited" in text and "fired_at" in text


def test_a_malformed_uuid_in_a_link_names_the_column(tmp_path: Path) -> None:
    url, path = _bank(tmp_path)
    _sql(path, "UPDATE pt_links SET state_id = 'u:not-a-uuid' WHERE position = 2")
    with Engine.open(url) as engine, pytest.raises(DecodeError, match=r"'u:not-a-uuid'.*state_id"):
        engine.admin.replay()


def test_load_of_something_that_is_not_a_state_says_so() -> None:
    with (
        Engine.open("sqlite://") as engine,
        pytest.raises(TypeError, match="expected a State subclass, not dict"),
    ):
        engine.load(dict, 1)  # type: ignore[type-var]


@attrs.define
class Huge(State, type_name="t.data.Huge"):
    value: int = 0


@attrs.define
class Squared(Event, type_name="t.data.Squared"):
    huge_id: int = state_id(Huge)

    def apply(self, huge: Huge) -> None:
        huge.value = max(huge.value, 10) ** 2


@pytest.mark.skipif(not hasattr(sys, "set_int_max_str_digits"), reason="no int digit limit")
def test_a_state_int_past_the_digit_limit_is_reported_by_verify(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'huge.db'}"
    with Engine.open(url) as engine:  # heads values: encoded before the append
        for _ in range(14):  # 10 ** (2 ** 14): far past 4300 digits
            engine.fire(Squared(huge_id=1))
        with pytest.raises(PlaythroughError, match=r"cannot store the value of t\.data\.Huge\(1\)"):
            engine.commit()
        assert engine.head() == 0  # refused before anything was written
    with Engine.open(url, head_values=False) as engine:
        for _ in range(14):
            engine.fire(Squared(huge_id=1))
        engine.commit()
        report = engine.admin.verify(subprocess_replay=False)
        assert not report.ok
        assert "t.data.Huge(1)" in report.to_text()
        with pytest.raises(PlaythroughError, match=r"cannot store t\.data\.Huge\(1\)"):
            engine.admin.snapshot()
