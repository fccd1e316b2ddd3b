"""Loads agree with the log where features meet: metadata in cold loads, snapshot rows
without a position, replay of handle hooks, refused fires, and the types a commit writes.

Each test runs on SQLite and on PostgreSQL (a schema of its own) where both apply.
"""

from __future__ import annotations

import copy
import enum
import sqlite3
from collections.abc import Mapping, Sequence
from datetime import date, datetime
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, NewType

import attrs
import pytest

from playthrough import Engine, Event, State, state_id
from playthrough._typecheck import type_problem
from playthrough.errors import DefinitionError, EventRejected, StateTypeError


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'exact.db'}"
    pg_url: str = request.getfixturevalue("pg_url")
    schema: str = request.getfixturevalue("pg_schema")
    return f"{pg_url}?schema={schema}"


# ---------------------------------------------------------------- metadata in every load


@attrs.define
class Audited(State, type_name="exact.Audited"):
    by: list[str] = attrs.field(factory=list)
    total: int = 0


@attrs.define
class AuditedChange(Event, type_name="exact.AuditedChange"):
    audited_id: int = state_id(Audited)
    amount: int = 0

    def apply(self, audited: Audited) -> None:
        audited.by.append(f"{self.metadata.get('user', '?')}/{self.correlation is not None}")
        audited.total += self.amount


def _audit_story(engine: Engine) -> list[str]:
    engine.fire(AuditedChange(audited_id=1, amount=2), metadata={"user": "ada"})
    engine.commit()
    with engine.metadata(user="grace"):
        engine.fire(AuditedChange(audited_id=1, amount=3))
    engine.commit()
    engine.fire(AuditedChange(audited_id=1, amount=5), metadata={"user": "alan"})
    engine.commit()
    return list(engine.load(Audited, 1).by)


def test_apply_reading_metadata_loads_the_same_cold_at_and_after_replay(url: str) -> None:
    with Engine.open(url) as engine:
        live = _audit_story(engine)
        assert live == ["ada/True", "grace/True", "alan/True"]
        head = engine.head()
    # A cold load that plays the log (no heads values, no snapshots).
    with Engine.open(url, head_values=False) as cold:
        cold.store.drop_snapshots(None)
        assert cold.load(Audited, 1).by == live
        assert cold.load(Audited, 1, at=head).by == live
        assert cold.load(Audited, 1, at=head - 1).by == live[:2]
    with Engine.open(url) as replayed:
        replayed.admin.replay()
        assert replayed.load(Audited, 1).by == live
    with Engine.open(url, head_values=False) as again:
        again.store.drop_snapshots(None)
        assert again.load(Audited, 1).by == live


def test_a_load_before_an_archive_cut_reads_metadata_from_the_archive(
    url: str, tmp_path: Path
) -> None:
    with Engine.open(url) as engine:
        live = _audit_story(engine)
        engine.admin.archive(before=3, to=tmp_path / "old.jsonl.gz")
    with Engine.open(url, archive=tmp_path / "old.jsonl.gz") as reader:
        assert reader.load(Audited, 1, at=1).by == live[:1]
        assert reader.load(Audited, 1, at=2).by == live[:2]
        assert reader.load(Audited, 1).by == live


# ---------------------------------------------------------------- replay_handle and the engine


@attrs.define
class Followed(Event, type_name="exact.Followed"):
    audited_id: int = state_id(Audited)

    def apply(self, audited: Audited) -> None:
        audited.total += 100


