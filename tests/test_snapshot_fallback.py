"""A snapshot that cannot be decoded does not fail a load.

An older intact snapshot, or the log from blank, gives the same (exact) result,
only slower; the load falls back, ``explain()`` says so, and ``verify`` reports
the bad snapshot.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from playthrough import Engine
from playthrough.examples.bank import Account, AccountOpened, Deposited


def _bank(url: str) -> None:
    with Engine.open(url, head_values=False) as engine:  # loads go through snapshots
        engine.fire(AccountOpened(account_id=1, owner="ada"))
        engine.fire(Deposited(account_id=1, amount=10))
        engine.commit()
        engine.admin.snapshot()  # at 2
        engine.fire(Deposited(account_id=1, amount=5))
        engine.commit()
        engine.admin.snapshot()  # at 3


def _spoil(path: Path, position: int) -> None:
    conn = sqlite3.connect(path)
    conn.execute(
        'UPDATE pt_snapshots SET data = \'{"balance": "lots"}\' WHERE position = ?', (position,)
    )
    conn.commit()
    conn.close()


def test_a_bad_newest_snapshot_falls_back_to_an_older_one(tmp_path: Path) -> None:
    path = tmp_path / "bank.db"
    url = f"sqlite:///{path}"
    _bank(url)
    _spoil(path, 3)
    with Engine.open(url, head_values=False) as engine:
        assert engine.load(Account, 1).balance == 15
        plan = engine.explain(Account, 1)
        assert "SKIPPED snapshot of bank.Account(1) at position 3 cannot be decoded" in (
            plan.explain()
        )
        assert "starts from snapshot at 2" in plan.explain()
        report = engine.admin.verify(subprocess_replay=False)
        assert not report.ok and "position 3" in report.to_text()


def test_with_every_snapshot_bad_the_log_answers(tmp_path: Path) -> None:
    path = tmp_path / "bank.db"
    url = f"sqlite:///{path}"
    _bank(url)
    _spoil(path, 2)
    _spoil(path, 3)
    with Engine.open(url, head_values=False) as engine:
        assert engine.load(Account, 1).balance == 15
        assert engine.load(Account, 1, at=2).balance == 10
        text = engine.explain(Account, 1).explain()
        assert text.count("SKIPPED") == 2 and "blank" in text


def test_a_bad_heads_value_falls_back_to_the_log(tmp_path: Path) -> None:
    path = tmp_path / "bank.db"
    url = f"sqlite:///{path}"
    with Engine.open(url) as engine:
        engine.fire(AccountOpened(account_id=1, owner="ada"))
        engine.fire(Deposited(account_id=1, amount=10))
        engine.commit()
    conn = sqlite3.connect(path)
    conn.execute("UPDATE pt_heads SET value = '{\"balance\": []}'")
    conn.commit()
    conn.close()
    with Engine.open(url) as engine:
        assert engine.load(Account, 1).balance == 10
