"""The pytest plugin (registered through the ``pytest11`` entry point ``playthrough``).

Fixtures:

- ``playthrough_engine``: a fresh :class:`~playthrough.Engine` per test. By
  default on in-memory SQLite; ``--playthrough-url URL`` (or the
  ``PLAYTHROUGH_TEST_URL`` environment variable) picks the backend: a
  ``sqlite:///NAME.db`` URL gives each test a new file of that name in its
  ``tmp_path``; a ``postgresql://`` URL gives each test a new schema, dropped
  afterwards. Pending events are discarded when the test ends. Its store is a
  throwaway (:func:`~playthrough.testing.throwaway`): ``given_state`` writes there.
- ``playthrough_scenario``: a :class:`~playthrough.testing.Scenario` over
  ``playthrough_engine``, for given / when / then tests.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import pytest

from .._engine import Engine
from .._stores import parse_store_url, sqlite_url
from ._given import throwaway
from .scenario import Scenario

ENV = "PLAYTHROUGH_TEST_URL"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("playthrough")
    group.addoption(
        "--playthrough-url",
        dest="playthrough_url",
        default=None,
        metavar="URL",
        help=f"store URL for the playthrough_engine fixture (default: ${ENV}, else in-memory "
        "SQLite); each test gets a fresh SQLite file or PostgreSQL schema",
    )


def configured_url(config: pytest.Config) -> str:
    """The URL from ``--playthrough-url`` or ``PLAYTHROUGH_TEST_URL`` (else in memory)."""
    url: str = config.getoption("playthrough_url") or os.environ.get(ENV) or "sqlite://"
    return url


def _fresh(url: str, tmp_path: Path) -> tuple[str, Callable[[], None]]:
    """A URL naming an empty store for one test, and how to clean it up."""
    parsed = parse_store_url(url)
    if parsed.is_memory:
        return "sqlite://", lambda: None
    if parsed.kind == "sqlite":
        name = Path(parsed.path or "").name or "playthrough.db"
        return sqlite_url(tmp_path / name), lambda: None
    if parsed.kind == "postgresql":
        parts = urlsplit(url)
        schema = f"pt_test_{uuid.uuid4().hex[:12]}"
        query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "schema"]
        base = urlunsplit(parts._replace(query=urlencode(query)))
        fresh = urlunsplit(parts._replace(query=urlencode([*query, ("schema", schema)])))

        def drop() -> None:
            import psycopg

            with psycopg.connect(base, autocommit=True) as conn:
                conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')

        return fresh, drop
    raise pytest.UsageError(f"--playthrough-url: unsupported store URL {url!r}")


@pytest.fixture
def playthrough_engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """A fresh engine on an empty store (see the module docstring for the backends)."""
    url, cleanup = _fresh(configured_url(request.config), tmp_path)
    engine = throwaway(Engine.open(url))
    try:
        yield engine
    finally:
        try:
            engine.discard()
            engine.close()
        finally:
            cleanup()


@pytest.fixture
def playthrough_scenario(playthrough_engine: Engine) -> Scenario:
    """Given / when / then over ``playthrough_engine``."""
    return Scenario(playthrough_engine)
