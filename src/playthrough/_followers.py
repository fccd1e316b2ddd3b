"""Followers: process every committed event once, in position order, and survive restarts.

A :class:`Projection` names itself (``name``) and handles event types with
``on_<EventType>(self, event, tx)`` methods. ``engine.followers.run(projection)`` takes
batches through ``Store.follow``: one write transaction that holds the
follower's lock (SQLite's write lock; a ``FOR UPDATE NOWAIT`` row lock on
PostgreSQL), reads the stored position and the next events, lends the
transaction to the handlers as ``tx`` and writes the new position in it. So a
read model in the same database is updated exactly once per event; a side
effect outside the database happens at least once (a crash after it and before
the commit repeats the batch). A handler that raises rolls the whole batch back:
the position stays where it was and ``FollowerFailed`` names the event.
"""

from __future__ import annotations

import collections.abc
import inspect
import time
import typing
from collections.abc import Callable
from datetime import datetime
from typing import Any, ClassVar

import attrs

from . import _telemetry
from ._errors import (
    ArchivedRangeError,
    DefinitionError,
    FollowerBusy,
    FollowerFailed,
    NotFoundError,
)
from ._model import registry
from ._personal import unseal
from ._serialization import decode_event
from ._stores import FollowerTransaction, Store
from ._stores._base import FollowerBatch, SubjectForgotten, archived_until


class Projection:
    """Base class of followers: set ``name`` and write ``on_<EventType>(self, event, tx)``.

    ``<EventType>`` is a registered type name, else the name of exactly one
    event class.
    Events of other types are passed over. With ``batched = True`` a handler
    takes a list instead, ``on_<EventType>(self, events, tx)``: each run of
    consecutive events of its type in a batch (events of types the projection
    does not handle do not break a run; a forget does), in position order, so a
    read model can write them with ``tx.executemany``. ``tx`` is the store's transaction
    (``tx.execute(sql, params)`` with ``?`` placeholders, ``tx.connection``
    the driver's connection; on PostgreSQL unqualified names resolve in the
    store's schema): what a handler writes through it commits together with
    the follower's new position. Override ``setup(tx)`` to create tables and
    ``reset(tx)`` to clear the read model when the follower is reset to
    re-project from 0.
    """

    name: ClassVar[str]
    batch_size: ClassVar[int] = 500
    batched: ClassVar[bool] = False

    def setup(self, tx: FollowerTransaction) -> None:
        """Create what the projection writes to (``CREATE TABLE IF NOT EXISTS``...).

        Called in the first batch of every ``engine.followers.run`` and before ``reset``.
        """

    def reset(self, tx: FollowerTransaction) -> None:
        """Clear what this projection wrote (called in the reset's transaction)."""

    def on_forgotten(self, subject: str, tx: FollowerTransaction) -> None:
        """Erase what this projection holds of a forgotten data subject.

        ``subject`` is the forgotten ``data_subject`` value as stored (the id's
        text). Called once per forget, in the follower's own transaction (so a
        read model in the same database is erased exactly once), after the
        events committed before the forget and before those committed after it.
        """


Projection.__module__ = "playthrough"


@attrs.frozen
class FollowerStatus:
    name: str
    position: int
    lag: int  # committed events after ``position``
    updated_at: datetime


FollowerStatus.__module__ = "playthrough"


@attrs.frozen
class FollowerReport:
    """What one ``engine.followers.run`` did."""

    name: str
    processed: int  # events handed to a handler
    passed: int  # events of types the projection does not handle
    batches: int
    position: int


FollowerReport.__module__ = "playthrough"


def _event_types(cls: type, attr: str) -> list[str]:
    """The one event type ``cls.attr`` handles: ``on_<type name>`` (dots written ``__``:
    ``on_bank__Deposited``), or ``on_<class name>`` when one registered class has that
    name, or when the event parameter's annotation says which of several it is."""
    wanted = attr[3:]
    dotted = wanted.replace("__", ".")
    if wanted in registry.events:
        return [wanted]
    if dotted in registry.events:
        return [dotted]
    matches = [t for t, ev in registry.events.items() if ev.__name__ == wanted]
    if len(matches) > 1:
        annotated = _annotated_event(getattr(cls, attr))
        if annotated is not None and annotated in matches:
            return [annotated]
    if not matches:
        raise DefinitionError(
            f"{cls.__qualname__}.{attr}: no event type {wanted!r} is defined "
            "(import the module that defines it, or fix the name)"
        )
    if len(matches) > 1:
        spelled = ", ".join(f"on_{t.replace('.', '__')}" for t in sorted(matches))
        raise DefinitionError(
            f"{cls.__qualname__}.{attr}: {wanted!r} names several event types "
            f"({', '.join(sorted(matches))}); name the one you mean ({spelled}) or "
            "annotate the event parameter with its class"
        )
    return matches


