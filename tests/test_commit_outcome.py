"""A commit's outcome is told truthfully, on SQLite and PostgreSQL.

- every commit stores a unique commit id with its events; ``was_committed`` answers;
- a failure after COMMIT may have reached the server is resolved (the commit's
  positions, or "nothing was written" for certain), or else raised as
  ``CommitOutcomeUnknown`` carrying the commit id;
- ``fire(event, key=...)`` is idempotent: a key already in the log refuses the
  whole commit with ``DuplicateEvent``;
- once the append has committed, a failing snapshot policy never turns the
  commit into an error.
"""

from __future__ import annotations

import logging
import sqlite3
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import attrs
import psycopg
import pytest

from playthrough import Engine, Event, State, state_id
from playthrough._stores.postgres import PostgresStore
from playthrough._stores.sqlite import SQLiteStore
from playthrough.errors import (
    CommitOutcomeUnknown,
    DuplicateEvent,
    HandlerFailed,
    PlaythroughError,
    StoreError,
)


@attrs.define
class Tally(State, type_name="t.outcome.Tally"):
    count: int = 0


@attrs.define
class Counted(Event, type_name="t.outcome.Counted"):
    tally_id: int = state_id(Tally)
    by: int = 1

    def apply(self, tally: Tally) -> None:
        tally.count += self.by


@pytest.fixture
def url(any_url: str) -> str:
    return any_url


def stored_positions(url: str) -> list[int]:
    with Engine.open(url) as engine, engine.store.reader() as reader:
        return [e.position for e in reader.events_after(0, 1000)]


# ---------------------------------------------------------------------- commit ids


def test_every_commit_stores_a_unique_commit_id(url: str) -> None:
    with Engine.open(url) as engine:
        engine.fire(Counted(tally_id=1))
        engine.fire(Counted(tally_id=2))
        engine.commit()
        first = engine.last_commit_id
        engine.fire(Counted(tally_id=1))
        engine.commit()
        second = engine.last_commit_id
        assert first and second and first != second
    with Engine.open(url) as fresh:
        assert fresh.was_committed(first) and fresh.was_committed(second)
        assert not fresh.was_committed("no-such-commit")
        with fresh.store.reader() as reader:
            assert reader.commit_positions(first) == (1, 2)
            assert reader.commit_positions(second) == (3, 3)


def test_commit_and_correlation_ids_are_random_version_4_uuids_in_hex(url: str) -> None:
    """Commit ids and correlations are the 32 hex digits of a version-4 UUID, as
    ``uuid.uuid4().hex`` gives them, so stored ids keep one shape across versions."""
    seen = set()
    with Engine.open(url) as engine:
        for _ in range(50):
            event = engine.fire(Counted(tally_id=1))
            engine.commit()
            for text in (engine.last_commit_id, event.correlation):
                assert isinstance(text, str) and len(text) == 32
                parsed = uuid.UUID(hex=text)
                assert parsed.hex == text
                assert parsed.version == 4 and parsed.variant == uuid.RFC_4122
                seen.add(text)
    assert len(seen) == 100


# ---------------------------------------------------------------------- PostgreSQL: unknown outcome


def _fail_after(real: Any, *, send: bool) -> Any:
    """A _send_append that (optionally) really sends, then reports a client-side failure."""

    def send_append(self: PostgresStore, conn: Any, params: Any) -> Any:
        cursor = None
        if send:
            cursor, error, _ = real(self, conn, params)
            assert error is None
        return cursor, psycopg.OperationalError("cannot exit pipeline mode while busy"), send

    return send_append


