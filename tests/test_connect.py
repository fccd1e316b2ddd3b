"""``playthrough.connect`` returns a Connection: it makes the engines, the store does not."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

import playthrough
from playthrough import Connection, Engine
from playthrough._stores import SQLiteStore, Store

from .domain import MOD, Bump, Node


def test_a_connection_makes_engines_over_its_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # normal use warns about nothing
        connection = playthrough.connect(f"sqlite:///{tmp_path / 'app.db'}")
        assert isinstance(connection, Connection)
        assert isinstance(connection.store, Store)
        with connection.engine() as engine:
            assert engine.store is connection.store
            engine.fire(Bump(node_id=1, amount=5))
        with Engine(connection) as engine:  # the same: the engine takes the store it holds
            assert engine.store is connection.store
            engine.fire(Bump(node_id=1, amount=2))
        with connection.engine(head_values=False) as engine:  # the Engine's options
            assert engine.load(Node, 1).value == 7 % MOD
        # The store's own methods read through, as when connect returned the store.
        assert connection.url == connection.store.url
        with connection.reader() as reader:
            assert reader.head() == 2
        assert repr(connection) == f"<Connection {connection.url}>"
    store = connection.store
    closing = store.close
    closed: list[Store] = []
    monkeypatch.setattr(store, "close", lambda: closed.append(store))
    with connection as entered:
        assert entered is connection
    assert closed == [store]  # leaving the block closed the store
    connection.close()
    assert closed == [store, store]
    closing()


def test_stores_make_no_engines() -> None:
    store = SQLiteStore(":memory:")
    try:
        assert not hasattr(store, "engine")
        assert Engine(store).store is store
    finally:
        store.close()
