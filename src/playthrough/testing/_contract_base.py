"""The store contract's shared part: the fixture every capability's cases use.

A store proves itself by subclassing :class:`StoreContract` in a ``Test*``
class and providing ``make_store`` (a fresh, empty, isolated store) and, where
it can, ``reopen_store`` (a second, independent handle on the same data) and
``bump_schema_version``::

    class TestMyStore(StoreContract):
        def make_store(self) -> Store:
            return MyStore(...)

Pytest fixtures of the subclass (autouse ones, say a temporary directory) have
run by the time a case first asks for ``self.store``. The module imports
nothing from pytest at import, so ``playthrough.testing`` works without it.
"""

from __future__ import annotations

import abc
import re
import unittest
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import NoReturn

from .._model import StateKey
from .._stores import (
    NewEvent,
    Store,
)

A1 = StateKey("Acct", "1")
A2 = StateKey("Acct", "2")
HUB = StateKey("Hub", "")
FIRED_AT = "2026-01-01T00:00:00+00:00"


def ev(
    *links: tuple[StateKey, int],
    data: str = "{}",
    caused_by: int | None = None,
    version: int = 1,
) -> NewEvent:
    """A ``Thing`` event touching ``links`` (state key, coupling group)."""
    return NewEvent(
        type="Thing",
        data=data,
        links=tuple(links),
        caused_by=caused_by,
        fired_at=FIRED_AT,
        version=version,
    )


def skip(reason: str) -> NoReturn:
    try:
        import pytest
    except ImportError:  # unittest.SkipTest: pytest reports it as a skip too
        raise unittest.SkipTest(reason) from None
    pytest.skip(reason)


@contextmanager
def raises_exactly(kind: type[Exception], match: str | None = None) -> Iterator[list[Exception]]:
    """Expect the block to raise ``kind`` itself (not a subclass), its text matching ``match``."""
    caught: list[Exception] = []
    try:
        yield caught
    except Exception as exc:
        if type(exc) is not kind:
            raise AssertionError(
                f"expected {kind.__name__}, got {type(exc).__name__}: {exc}"
            ) from exc
        if match is not None and not re.search(match, str(exc)):
            raise AssertionError(f"{kind.__name__} {str(exc)!r} does not match {match!r}") from exc
        caught.append(exc)
        return
    raise AssertionError(f"expected {kind.__name__}, nothing was raised")


class ContractBase(abc.ABC):
    """The fixture of the contract's cases: ``make_store`` and the optional hooks."""

    _store: Store | None = None

    @abc.abstractmethod
    def make_store(self) -> Store:
        """A fresh, empty store that no other test sees."""

    def reopen_store(self, store: Store) -> Store | None:
        """A second, independent handle on the same data (None: not possible)."""
        return None

    def bump_schema_version(self, store: Store) -> Callable[[], Store] | None:
        """Write a future schema version and return a callable that reopens the store."""
        return None

    @property
    def store(self) -> Store:
        """This case's store, made on first use and closed after the case."""
        if self._store is None:
            self._store = self.make_store()
        return self._store

    def teardown_method(self) -> None:
        store, self._store = self._store, None
        if store is not None:
            store.close()

    def _second_handle(self, store: Store) -> Store:
        other = self.reopen_store(store)
        if other is None:
            skip("this store has no second handle on the same data")
        return other
