"""Statements each phase sends to the database, counted at the driver.

Counted below the store (sqlite3's trace callback on every connection the
store opens; psycopg's cursor methods), so a statement the store forgets to
count is still seen. Each figure is a ceiling, the count the code sends today:
a change that adds round trips to a commit, a batch, a load or a replay page
fails here. Lower a ceiling when a change saves statements.
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import attrs
import pytest

from playthrough import Engine, Event, State, state_id


@attrs.define
class Tally(State, type_name="t.stmts.Tally"):
    total: int = 0


@attrs.define
class Counted(Event, type_name="t.stmts.Counted"):
    tally_id: int = state_id(Tally)
    amount: int = 1

    def apply(self, tally: Tally) -> None:
        tally.total += self.amount


class Statements:
    """Every statement sent while counting (BEGIN and COMMIT included)."""

    def __init__(self) -> None:
        self.sent: list[str] = []
        self.on = False

    def seen(self, sql: object) -> None:
        if self.on:
            self.sent.append(str(sql))

    @contextmanager
    def counting(self) -> Iterator[list[str]]:
        self.sent = []
        self.on = True
        try:
            yield self.sent
        finally:
            self.on = False


@pytest.fixture
def statements(any_url: str, monkeypatch: pytest.MonkeyPatch) -> Statements:
    counter = Statements()
    if any_url.startswith("sqlite"):
        connect = sqlite3.connect

        def traced(*args: Any, **kwargs: Any) -> sqlite3.Connection:
            conn: sqlite3.Connection = connect(*args, **kwargs)
            last: list[str] = [""]

            def seen(sql: str) -> None:
                # SQLite traces a trigger's run (pt_events_subjects, on every event
                # insert) as a second copy of the statement that fired it: one
                # statement sent, so it is counted once.
                if sql == last[0] and sql.lstrip().startswith("INSERT INTO pt_events "):
                    return
                last[0] = sql
                counter.seen(sql)

            conn.set_trace_callback(seen)
            return conn

        monkeypatch.setattr(sqlite3, "connect", traced)
    else:
        import psycopg

        def wrap(name: str) -> None:
            method: Callable[..., Any] = getattr(psycopg.Cursor, name)

            def counted(self: Any, query: Any, *args: Any, **kwargs: Any) -> Any:
                counter.seen(query)
                return method(self, query, *args, **kwargs)

            monkeypatch.setattr(psycopg.Cursor, name, counted)

        for name in ("execute", "executemany", "copy"):
            wrap(name)
    return counter


# The ceilings, per store: (sqlite, postgres). SQLite's trace callback sees
# each row of an executemany as a statement run (1000 rows: 1000), psycopg's
# cursor one call (an executemany, a COPY) as one.
CEILINGS = {
    "one event per commit": (7, 4),
    "1000 events per commit": (3007, 4),
    "cold load of one state": (1, 1),
    "cold load_many of 100 states": (1, 1),
    "replay of 5000 events (pages of 2000)": (72, 65),
}


def _check(phase: str, url: str, sent: list[str]) -> None:
    sqlite_ceiling, pg_ceiling = CEILINGS[phase]
    ceiling = sqlite_ceiling if url.startswith("sqlite") else pg_ceiling
    kinds = Counter(" ".join(s.split())[:60] for s in sent).most_common()
    assert len(sent) <= ceiling, f"{phase}: {len(sent)} statements, at most {ceiling}: {kinds}"


def test_statements_per_commit(any_url: str, statements: Statements) -> None:
    with Engine.open(any_url) as engine:
        for n in range(1000):
            engine.fire(Counted(tally_id=n))
        engine.commit()
        engine.fire(Counted(tally_id=1))  # warm: statements prepared, the state in memory
        engine.commit()
        with statements.counting() as sent:
            engine.fire(Counted(tally_id=1))
            engine.commit()
        _check("one event per commit", any_url, sent)
        with statements.counting() as sent:
            for n in range(1000):
                engine.fire(Counted(tally_id=n))
            engine.commit()
        _check("1000 events per commit", any_url, sent)


def test_statements_per_load(any_url: str, statements: Statements) -> None:
    with Engine.open(any_url) as engine:
        for n in range(100):
            engine.fire(Counted(tally_id=n, amount=n))
        engine.commit()
    with Engine.open(any_url) as engine:
        engine.load(Tally, 0)  # warm: the connection open and the schema checked
        with statements.counting() as sent:
            assert engine.load(Tally, 7).total == 7
        _check("cold load of one state", any_url, sent)
    with Engine.open(any_url) as engine:
        engine.load(Tally, 0)
        with statements.counting() as sent:
            assert [t.total for t in engine.load_many(Tally, range(100))] == list(range(100))
        _check("cold load_many of 100 states", any_url, sent)


def test_statements_per_replay_page(any_url: str, statements: Statements) -> None:
    with Engine.open(any_url) as engine:
        for n in range(5000):
            engine.fire(Counted(tally_id=n % 50))
        engine.commit()
        with statements.counting() as sent:
            engine.admin.replay(chunk_size=2000, snapshot_every=2000)
        _check("replay of 5000 events (pages of 2000)", any_url, sent)
        assert engine.load(Tally, 3).total == 100


@attrs.define
class Noted(Event, type_name="t.stmts.Noted"):
    tally_id: int = state_id(Tally)

    def apply(self, tally: Tally) -> None:
        tally.total += 1

    def handle(self) -> None:
        pass


class _Calls:
    """A connection that records the statements given to ``executemany``, even with no rows."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._real = conn
        self.many: list[str] = []

    def executemany(self, sql: str, rows: Any) -> Any:
        self.many.append(" ".join(sql.split()))
        return self._real.executemany(sql, rows)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


