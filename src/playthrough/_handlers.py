"""Handlers: ``handle`` hooks run after their events are committed, at least once.

Every committed event that has ``handle`` hooks is recorded as *pending* by
the append that stores it. When its hooks complete, the events they fired are
committed together with the mark "handled" in one transaction (or the mark
alone when they fired nothing), so a handler's events are stored exactly once
with its completion. A failing handler does not stop the others: what it fired
is discarded, the failure is collected, the event stays pending, and
``engine.admin.run_pending_handlers()`` runs it again later, as it does for handlers a
crash interrupted between the commit and their completion. Side effects outside
the store (mail, HTTP) may therefore happen more than once: handlers are
at-least-once and should be idempotent.

Completion is checked: the transaction that stores what a handler fired
deletes the event's pending row and is refused (``HandledElsewhere``, nothing
written) if that row is already gone, because another runner (a second
``playthrough handlers``, or the committing process itself) completed it
first. So however many runners there are, a handler's store effects happen
exactly once; the runner that lost just moves on.
"""

from __future__ import annotations

import inspect
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, cast

from . import _logging, _telemetry
from ._errors import HandledElsewhere, HandlerFailed, PlaythroughError, StoreError
from ._model import Event, State, binding
from ._playing import is_async_hook, playing, run_hook
from ._steps import Await, Read, Steps, call, run_sync

if TYPE_CHECKING:
    from ._append import Append
    from ._engine import Engine
    from ._firing import Firing
    from ._loading import Loader
    from ._work import UnitOfWork

logger = logging.getLogger("playthrough")

Failure = tuple[Event, BaseException]


def has_handlers(event: Event) -> bool:
    return bool(type(event)._pt_spec.phases["handle"])


