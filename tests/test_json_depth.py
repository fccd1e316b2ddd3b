"""A value nested deeper than MAX_JSON_DEPTH is refused at fire, naming the event and field.

A 200,000-deep JSON array in a row made verify and replay raise a raw
RecursionError; ``fire`` raised one too (from the encoder) for anything past
about 900 levels, and stored what was deep but not that deep.
"""

from __future__ import annotations

from typing import Any

import attrs
import pytest

from playthrough import Engine, Event, State, state_id
from playthrough._serialization import MAX_JSON_DEPTH
from playthrough.errors import PlaythroughError


@attrs.define
class Box(State, type_name="depth.Box"):
    puts: int = 0


@attrs.define
class Inner:
    child: Any = None


@attrs.define
class Put(Event, type_name="depth.Put"):
    box_id: int = state_id(Box)
    payload: Any = None

    def apply(self, box: Box) -> None:
        box.puts += 1


def _nested(levels: int, make: Any) -> Any:
    value: Any = make(None)
    for _ in range(levels - 1):
        value = make(value)
    return value


_SHAPES = {
    "list": lambda inner: [] if inner is None else [inner],
    "dict": lambda inner: {} if inner is None else {"k": inner},
    "class": lambda inner: Inner(inner),
}


@pytest.fixture(params=["sqlite", "postgres"])
def url(request: pytest.FixtureRequest) -> str:
    if request.param == "sqlite":
        return "sqlite://"
    pg_url = request.getfixturevalue("pg_url")
    return f"{pg_url}?schema={request.getfixturevalue('pg_schema')}"


@pytest.mark.parametrize("levels", [MAX_JSON_DEPTH + 1, 1_000, 200_000])
@pytest.mark.parametrize("shape", sorted(_SHAPES))
def test_a_value_deeper_than_the_limit_is_refused_at_fire(
    url: str, shape: str, levels: int
) -> None:
    with Engine.open(url) as engine:
        with pytest.raises(PlaythroughError, match=r"Put\.payload nests deeper than 200 levels"):
            engine.fire(Put(box_id=1, payload=_nested(levels, _SHAPES[shape])))
        assert engine.pending == ()
        engine.commit()
        assert engine.head() == 0  # nothing was written


@pytest.mark.parametrize("shape", sorted(_SHAPES))
def test_a_value_at_the_limit_is_stored_and_reads_back(url: str, shape: str) -> None:
    payload = _nested(MAX_JSON_DEPTH, _SHAPES[shape])
    with Engine.open(url) as engine:
        engine.fire(Put(box_id=1, payload=payload))
        engine.commit()
        assert Engine(engine.store).load(Box, 1).puts == 1
        [event] = list(engine.log.events())
        assert isinstance(event, Put)
        assert engine.admin.verify().ok


def test_many_brackets_that_do_not_nest_are_accepted() -> None:
    wide = [[i] for i in range(10_000)]  # 10,001 brackets, two levels
    with Engine.open("sqlite://") as engine:
        engine.fire(Put(box_id=1, payload=wide))
        engine.commit()
        assert engine.head() == 1