def test_a_replayed_handle_that_takes_the_engine_is_refused_at_definition() -> None:
    with pytest.raises(DefinitionError, match=r"Pinger\.handle.*replay_handle = True.*engine"):

        @attrs.define
        class Pinger(Event, type_name="exact.Pinger"):
            audited_id: int = state_id(Audited)
            replay_handle: ClassVar[bool] = True

            def apply(self, audited: Audited) -> None:
                audited.total += 1

            def handle(self, engine: Engine) -> None:  # stateless, fires
                engine.fire(Followed(audited_id=self.audited_id))

    # Inherited too: the subclass replays its parent's handle.
    @attrs.define
    class Firing(Event, type_name="exact.Firing"):
        audited_id: int = state_id(Audited)

        def handle_follow(self, engine: Engine, audited: Audited) -> None:
            engine.fire(Followed(audited_id=self.audited_id))

    with pytest.raises(DefinitionError, match=r"ReplayedFiring\.handle_follow"):

        @attrs.define
        class ReplayedFiring(Firing, type_name="exact.ReplayedFiring"):
            replay_handle: ClassVar[bool] = True


def test_replay_still_runs_a_replay_safe_handle_without_the_engine(url: str) -> None:
    seen: list[int] = []

    @attrs.define
    class Noted(Event, type_name="exact.Noted"):
        audited_id: int = state_id(Audited)
        replay_handle: ClassVar[bool] = True

        def apply(self, audited: Audited) -> None:
            audited.total += 1

        def handle(self, audited: Audited) -> None:
            seen.append(audited.total)

    with Engine.open(url) as engine:
        engine.fire(Noted(audited_id=7))
        engine.fire(Noted(audited_id=7))
        engine.commit()
        assert seen == [2, 2]
        engine.admin.replay()
        assert seen[2:] == [1, 2]
        assert engine.load(Audited, 7).total == 2


# ---------------------------------------------------------------- a refused fire caches nothing


@attrs.define
class Wallet(State, type_name="exact.Wallet"):
    balance: int = 0


@attrs.define
class Paid(Event, type_name="exact.Paid"):
    wallet_id: int = state_id(Wallet)
    amount: int = 0

    def validate(self, wallet: Wallet) -> None:
        if self.amount <= 0:
            raise EventRejected("a payment must be positive")

    def apply(self, wallet: Wallet) -> None:
        if self.amount == 13:
            raise RuntimeError("unlucky")
        wallet.balance += self.amount


def _assert_nothing_cached(event: Event) -> None:
    assert event.id is None and event.fired_at is None and event.metadata == {}
    assert event.correlation is None and event.idempotency_key is None
    assert getattr(event, "_pt_binding", None) is None


def test_refit_after_a_refused_fire_binds_to_the_corrected_id(url: str) -> None:
    with Engine.open(url) as engine:
        # Refused for its id's type (a str in an int field).
        paid = Paid(wallet_id="1", amount=5)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="wallet_id"):
            engine.fire(paid, metadata={"try": 1}, key="pay-1")
        _assert_nothing_cached(paid)
        paid.wallet_id = 1
        engine.fire(paid, key="pay-1")
        # Refused by validate, then by an apply that raises.
        second = Paid(wallet_id=2, amount=0)
        with pytest.raises(EventRejected):
            engine.fire(second)
        _assert_nothing_cached(second)
        second.amount = 13
        with pytest.raises(RuntimeError, match="unlucky"):
            engine.fire(second)
        _assert_nothing_cached(second)
        second.wallet_id, second.amount = 3, 4
        engine.fire(second)
        engine.commit()
        assert [e.id for e in (paid, second)] == [1, 2]
        assert engine.load(Wallet, 1).balance == 5
        assert engine.load(Wallet, "1").balance == 0
        assert (engine.load(Wallet, 2).balance, engine.load(Wallet, 3).balance) == (0, 4)
    with Engine.open(url) as cold:
        assert [cold.load(Wallet, i).balance for i in (1, 2, 3)] == [5, 0, 4]


def test_a_binding_cached_before_the_fire_is_not_trusted(url: str) -> None:
    with Engine.open(url) as engine:
        paid = Paid(wallet_id=1, amount=5)
        assert [str(k) for k in paid.touched] == ["exact.Wallet(1)"]
        paid.wallet_id = 2  # changed after the binding was computed, before the fire
        engine.fire(paid)
        engine.commit()
        assert (engine.load(Wallet, 1).balance, engine.load(Wallet, 2).balance) == (0, 5)


