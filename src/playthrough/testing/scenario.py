"""Given / when / then for event-sourced states.

::

    def test_transfer(playthrough_scenario):
        (
            playthrough_scenario
            .given(AccountOpened(account_id=1, owner="ada"), Deposited(account_id=1, amount=100))
            .when(Transferred(source_id=1, target_id=2, amount=30))
            .then({(Account, 1): Account(owner="ada", balance=70), Ledger: Ledger(transfers=1)})
        )

    def test_overdraft(playthrough_scenario):
        playthrough_scenario.when(Transferred(source_id=1, target_id=2, amount=5)).then_rejected(
            match="insufficient funds"
        )

Scheduled events: ``.given(OrderPlaced(order_id=1)).when_time_passes(minutes=15)``
fires what is due by then (the engine's clock becomes a ``ManualClock``), and
``then`` / ``then_committed`` check the outcome.

``then`` checks each state twice: as the engine holds it live, and as the log
replays it (a time-travel load to the head), so an ``apply`` that is not
deterministic fails the scenario even when the live state looks right.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import timedelta
from typing import Any

import attrs

from .._clock import ManualClock
from .._engine import Engine
from .._errors import EventRejected
from .._model import Event, SingletonState, State
from .._personal import unsealing
from .._scheduling import ScheduledEvent
from .._serialization import decode_event, encode_state
from ._given import give

#: ``(StateClass, id)``, or a singleton's class alone.
StateRef = tuple[type[State], Any] | type[SingletonState]


def _ref(ref: StateRef) -> tuple[type[State], Any]:
    if isinstance(ref, tuple):
        return ref
    return ref, None


def _describe(event: Event) -> str:
    return f"{type(event).__qualname__}({', '.join(f'{k}={v!r}' for k, v in _values(event))})"


def _values(obj: object) -> list[tuple[str, Any]]:
    return [(a.name, getattr(obj, a.name)) for a in attrs.fields(type(obj))]  # type: ignore[arg-type]


def state_differences(expected: State, actual: State) -> list[str]:
    """One line per field that differs: ``name: expected X, got Y``."""
    if type(expected) is not type(actual):
        return [f"expected a {type(expected).__qualname__}, got a {type(actual).__qualname__}"]
    lines = []
    for name, want in _values(expected):
        got = getattr(actual, name)
        if want != got:
            lines.append(f"{name}: expected {want!r}, got {got!r}")
    return lines


class Scenario:
    """Given committed events, when one more is fired, then states or a rejection.

    Every ``given`` event is fired and committed in order (its handlers run);
    a ``given`` event that is rejected fails the scenario at once. ``when``
    fires and commits one event and records what happened; ``then`` and
    ``then_rejected`` check it. Several ``when`` and ``when_time_passes``
    steps may follow each other (``committed`` gathers what all of them
    committed, ``fired`` is the last ``when`` event); once a step failed, a
    further step fails the scenario, naming the failure.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.history: list[Event] = []
        self.fired: Event | None = None
        self.committed: list[Event] = []
        self.error: BaseException | None = None
        #: The scheduled events ``when_time_passes`` handled, with their outcome.
        self.due: list[ScheduledEvent] = []
        self._time_passed = False

    # ------------------------------------------------------------------ given / when

    def given(self, *events: Event | Iterable[Event]) -> Scenario:
        """Fire and commit these events, in order; each must be accepted."""
        for event in _flatten(events):
            try:
                self.engine.fire(event)
                self.history.extend(self.engine.commit().raise_for_failures())
            except EventRejected as exc:
                raise AssertionError(f"given: {_describe(event)} was rejected: {exc}") from exc
        return self

    def given_state(
        self, state_class: type[State], state_id: Any = None, **values: Any
    ) -> Scenario:
        """Put a state in a known value without the events that made it (see
        :func:`~playthrough.testing.given_state`: stored as a marked event, on a
        throwaway store only)."""
        self.history.append(give(self.engine, state_class, state_id, values))
        return self

    def when(self, event: Event) -> Scenario:
        """Fire and commit ``event``; a rejection or failure is kept for ``then_rejected``."""
        self._refuse_after_failure()
        self.fired = event
        try:
            self.engine.fire(event)
            self.committed.extend(self.engine.commit().raise_for_failures())
        except Exception as exc:  # noqa: BLE001 - the scenario's then*() judges it
            self.error = exc
        return self

    def _refuse_after_failure(self) -> None:
        if self.error is not None:
            what = _describe(self.fired) if self.fired is not None else "a step"
            raise AssertionError(
                f"when: an earlier step ({what}) failed with {type(self.error).__name__}: "
                f"{self.error}; the scenario cannot go on (check it with then_rejected)"
            ) from self.error

    def when_time_passes(self, delta: timedelta | None = None, **units: float) -> Scenario:
        """Let time pass (``minutes=15``) and fire the scheduled events then due.

        The engine's clock becomes a :class:`~playthrough.testing.ManualClock`
        (starting at its current time) if it is not one already; it is advanced
        and ``run_due`` is run until nothing is due. ``committed`` holds every
        event this committed (handlers' too), ``due`` the scheduled rows handled.
        """
        self._refuse_after_failure()
        self._time_passed = True
        clock = self.engine.clock
        if not isinstance(clock, ManualClock):
            clock = self.engine.clock = ManualClock(clock.now())
        clock.advance(delta, **units)
        before = self.engine.head()
        while True:
            handled = self.engine.scheduler.run_due()
            if not handled:
                break
            self.due.extend(handled)
        with self.engine.store.reader() as reader:
            self.committed.extend(
                decode_event(e) for e in unsealing(reader).iter_events(before, reader.head())
            )
        return self

    # ------------------------------------------------------------------ then

    def _require_accepted(self) -> None:
        if self.error is not None:
            what = _describe(self.fired) if self.fired is not None else "the event"
            raise AssertionError(
                f"when: {what} failed with {type(self.error).__name__}: {self.error}"
            ) from self.error

    def then(self, expected: Mapping[StateRef, State]) -> Scenario:
        """Each state equals its expected value, live and as the log replays it.

        ``expected`` maps ``(StateClass, id)`` (or a singleton's class) to the
        state it should equal (attrs equality, field by field).
        """
        self._require_accepted()
        problems: list[str] = []
        head = self.engine.head()
        for ref, want in expected.items():
            cls, state_id = _ref(ref)
            name = f"{cls.__qualname__}({state_id!r})" if state_id is not None else cls.__qualname__
            live = self.engine.load(cls, state_id)
            replayed = _replayed(self.engine, cls, state_id, head)
            diff = state_differences(want, live)
            if diff:
                problems.append(f"{name}:\n    " + "\n    ".join(diff))
            elif encode_state(live) != encode_state(replayed):
                problems.append(
                    f"{name}: the live state is as expected, but the log replays to another "
                    f"one (is an apply hook nondeterministic?):\n    "
                    + "\n    ".join(state_differences(live, replayed) or ["(JSON differs)"])
                )
        if problems:
            raise AssertionError(
                "then: states differ from the expected ones\n" + "\n".join(problems)
            )
        return self

    def then_rejected(
        self, error: type[BaseException] = EventRejected, *, match: str | None = None
    ) -> BaseException:
        """The ``when`` event raised ``error`` (``match``: a regex searched in its message).

        Returns the exception. Nothing of a rejected event is committed.
        """
        what = _describe(self.fired) if self.fired is not None else "the event"
        if self.error is None:
            raise AssertionError(
                f"then_rejected: expected {what} to raise {error.__name__}, but it was committed"
            )
        if not isinstance(self.error, error):
            raise AssertionError(
                f"then_rejected: expected {error.__name__}, but {what} raised "
                f"{type(self.error).__name__}: {self.error}"
            ) from self.error
        if match is not None and not re.search(match, str(self.error)):
            raise AssertionError(
                f"then_rejected: {type(self.error).__name__} message {str(self.error)!r} "
                f"does not match {match!r}"
            )
        return self.error

    def then_committed(self, *events: Event) -> Scenario:
        """What the ``when`` steps committed (their events and what their hooks fired), in
        order, equals ``events``."""
        self._require_accepted()
        got = [(type(e), _values(e)) for e in self.committed]
        want = [(type(e), _values(e)) for e in events]
        if got != want:
            raise AssertionError(
                "then_committed: expected\n    "
                + "\n    ".join(map(_describe, events))
                + "\ngot\n    "
                + "\n    ".join(map(_describe, self.committed))
            )
        return self


def _flatten(items: Iterable[Event | Iterable[Event]]) -> list[Event]:
    out: list[Event] = []
    for item in items:
        if isinstance(item, Event):
            out.append(item)
        else:
            out.extend(item)
    return out


def scenario(engine: Engine) -> Scenario:
    """A new :class:`Scenario` over ``engine``."""
    return Scenario(engine)


def _replayed(engine: Engine, cls: type[State], state_id: Any, at: int) -> State:
    """The state as the log replays it from blank at ``at`` (snapshots and heads values
    ignored: the commit wrote the live value there, which is what is under test)."""
    from .._model import key_of

    key = key_of(cls, state_id)
    with engine.store.reader() as reader:
        states, _ = engine.reconstitutor.reconstitute(reader, [key], at, use_snapshots=False)
    return states[key]
