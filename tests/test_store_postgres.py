"""The PostgreSQL store: the store contract, plus what only a server can get wrong.

Every test takes the ``pg_schema`` fixture (conftest.py): a schema of its own,
dropped afterwards.
"""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest

from playthrough import Engine
from playthrough._model import StateKey
from playthrough._stores import Link, NewEvent, SnapshotRecord, SQLiteStore, Store, open_store
from playthrough._stores._base import SCHEMA_VERSION
from playthrough._stores.postgres import PostgresStore
from playthrough.errors import CommitOutcomeUnknown, ConcurrencyError, StoreError
from playthrough.testing import StoreContract
from playthrough.testing.store_contract import A1, A2, HUB, ev

from .pg_domain import Account, Audited, Opened, Transfer

pytestmark = pytest.mark.postgres


class TestPostgresStore(StoreContract):
    @pytest.fixture(autouse=True)
    def _server(self, pg_url: str, pg_schema: str) -> None:
        self.url = pg_url
        self.schema = pg_schema

    def make_store(self) -> Store:
        return PostgresStore(self.url, schema=self.schema)

    def reopen_store(self, store: Store) -> Store | None:
        return PostgresStore(self.url, schema=self.schema)

    def bump_schema_version(self, store: Store) -> Callable[[], Store]:
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(
                f"UPDATE \"{self.schema}\".pt_meta SET value = '999' WHERE key = 'schema_version'"
            )
        return lambda: PostgresStore(self.url, schema=self.schema)


def test_unusual_expectations_behave_like_sqlite(pg_url: str, pg_schema: str) -> None:
    """States expected but not linked, and linked but not expected, as SQLite treats them."""
    steps: list[tuple[list[NewEvent], dict[StateKey, int | None]]] = [
        ([ev((A1, 0))], {A1: None, A2: None}),  # A2: expected absent, not touched
        ([ev((A1, 0))], {A1: 1, A2: 5}),  # A2 expected at 5 but absent: refused
        ([ev((A1, 0)), ev((HUB, 0))], {A1: 1}),  # HUB not in expected: written unchecked
        ([ev((A2, 0))], {A2: None, A1: 2}),  # A1 expected and right, not touched: kept
        ([ev((A2, 0))], {A2: 4, A1: 1}),  # A1 expected wrong: refused
        ([ev((A2, 0))], {A2: 4, HUB: None}),  # HUB expected absent, but present: refused
    ]
    outcomes: list[list[object]] = []
    for store in (SQLiteStore(":memory:"), PostgresStore(pg_url, schema=pg_schema)):
        seen: list[object] = []
        try:
            for events, expected in steps:
                try:
                    seen.append(store.append(events, expected))
                except ConcurrencyError as exc:
                    seen.append(sorted(re.findall(r"\w+\((?:'\d+'|\d+)\)|Hub", str(exc))))
                with store.reader() as r:
                    seen.append((r.head(), r.state_heads([A1, A2, HUB])))
        finally:
            store.close()
        outcomes.append(seen)
    assert outcomes[0] == outcomes[1]
    assert outcomes[1][2] == ["Acct(2)"] and outcomes[1][8] == ["Acct(1)"]
    assert outcomes[1][10] == ["Hub"]


# ---------------------------------------------------------------------- URLs and errors


def _with(url: str, *, netloc: str | None = None, path: str | None = None) -> str:
    parts = urlsplit(url)
    return urlunsplit(
        parts._replace(
            netloc=parts.netloc if netloc is None else netloc,
            path=parts.path if path is None else path,
        )
    )


