"""Shared fixtures.

PostgreSQL: tests take the server from PLAYTHROUGH_PG_URL (default: the test
machines' server, postgresql://root@127.0.0.1:5432/test). Where no server
answers they skip with the reason, unless PLAYTHROUGH_REQUIRE_PG=1 (set by
.ci/run), which turns that skip into a failure. Each test gets a schema of its
own, dropped afterwards.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

PG_URL = os.environ.get("PLAYTHROUGH_PG_URL", "postgresql://root@127.0.0.1:5432/test")
REQUIRE_PG = os.environ.get("PLAYTHROUGH_REQUIRE_PG", "") not in ("", "0", "false", "no")

_pg_problem: str | None = None
_pg_checked = False


def _check_pg() -> str | None:
    global _pg_checked, _pg_problem
    if not _pg_checked:
        _pg_checked = True
        try:
            import psycopg
        except ImportError:
            _pg_problem = "psycopg is not installed (pip install 'playthrough[postgres]')"
        else:
            try:
                psycopg.connect(PG_URL, connect_timeout=3).close()
            except Exception as exc:  # noqa: BLE001 - any failure means "no server here"
                _pg_problem = f"no PostgreSQL server answers at {PG_URL}: {exc}".strip()
    return _pg_problem


@pytest.fixture(scope="session")
def pg_url() -> str:
    """The server URL; skips (or fails under PLAYTHROUGH_REQUIRE_PG) without a server."""
    problem = _check_pg()
    if problem is not None:
        if REQUIRE_PG:
            pytest.fail(f"PLAYTHROUGH_REQUIRE_PG is set but {problem}", pytrace=False)
        pytest.skip(problem)
    return PG_URL


@pytest.fixture
def pg_schema(pg_url: str) -> Iterator[str]:
    """A fresh, empty schema name for this test; dropped (with its tables) afterwards."""
    import psycopg

    name = f"pt_test_{uuid.uuid4().hex[:12]}"
    yield name
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


@pytest.fixture(params=["sqlite", "postgres"])
def any_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A store URL on each store in turn: a SQLite file, then a fresh PostgreSQL schema."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    pg_url: str = request.getfixturevalue("pg_url")
    return f"{pg_url}?schema={request.getfixturevalue('pg_schema')}"


@pytest.fixture
def isolated_registry() -> Iterator[None]:
    """Classes a test defines at run time (the README's tour, run with ``exec``) leave
    the registry when it ends, so their short names cannot shadow other modules'
    classes in tests that run later (a follower's ``on_Deposited``, the CLI's ``--type``)."""
    from playthrough._model import registry

    states, events = dict(registry.states), dict(registry.events)
    try:
        yield
    finally:
        if dict(registry.states) != states:
            registry.states.clear()
            registry.states.update(states)
        if dict(registry.events) != events:
            registry.events.clear()
            registry.events.update(events)


@pytest.fixture
def pg_store_factory(pg_url: str, pg_schema: str) -> Iterator[Callable[[], Any]]:
    """Each call: a PostgreSQL store on a new schema (one per Hypothesis example), all closed
    and dropped afterwards."""
    import psycopg

    from playthrough._stores.postgres import PostgresStore

    made: list[tuple[str, Any]] = []

    def make() -> Any:
        schema = f"{pg_schema}_{len(made)}"
        store = PostgresStore(pg_url, schema=schema)
        made.append((schema, store))
        return store

    yield make
    with psycopg.connect(pg_url, autocommit=True) as conn:
        for schema, store in made:
            store.close()
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