# ---------------------------------------------------------------- snapshot rows without a position


def _execute(url: str, sql: str) -> None:
    """Run one statement on the store behind ``url`` by hand (as older code or a person would)."""
    if url.startswith("sqlite:///"):
        with sqlite3.connect(url.removeprefix("sqlite:///")) as conn:
            conn.execute(sql.replace("{s}", ""))
        return
    import psycopg

    server, schema = url.split("?schema=")
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(sql.replace("{s}", f'"{schema}".'))


@pytest.mark.parametrize("later_events", [0, 2])
def test_a_snapshot_row_without_last_event_id_loads_and_commits(
    url: str, later_events: int
) -> None:
    with Engine.open(url) as engine:
        for amount in (1, 2):
            engine.fire(Paid(wallet_id=1, amount=amount))
            engine.fire(Paid(wallet_id=2, amount=10))
            engine.commit()
        engine.admin.snapshot()
        snapshot_at = engine.head()
        for _ in range(later_events):
            engine.fire(Paid(wallet_id=2, amount=10))
            engine.commit()
    _execute(url, "UPDATE {s}pt_snapshots SET last_event_id = NULL")
    _execute(url, "UPDATE {s}pt_heads SET value = NULL, value_position = NULL")
    with Engine.open(url) as engine:
        plan = engine.explain(Wallet, 1)
        assert plan.states[plan.targets[0]].start == snapshot_at  # the snapshot is used
        wallet = engine.load(Wallet, 1)
        assert (wallet.balance, wallet.last_event_id) == (3, 3)
        assert engine.load(Wallet, 1, at=snapshot_at).last_event_id == 3
        other = engine.load(Wallet, 2)
        assert (other.balance, other.last_event_id) == (20 + 10 * later_events, engine.head())
        engine.fire(Paid(wallet_id=1, amount=4))
        engine.fire(Paid(wallet_id=2, amount=4))
        engine.commit()
    with Engine.open(url) as cold:
        assert cold.load(Wallet, 1).balance == 7
        assert cold.load(Wallet, 2).balance == 24 + 10 * later_events


# ---------------------------------------------------------------- the types a commit writes


class Colour(enum.Enum):
    RED = "red"
    BLUE = "blue"


@attrs.define
class Point:
    x: int = 0
    y: float = 0.0


@attrs.define
class Typed(State, type_name="exact.Typed"):
    count: int = 0
    ratio: float = 0.0
    name: str = ""
    flag: bool = False
    maybe: int | None = None
    tags: list[str] = attrs.field(factory=list)
    scores: dict[str, int] = attrs.field(factory=dict)
    pair: tuple[int, str] = (0, "")
    point: Point = attrs.field(factory=Point)
    points: list[Point] = attrs.field(factory=list)
    colour: Colour = Colour.RED
    loose: Any = None


@attrs.define
class Set(Event, type_name="exact.Set"):
    """Stores ``CASES[case]``'s value in its field (values JSON could not carry as given)."""

    typed_id: int = state_id(Typed)
    case: int = 0

    def apply(self, typed: Typed) -> None:
        field, value = CASES[self.case]
        path = field.split(".")
        target: Any = typed
        for step in path[:-1]:
            target = getattr(target, step)
        setattr(target, path[-1], copy.deepcopy(value))


@attrs.define
class Touch(Event, type_name="exact.Touch"):
    typed_id: int = state_id(Typed)

    def apply(self, typed: Typed) -> None:
        typed.count += 1


