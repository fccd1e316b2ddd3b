"""Deterministic replays: inside hooks, now() is the event's first fire time and
event_random() is seeded by the event, on every path that plays an event.

Paths: live fire (validate and apply), handle after commit, reconstitution in a
fresh engine, time-travel loads, ``engine.admin.replay()``, the naive reference replay,
and a replay in another process with another PYTHONHASHSEED.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import attrs
import pytest

from playthrough import Engine, Event, State, event_random, now, state_id
from playthrough._model import key_of
from playthrough._serialization import encode_state
from playthrough.testing import reference_states

# What validate and handle hooks saw: (hook, event type, now(), first draw).
SEEN: list[tuple[str, str, datetime, float]] = []


@attrs.define
class DetDial(State, type_name="det_t.Dial"):
    times: list[datetime] = attrs.field(factory=list)
    draws: list[float] = attrs.field(factory=list)
    readings: list[float] = attrs.field(factory=list)


@attrs.define
class Turned(Event, type_name="det_t.Turned"):
    dial_id: int = state_id(DetDial)
    reading: float = 0.0

    def validate(self, dial: DetDial) -> None:
        SEEN.append(("validate", "Turned", now(), event_random().random()))

    def apply(self, dial: DetDial) -> None:
        dial.times.append(now())
        dial.draws.append(event_random().random())
        dial.readings.append(float(self.reading))

    def handle(self) -> None:
        SEEN.append(("handle", "Turned", now(), event_random().random()))


@attrs.define
class Linked(Event, type_name="det_t.Linked"):
    """Couples two dials: each records the time and a draw of the same event."""

    left_id: int = state_id(DetDial)
    right_id: int = state_id(DetDial)

    def apply(self, left: DetDial, right: DetDial) -> None:
        rng = event_random()
        for dial in (left, right):
            dial.times.append(now())
            dial.draws.append(rng.random())


@pytest.fixture(autouse=True)
def _clear_seen() -> Iterator[None]:
    SEEN.clear()
    yield
    SEEN.clear()


def fire_history(engine: Engine) -> list[Event]:
    committed: list[Event] = []
    for i in range(6):
        engine.fire(Turned(dial_id=1 + i % 2, reading=i))
        committed.extend(engine.commit())
    engine.fire(Linked(left_id=1, right_id=2))
    engine.fire(Turned(dial_id=2, reading=2.5))
    committed.extend(engine.commit())
    return committed


def encoded(engine: Engine, dial: int, at: int | None = None) -> str:
    return encode_state(engine.load(DetDial, dial, at=at))


def test_live_fire_validate_and_apply_see_the_fire_time_and_the_same_seed() -> None:
    with Engine.open("sqlite://") as engine:
        event = engine.fire(Turned(dial_id=1, reading=1.0))
        dial = engine.load(DetDial, 1)
        assert event.fired_at is not None and event.fired_at.tzinfo is not None
        assert dial.times == [event.fired_at]
        (validate,) = SEEN
        assert validate[2] == event.fired_at
        assert validate[3] == dial.draws[0]  # same event, same seed, same first draw


def test_handle_sees_the_fire_time_and_the_same_seed_after_commit() -> None:
    with Engine.open("sqlite://") as engine:
        event = engine.fire(Turned(dial_id=1, reading=1.0))
        engine.commit()
        dial = engine.load(DetDial, 1)
        handle = [s for s in SEEN if s[0] == "handle"]
        assert [h[2] for h in handle] == [event.fired_at]
        assert [h[3] for h in handle] == dial.draws


def test_each_event_gets_its_own_time_and_seed() -> None:
    with Engine.open("sqlite://") as engine:
        events = fire_history(engine)
        dial = engine.load(DetDial, 2)
        mine = [
            e for e in events if (isinstance(e, Turned) and e.dial_id == 2) or isinstance(e, Linked)
        ]
        assert dial.times == [e.fired_at for e in mine]
        assert len(set(dial.draws)) == len(dial.draws)


def test_reconstitution_in_a_fresh_engine_matches_the_live_states(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'dials.db'}"
    with Engine.open(url) as engine:
        fire_history(engine)
        live = {d: encoded(engine, d) for d in (1, 2)}
    with Engine.open(url) as fresh:
        assert {d: encoded(fresh, d) for d in (1, 2)} == live


def test_time_travel_loads_match_the_reference_at_every_position() -> None:
    with Engine.open("sqlite://") as engine:
        events = fire_history(engine)
        for at in range(engine.head() + 1):
            expected = reference_states(events, upto=at)
            for d in (1, 2):
                want = expected.get(key_of(DetDial, d))
                got = engine.load(DetDial, d, at=at)
                assert encode_state(got) == (
                    encode_state(want) if want else encode_state(DetDial())
                )


def test_reconstitution_from_snapshots_matches_the_live_states() -> None:
    with Engine.open("sqlite://") as engine:
        fire_history(engine)
        engine.admin.snapshot([(DetDial, 1)], at=3)
        engine.admin.snapshot([(DetDial, 2)], at=5)
        live = {d: encoded(engine, d) for d in (1, 2)}
        engine.refresh()
        assert {d: encoded(engine, d) for d in (1, 2)} == live


def test_engine_replay_rebuilds_the_same_states() -> None:
    with Engine.open("sqlite://") as engine:
        fire_history(engine)
        live = {d: encoded(engine, d) for d in (1, 2)}
        engine.admin.replay()
        assert {d: encoded(engine, d) for d in (1, 2)} == live


def test_a_replay_in_another_process_gives_the_same_bytes(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'dials.db'}"
    with Engine.open(url) as engine:
        fire_history(engine)
    with Engine.open(url) as engine:
        here = engine.admin.verify(subprocess_replay=False)
        there = engine.admin.verify(apps=[__name__])
    assert "subprocess" in there.determinism.mode, there.determinism.mode
    assert there.ok and here.ok, there.to_text()
    assert there.determinism.digest == here.determinism.digest


def test_a_value_that_changes_in_json_does_not_change_the_seed() -> None:
    # 5 given to a float field is stored as 5 and replayed as 5.0: the seed of
    # event_random() must not see the difference (fixed in _playing.event_random).
    with Engine.open("sqlite://") as engine:
        engine.fire(Turned(dial_id=1, reading=5))
        engine.commit()
        live = engine.load(DetDial, 1).draws
        handled = [s[3] for s in SEEN if s[0] == "handle"]
        replayed = engine.load(DetDial, 1, at=engine.head()).draws
    assert replayed == live == handled


def test_now_outside_a_hook_is_the_wall_clock_in_utc() -> None:
    before = datetime.now(UTC)
    seen = now()
    after = datetime.now(UTC)
    assert seen.tzinfo is not None
    assert before <= seen <= after


def test_event_random_outside_a_hook_raises() -> None:
    with pytest.raises(RuntimeError, match="only available while an event hook runs"):
        event_random()