class Handlers:
    """The handlers stage of a commit: runs ``handle`` hooks of committed events.

    Built from the unit of work (what hooks fire is queued there, caused by
    their event), the loader (the states a hook declares) and the append
    stage (what a hook fired is appended with its completion); it never calls
    the commit that runs it.
    """

    def __init__(self, work: UnitOfWork, loader: Loader, append: Append, firing: Firing) -> None:
        self.work = work
        self.loader = loader
        self.append = append
        self._firing = firing

    def run(
        self, events: Sequence[Event], committed: list[Event], elsewhere: list[Event] | None = None
    ) -> list[Failure]:
        """:meth:`steps` on the sync store."""
        return run_sync(self.steps(None, events, committed, elsewhere), self.loader.store)

    def steps(
        self,
        shells: tuple[object, object] | None,
        events: Sequence[Event],
        committed: list[Event],
        elsewhere: list[Event] | None = None,
    ) -> Steps[list[Failure]]:
        """Run the handlers of committed ``events`` (and of the events they fire), in order.

        Events committed on the way are appended to ``committed``; events whose
        completion was refused because another runner completed them first, to
        ``elsewhere`` (not a failure: what this run fired was discarded). Returns
        the failures; an exception that is not an ``Exception`` (KeyboardInterrupt)
        stops everything, leaving the events not yet handled pending in the store.
        ``shells``: what a plain ``def`` hook and an ``async def`` one are given as
        their engine argument (default: the firing stage's ``hook_shells``: the
        sync Engine for both; under ``playthrough.aio``, a view of the async
        engine that fires without I/O, and the async engine).
        """
        shell, async_shell = shells if shells is not None else self._firing.hook_shells
        work = self.work
        failures: list[Failure] = []
        queue = deque(e for e in events if has_handlers(e))
        while queue:
            event = queue.popleft()
            name = type(event)._pt_type_name
            started = time.perf_counter()
            try:
                yield from self._event_steps(shell, async_shell, event)
            except Exception as exc:  # noqa: BLE001 - collected and raised as HandlerFailed
                work.discard()  # what the failed handler fired is not committed
                failures.append((event, exc))
                _logging.handler_failed(type(event).__qualname__, "handle", event.id, exc)
                _telemetry.handled(name, event.id, time.perf_counter() - started, "failed", exc)
                continue
            except BaseException:
                work.discard()
                raise
            assert event.id is not None
            try:
                fired = yield from self.append.steps(handled=(event.id,))
            except HandledElsewhere:
                logger.debug("handlers of position %s were completed by another runner", event.id)
                if elsewhere is not None:
                    elsewhere.append(event)
                _telemetry.handled(name, event.id, time.perf_counter() - started, "elsewhere")
                continue
            except Exception as exc:  # noqa: BLE001 - what it fired could not be committed
                failures.append((event, exc))
                _telemetry.handled(name, event.id, time.perf_counter() - started, "failed", exc)
                continue
            _telemetry.handled(name, event.id, time.perf_counter() - started, "handled")
            committed.extend(fired)
            queue.extend(e for e in fired if has_handlers(e))
        return failures

    def _event_steps(self, shell: object, async_shell: object, event: Event) -> Steps[None]:
        """Run every ``handle`` hook of one committed event; events they fire stay pending.

        A hook that is an ``async def`` returns an awaitable, which the shell awaits
        (the sync one refuses it, see ``_steps``).
        """
        work = self.work
        with work.caused(event), playing(event):  # what it fires shares the correlation
            for hook, bound, keys in binding(event).of_phase("handle"):
                repository = work.repository
                missing = [k for k in keys if repository.get(k) is None]
                if missing:
                    yield from self.loader.live_steps(missing)
                live = {k: cast(State, repository.get(k)) for k in keys}
                given = async_shell if is_async_hook(event, hook.name) else shell
                result = run_hook(event, hook, live, given, bound)
                if inspect.isawaitable(result):
                    yield Await(result)

    def run_pending(self, limit: int) -> list[Event]:
        """Run the handlers the store records as pending (failed, or cut short by a crash)."""
        return run_sync(self.run_pending_steps(None, limit), self.loader.store)

    def run_pending_steps(
        self, shells: tuple[object, object] | None, limit: int
    ) -> Steps[list[Event]]:
        """:meth:`run_pending` as store requests (both engines; ``shells`` as in :meth:`steps`)."""
        work = self.work
        if work.events:
            raise PlaythroughError("commit or discard pending events before running handlers")
        if work.committing:
            raise PlaythroughError("run_pending_handlers() from inside a handle hook")
        work.committing = True
        try:
            read: tuple[list[int], list[Event]] = yield Read(_pending_steps(limit))
            positions, events = read
            if not positions:
                return []  # an idle pass: no span
            store = self.loader.store
            with _telemetry.operation("handlers.pending", store, events=len(positions)) as facts:
                ran = yield from self._run_pending_steps(shells, positions, events)
                facts.set(ran=len(ran))
            return ran
        finally:
            work.committing = False

    def _run_pending_steps(
        self, shells: tuple[object, object] | None, positions: list[int], events: list[Event]
    ) -> Steps[list[Event]]:
        found = {e.id for e in events}
        gone = [p for p in positions if p not in found]
        if gone:
            raise StoreError(
                f"pending handlers recorded for position(s) {gone[:10]} but no event is stored "
                "there: the log is corrupt (an event row was deleted)"
            )
        # A pending event whose class has no handle hook (any more): nothing to run.
        idle = [e.id for e in events if not has_handlers(e) and e.id is not None]
        if idle:
            yield call("mark_handled", idle)
        committed: list[Event] = []
        elsewhere: list[Event] = []
        runnable = [e for e in events if has_handlers(e)]
        failures = yield from self.steps(shells, runnable, committed, elsewhere)
        if failures:
            raise handler_failed(failures, committed)
        skipped = {id(e) for e in elsewhere}
        return [e for e in runnable if id(e) not in skipped]