# Values an apply may store, and the field they go to (all fine).
ACCEPTED = [
    ("count", 3),
    ("ratio", 0.5),
    ("ratio", 2),  # an int in a float field: loaded as 2.0, an equal value
    ("name", "x"),
    ("flag", True),
    ("maybe", None),
    ("maybe", 4),
    ("tags", ["a", "b"]),
    ("scores", {"a": 1}),
    ("pair", (1, "a")),
    ("point", Point(1, 2.5)),
    ("points", [Point(1, 1)]),
    ("colour", Colour.BLUE),
    ("loose", 0.3),  # Any: unchecked
    ("loose", {"any": [1, "thing"]}),
]

# (field, value, what the error says)
REFUSED = [
    ("count", 0.3, r"field 'count': expected int, found 0\.3 \(float\)"),
    ("count", True, r"field 'count': expected int, found True \(bool\)"),
    ("count", "3", r"field 'count': expected int, found '3' \(str\)"),
    ("ratio", True, r"field 'ratio': expected float, found True \(bool\)"),
    ("ratio", "0.5", r"field 'ratio': expected float"),
    ("name", 5, r"field 'name': expected str, found 5 \(int\)"),
    ("flag", 1, r"field 'flag': expected bool, found 1 \(int\)"),
    ("maybe", 1.5, r"field 'maybe': expected int \| None, found 1\.5 \(float\)"),
    ("tags", ["a", 2], r"field 'tags': at tags\[1\]: expected str, found 2 \(int\)"),
    ("tags", ("a",), r"field 'tags': expected list\[str\], found \('a',\) \(tuple\)"),
    ("scores", {"a": 1.5}, r"field 'scores': at scores\['a'\]: expected int, found 1\.5"),
    ("scores", {1: 1}, r"field 'scores': key 1: expected str, found 1 \(int\)"),
    ("pair", (1, 2), r"field 'pair': at pair\[1\]: expected str, found 2 \(int\)"),
    ("point", Point(1.5, 0.0), r"field 'point': at point\.x: expected int, found 1\.5"),  # type: ignore[arg-type]
    ("point.x", 2.5, r"field 'point': at point\.x: expected int, found 2\.5"),
    (
        "points",
        [Point(1, "a")],  # type: ignore[arg-type]
        r"field 'points': at points\[0\]\.y: expected float, found 'a' \(str\)",
    ),
    ("colour", "red", r"field 'colour': expected Colour, found 'red' \(str\)"),
]


CASES = [*ACCEPTED, *((f, v) for f, v, _ in REFUSED)]


@pytest.mark.parametrize(("field", "value"), ACCEPTED)
def test_a_commit_of_declared_types_loads_the_same_everywhere(
    tmp_path: Path, field: str, value: Any
) -> None:
    url = f"sqlite:///{tmp_path / 'typed.db'}"
    with Engine.open(url) as engine:
        engine.fire(Set(typed_id=1, case=CASES.index((field, value))))
        engine.commit()
        live = engine.load(Typed, 1)
        assert getattr(live, field) == value
    with Engine.open(url, head_values=False) as cold:
        cold.store.drop_snapshots(None)
        assert cold.load(Typed, 1) == live


@pytest.mark.parametrize(("field", "value", "message"), REFUSED)
def test_a_commit_storing_another_type_is_refused_before_anything_is_written(
    url: str, field: str, value: Any, message: str
) -> None:
    with Engine.open(url) as engine:
        engine.fire(Touch(typed_id=1))
        engine.commit()
        head = engine.head()
        engine.fire(Touch(typed_id=2))
        engine.fire(Set(typed_id=1, case=len(ACCEPTED) + REFUSED.index((field, value, message))))
        with pytest.raises(StateTypeError, match=r"exact\.Typed\(1\), " + message):
            engine.commit()
        assert engine.pending == () and engine.head() == head  # nothing written
        assert engine.load(Typed, 1).count == 1 and engine.load(Typed, 2).count == 0
        engine.fire(Touch(typed_id=1))  # the engine goes on
        engine.commit()
    with Engine.open(url) as cold:
        assert cold.load(Typed, 1).count == 2
        assert cold.admin.verify().ok