def _hostport(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "localhost", parts.port or 5432


def test_server_not_listening_names_host_and_port(pg_url: str, pg_schema: str) -> None:
    host, _ = _hostport(pg_url)
    with socket.socket() as s:  # a port nothing listens on: bind, never listen
        s.bind((host, 0))
        port = s.getsockname()[1]
        url = _with(pg_url, netloc=f"someone:s3cret-pw@{host}:{port}")
        started = time.monotonic()
        with pytest.raises(StoreError, match=f"{re.escape(host)}:{port}") as info:
            PostgresStore(url, schema=pg_schema, connect_timeout=3)
    assert time.monotonic() - started < 10
    assert "s3cret-pw" not in str(info.value)
    with pytest.raises(StoreError, match=str(port)):  # through the public entry point too
        Engine.open(url, schema=pg_schema, connect_timeout=3)


def test_missing_database_is_a_clear_error(pg_url: str, pg_schema: str) -> None:
    url = _with(pg_url, path="/no_such_db_for_playthrough")
    with pytest.raises(StoreError, match="no_such_db_for_playthrough") as info:
        PostgresStore(url, schema=pg_schema)
    assert "does not exist" in str(info.value)


def test_refused_login_is_a_clear_error(pg_url: str, pg_schema: str) -> None:
    """The test server trusts every password, so a role that may not log in stands in."""
    role = f"{pg_schema}_nologin"
    with psycopg.connect(pg_url, autocommit=True) as admin:
        admin.execute(f'CREATE ROLE "{role}" NOLOGIN')
    try:
        host, port = _hostport(pg_url)
        url = _with(pg_url, netloc=f"{role}:pw-{role}@{host}:{port}")
        with pytest.raises(StoreError, match=f"{re.escape(host)}:{port}") as info:
            PostgresStore(url, schema=pg_schema)
        assert "not permitted to log in" in str(info.value)
        assert f"pw-{role}" not in str(info.value)
    finally:
        with psycopg.connect(pg_url, autocommit=True) as admin:
            admin.execute(f'DROP ROLE IF EXISTS "{role}"')


def test_schema_in_the_url_and_url_without_password(pg_url: str, pg_schema: str) -> None:
    user = urlsplit(pg_url).username or "root"
    host, port = _hostport(pg_url)
    secret_url = _with(pg_url, netloc=f"{user}:hunter2@{host}:{port}")
    store = open_store(f"{secret_url}?schema={pg_schema}&application_name=pt-test")
    try:
        assert isinstance(store, PostgresStore)
        assert store.schema == pg_schema
        assert "hunter2" not in store.url
        assert f"schema={pg_schema}" in store.url
        assert store.url.startswith(f"postgresql://{user}@")
        assert "application_name=pt-test" in store.url  # other libpq options are kept
        (p,) = store.append([ev((A1, 0))], {A1: None})
    finally:
        store.close()
    # The schema option names the same store.
    same = PostgresStore(pg_url, schema=pg_schema)
    try:
        assert f"schema={pg_schema}" in same.url
        with same.reader() as r:
            assert r.state_heads([A1]) == {A1: p}
    finally:
        same.close()
    with psycopg.connect(pg_url) as conn:
        tables = conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = %s",
            (pg_schema,),
        ).fetchall()
    assert {t for (t,) in tables} == {
        "pt_meta",
        "pt_commits",
        "pt_pending_handlers",
        "pt_events",
        "pt_links",
        "pt_heads",
        "pt_snapshots",
        "pt_completed",
        "pt_schedule",
        "pt_subject_keys",
        "pt_archived_keys",
        "pt_followers",
        "pt_forgotten",
        "pt_archived_personal",
        "pt_subject_events",
    }
    with pytest.raises(StoreError, match="two schemas"):
        PostgresStore(f"{pg_url}?schema={pg_schema}", schema="other")
    reopened = open_store(same.url)  # the URL a store shows opens that store again
    try:
        with reopened.reader() as r:
            assert r.head() == p
    finally:
        reopened.close()


def test_stores_opened_at_once_create_the_schema_once(pg_url: str, pg_schema: str) -> None:
    """Concurrent first opens race on CREATE SCHEMA/TABLE; the migration lock serialises them."""
    n = 6
    barrier = threading.Barrier(n)
    errors: list[BaseException] = []
    stores: list[Store] = []

    def open_one() -> None:
        barrier.wait(timeout=10)
        try:
            stores.append(PostgresStore(pg_url, schema=pg_schema))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=open_one) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    try:
        assert errors == []
        assert len(stores) == n
        with stores[0].reader() as r:
            assert r.meta("schema_version") == str(SCHEMA_VERSION)
    finally:
        for s in stores:
            s.close()


