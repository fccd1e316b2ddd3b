"""A missing event is corruption, never silently skipped.

Positions are gap-free by construction, so a gap, or a link to an event that
is not there, means a row was deleted or lost: loads (through links), replays
and the testing kit raise CorruptionError naming the position, and verify
reports it.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from playthrough import Engine
from playthrough.errors import CorruptionError
from playthrough.examples.bank import Account, AccountOpened, Deposited


def _store(tmp_path: Path) -> tuple[str, Path]:
    path = tmp_path / "bank.db"
    url = f"sqlite:///{path}"
    # Without heads values, so that a load plays the log instead of reading the
    # current value its commit wrote (which a deleted event row does not change).
    with Engine.open(url, head_values=False) as engine:
        engine.fire(AccountOpened(account_id=1, owner="ada"))
        for _ in range(14):
            engine.fire(Deposited(account_id=1, amount=10))
        engine.commit()
    return url, path


def _delete(path: Path, position: int, *, links: bool) -> None:
    conn = sqlite3.connect(path)
    conn.execute("DELETE FROM pt_events WHERE position = ?", (position,))
    if links:
        conn.execute("DELETE FROM pt_links WHERE position = ?", (position,))
    conn.commit()
    conn.close()


def test_a_load_through_a_link_to_a_missing_event_names_the_position(tmp_path: Path) -> None:
    url, path = _store(tmp_path)
    _delete(path, 7, links=False)
    with Engine.open(url) as engine, pytest.raises(CorruptionError, match="position 7") as info:
        engine.load(Account, 1)
    assert info.value.position == 7


@pytest.mark.parametrize("links", [True, False])
def test_a_replay_over_a_gap_names_the_position(tmp_path: Path, links: bool) -> None:
    url, path = _store(tmp_path)
    _delete(path, 7, links=links)
    with Engine.open(url) as engine, pytest.raises(CorruptionError, match="position 7"):
        engine.admin.replay()


def test_a_missing_last_event_whose_links_remain_is_found(tmp_path: Path) -> None:
    url, path = _store(tmp_path)
    _delete(path, 15, links=False)
    with Engine.open(url) as engine, pytest.raises(CorruptionError, match="position 15"):
        engine.admin.replay()


@pytest.mark.parametrize("links", [True, False])
def test_verify_reports_the_gap(tmp_path: Path, links: bool) -> None:
    url, path = _store(tmp_path)
    _delete(path, 7, links=links)
    with Engine.open(url) as engine:
        report = engine.admin.verify(subprocess_replay=False)
    assert not report.ok
    assert "position 7" in report.to_text()