@pytest.mark.postgres
def test_pg_a_committed_append_whose_client_failed_is_reported_committed(
    pg_url: str, pg_schema: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The bug: the commit was stored, but commit() said "nothing was written".
    url = f"{pg_url}?schema={pg_schema}"
    with Engine.open(url) as engine:
        monkeypatch.setattr(
            PostgresStore, "_send_append", _fail_after(PostgresStore._send_append, send=True)
        )
        engine.fire(Counted(tally_id=1))
        engine.fire(Counted(tally_id=2))
        committed = engine.commit()
        assert [e.id for e in committed] == [1, 2]
        monkeypatch.undo()
        assert engine.load(Tally, 1).count == 1
        assert engine.was_committed(engine.last_commit_id or "")
    assert stored_positions(url) == [1, 2]


@pytest.mark.postgres
def test_pg_an_append_that_never_reached_the_server_is_certainly_not_written(
    pg_url: str, pg_schema: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"{pg_url}?schema={pg_schema}"
    with Engine.open(url) as engine:
        monkeypatch.setattr(
            PostgresStore, "_send_append", _fail_after(PostgresStore._send_append, send=False)
        )
        engine.fire(Counted(tally_id=1))
        with pytest.raises(StoreError, match="nothing was written") as info:
            engine.commit()
        assert not isinstance(info.value, CommitOutcomeUnknown)
        assert engine.pending == ()
    assert stored_positions(url) == []


@pytest.mark.postgres
def test_pg_unresolvable_outcome_is_commit_outcome_unknown_and_was_committed_answers(
    pg_url: str, pg_schema: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"{pg_url}?schema={pg_schema}"
    with Engine.open(url) as engine:
        monkeypatch.setattr(
            PostgresStore, "_send_append", _fail_after(PostgresStore._send_append, send=True)
        )

        def unreachable(*args: Any, **kwargs: Any) -> Any:
            raise psycopg.OperationalError("connection refused")

        monkeypatch.setattr(psycopg, "connect", unreachable)  # the server cannot be asked
        engine.fire(Counted(tally_id=1))
        with pytest.raises(CommitOutcomeUnknown) as info:
            engine.commit()
        monkeypatch.undo()
        error = info.value
        assert isinstance(error, StoreError)
        assert error.commit_id == engine.last_commit_id
        assert error.commit_id in str(error) and "was_committed" in str(error)
        assert "nothing was written" not in str(error)
        assert engine.pending == ()
    with Engine.open(url) as fresh:
        assert fresh.was_committed(error.commit_id)  # it was, in fact, committed
        assert fresh.load(Tally, 1).count == 1


# ---------------------------------------------------------------------- SQLite: COMMIT failing


class _Conn:
    """A sqlite3 connection whose COMMIT can be made to fail, before or after it runs."""

    def __init__(self, conn: sqlite3.Connection, mode: str) -> None:
        self._conn = conn
        self.mode = mode
        self.writing = False

    def execute(self, sql: str, *args: Any) -> Any:
        if sql == "BEGIN IMMEDIATE":
            self.writing = True
        if sql == "COMMIT" and self.mode and self.writing:
            mode, self.mode = self.mode, ""
            if mode == "after":
                self._conn.execute(sql)
            raise sqlite3.OperationalError("disk I/O error")
        return self._conn.execute(sql, *args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)


@pytest.mark.parametrize("mode", ["before", "after"])
def test_sqlite_a_failing_commit_reports_the_truth(tmp_path: Path, mode: str) -> None:
    url = f"sqlite:///{tmp_path / 'x.db'}"
    with Engine.open(url) as engine:
        assert isinstance(engine.store, SQLiteStore)
        engine.store._connection = _Conn(engine.store._conn, mode)  # type: ignore[assignment]
        engine.fire(Counted(tally_id=1))
        if mode == "after":
            [event] = engine.commit()  # COMMIT raised after it took effect: committed
            assert event.id == 1
        else:
            with pytest.raises(StoreError, match="nothing was written"):
                engine.commit()
    assert stored_positions(url) == ([1] if mode == "after" else [])


# ---------------------------------------------------------------------- idempotent firing


def test_a_key_already_in_the_log_refuses_the_whole_commit(url: str) -> None:
    with Engine.open(url) as engine:
        engine.fire(Counted(tally_id=1), key="order-17-paid")
        [paid] = engine.commit()
        assert paid.idempotency_key == "order-17-paid"
    with Engine.open(url) as retry:
        retry.fire(Counted(tally_id=2, by=5))  # rides in the same commit: not written either
        retry.fire(Counted(tally_id=1), key="order-17-paid")
        with pytest.raises(DuplicateEvent, match="order-17-paid") as info:
            retry.commit()
        assert info.value.key == "order-17-paid" and info.value.position == paid.id
        assert f"position {paid.id}" in str(info.value)
        assert retry.pending == ()
        assert retry.load(Tally, 2).count == 0 and retry.load(Tally, 1).count == 1
        retry.fire(Counted(tally_id=1), key="order-18-paid")  # another key is fine
        retry.commit()
    assert stored_positions(url) == [1, 2]


def test_a_key_twice_in_one_engine_is_refused_at_fire(url: str) -> None:
    with Engine.open(url) as engine:
        engine.fire(Counted(tally_id=1), key="k")
        with pytest.raises(DuplicateEvent, match="'k'"):
            engine.fire(Counted(tally_id=2), key="k")
        assert len(engine.pending) == 1
        engine.commit()
        with pytest.raises(TypeError, match="non-empty str"):
            engine.fire(Counted(tally_id=2), key="")


def test_a_key_twice_in_one_store_batch_is_refused_by_the_store(url: str) -> None:
    from playthrough._model import StateKey
    from playthrough._stores import NewEvent

    with Engine.open(url) as engine:
        row = NewEvent(
            "t.outcome.Counted",
            '{"by":1,"tally_id":1}',
            ((StateKey("x", "1"), 0),),
            None,
            "2026-01-01T00:00:00+00:00",
            "same",
        )
        with pytest.raises(DuplicateEvent, match="two events of one commit"):
            engine.store.append([row, row], {})
    assert stored_positions(url) == []


# ---------------------------------------------------------------------- after the append


def test_a_failing_snapshot_policy_does_not_fail_the_commit(
    url: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    with Engine.open(url, snapshot_every=1) as engine:

        def locked(*args: Any, **kwargs: Any) -> None:
            raise StoreError("database is locked")

        monkeypatch.setattr(engine.store, "write_snapshots", locked)
        engine.fire(Counted(tally_id=1))
        with caplog.at_level(logging.WARNING, logger="playthrough"):
            [event] = engine.commit()
        assert event.id == 1
        assert isinstance(engine.snapshot_error, StoreError)
        assert "database is locked" in caplog.text and "the commit stands" in caplog.text
    assert stored_positions(url) == [1]


def test_a_state_that_cannot_be_encoded_does_not_fail_the_commit(url: str) -> None:
    @attrs.define
    class Odd(State, type_name="t.outcome.Odd"):
        stuff: object = None

    @attrs.define
    class Stuffed(Event, type_name="t.outcome.Stuffed"):
        odd_id: int = state_id(Odd)

        def apply(self, odd: Odd) -> None:
            odd.stuff = {1, 2}  # a set in an `object` field: JSON cannot say what it is

    # Without heads values the state is first encoded by the snapshot policy,
    # after the append: the commit stands and the failure is reported as such.
    with Engine.open(url, snapshot_every=1, head_values=False) as engine:
        engine.fire(Stuffed(odd_id=1))
        [event] = engine.commit()
        assert event.id == 1 and engine.snapshot_error is not None
    assert stored_positions(url) == [1]
    # With heads values (the default) the value is encoded before the append, so
    # the commit fails, truthfully, with nothing written.
    with Engine.open(url, snapshot_every=1) as engine:
        engine.fire(Stuffed(odd_id=2))
        with pytest.raises(PlaythroughError, match=r"t\.outcome\.Odd\(2\)"):
            engine.commit()
    assert stored_positions(url) == [1]


# ------------------------------------------------------------- PostgreSQL: the checked path
# Commits that schedule, cancel, complete a state or complete a handler are sent
# statement by statement (their checks run before anything is written); a lost
# connection there is resolved through pt_commits like any other commit.


def _commit_kinds(kind: str, engine: Engine) -> None:
    """Set up (committed normally), so that ``_act`` then makes one commit of ``kind``."""
    from .sched_domain import OrderPlaced

    if kind in ("complete", "handled"):
        engine.fire(OrderPlaced(order_id=1))  # its handler schedules the payment timeout
        engine.commit()
    if kind == "handled":
        with engine.store.reader() as reader:
            assert reader.pending_handlers(10) == []
        # Make the handler of event 1 pending again, as a crash would have left it.
        store = engine.store
        assert isinstance(store, PostgresStore)
        with store._transaction("test", "test") as conn:
            conn.execute(f'INSERT INTO "{store.schema}".pt_pending_handlers VALUES (1)')
    if kind == "cancel":
        engine.scheduler.schedule(Counted(tally_id=1), after=timedelta(minutes=5))


def _act(kind: str, engine: Engine) -> None:
    from .sched_domain import PaymentReceived

    if kind == "schedule":
        engine.scheduler.schedule(Counted(tally_id=1), after=timedelta(minutes=5))
    elif kind == "cancel":
        with engine.store.reader() as reader:
            [row] = reader.schedules()
        assert engine.scheduler.cancel(row.id) is True
    elif kind == "complete":
        engine.fire(PaymentReceived(order_id=1))  # closes (completes) the order
        engine.commit()
    else:
        engine.admin.run_pending_handlers()


def _facts(url: str) -> tuple[int, list[tuple[str, str]], list[int]]:
    with Engine.open(url) as engine, engine.store.reader() as reader:
        return (
            reader.head(),
            sorted((r.type, r.status) for r in reader.schedules()),
            reader.pending_handlers(10),
        )


def _fail_commit(real: Any, *, send: bool) -> Any:
    def send_commit(self: PostgresStore, conn: Any) -> None:
        if send:
            real(self, conn)
        raise psycopg.OperationalError("server closed the connection unexpectedly")

    return send_commit


_KINDS = ["schedule", "cancel", "complete", "handled"]


@pytest.mark.postgres
@pytest.mark.parametrize("kind", _KINDS)
def test_pg_a_checked_commit_whose_connection_failed_after_commit_is_reported_committed(
    pg_url: str, pg_schema: str, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    url = f"{pg_url}?schema={pg_schema}"
    reference = f"{pg_url}?schema={pg_schema}_ref"
    try:
        for target, fail in ((reference, False), (url, True)):
            with Engine.open(target) as engine:
                _commit_kinds(kind, engine)
                if fail:
                    monkeypatch.setattr(
                        PostgresStore,
                        "_send_commit",
                        _fail_commit(PostgresStore._send_commit, send=True),
                    )
                _act(kind, engine)  # no error: the commit is stored, and so reported
                monkeypatch.undo()
                assert engine.was_committed(engine.last_commit_id or "")
        assert _facts(url) == _facts(reference)
    finally:
        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{pg_schema}_ref" CASCADE')


@pytest.mark.postgres
@pytest.mark.parametrize("kind", _KINDS)
def test_pg_a_checked_commit_that_never_committed_is_certainly_not_written(
    pg_url: str, pg_schema: str, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    url = f"{pg_url}?schema={pg_schema}"
    with Engine.open(url) as engine:
        _commit_kinds(kind, engine)
        before = _facts(url)
        monkeypatch.setattr(
            PostgresStore, "_send_commit", _fail_commit(PostgresStore._send_commit, send=False)
        )
        with pytest.raises(PlaythroughError, match="nothing was written") as info:
            _act(kind, engine)
        monkeypatch.undo()
        if kind == "handled":  # reported as the handler's failure, with the certain cause
            assert isinstance(info.value, HandlerFailed)
            info_error = info.value.failures[0][1]
        else:
            info_error = info.value
        assert isinstance(info_error, StoreError)
        assert not isinstance(info_error, CommitOutcomeUnknown)
        assert "checked after the failure" in str(info_error)
        assert not engine.was_committed(engine.last_commit_id or "")
    assert _facts(url) == before


@pytest.mark.postgres
@pytest.mark.parametrize("kind", _KINDS)
def test_pg_a_checked_commit_with_an_unlearnable_outcome_is_commit_outcome_unknown(
    pg_url: str, pg_schema: str, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    url = f"{pg_url}?schema={pg_schema}"
    with Engine.open(url) as engine:
        _commit_kinds(kind, engine)
        monkeypatch.setattr(
            PostgresStore, "_send_commit", _fail_commit(PostgresStore._send_commit, send=True)
        )

        def unreachable(*args: Any, **kwargs: Any) -> Any:
            raise psycopg.OperationalError("connection refused")

        monkeypatch.setattr(psycopg, "connect", unreachable)
        with pytest.raises(PlaythroughError) as info:
            _act(kind, engine)
        monkeypatch.undo()
        error = info.value.failures[0][1] if isinstance(info.value, HandlerFailed) else info.value
        assert isinstance(error, CommitOutcomeUnknown)
        assert error.commit_id == engine.last_commit_id
        assert engine.was_committed(error.commit_id)  # it was, in fact, committed