def test_connection_killed_mid_append_leaves_nothing(pg_url: str, pg_schema: str) -> None:
    """The server ends the writer's session after the append wrote rows, before it commits.

    Another session holds an uncommitted pt_events row at the position the
    append's last event will take. The append statement moves the heads first,
    inserts its events in order, and waits on that key; we terminate its backend
    while it waits, with the heads and three of its four events written.
    """
    store = PostgresStore(pg_url, schema=pg_schema)
    blocker = psycopg.connect(pg_url)
    watcher = psycopg.connect(pg_url, autocommit=True)
    try:
        (p,) = store.append([ev((A1, 0))], {A1: None})
        # The append below numbers its events p+1..p+4.
        blocker.execute(
            f'INSERT INTO "{pg_schema}".pt_events VALUES (%s, %s, %s, NULL, %s)',
            (p + 4, "Blocker", "{}", "2026-01-01T00:00:00+00:00"),
        )
        blocker_pid = blocker.info.backend_pid
        outcome: list[BaseException | list[int]] = []

        def append() -> None:
            try:
                outcome.append(
                    store.append(
                        [ev((A1, 0)), ev((A1, 0)), ev((A2, 0)), ev((A1, 0), (A2, 1))],
                        {A1: p, A2: None},
                    )
                )
            except BaseException as exc:  # noqa: BLE001 - checked below
                outcome.append(exc)

        thread = threading.Thread(target=append)
        thread.start()
        victim = None
        deadline = time.monotonic() + 10
        while victim is None and time.monotonic() < deadline:  # until it waits on the blocker
            row = watcher.execute(
                "SELECT pid, backend_xid IS NOT NULL FROM pg_stat_activity "
                "WHERE %s = ANY(pg_blocking_pids(pid))",
                (blocker_pid,),
            ).fetchone()
            if row is not None:
                victim, writing = row
                assert writing  # the append's transaction had written when it was killed
        assert victim is not None, "the append never waited on the blocking row"
        watcher.execute("SELECT pg_terminate_backend(%s)", (victim,))
        thread.join(timeout=10)
        assert not thread.is_alive()
        [result] = outcome
        assert isinstance(result, StoreError), result
        # The client cannot know by itself whether the server got as far as COMMIT:
        # the store asks (on a new connection, once the old backend is gone) and
        # says so only once it is certain; the reads below agree.
        assert not isinstance(result, CommitOutcomeUnknown)
        assert "nothing was written (checked after the failure)" in str(result)
        blocker.rollback()

        with store.reader() as r:  # the pool replaced the dead connection
            assert r.head() == p
            assert [e.position for e in r.events_after(0, 10)] == [p]
            assert r.state_heads([A1, A2]) == {A1: p}
            assert r.links({A1: (0, 100), A2: (0, 100)}) == [Link(p, A1, 0)]
        (q,) = store.append([ev((A1, 0), (A2, 1))], {A1: p, A2: None})
        assert q == p + 1
    finally:
        blocker.close()
        watcher.close()
        store.close()


def test_dead_pooled_connections_are_replaced(pg_url: str, pg_schema: str) -> None:
    name = f"pt-{pg_schema}"  # only this store's sessions carry it: kill those, no others
    store = PostgresStore(f"{pg_url}?application_name={name}", schema=pg_schema, min_size=2)
    try:
        (p,) = store.append([ev((A1, 0))], {A1: None})
        with psycopg.connect(pg_url, autocommit=True) as admin:
            killed = admin.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE application_name = %s",
                (name,),
            ).fetchone()
        assert killed is not None and killed[0] == 2
        with store.reader() as r:
            assert r.head() == p
        (q,) = store.append([ev((A1, 0))], {A1: p})
        assert q == p + 1
    finally:
        store.close()


# ---------------------------------------------------------------------- round trips


class _Count:
    def __init__(self, store: Store) -> None:
        self.store = store

    def __enter__(self) -> _Count:
        self.start = self.store.statements
        return self

    def __exit__(self, *exc: object) -> None:
        self.n = self.store.statements - self.start


def _fresh(pg_url: str, schema: str, **options: object) -> Engine:
    return Engine.open(pg_url, schema=schema, **options)


