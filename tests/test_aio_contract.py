"""The store contract's log, read-side and lifecycle cases, run against the async stores.

A sync facade runs each store call as one awaited request of the async store
(its event loop on a thread of its own): ``append``, ``heads``, the value and
snapshot writes, and every reader call (each in a read transaction of its
own). So the log the async engine writes and reads is held to the same cases
as the sync stores.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar, cast

import pytest

import playthrough.aio
from playthrough._steps import Call, Steps
from playthrough._stores import Store
from playthrough.errors import StoreError
from playthrough.testing._contract_base import A1, ev
from playthrough.testing.store_contract import LifecycleContract, LogContract, ReadSideContract

T = TypeVar("T")


def _one(name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Steps[Any]:
    return (yield Call(name, args, kwargs or None))


class _Facade:
    """A sync view of an async store, for the contract's cases."""

    def __init__(self, url: str) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._closed = False
        self.astore = self._run(playthrough.aio.connect(url))

    def _run(self, work: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(work, self._loop).result(60)

    def __getattr__(self, name: str) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            return self._run(self.astore.call(Call(name, args, kwargs or None)))

        return call

    @contextmanager
    def reader(self) -> Iterator[Any]:
        yield _FacadeReader(self)

    def close(self) -> None:
        if self._closed:
            return  # its event loop is gone with the first close
        self._closed = True
        try:
            self._run(self.astore.close())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(60)
            self._loop.close()


class _FacadeReader:
    def __init__(self, facade: _Facade) -> None:
        self._facade = facade

    def __getattr__(self, name: str) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            facade = self._facade
            return facade._run(facade.astore.read(_one(name, args, kwargs)))

        return call


class _AsyncLogContract(LogContract, ReadSideContract, LifecycleContract):
    """The log, read-side and lifecycle cases; the two about reader blocks do not apply: an
    async read is one request whose steps reach only the reader, so readers cannot nest or
    write."""

    def test_readers_do_not_nest(self) -> None:
        pytest.skip("an async read is one request: there is no reader block to nest")

    def test_writes_inside_a_reader_are_refused_and_write_nothing(self) -> None:
        pytest.skip("an async read's steps reach only the reader: it has no write to refuse")

    def test_a_closed_store_refuses_with_a_store_error_naming_it(self) -> None:
        facade = cast(_Facade, self.store)
        (p,) = facade.append([ev((A1, 0))], {A1: None})
        facade._run(facade.astore.close())  # the async store; the facade's loop stays
        facade._run(facade.astore.close())  # closing again does nothing
        with pytest.raises(StoreError, match="closed"):
            facade.heads([A1])
        with pytest.raises(StoreError, match="closed"):
            facade.append([ev((A1, 0))], {A1: p})

    def test_follow_commits_position_and_writes_together(self) -> None:
        pytest.skip(
            "not a request of the async stores: a follower's batch runs its sync handlers "
            "on the sync store, through AsyncStore.blocking (the sync stores' case holds)"
        )


def test_an_async_read_cannot_write(tmp_path: Path) -> None:
    facade = _Facade(f"sqlite:///{tmp_path / 'store.db'}")
    try:
        with pytest.raises(AttributeError, match="append"):
            facade._run(facade.astore.read(_one("append", ([], {}), {})))
        with facade.reader() as reader:
            assert reader.head() == 0
    finally:
        facade.close()


class TestAsyncSQLiteLog(_AsyncLogContract):
    @pytest.fixture(autouse=True)
    def _place(self, tmp_path: Path) -> None:
        self.url = f"sqlite:///{tmp_path / 'store.db'}"

    def make_store(self) -> Store:
        return cast(Store, _Facade(self.url))


@pytest.mark.postgres
class TestAsyncPostgresLog(_AsyncLogContract):
    @pytest.fixture(autouse=True)
    def _server(self, pg_url: str, pg_schema: str) -> None:
        self.url = f"{pg_url}?schema={pg_schema}"

    def make_store(self) -> Store:
        return cast(Store, _Facade(self.url))