Count = NewType("Count", int)


@attrs.define
class Node:
    value: int = 0
    children: list[Node] = attrs.field(factory=list)


@attrs.define
class Shapes:
    literal: Literal["a", "b"] = "a"
    frozen: frozenset[int] = frozenset()
    unique: set[str] = attrs.field(factory=set)
    many: tuple[int, ...] = ()
    empty: tuple[()] = ()
    bare: tuple = ()  # type: ignore[type-arg]
    seq: Sequence[float] = ()
    mapping: Mapping[str, list[int]] = attrs.field(factory=dict)
    plain: dict = attrs.field(factory=dict)  # type: ignore[type-arg]
    items: list = attrs.field(factory=list)  # type: ignore[type-arg]
    count: Count = Count(0)
    annotated: Annotated[int, "unit"] = 0
    node: Node | None = None
    colours: list[Colour] = attrs.field(factory=list)
    when: date = date(2020, 1, 1)
    nothing: None = None
    mixed: list[int | str] = attrs.field(factory=list)
    free: object = None


SHAPES_REFUSED = [
    ("literal", "c", "field 'literal': expected Literal['a', 'b'], found 'c' (str)"),
    ("frozen", {1}, "field 'frozen': expected frozenset[int], found {1} (set)"),
    ("unique", {1}, "field 'unique': at unique[0]: expected str, found 1 (int)"),
    ("many", (1, "x"), "field 'many': at many[1]: expected int, found 'x' (str)"),
    ("empty", (1,), "field 'empty': expected tuple[()], found (1,) (tuple)"),
    ("bare", [1], "field 'bare': expected tuple, found [1] (list)"),
    ("seq", [1.0, "x"], "field 'seq': at seq[1]: expected float, found 'x' (str)"),
    ("mapping", {"a": [1, 2.5]}, "field 'mapping': at mapping['a'][1]: expected int"),
    ("plain", [], "field 'plain': expected dict, found [] (list)"),
    ("items", (), "field 'items': expected list, found () (tuple)"),
    ("count", 1.0, "field 'count': expected int, found 1.0 (float)"),
    ("annotated", "1", "field 'annotated': expected int, found '1' (str)"),
    ("node", Node(1, [Node(2, [Node(True)])]), "at node.children[0].children[0].value: "),
    ("colours", ["red"], "field 'colours': at colours[0]: expected Colour, found 'red'"),
    ("when", datetime(2020, 1, 1), "field 'when': expected date, found datetime"),
    ("nothing", 0, "field 'nothing': expected None, found 0 (int)"),
    ("mixed", [1, "a", 2.5], "field 'mixed': at mixed[2]: expected int | str, found 2.5"),
]


def test_type_problem_names_where_inside_a_value_the_type_differs() -> None:
    fine = Shapes(
        literal="b",
        frozen=frozenset({1}),
        unique={"a"},
        many=(1, 2),
        seq=(1, 2.5),
        mapping={"a": [1]},
        plain={1: object()},
        items=[object()],
        count=Count(3),
        node=Node(1, [Node(2)]),
        colours=[Colour.BLUE],
        mixed=[1, "a"],
        free=object(),
    )
    assert type_problem(fine) is None
    for field, value, message in SHAPES_REFUSED:
        changes: dict[str, Any] = {field: value}
        problem = type_problem(attrs.evolve(fine, **changes))
        assert problem is not None and message in problem, (field, problem)


def test_a_field_whose_annotation_cannot_be_resolved_is_not_checked() -> None:
    @attrs.define
    class Local:
        inner: LocalOnly = attrs.field(default=None)  # type: ignore[name-defined]  # noqa: F821
        n: int = 0

    assert type_problem(Local(inner="anything")) is None
    assert type_problem(Local(n=1.5)) == "field 'n': expected int, found 1.5 (float)"  # type: ignore[arg-type]
