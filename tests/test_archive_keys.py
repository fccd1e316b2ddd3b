"""Archiving keeps idempotency keys: a retry of an archived event's key is still refused."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from playthrough import Engine
from playthrough._stores import SQLiteStore, Store
from playthrough.errors import DuplicateEvent, ScheduleNotFound

from .domain import Feed, Node


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    if request.param == "sqlite":
        made: Store = SQLiteStore(str(tmp_path / "keys.db"))
    else:
        from playthrough._stores.postgres import PostgresStore

        pg_url = request.getfixturevalue("pg_url")
        made = PostgresStore(pg_url, schema=request.getfixturevalue("pg_schema"))
    yield made
    made.close()


def test_a_key_archived_with_its_event_is_still_refused(store: Store, tmp_path: Path) -> None:
    engine = Engine(store)
    engine.fire(Feed(node_id=1), key="order-17-paid")
    engine.commit()
    for _ in range(3):
        engine.fire(Feed(node_id=2))
        engine.commit()
    engine.admin.archive(before=3, to=tmp_path / "old.jsonl.gz")
    engine.fire(Feed(node_id=1), key="order-17-paid")
    with pytest.raises(DuplicateEvent) as refused:
        engine.commit()
    assert (refused.value.key, refused.value.position) == ("order-17-paid", 1)
    assert engine.head() == 4  # nothing of the retry was written
    assert Engine(store).load(Node, 1).last_event_id == 1
    # A later archive keeps the earlier cut's keys, and new keys still commit.
    engine.fire(Feed(node_id=3), key="order-18-paid")
    engine.commit()
    engine.fire(Feed(node_id=2))
    engine.commit()
    engine.admin.archive(before=6, to=tmp_path / "older.jsonl.gz")
    for key, position in (("order-17-paid", 1), ("order-18-paid", 5)):
        engine.fire(Feed(node_id=4), key=key)
        with pytest.raises(DuplicateEvent) as again:
            engine.commit()
        assert again.value.position == position
    assert engine.head() == 6


def test_an_archived_key_is_refused_in_a_commit_that_also_schedules(
    store: Store, tmp_path: Path
) -> None:
    """The append that writes schedule rows too (PostgreSQL: not pipelined) checks it."""
    engine = Engine(store)
    for n in range(3):
        engine.fire(Feed(node_id=1), key=f"k{n}")
        engine.commit()
    engine.admin.archive(before=3, to=tmp_path / "old.jsonl.gz")
    with pytest.raises(DuplicateEvent) as refused:
        with engine.transaction():
            engine.fire(Feed(node_id=2), key="k1")
            sid = engine.scheduler.schedule(Feed(node_id=3), after=timedelta(minutes=5))
    assert refused.value.position == 2
    assert engine.head() == 3
    with pytest.raises(ScheduleNotFound):  # its schedule row went with the refused commit
        engine.scheduler.scheduled(sid)
