"""Crash tests: kill -9 of a committing process, termination of its PostgreSQL backend.

The worker (tests/crash_worker.py) writes down, durably, what each commit()
told it. After every round the store must hold every acknowledged commit
(``ok``) at the positions it was told, none that was declared not written
(``failed``), and every ``unknown`` must get an answer from ``was_committed``;
no commit may be torn (all its events or none), positions are gap-free and the
money is conserved. Short by default (a few rounds, seconds); set
``PLAYTHROUGH_CRASH_ROUNDS`` for a longer run (nightly, benchmarks).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from playthrough import Engine

from .crash_worker import ACCOUNTS, OPENING, PER_COMMIT, Purse

ROUNDS = int(os.environ.get("PLAYTHROUGH_CRASH_ROUNDS", "3"))
ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 60.0  # a stuck worker fails the test instead of hanging it


def _start(url: str, side: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.crash_worker", url, str(side)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def _lines(side: Path) -> list[str]:
    return side.read_text().splitlines() if side.exists() else []


def _wait_for_commits(worker: subprocess.Popen[bytes], side: Path, at_least: int) -> None:
    """Until the worker acknowledged ``at_least`` more commits (polling its side file)."""
    start = sum(1 for line in _lines(side) if line.startswith("ok"))
    deadline = time.monotonic() + TIMEOUT
    while sum(1 for line in _lines(side) if line.startswith("ok")) < start + at_least:
        if worker.poll() is not None:
            err = worker.stderr.read().decode() if worker.stderr else ""
            raise AssertionError(f"the worker died: {err[-2000:]}")
        if time.monotonic() > deadline:
            worker.kill()
            raise AssertionError("the worker made no progress")
        time.sleep(0.005)


def _check(url: str, side: Path) -> dict[str, int]:
    counts = {"ok": 0, "failed": 0, "unknown": 0}
    with Engine.open(url) as engine:
        with engine.store.reader() as reader:
            head = reader.head()
            events = list(reader.iter_events())
            commits = {}
            for line in _lines(side):
                kind, *rest = line.split()
                if kind == "try":
                    continue
                counts[kind] += 1
                commits[rest[0]] = (kind, rest[1:], reader.commit_positions(rest[0]))
        assert [e.position for e in events] == list(range(1, head + 1))  # gap-free
        for commit_id, (kind, told, stored) in commits.items():
            if kind == "ok":  # acknowledged: present, where commit() said
                assert stored == (int(told[0]), int(told[1])), commit_id
            elif kind == "failed":  # "nothing was written" must be true
                assert stored is None, commit_id
            else:  # unknown: was_committed answers
                assert engine.was_committed(commit_id) is (stored is not None)
            if stored is not None:  # never torn: the whole batch
                assert stored[1] - stored[0] + 1 == PER_COMMIT
        total = sum(p.balance for p in engine.load_many(Purse, range(ACCOUNTS)))
        assert total == ACCOUNTS * OPENING
        report = engine.verify(subprocess_replay=False)
        assert report.ok, report.to_text()
    return counts


def _kill_rounds(url: str, side: Path) -> None:
    rng = random.Random(ROUNDS)
    for _ in range(ROUNDS):
        worker = _start(url, side)
        _wait_for_commits(worker, side, rng.randint(1, 4))
        worker.send_signal(signal.SIGKILL)  # mid-commit, or between two
        worker.wait(timeout=TIMEOUT)
        _check(url, side)


def test_kill_9_of_a_sqlite_writer_loses_no_acknowledged_commit(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'crash.db'}"
    side = tmp_path / "acknowledged.txt"
    _kill_rounds(url, side)
    assert _check(url, side)["ok"] >= ROUNDS


@pytest.mark.postgres
def test_kill_9_of_a_postgres_writer_loses_no_acknowledged_commit(
    pg_url: str, pg_schema: str, tmp_path: Path
) -> None:
    url = f"{pg_url}?schema={pg_schema}"
    side = tmp_path / "acknowledged.txt"
    _kill_rounds(url, side)
    assert _check(url, side)["ok"] >= ROUNDS


@pytest.mark.postgres
def test_terminating_the_backend_of_a_committing_writer(
    pg_url: str, pg_schema: str, tmp_path: Path
) -> None:
    import psycopg

    # The worker's sessions carry a name of their own, so only they are terminated:
    # never the sessions of other tests or other processes sharing the server.
    session = f"pt-crash-{pg_schema}"
    url = f"{pg_url}?schema={pg_schema}&application_name={session}"
    side = tmp_path / "acknowledged.txt"
    worker = _start(url, side)
    terminated = 0
    try:
        _wait_for_commits(worker, side, 1)
        with psycopg.connect(pg_url, autocommit=True) as admin:
            for _ in range(ROUNDS * 3):
                _wait_for_commits(worker, side, 1)
                rows = admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE application_name = %s AND pid <> pg_backend_pid() "
                    "AND datname = current_database() AND state <> 'idle'",
                    (session,),
                ).fetchall()
                terminated += sum(1 for (ok,) in rows if ok)
        _wait_for_commits(worker, side, 1)  # it goes on committing afterwards
    finally:
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=TIMEOUT)
    counts = _check(url, side)
    print(f"terminated {terminated} backends; commit outcomes: {counts}")
    assert counts["ok"] >= ROUNDS * 3
