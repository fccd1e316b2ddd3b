"""``playthrough schema`` decodes stored rows, not only counts them: each class change that
would break reading the log is reported before the deploy, with the row's position."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import attrs
import pytest
from click.testing import CliRunner

from playthrough import Engine, Event, State, state_id
from playthrough._cli import main
from playthrough._model import registry
from playthrough._schema import schema_report
from playthrough._stores import open_store


@attrs.define
class Box(State, type_name="sd.Box"):
    n: int = 0
    label: str = ""


@attrs.define
class Put(Event, type_name="sd.Put"):
    box_id: int = state_id(Box)
    n: int = 0
    label: str = ""

    def apply(self, box: Box) -> None:
        box.n += self.n
        box.label = self.label


@pytest.fixture(autouse=True)
def _restore() -> Iterator[None]:
    yield
    for name in [n for n in registry.events if n.startswith("sd.")]:
        del registry.events[name]
    registry.events["sd.Put"] = Put
    registry.states["sd.Box"] = Box


@pytest.fixture
def url(any_url: str) -> str:
    return any_url


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, [*args])
    return result.exit_code, result.output


def raw_sql(url: str, sql: str, params: list[Any]) -> None:
    """Change stored rows behind the library's back (as old code or a hand edit would)."""
    if url.startswith("sqlite"):
        import sqlite3

        with sqlite3.connect(url.removeprefix("sqlite:///")) as conn:
            conn.execute(sql.replace("{s}.", ""), params)
        return
    import psycopg

    base, _, schema = url.partition("?schema=")
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(sql.replace("{s}", f'"{schema}"').replace("?", "%s"), params)


def put_three(url: str) -> None:
    with Engine.open(url, head_values=False) as engine:
        for n in (1, 2, 3):
            engine.fire(Put(box_id=1, n=n, label=f"l{n}"))
            engine.commit()


def redefine(body: Callable[[], type[Event]]) -> type[Event]:
    del registry.events["sd.Put"]
    return body()


def renamed_without_bump() -> type[Event]:
    @attrs.define
    class Put(Event, type_name="sd.Put"):
        box_id: int = state_id(Box)
        amount: int = 0  # was n
        label: str = ""

        def apply(self, box: Box) -> None:
            box.n += self.amount

    return Put


def required_field_added() -> type[Event]:
    @attrs.define
    class Put(Event, type_name="sd.Put"):
        box_id: int = state_id(Box)
        n: int = 0
        label: str = ""
        reason: str = attrs.field(kw_only=True)  # no default: old rows lack it

        def apply(self, box: Box) -> None:
            box.n += self.n

    return Put


def type_changed() -> type[Event]:
    @attrs.define
    class Put(Event, type_name="sd.Put"):
        box_id: int = state_id(Box)
        n: int = 0
        label: int = 0  # was str: "l1" cannot be an int, and 5 would become "5"

        def apply(self, box: Box) -> None:
            box.n += self.n

    return Put


def upcaster(step: Callable[[dict[str, Any]], Any]) -> Callable[[], type[Event]]:
    def body() -> type[Event]:
        @attrs.define
        class Put(Event, type_name="sd.Put", version=2):
            box_id: int = state_id(Box)
            n: int = 0
            label: str = ""

            upcast_v1 = staticmethod(step)

            def apply(self, box: Box) -> None:
                box.n += self.n

        return Put

    return body


def _raise(data: dict[str, Any]) -> dict[str, Any]:
    raise KeyError("cents")


CASES: dict[str, tuple[Callable[[], type[Event]], str]] = {
    "renamed field, no version bump": (renamed_without_bump, "unknown key(s) 'n'"),
    "required field added": (required_field_added, "reason"),
    "type changed": (type_changed, "expected int @ $.label"),
    "upcaster returns None": (upcaster(lambda d: None), "returned NoneType, not a dict"),
    "upcaster returns a list": (upcaster(lambda d: [d]), "returned list, not a dict"),
    "upcaster raises": (upcaster(_raise), "upcast_v1 raised KeyError"),
    "upcaster gives a wrong type": (
        upcaster(lambda d: {**d, "label": 5}),  # decoding alone would read it as "5"
        "expected str @ $.label",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_schema_decodes_and_fails_naming_type_position_and_reason(url: str, case: str) -> None:
    put_three(url)
    code, out = run("schema", url)
    assert code == 0, out  # the rows are readable before the change
    body, reason = CASES[case]
    redefine(body)
    code, out = run("schema", url)
    assert code == 1, out
    assert "FAIL sd.Put v1" in out and "3 of 3 decoded row(s) FAIL" in out, out
    for position in (1, 2, 3):
        assert f"at position {position}: " in out, out
    assert reason in out, out


def test_the_sample_bounds_the_rows_decoded_and_all_decodes_every_row(url: str) -> None:
    put_three(url)
    # one bad row, last in the log: a sample of 2 does not reach it, --all does
    bad = json.dumps({"box_id": 1, "n": "three", "label": "l3"})
    raw_sql(url, "UPDATE {s}.pt_events SET data = ? WHERE position = 3", [bad])
    store = open_store(url)
    try:
        assert schema_report(store, sample=2).ok
        report = schema_report(store, sample=None)
        assert not report.ok
        (entry,) = [e for e in report.entries if e.kind == "event"]
        assert (entry.decoded, [f.position for f in entry.failures]) == (3, [3])
    finally:
        store.close()
    code, out = run("schema", url, "--all")
    assert code == 1 and "at position 3: " in out and "expected int @ $.n" in out, out
    code, out = run("schema", url, "--sample", "0")
    assert code == 0, out


def test_a_usable_snapshot_that_does_not_decode_is_reported(url: str) -> None:
    put_three(url)
    with Engine.open(url, head_values=False) as engine:
        engine.load(Box, 1)
        engine.admin.snapshot()
    bad = json.dumps({"n": 6, "label": 7})  # label must be a str
    raw_sql(url, "UPDATE {s}.pt_snapshots SET data = ?", [bad])
    code, out = run("schema", url)
    assert code == 1, out
    assert "sd.Box(1) at position 3: cannot decode" in out, out
    assert "expected str @ $.label" in out, out