def _pending_steps(limit: int) -> Steps[tuple[list[int], list[Event]]]:
    """In one read: the positions whose handlers are pending, and their events, opened."""
    from ._personal import unseal_steps
    from ._serialization import decode_event

    positions: list[int] = yield call("pending_handlers", limit)
    rows = list((yield call("events", positions)))
    opened = yield from unseal_steps(rows)
    return positions, [decode_event(stored) for stored in opened]


def failure_message(failures: Sequence[Failure]) -> str:
    shown = [
        f"{type(event).__qualname__} at position {event.id}: {exc!r}"
        for event, exc in failures[:10]
    ]
    more = f"; and {len(failures) - 10} more" if len(failures) > 10 else ""
    return (
        f"{len(failures)} event(s) had handlers that failed after the event was committed "
        "(the events stay committed; their handlers stay pending, see "
        "engine.admin.run_pending_handlers()): " + "; ".join(shown) + more
    )


class CommitResult(list[Event]):
    """What ``Engine.commit()`` returns: the committed events, in order (a list, as
    before), and the ``handle`` hooks that raised after the commit.

    The commit stands either way: ``failures`` lists ``(event, exception)`` for
    each event whose handlers raised (each was logged at ERROR, and its
    handlers stay pending in the store for ``run_pending_handlers()`` or
    ``playthrough handlers``). ``raise_for_failures()`` turns them into the
    ``HandlerFailed`` that ``commit()`` raised before (also what
    ``Engine(raise_handler_failures=True)`` does on every commit).
    """

    failures: list[Failure]

    def __init__(self, events: Sequence[Event] = (), failures: Sequence[Failure] = ()) -> None:
        super().__init__(events)
        self.failures = list(failures)

    @property
    def ok(self) -> bool:
        """Whether every handler ran (the commit itself stands either way)."""
        return not self.failures

    def raise_for_failures(self) -> CommitResult:
        """``HandlerFailed`` if a handler raised, else the result itself."""
        if self.failures:
            raise handler_failed(self.failures, list(self))
        return self

    def __repr__(self) -> str:
        return f"CommitResult({list.__repr__(self)}, failures={self.failures!r})"


def handler_failed(failures: list[Failure], committed: list[Event]) -> HandlerFailed:
    error = HandlerFailed(failure_message(failures), failures, committed)
    error.__cause__ = failures[0][1]
    return error


def serve(
    engine: Engine,
    *,
    interval: float = 1.0,
    limit: int = 1_000,
    passes: int | None = None,
    echo: Callable[[str], object] = print,
    sleep: Callable[[float], object] | None = None,
    report: Callable[[Event, BaseException | None], object] | None = None,
) -> int:
    """The loop behind ``playthrough handlers --forever``: pass after pass.

    Each pass runs the pending handlers (at most ``limit`` events); a pass that
    completed some is followed at once by the next, any other by ``interval``
    seconds of pause. Handlers that fail are reported and stay pending for a
    later pass; the loop goes on. ``passes`` bounds the number of passes.
    Returns how many events' handlers it completed. Each event is told to ``report``
    (with its error, or None) when given (``--format json``), else as lines to ``echo``.
    """
    pause = sleep or _pause
    completed = 0
    done = 0
    while passes is None or done < passes:
        done += 1
        try:
            ran = engine.admin.run_pending_handlers(limit)
        except HandlerFailed as exc:
            ran = []
            if report is None:
                echo(f"handlers failed for {len(exc.failures)} event(s), they stay pending:")
            for event, error in exc.failures:
                if report is not None:
                    report(event, error)
                else:
                    echo(f"  {type(event).__qualname__} at position {event.id}: {error!r}")
        for event in ran:
            if report is not None:
                report(event, None)
            else:
                echo(f"ran the handlers of {type(event).__qualname__} at position {event.id}")
        completed += len(ran)
        if not ran and (passes is None or done < passes):
            pause(interval)
    return completed


def _pause(seconds: float) -> None:
    time.sleep(seconds)
