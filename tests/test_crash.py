"""Crash tests: kill -9 of a committing process, termination of its PostgreSQL backend.

Also two handler runners and two schedulers on one store, one of them killed
(SIGKILL) and restarted round after round: no handler's events and no
scheduled event may be committed twice, and after a final clean pass each is
committed exactly once.

The worker (tests/crash_worker.py) writes down, durably, what each commit()
told it. After every round the store must hold every acknowledged commit
(``ok``) at the positions it was told, none that was declared not written
(``failed``), and every ``unknown`` must get an answer from ``was_committed``;
no commit may be torn (all its events or none), positions are gap-free and the
money is conserved. Short by default (a few rounds, seconds); set
``PLAYTHROUGH_CRASH_ROUNDS`` for a longer run (nightly, benchmarks).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from playthrough import Engine
from playthrough.errors import HandlerFailed
from playthrough.testing import ManualClock

from .crash_worker import ACCOUNTS, OPENING, PER_COMMIT, Placed, Purse, Ticked

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
        report = engine.admin.verify(subprocess_replay=False)
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


# --------------------------------------------------------------------------- two runners

JOBS = 60


def _start_worker(mode: str, url: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.crash_worker", mode, url],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def _done(url: str, event_type: str) -> list[str]:
    """The data of the events of this type in the log."""
    with Engine.open(url) as engine, engine.store.reader() as reader:
        return [e.data for e in reader.events_after(0, 10_000) if e.type == event_type]


def _kill_runners(url: str, mode: str, event_type: str) -> None:
    """Two workers; kill -9 one of them whenever the pair made progress, and restart it."""
    rng = random.Random(ROUNDS)
    workers = [_start_worker(mode, url) for _ in range(2)]
    try:
        for _ in range(ROUNDS):
            seen = len(_done(url, event_type))
            deadline = time.monotonic() + TIMEOUT
            while len(_done(url, event_type)) < min(seen + rng.randint(1, 5), JOBS):
                for w in workers:
                    if w.poll() is not None:
                        err = w.stderr.read().decode() if w.stderr else ""
                        raise AssertionError(f"a {mode} worker died: {err[-2000:]}")
                assert time.monotonic() < deadline, f"the {mode} workers made no progress"
                time.sleep(0.01)
            victim = rng.randrange(2)
            workers[victim].send_signal(signal.SIGKILL)  # mid-commit, or between two
            workers[victim].wait(timeout=TIMEOUT)
            workers[victim] = _start_worker(mode, url)
    finally:
        for w in workers:
            w.send_signal(signal.SIGKILL)
            w.wait(timeout=TIMEOUT)


def _check_handlers(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PT_CRASH_SETUP", "1")
    with Engine.open(url) as engine:
        for n in range(JOBS):
            engine.fire(Placed(order_id=n))
        with pytest.raises(HandlerFailed):
            engine.commit().raise_for_failures()
    monkeypatch.delenv("PT_CRASH_SETUP")
    _kill_runners(url, "handlers", "t.crash.Invoiced")
    invoiced = Counter(json.loads(d)["order_id"] for d in _done(url, "t.crash.Invoiced"))
    assert max(invoiced.values()) == 1  # never twice, whatever was killed when
    with Engine.open(url) as engine:  # what the killed runners left pending, once
        engine.admin.run_pending_handlers()
        with engine.store.reader() as reader:
            assert reader.pending_handlers(10) == []
    invoiced = Counter(json.loads(d)["order_id"] for d in _done(url, "t.crash.Invoiced"))
    assert invoiced == Counter(range(JOBS))  # exactly once each


def _check_schedulers(url: str) -> None:
    past = datetime.now(UTC) - timedelta(seconds=1)
    with Engine.open(url) as engine, engine.transaction():
        for n in range(JOBS):
            engine.scheduler.schedule(Ticked(purse_id=n % ACCOUNTS, n=n), at=past)
    _kill_runners(url, "scheduler", "t.crash.Ticked")
    ticks = Counter(json.loads(d)["n"] for d in _done(url, "t.crash.Ticked"))
    assert max(ticks.values()) == 1  # never twice, whatever was killed when
    later = ManualClock(datetime.now(UTC) + timedelta(hours=1))  # killed workers' leases ran out
    with Engine.open(url, clock=later) as engine:
        while engine.scheduler.run_due():
            pass
        with engine.store.reader() as reader:
            rows = reader.schedules()
    assert {r.status for r in rows} == {"fired"}
    assert len({r.position for r in rows}) == JOBS
    ticks = Counter(json.loads(d)["n"] for d in _done(url, "t.crash.Ticked"))
    assert ticks == Counter(range(JOBS))  # exactly once each


def test_kill_9_of_handler_runners_never_commits_a_handler_twice_sqlite(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _check_handlers(f"sqlite:///{tmp_path / 'runners.db'}", monkeypatch)


@pytest.mark.postgres
def test_kill_9_of_handler_runners_never_commits_a_handler_twice_postgres(
    pg_url: str, pg_schema: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    _check_handlers(f"{pg_url}?schema={pg_schema}", monkeypatch)


def test_kill_9_of_schedulers_never_fires_an_event_twice_sqlite(tmp_path: Path) -> None:
    _check_schedulers(f"sqlite:///{tmp_path / 'schedulers.db'}")


@pytest.mark.postgres
def test_kill_9_of_schedulers_never_fires_an_event_twice_postgres(
    pg_url: str, pg_schema: str
) -> None:
    _check_schedulers(f"{pg_url}?schema={pg_schema}")