def test_sqlite_a_commit_with_no_handlers_to_run_sends_no_pending_handlers_statement(
    tmp_path: Any,
) -> None:
    """An empty ``executemany`` is not traced (the driver-level count above cannot
    see it), yet it is a call and a statement to prepare: a commit of events
    without ``handle`` hooks makes none for the pending-handlers table."""
    with Engine.open(f"sqlite:///{tmp_path / 'p.db'}?synchronous=off") as engine:
        store: Any = engine.store
        calls = _Calls(store._connection)
        store._connection = calls
        try:
            engine.fire(Counted(tally_id=1))
            engine.commit()
            plain = [s for s in calls.many if "pt_pending_handlers" in s]
            calls.many.clear()
            engine.fire(Noted(tally_id=1))
            engine.commit()
            noted = [s for s in calls.many if "INSERT INTO pt_pending_handlers" in s]
        finally:
            store._connection = calls._real
        assert plain == []
        assert len(noted) == 1
        assert engine.load(Tally, 1).total == 2


@pytest.mark.postgres
def test_pg_a_commit_is_one_round_trip(
    pg_url: str, pg_schema: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A one-event and a 1000-event commit each wait for the server once: BEGIN, the
    lock, the append and COMMIT in one pipeline, with one Sync (psycopg sends one
    when a pipeline block ends, and one more per explicit ``sync()``)."""
    import psycopg

    trips: list[str] = []
    piped = [0]
    counting = [False]
    execute = psycopg.Cursor.execute
    pipeline = psycopg.Connection.pipeline
    sync = psycopg.Pipeline.sync

    def counted_execute(self: Any, query: Any, *args: Any, **kwargs: Any) -> Any:
        if counting[0] and not piped[0]:
            trips.append(str(query))  # on its own: sent, then its answer awaited
        return execute(self, query, *args, **kwargs)

    @contextmanager
    def counted_pipeline(self: Any) -> Iterator[Any]:
        if counting[0] and not piped[0]:
            trips.append("pipeline")  # its Sync at the end of the block
        piped[0] += 1
        try:
            with pipeline(self) as p:
                yield p
        finally:
            piped[0] -= 1

    def counted_sync(self: Any) -> None:
        if counting[0]:
            trips.append("sync")
        sync(self)

    monkeypatch.setattr(psycopg.Cursor, "execute", counted_execute)
    monkeypatch.setattr(psycopg.Connection, "pipeline", counted_pipeline)
    monkeypatch.setattr(psycopg.Pipeline, "sync", counted_sync)
    with Engine.open(f"{pg_url}?schema={pg_schema}") as engine:
        engine.fire(Counted(tally_id=1))
        engine.commit()
        for events in (1, 1000):
            for n in range(events):
                engine.fire(Counted(tally_id=n))  # in memory: no statement
            trips.clear()
            counting[0] = True
            engine.commit()
            counting[0] = False
            assert trips == ["pipeline"], f"{events} events per commit: {trips}"
        assert engine.load(Tally, 1).total == 2


@pytest.mark.postgres
def test_pg_an_async_commit_is_one_round_trip(
    pg_url: str, pg_schema: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The async store sends the sync store's pipeline as one batch: one Sync."""
    import asyncio

    import psycopg

    import playthrough.aio

    trips: list[str] = []
    piped = [0]
    counting = [False]
    execute = psycopg.AsyncConnection.execute
    pipeline = psycopg.AsyncConnection.pipeline
    sync = psycopg.AsyncPipeline.sync

    async def counted_execute(self: Any, query: Any, *args: Any, **kwargs: Any) -> Any:
        if counting[0] and not piped[0]:
            trips.append(str(query))
        return await execute(self, query, *args, **kwargs)

    @asynccontextmanager
    async def counted_pipeline(self: Any) -> AsyncIterator[Any]:
        if counting[0] and not piped[0]:
            trips.append("pipeline")
        piped[0] += 1
        try:
            async with pipeline(self) as p:
                yield p
        finally:
            piped[0] -= 1

    async def counted_sync(self: Any) -> None:
        if counting[0]:
            trips.append("sync")
        await sync(self)

    monkeypatch.setattr(psycopg.AsyncConnection, "execute", counted_execute)
    monkeypatch.setattr(psycopg.AsyncConnection, "pipeline", counted_pipeline)
    monkeypatch.setattr(psycopg.AsyncPipeline, "sync", counted_sync)

    async def main() -> int:
        store = await playthrough.aio.connect(f"{pg_url}?schema={pg_schema}")
        try:
            engine = store.engine()
            await engine.fire(Counted(tally_id=1))
            await engine.commit()
            await engine.fire(Counted(tally_id=1))
            trips.clear()
            counting[0] = True
            await engine.commit()
            counting[0] = False
            return (await engine.load(Tally, 1)).total
        finally:
            await store.close()

    assert asyncio.run(asyncio.wait_for(main(), 60)) == 2
    assert trips == ["pipeline"], trips