def _one_state_load(pg_url: str, schema: str, events: int) -> int:
    with _fresh(pg_url, schema) as writer:
        for _ in range(events):
            writer.fire(Opened(account_id=7, amount=1))
        writer.fire(Transfer(source_id=7, target_id=8, amount=1))
        writer.commit()
    with _fresh(pg_url, schema) as reader, _Count(reader.store) as count:
        assert reader.load(Account, 7).balance == events - 1
    return count.n


def _load_many(pg_url: str, schema: str, states: int) -> int:
    with _fresh(pg_url, schema) as writer:
        for n in range(states):
            writer.fire(Opened(account_id=n, amount=n))
        writer.commit()
        for n in range(0, states, 2):
            writer.fire(Transfer(source_id=n, target_id=n + 1, amount=1))
        writer.commit()
    with _fresh(pg_url, schema) as reader, _Count(reader.store) as count:
        loaded = reader.load_many(Account, range(states))
        assert [a.balance for a in loaded] == [n - 1 + 2 * (n % 2) for n in range(states)]
    return count.n


def _coupled_group(pg_url: str, schema: str, events: int) -> int:
    """Accounts 0..4 trade among themselves and meet through the auditor singleton.

    Written without heads values, so the load plans and plays the group.
    """
    with _fresh(pg_url, schema, head_values=False) as writer:
        for n in (1, 2, 3, 4, 0):
            writer.fire(Audited(account_id=n))
        for n in range(events):
            writer.fire(Transfer(source_id=n % 5, target_id=(n + 1) % 5, amount=1))
        writer.fire(Audited(account_id=0))
        writer.commit()
    with _fresh(pg_url, schema, head_values=False) as reader:
        plan = reader.explain(Account, 0)
        with _Count(reader.store) as count:
            reader.load(Account, 0)
        # The plan played the whole group to the head: all of it is in the identity map.
        with _Count(reader.store) as again:
            reader.load_many(Account, range(5))
        assert again.n == 0
    assert len(plan.states) == 6  # the group is whole: five accounts and the auditor
    return count.n


def _written_back(pg_url: str, schema: str, events: int) -> int:
    """The first load of a store without values writes them back: the next load is one row."""
    _coupled_group(pg_url, schema, events)
    with _fresh(pg_url, schema) as warm:
        warm.load(Account, 3)
    with _fresh(pg_url, schema) as reader, _Count(reader.store) as count:
        reader.load_many(Account, range(5))
    return count.n


@pytest.fixture
def second_schema(pg_url: str, pg_schema: str) -> Iterator[str]:
    """Another fresh schema, dropped afterwards like ``pg_schema``."""
    name = f"{pg_schema}_b"
    yield name
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


# A load whose heads values are current is one statement, for one state or many
# (one autocommit round trip); a plan over a group without values stays bounded.
_MOST: dict[Callable[[str, str, int], int], int] = {
    _one_state_load: 1,
    _load_many: 1,
    _written_back: 1,
    _coupled_group: 9,
}


@pytest.mark.parametrize("build", list(_MOST))
def test_statements_per_load_do_not_grow_with_events_or_states(
    pg_url: str, pg_schema: str, second_schema: str, build: Callable[[str, str, int], int]
) -> None:
    small = build(pg_url, pg_schema, 10)
    large = build(pg_url, second_schema, 1000)
    assert small == large, (small, large)
    assert large <= _MOST[build], large


def test_statements_per_commit_do_not_grow_with_events(pg_url: str, pg_schema: str) -> None:
    store = PostgresStore(pg_url, schema=pg_schema)
    try:
        keys = [StateKey("Other", str(i)) for i in range(1000)]
        with _Count(store) as one:
            store.append([ev((A1, 0))], {A1: None})
        with _Count(store) as thousand:
            store.append([ev((k, 0), (HUB, 1)) for k in keys], {**dict.fromkeys(keys), HUB: None})
        with _Count(store) as snaps:
            store.write_snapshots(
                [SnapshotRecord(k, 1000, 999, "{}") for k in keys], keep=2, meta={"k": "v"}
            )
        assert one.n == thousand.n == 2
        assert snaps.n == 3
    finally:
        store.close()
