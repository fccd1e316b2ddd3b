"""No code path waits forever, whatever the commit's size.

psycopg's pipeline deadlocked on a commit of ~15 MiB, holding the append lock
so every other writer of the schema blocked. Large batches now go without the
pipeline, the wait for the append lock is bounded (``lock_timeout``) with a
clear error, and ``fire`` refuses an event above ``max_event_bytes``.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
from pathlib import Path

import attrs
import psycopg
import pytest

from playthrough import Engine, Event, State, state_id
from playthrough._stores.postgres import _LOCK_APPEND, PostgresStore
from playthrough.errors import ConfigurationError, PlaythroughError, StoreError

from .test_crash import ROOT, TIMEOUT, _check, _wait_for_commits

MiB = 1 << 20


@attrs.define
class Blob(State, type_name="t.large.Blob"):
    size: int = 0


@attrs.define
class Put(Event, type_name="t.large.Put"):
    blob_id: int = state_id(Blob)
    payload: str = ""

    def apply(self, blob: Blob) -> None:
        blob.size += len(self.payload)


def _commit_in_time(url: str, batch: list[Put]) -> list[int | None]:
    """Commit on a thread; fail (rather than hang) if it does not end in TIMEOUT."""
    done: list[list[int | None]] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            with Engine.open(url) as engine:
                for event in batch:
                    engine.fire(event)
                done.append([e.id for e in engine.commit()])
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(TIMEOUT)
    assert not thread.is_alive(), "the commit never finished"
    assert not errors, errors
    return done[0]


@pytest.mark.postgres
@pytest.mark.parametrize(
    ("count", "size"), [(1, 16 * MiB), (100, 150 * 1024)], ids=["16MiB", "100x150KiB"]
)
def test_a_large_commit_ends_and_other_writers_go_on(
    pg_url: str, pg_schema: str, tmp_path: Path, count: int, size: int
) -> None:
    url = f"{pg_url}?schema={pg_schema}"
    side = tmp_path / "acknowledged.txt"
    worker = subprocess.Popen(
        [sys.executable, "-m", "tests.crash_worker", url, str(side)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        _wait_for_commits(worker, side, 1)
        positions = _commit_in_time(url, [Put(blob_id=n, payload="x" * size) for n in range(count)])
        assert len(positions) == count
        _wait_for_commits(worker, side, 2)  # the other process still commits
    finally:
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=TIMEOUT)
    with Engine.open(url) as engine:
        assert sum(b.size for b in engine.load_many(Blob, range(count))) == count * size
    _check(url, side)


@pytest.mark.postgres
def test_waiting_for_the_append_lock_is_bounded(pg_url: str, pg_schema: str) -> None:
    store = PostgresStore(pg_url, schema=pg_schema, lock_timeout=0.2)
    holder = psycopg.connect(pg_url)
    try:
        holder.execute("SELECT pg_advisory_xact_lock(%s, %s)", (_LOCK_APPEND, store._lock_key))
        with Engine(store) as engine:
            engine.fire(Put(blob_id=1, payload="small"))
            with pytest.raises(StoreError, match=r"waited more than 0\.2 s for the append lock"):
                engine.commit()
            assert engine.pending == ()
        holder.rollback()  # the lock is free again
        with Engine(store) as engine:
            engine.fire(Put(blob_id=1, payload="small"))
            assert [e.id for e in engine.commit()] == [1]
    finally:
        holder.close()
        store.close()
    with pytest.raises(ConfigurationError, match="lock_timeout must be greater than 0"):
        PostgresStore(pg_url, schema=pg_schema, lock_timeout=0)


def test_an_event_above_the_maximum_size_is_refused_at_fire() -> None:
    with Engine.open("sqlite://", max_event_bytes=1000) as engine:
        engine.fire(Put(blob_id=1, payload="x" * 900))
        with pytest.raises(PlaythroughError, match=r"Put is 2,0\d\d bytes as JSON.*1,000 bytes"):
            engine.fire(Put(blob_id=1, payload="é" * 1000))
        assert len(engine.pending) == 1 and engine.load(Blob, 1).size == 900