def _annotated_event(method: Any) -> str | None:
    """The type name of the event class the handler's event parameter is annotated with."""
    try:
        params = list(inspect.signature(method).parameters)
        hints = typing.get_type_hints(method)
    except (
        AttributeError,
        NameError,
        TypeError,
        ValueError,
    ):  # an annotation this module cannot resolve
        return None
    if len(params) < 2:
        return None
    hint = hints.get(params[1])
    if typing.get_origin(hint) in (list, collections.abc.Sequence):  # a batched handler's
        hint = (typing.get_args(hint) or (None,))[0]
    name = getattr(hint, "_pt_type_name", None)
    return name if isinstance(name, str) and registry.events.get(name) is hint else None


def handlers(projection: Projection) -> dict[str, Callable[[Any, FollowerTransaction], None]]:
    """Stored type name -> bound handler; a method naming no event type is a DefinitionError."""
    cls = type(projection)
    name = getattr(projection, "name", None)
    if not isinstance(name, str) or not name:
        raise DefinitionError(f"{cls.__qualname__} needs a `name = '...'` (a non-empty str)")
    out: dict[str, Callable[[Any, FollowerTransaction], None]] = {}
    for attr in dir(cls):
        if not attr.startswith("on_") or attr == "on_forgotten" or not callable(getattr(cls, attr)):
            continue
        matches = _event_types(cls, attr)
        handler = getattr(projection, attr)
        # Rows keep the name they were stored under: a renamed class's old rows carry an alias.
        for stored in (matches[0], *registry.events[matches[0]]._pt_aliases):
            out[stored] = handler
    if not out:
        raise DefinitionError(f"{cls.__qualname__} handles no event: write on_<EventType> methods")
    if not isinstance(getattr(projection, "batched", False), bool):
        raise DefinitionError(f"{cls.__qualname__}.batched must be True or False")
    return out


#: What one pass of a follower found: a full batch (more is waiting), a shorter one (idle
#: after it), or no batch (the follower is held by another process).
MORE, IDLE, BUSY = "more", "idle", "busy"


class Follow:
    """One ``run`` of a projection, a batch per :meth:`step`: the loop, its waits and its
    thread are the shell's (the sync engine sleeps; the async one awaits a sleep and runs
    each step, which calls the projection's sync handlers, on a thread)."""

    def __init__(self, projection: Projection, batch_size: int | None) -> None:
        self.table = handlers(projection)
        self.projection = projection
        self.size = batch_size or projection.batch_size
        if self.size < 1:
            raise ValueError(f"batch_size must be >= 1, not {self.size}")
        self.processed = self.passed = self.batches = self.position = 0
        self._archived: int | None = None

    def step(self, store: Store) -> str:
        """Handle the next batch in its own transaction: MORE, IDLE or BUSY."""
        projection, name, size = self.projection, self.projection.name, self.size
        if self._archived is None:
            with store.reader() as reader:
                self._archived = archived_until(reader)
        started = time.perf_counter()
        before = self.processed, self.passed
        with store.follow(name, size) as batch:
            if batch is None:
                return BUSY
            self.position = batch.start
            if self.position < self._archived:  # its next events were moved to an archive
                raise ArchivedRangeError(
                    f"follower {name!r} is at position {self.position}, but positions "
                    f"1..{self._archived} were archived: it cannot continue without skipping "
                    "events (reset it after the cut, or re-project from the archive)"
                )
            if self.batches == 0:
                projection.setup(batch.tx)
            forgets = list(batch.forgotten)
            if projection.batched:
                self._batched(batch, forgets)
            else:
                self._each(batch, forgets)
            for forget in forgets:  # once the events before each forget are handled
                if forget.position > batch.position:
                    break
                _tell_forgotten(projection, batch, forget)
            self.position = batch.position
            self.batches += 1
            if batch.events:
                done = self.processed - before[0], self.passed - before[1]
                _followers_batch(store, name, batch, done, started)
            return MORE if len(batch.events) == size else IDLE

    def _each(self, batch: FollowerBatch, forgets: list[SubjectForgotten]) -> None:
        """The handlers' pass over a batch, one event per call (told forgets are popped)."""
        table, tx, name = self.table, batch.tx, self.projection.name
        # The batch's events come sealed: opened with the keys of its transaction.
        for row in unseal(batch.events, batch.subject_keys):
            while forgets and forgets[0].position < row.position:
                _tell_forgotten(self.projection, batch, forgets.pop(0))
            handler = table.get(row.type)
            if handler is None:
                self.passed += 1
            else:
                event = decode_event(row)
                try:
                    handler(event, tx)
                except Exception as exc:
                    raise FollowerFailed(
                        f"follower {name!r} stopped at event {row.position} "
                        f"({row.type}): {exc!r}; its position stays {batch.start}",
                        follower=name,
                        position=batch.start,
                        event=event,
                    ) from exc
                self.processed += 1
            batch.advance(row.position)

    def _batched(self, batch: FollowerBatch, forgets: list[SubjectForgotten]) -> None:
        """A batched projection's pass over a batch: one handler call per run of its type.

        Told forgets are popped from ``forgets``, as the per-event loop does.
        """
        table, tx = self.table, batch.tx
        handler: Callable[[Any, FollowerTransaction], None] | None = None
        run: list[Any] = []

        def flush() -> None:
            if handler is None or not run:
                return
            try:
                handler(list(run), tx)
            except Exception as exc:
                first, last = run[0], run[-1]
                raise FollowerFailed(
                    f"follower {self.projection.name!r} stopped at events {first.id}..{last.id} "
                    f"({type(first)._pt_type_name}, handled together): {exc!r}; its position "
                    f"stays {batch.start}",
                    follower=self.projection.name,
                    position=batch.start,
                    event=first,
                ) from exc
            self.processed += len(run)
            run.clear()

        for row in unseal(batch.events, batch.subject_keys):  # opened, as in _each
            if forgets and forgets[0].position < row.position:
                flush()
                while forgets and forgets[0].position < row.position:
                    _tell_forgotten(self.projection, batch, forgets.pop(0))
            found = table.get(row.type)
            if found is None:
                self.passed += 1
            else:
                if found is not handler:
                    flush()
                    handler = found
                run.append(decode_event(row))
            batch.advance(row.position)
        flush()

    def report(self) -> FollowerReport:
        return FollowerReport(
            self.projection.name, self.processed, self.passed, self.batches, self.position
        )


