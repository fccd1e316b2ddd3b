"""Engine.retry() with jittered backoff, and fairness under a hot spot."""

from __future__ import annotations

import random
import subprocess
import sys
from pathlib import Path

import pytest

from playthrough import Engine
from playthrough.errors import CommitOutcomeUnknown, ConcurrencyError, PlaythroughError

from .crash_worker import ACCOUNTS, OPENING, Moved, Opened, Purse

ROOT = Path(__file__).resolve().parent.parent


def _open(url: str) -> None:
    with Engine.open(url) as engine:
        for n in range(ACCOUNTS):
            engine.fire(Opened(purse_id=n))
        engine.commit()


def test_retry_reruns_the_work_on_fresh_states_after_a_conflict(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'retry.db'}"
    _open(url)
    with Engine.open(url) as mine, Engine.open(url) as other:
        mine.load(Purse, 0)  # mine now holds a state other is about to change
        seen: list[int] = []
        waits: list[float] = []

        def work(engine: Engine) -> str:
            balance = engine.load(Purse, 0).balance
            seen.append(balance)
            if len(seen) == 1:  # another writer commits between our load and commit
                other.fire(Moved(source_id=0, target_id=1, amount=7))
                other.commit()
            engine.fire(Moved(source_id=0, target_id=2, amount=balance // 10))
            return "moved"

        from playthrough._retry import retry

        result = retry(mine, work, rng=random.Random(1), sleep=waits.append, backoff=0.1)
        assert result == "moved"
        assert seen == [OPENING, OPENING - 7]  # the second attempt saw the other's commit
        assert len(waits) == 1 and 0 <= waits[0] < 0.1
        assert mine.load(Purse, 0).balance == OPENING - 7 - (OPENING - 7) // 10


def test_retry_gives_up_after_its_attempts_and_does_not_retry_other_errors(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'retry.db'}"
    _open(url)
    with Engine.open(url) as mine, Engine.open(url) as other:
        calls = 0

        def always_loses(engine: Engine) -> None:
            nonlocal calls
            calls += 1
            engine.load(Purse, 0)
            other.fire(Moved(source_id=0, target_id=1, amount=1))
            other.commit()
            engine.fire(Moved(source_id=0, target_id=2, amount=1))

        from playthrough._retry import retry

        waits: list[float] = []
        with pytest.raises(ConcurrencyError):
            retry(mine, always_loses, attempts=3, sleep=waits.append, backoff=0.01)
        assert calls == 3 and len(waits) == 2 and waits[1] < 0.02
        assert mine.pending == ()

        def unknown(engine: Engine) -> None:
            raise CommitOutcomeUnknown("lost", "c-1")

        with pytest.raises(CommitOutcomeUnknown):
            mine.retry(unknown)
        mine.fire(Moved(source_id=3, target_id=4, amount=1))
        with pytest.raises(PlaythroughError, match="pending"):
            mine.retry(unknown)


@pytest.mark.postgres
def test_eight_processes_on_one_hot_spot_all_get_their_commits(pg_url: str, pg_schema: str) -> None:
    """Fairness: every writer completes its commits; attempts per writer are printed."""
    url = f"{pg_url}?schema={pg_schema}"
    _open(url)
    writers, commits = 8, 5
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "tests.retry_worker", url, str(commits)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(writers)
    ]
    attempts = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err[-2000:]
        attempts.append(int(out.split()[1]))
    print(f"attempts per writer for {commits} commits each: {sorted(attempts)}")
    with Engine.open(url) as engine:
        assert engine.load(Purse, 1).balance == OPENING + writers * commits
        assert sum(p.balance for p in engine.load_many(Purse, range(ACCOUNTS))) == (
            ACCOUNTS * OPENING
        )


def test_retried_conflicts_are_debug_and_only_the_final_one_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    caplog.set_level(logging.DEBUG, logger="playthrough")
    url = f"sqlite:///{tmp_path / 'retry.db'}"
    _open(url)
    with Engine.open(url) as mine, Engine.open(url) as other:

        def always_loses(engine: Engine) -> None:
            engine.load(Purse, 0)
            other.fire(Moved(source_id=0, target_id=1, amount=1))
            other.commit()
            engine.fire(Moved(source_id=0, target_id=2, amount=1))

        from playthrough._retry import retry

        with pytest.raises(ConcurrencyError):
            retry(mine, always_loses, attempts=3, sleep=lambda _: None)
        refused = [r for r in caplog.records if "refused" in r.getMessage()]
        assert [r.levelno for r in refused] == [logging.DEBUG, logging.DEBUG, logging.WARNING]
        assert [r.attempt for r in refused] == [1, 2, 3]  # type: ignore[attr-defined]
        assert "after 3 attempts, giving up" in refused[-1].getMessage()
        caplog.clear()
        other.load(Purse, 0)
        mine.fire(Moved(source_id=0, target_id=1, amount=1))
        mine.commit()
        other.fire(Moved(source_id=0, target_id=2, amount=1))
        with pytest.raises(ConcurrencyError):
            other.commit()  # a plain commit's conflict is its final failure
        refused = [r for r in caplog.records if "refused" in r.getMessage()]
        assert [r.levelno for r in refused] == [logging.WARNING]
