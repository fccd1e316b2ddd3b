"""The I/O-free seam between the core and the shells (sync ``Engine``, ``playthrough.aio``).

A core operation that needs the store (a load's plan, a fire that loads, a
commit) is written once, as a generator of *requests*: it yields what it
needs, the shell performs it and sends the answer back (or throws the
store's exception in at the same point, so the core's ``try``/``except``
sees it as if it had called the store itself). The sync shell answers by
calling the store; the async shell by awaiting its async store. Nothing in
the core knows which one runs it (the h11 way: the protocol never does I/O).

Requests:

- :class:`Call` ``(name, args, kwargs)``: call a store method (or, inside a
  :class:`Read`, a reader method) and send back its result.
- :class:`Read` ``(steps)``: open one read transaction and run ``steps`` in
  it, their :class:`Call` requests going to the reader; send back what the
  steps returned.
- :class:`Await` ``(value)``: what a ``handle`` hook returned when it was an
  ``async def``: the async shell awaits it; the sync shell refuses it.
"""

from __future__ import annotations

import inspect
from collections.abc import Generator
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

from . import _telemetry
from ._errors import PlaythroughError

_new = tuple.__new__  # a NamedTuple without its Python-level __new__

if TYPE_CHECKING:
    from ._stores import Store
    from ._stores._base import StoreReader

T = TypeVar("T")

#: A core operation: a generator of requests returning ``T``.
Steps = Generator[Any, Any, T]


class Call(NamedTuple):
    name: str
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] | None = None


class Read(NamedTuple):
    steps: Steps[Any]


class Await(NamedTuple):
    value: Any


def call(name: str, *args: Any, **kwargs: Any) -> Call:
    return _new(Call, (name, args, kwargs or None))


def read_one(name: str, *args: Any) -> Steps[Any]:
    """Steps of one reader call (``yield Read(read_one("completions", keys))``)."""
    return (yield Call(name, args))


def refuse_awaitable(value: Any) -> None:
    """The sync shell met an ``async def`` hook: close its coroutine and say what to do."""
    if inspect.iscoroutine(value):
        value.close()
    raise PlaythroughError(
        "an async def handle hook needs the async engine (playthrough.aio); "
        "the sync Engine runs only plain def hooks"
    )


def run_reader(steps: Steps[T], reader: StoreReader) -> T:
    """Run reader-only steps (a plan, its play) on an open reader."""
    try:
        request = next(steps)
        while True:
            if not isinstance(request, Call):
                raise TypeError(f"a read may only call the reader, not {request!r}")
            try:
                method = getattr(reader, request.name)
                answer = method(*request.args, **(request.kwargs or {}))
            except BaseException as exc:  # noqa: BLE001 - thrown into the core at its yield
                request = steps.throw(exc)
                continue
            request = steps.send(answer)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]


def run_sync(steps: Steps[T], store: Store) -> T:
    """The sync shell's driver: answer each request by calling ``store`` (or its reader)."""
    # the spans on the way carry the store's db.system (nothing to set when none are made)
    token = _telemetry.using(store) if _telemetry.observed() else None
    try:
        request = next(steps)
        while True:
            try:
                if isinstance(request, Call):
                    method = getattr(store, request.name)
                    answer = method(*request.args, **(request.kwargs or {}))
                elif isinstance(request, Read):
                    with store.reader() as reader:
                        answer = run_reader(request.steps, reader)
                elif isinstance(request, Await):
                    refuse_awaitable(request.value)
                else:
                    raise TypeError(f"not a store request: {request!r}")
            except BaseException as exc:  # noqa: BLE001 - thrown into the core at its yield
                request = steps.throw(exc)
                continue
            request = steps.send(answer)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    finally:
        if token is not None:
            _telemetry.done(token)