def run(
    store: Store,
    projection: Projection,
    *,
    until_idle: bool,
    poll_interval: float,
    batch_size: int | None,
    stop: Callable[[], bool] | None,
) -> FollowerReport:
    follow = Follow(projection, batch_size)
    while stop is None or not stop():
        found = follow.step(store)
        if found == MORE:
            continue
        if until_idle and found == IDLE:
            break
        time.sleep(poll_interval)  # idle, or another process holds the follower
    return follow.report()


def _followers_batch(
    store: Store, name: str, batch: FollowerBatch, done: tuple[int, int], started: float
) -> None:
    """The ``followers.batch`` span and the follower's event counts (telemetry)."""
    if _telemetry.ENABLED:
        attributes = {"follower": name, "events": len(batch.events), "position": batch.position}
        seconds = time.perf_counter() - started
        _telemetry.span("followers.batch", seconds, attributes, store=store)
        _telemetry.follower_events(name, *done)


def _tell_forgotten(projection: Projection, batch: FollowerBatch, forget: SubjectForgotten) -> None:
    try:
        projection.on_forgotten(forget.subject, batch.tx)
    except Exception as exc:
        raise FollowerFailed(
            f"follower {projection.name!r} failed to forget a data subject (forget "
            f"#{forget.seq}): {exc!r}; its position stays {batch.start}",
            follower=projection.name,
            position=batch.start,
            event=None,
        ) from exc
    batch.told(forget.seq)


def reset(store: Store, projection: Projection | str, position: int) -> None:
    name = projection if isinstance(projection, str) else projection.name
    if position < 0:
        raise ValueError(f"a follower position is >= 0, not {position}")
    if isinstance(projection, str):  # a name alone: a follower that has run, never a new one
        with store.reader() as reader:
            known = [row.name for row in reader.followers()]
        if name not in known:
            raise NotFoundError(
                f"no follower named {name!r} in {store.url} (nothing was changed); "
                f"followers: {', '.join(known) or 'none'}"
            )
    with store.follow(name, 0) as batch:
        if batch is None:
            raise FollowerBusy(f"follower {name!r} is running in another process; stop it first")
        if not isinstance(projection, str):
            projection.setup(batch.tx)
            projection.reset(batch.tx)
        batch.advance(position)


def statuses(store: Store) -> list[FollowerStatus]:
    with store.reader() as reader:
        head = reader.head()
        rows = reader.followers()
    return [
        FollowerStatus(r.name, r.position, head - r.position, datetime.fromisoformat(r.updated_at))
        for r in rows
    ]
