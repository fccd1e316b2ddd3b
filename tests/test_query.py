"""States by value: engine.states.find/count/info, exact with respect to the log, on SQLite
and PostgreSQL.

The property compares find/count with an oracle written here: the filter
evaluated in Python over the reference states (naive full replay), with the
stored values sometimes fresh and sometimes stale.
"""

from __future__ import annotations

import json
import tempfile
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, cast

import attrs
import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from playthrough import Engine, Event, StateInfo, state_id
from playthrough._serialization import encode_state
from playthrough.errors import DefinitionError, NotFoundError, QueryError
from playthrough.testing import reference_states

from .read_domain import Changed, Customer, Moved, own_sessions


def _open(kind: str, request: pytest.FixtureRequest, schema: str | None = None) -> Engine:
    if kind == "sqlite":
        return Engine.open("sqlite://")
    url = own_sessions(request.getfixturevalue("pg_url"))
    return Engine.open(url, schema=schema or request.getfixturevalue("pg_schema"))


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest) -> Iterator[Engine]:
    e = _open(request.param, request)
    try:
        yield e
    finally:
        e.close()


def _people(engine: Engine) -> None:
    engine.fire(Changed(customer_id=1, owner="ada", balance=150, tags=["vip", "x"], city="Oslo"))
    engine.fire(Changed(customer_id=2, owner="bob", balance=50, tags=[], city="Rome", zip="00100"))
    engine.fire(Changed(customer_id=3, owner="ada", balance=101, score=2.5, active=True))
    engine.fire(Changed(customer_id=4, owner="cy", balance=-5, note="n", flags={"a": 1, "b": 2}))
    engine.commit()


def ids(states: Any) -> list[Any]:
    return [s.id for s in states]


def test_lookups(engine: Engine) -> None:
    _people(engine)
    assert ids(engine.states.find(Customer)) == [1, 2, 3, 4]
    assert ids(engine.states.find(Customer, owner="ada")) == [1, 3]
    assert ids(engine.states.find(Customer, owner__ne="ada")) == [2, 4]
    assert ids(engine.states.find(Customer, balance__gt=100)) == [1, 3]
    assert ids(engine.states.find(Customer, balance__gte=101)) == [1, 3]
    assert ids(engine.states.find(Customer, balance__lt=50)) == [4]
    assert ids(engine.states.find(Customer, balance__lte=50)) == [2, 4]
    assert ids(engine.states.find(Customer, owner__in=["bob", "cy"])) == [2, 4]
    assert ids(engine.states.find(Customer, owner__in=[])) == []
    assert ids(engine.states.find(Customer, tags__contains=["vip"])) == [1]
    assert ids(engine.states.find(Customer, tags__contains="x")) == [1]
    assert ids(engine.states.find(Customer, tags__contains=["vip", "nope"])) == []
    assert ids(engine.states.find(Customer, flags__contains={"a": 1})) == [4]
    assert ids(engine.states.find(Customer, flags__contains={"a": 2})) == []
    assert ids(engine.states.find(Customer, note__isnull=True)) == [1, 2, 3]
    assert ids(engine.states.find(Customer, note__isnull=False)) == [4]
    assert ids(engine.states.find(Customer, note=None)) == [1, 2, 3]
    assert ids(engine.states.find(Customer, address__city="Oslo")) == [1]
    assert ids(engine.states.find(Customer, address__zip__isnull=False)) == [2]
    assert ids(engine.states.find(Customer, flags__b__gte=2)) == [4]
    assert ids(engine.states.find(Customer, active=True)) == [3]
    assert ids(engine.states.find(Customer, active=False)) == [1, 2, 4]
    assert ids(engine.states.find(Customer, score=2.5)) == [3]
    assert ids(engine.states.find(Customer, score__gt=2)) == [3]
    assert ids(engine.states.find(Customer, owner__gt="b")) == [2, 4]  # by code point
    assert ids(engine.states.find(Customer, address={"city": "Oslo", "zip": None})) == [1]
    assert ids(engine.states.find(Customer, owner="ada", balance__gt=120)) == [1]
    assert ids(engine.states.find(Customer, balance__gt=0, order_by="-balance")) == [1, 3, 2]
    assert ids(engine.states.find(Customer, order_by=["owner", "-balance"])) == [1, 3, 2, 4]
    assert ids(engine.states.find(Customer, order_by="balance", limit=2)) == [4, 2]
    assert engine.states.count(Customer) == 4
    assert engine.states.count(Customer, balance__gt=100) == 2
    assert engine.states.count(Customer, owner="nobody") == 0


def test_unknown_fields_and_lookups_are_named(engine: Engine) -> None:
    _people(engine)
    with pytest.raises(QueryError, match="Customer has no field 'colour'"):
        engine.states.count(Customer, colour="red")
    with pytest.raises(QueryError, match="unknown lookup 'bigger' in 'balance__bigger'"):
        engine.states.count(Customer, balance__bigger=1)
    with pytest.raises(QueryError, match=r"Customer.address has no field 'town'"):
        list(engine.states.find(Customer, address__town="Oslo"))
    with pytest.raises(QueryError, match="no field 'nope'"):
        list(engine.states.find(Customer, order_by="-nope"))
    with pytest.raises(QueryError, match="isnull takes True or False"):
        engine.states.count(Customer, note__isnull="yes")
    with pytest.raises(QueryError, match="takes a list"):
        engine.states.count(Customer, owner__in="ada")
    with pytest.raises(QueryError, match="compares numbers or strings"):
        engine.states.count(Customer, balance__gt=[1])
    with pytest.raises(QueryError, match="datetime field"):
        engine.states.count(Customer, since__gt=datetime.now(UTC))
    with pytest.raises(QueryError, match="Decimal field"):
        engine.states.count(Customer, limit=Decimal("1.5"))
    with pytest.raises(QueryError, match="limit must be"):
        list(engine.states.find(Customer, limit=-1))
    with pytest.raises(TypeError, match="State subclass"):
        engine.states.count(Changed)  # type: ignore[arg-type]


def test_found_states_are_the_live_ones(engine: Engine) -> None:
    _people(engine)
    engine.repository.clear()
    [ada] = engine.states.find(Customer, owner="ada", balance__gt=120)
    assert engine.load(Customer, 1) is ada
    assert ada.last_event_id == 1 and ada.tags == ["vip", "x"]
    engine.fire(Moved(source_id=1, target_id=2, amount=100))  # usable to fire at once
    engine.commit()
    assert ids(engine.states.find(Customer, balance__gt=100)) == [2, 3]
    assert next(engine.states.find(Customer, owner="bob")) is engine.load(Customer, 2)


def test_answers_are_exact_after_other_writers(
    request: pytest.FixtureRequest, tmp_path: Any
) -> None:
    """A second engine's commits make stored values stale; the first still answers exactly."""
    for kind in ("sqlite", "postgresql"):
        if kind == "sqlite":
            url, opts = f"sqlite:///{tmp_path / 'x.db'}", {}
        else:
            url, opts = (
                own_sessions(request.getfixturevalue("pg_url")),
                {"schema": request.getfixturevalue("pg_schema")},
            )
        with Engine.open(url, **opts) as a, Engine.open(url, **opts) as b:
            _people(a)
            assert a.states.count(Customer, balance__gt=100) == 2  # values now stored
            b.fire(Moved(source_id=1, target_id=2, amount=100))
            b.fire(Changed(customer_id=5, owner="dee", balance=500))
            b.commit()
            assert a.states.count(Customer, balance__gt=100) == 3
            assert ids(a.states.find(Customer, balance__gt=100, order_by="balance")) == [3, 2, 5]


def test_count_does_not_decode_fresh_states(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    _people(engine)
    engine.states.count(Customer)  # makes every stored value fresh
    import playthrough._query as q
    import playthrough._reconstitution as rec

    def boom(*args: object, **kwargs: object) -> None:
        raise AssertionError("decoded a state or an event")

    monkeypatch.setattr(q, "decode", boom)
    monkeypatch.setattr(rec, "decode_event", boom)
    monkeypatch.setattr(rec, "state_from_snapshot", boom)
    assert engine.states.count(Customer, balance__gt=100) == 2
    assert engine.states.count(Customer) == 4
    # The patches do catch decoding: without stored values, states are rebuilt from the log.
    engine.admin.drop_snapshots()  # drops the heads values too
    with pytest.raises(AssertionError, match="decoded"):
        engine.states.count(Customer)


def test_info(engine: Engine) -> None:
    _people(engine)
    engine.fire(Moved(source_id=1, target_id=3, amount=1))
    engine.commit()
    engine.admin.snapshot([(Customer, 1)], at=1)
    info = engine.states.info(Customer, 1)
    assert isinstance(info, StateInfo)
    assert (info.id, info.created_position, info.last_position, info.events) == (1, 1, 5, 2)
    assert info.snapshot_position == 1
    assert info.created_at == engine.log.event(1).fired_at
    assert info.last_at == engine.log.event(5).fired_at
    info2 = engine.states.info(Customer, 2)
    assert (info2.events, info2.snapshot_position) == (1, None)
    assert "created #2" in str(info2)
    with pytest.raises(NotFoundError, match=r"r.Customer\(99\)"):
        engine.states.info(Customer, 99)


def test_reserved_event_names() -> None:
    with pytest.raises(DefinitionError, match="metadata: the name is reserved"):

        @attrs.define
        class WithMetadata(Event, type_name=f"r.bad.{uuid.uuid4()}"):
            customer_id: int = state_id(Customer)
            metadata: dict[str, str] = attrs.field(factory=dict)


# --------------------------------------------------------------------------- the property

_MISSING = object()


def _get(value: Any, path: tuple[str, ...]) -> Any:
    for p in path:
        if not isinstance(value, dict) or p not in value:
            return _MISSING
        value = value[p]
    return value


def _num(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _eq(x: Any, v: Any) -> bool:
    if v is None:
        return x is None
    if isinstance(v, bool):
        return x is v
    if _num(v):
        return _num(x) and x == v
    if isinstance(v, str):
        return isinstance(x, str) and x == v
    return type(x) is type(v) and x == v


def _matches(value: dict[str, Any], arg: str, v: Any) -> bool:
    parts = arg.split("__")
    lookup = (
        parts[-1]
        if parts[-1] in ("ne", "gt", "gte", "lt", "lte", "in", "contains", "isnull")
        else "eq"
    )
    path = tuple(parts[:-1] if lookup != "eq" else parts)
    x = _get(value, path)
    if lookup == "eq":
        return _eq(x, v)
    if lookup == "ne":
        return not _eq(x, v)
    if lookup == "in":
        return any(_eq(x, i) for i in v)
    if lookup == "isnull":
        return bool((x is _MISSING or x is None) == v)
    if lookup == "contains":
        if isinstance(v, dict):
            return all(_eq(_get(x, (k,)), i) for k, i in v.items())
        items = v if isinstance(v, list) else [v]
        return isinstance(x, list) and all(any(_eq(s, q) for s in x) for q in items)
    same = (_num(x) and _num(v)) or (isinstance(x, str) and isinstance(v, str))
    if not same:
        return False
    return bool({"gt": x > v, "gte": x >= v, "lt": x < v, "lte": x <= v}[lookup])


owners = st.sampled_from(["ada", "bob", "Åsa", "cy", ""])
tag_lists = st.lists(st.sampled_from(["vip", "new", "x"]), max_size=3)
# Numbers whose text or size tripped casts: floats that differ past 15 digits,
# ints beyond 2**53 (Moved adds at most 50 in all, so stored ints stay in int64).
SCORES = [0.0, 1.5, -2.0, 3.0, 0.1 + 0.2, 0.3, 1 / 3, 2.0**53, -0.0, 1e300]
BIG = [2**53, 2**53 + 1, -(2**53) - 1, 2**62]
# Dict keys that are SQL or path syntax somewhere ("{s}" was the schema placeholder).
KEYS = ["a", "b", "{s}", "%s", "a.b", "it's", "é", "[0]"]
changes = st.builds(
    Changed,
    customer_id=st.integers(0, 6),
    owner=st.none() | owners,
    balance=st.none() | st.integers(-3, 3) | st.sampled_from(BIG),
    score=st.none() | st.sampled_from(SCORES),
    active=st.none() | st.booleans(),
    note=st.none() | st.sampled_from(["a", "b"]),
    clear_note=st.booleans(),
    tags=st.none() | tag_lists,
    city=st.none() | st.sampled_from(["Oslo", "Rome"]),
    zip=st.none() | st.sampled_from(["1", "2"]),
    flags=st.none() | st.dictionaries(st.sampled_from(KEYS), st.integers(0, 2), max_size=3),
)
moves = st.builds(
    Moved, source_id=st.integers(0, 6), target_id=st.integers(0, 6), amount=st.integers(0, 2)
)
histories = st.lists(st.lists(changes | moves, min_size=1, max_size=5), min_size=1, max_size=5)
# Long lists: past SQLite's 999 bound parameters (values that match nothing, so the
# reference is unchanged and the list's length is what is tested).
PADDING: dict[str, list[Any]] = {
    "owner": [f"pad{i}" for i in range(1_200)],
    "balance": list(range(100, 1_300)),
}
numbers = st.integers(-4, 4) | st.sampled_from([*BIG, 2**53 - 1, float(2**53), 0.3, 1 / 3])


filters = st.one_of(
    st.tuples(st.sampled_from(["owner", "owner__ne", "owner__gt", "owner__lte"]), owners),
    st.tuples(st.sampled_from(["owner__in"]), st.lists(owners, max_size=3)),
    st.tuples(
        st.sampled_from(["balance", "balance__gt", "balance__gte", "balance__lt", "balance__ne"]),
        numbers,
    ),
    st.tuples(st.sampled_from(["balance__in"]), st.lists(numbers, max_size=3)),
    st.tuples(
        st.sampled_from(["score__gt", "score", "score__lte", "score__ne"]),
        st.sampled_from([0, 1.5, -1, *SCORES, 2**53 + 1]),
    ),
    st.tuples(st.sampled_from(["score__in"]), st.lists(st.sampled_from(SCORES), max_size=3)),
    st.tuples(st.sampled_from(["active", "active__ne"]), st.booleans()),
    st.tuples(st.sampled_from(["note", "note__ne"]), st.none() | st.sampled_from(["a", "b"])),
    st.tuples(
        st.sampled_from(["note__isnull", "address__zip__isnull", "flags__a__isnull"]), st.booleans()
    ),
    st.tuples(st.sampled_from(["tags__contains"]), tag_lists),
    st.tuples(st.sampled_from(["tags"]), tag_lists),
    st.tuples(
        st.sampled_from(["address__city", "address__city__ne"]),
        st.sampled_from(["Oslo", "Rome", ""]),
    ),
    st.tuples(
        st.sampled_from(["flags__contains"]),
        st.dictionaries(st.sampled_from(KEYS), st.integers(0, 2), max_size=2),
    ),
    st.tuples(
        st.sampled_from(KEYS).flatmap(
            lambda k: st.sampled_from([f"flags__{k}", f"flags__{k}__gt", f"flags__{k}__isnull"])
        ),
        st.integers(0, 2),
    ).map(lambda t: (t[0], bool(t[1])) if t[0].endswith("isnull") else t),
)
queries = st.lists(
    st.tuples(st.lists(filters, max_size=3).map(dict), st.booleans()),
    min_size=1,
    max_size=4,
)


def _with_padding(query: dict[str, Any], pad: bool) -> dict[str, Any]:
    """``pad``: every ``owner__in``/``balance__in`` list grows past 1,000 values."""
    if not pad:
        return query
    out = dict(query)
    for name, extra in PADDING.items():
        if f"{name}__in" in out:
            out[f"{name}__in"] = [*out[f"{name}__in"], *extra]
    return out


def _check(
    engine: Engine,
    other: Engine,
    history: list[list[Event]],
    query_list: list[tuple[dict[str, Any], bool]],
    data: st.DataObject,
) -> None:
    """``engine`` is long-lived (its identity map keeps states across batches); ``other``
    writes, making both the stored values and ``engine``'s states stale."""
    for batch in history:
        for event in batch:
            other.fire(event)
        other.commit()
        if data.draw(st.booleans(), label="query between commits"):
            engine.states.count(Customer)  # leaves fresh values that later commits make stale
        if data.draw(st.booleans(), label="load into the long-lived engine"):
            engine.load_many(Customer, range(7))
    reference = reference_states(list(engine.log.events()))
    values: dict[int, dict[str, Any]] = {
        cast(int, s.id): json.loads(encode_state(s))
        for k, s in reference.items()
        if k.type == "r.Customer"
    }
    for asked, pad in query_list:
        query = _with_padding(asked, pad)
        expected = sorted(
            i for i, v in values.items() if all(_matches(v, a, x) for a, x in asked.items())
        )
        assert engine.states.count(Customer, **query) == len(expected), query
        found = list(engine.states.find(Customer, **query))
        assert ids(found) == expected, query
        for state in found:  # the states returned are the log's, as returned
            assert json.loads(encode_state(state)) == values[cast(int, state.id)], query
        order = data.draw(
            st.sampled_from(["balance", "-balance", "owner", "-owner"]), label="order"
        )
        desc, name = order.startswith("-"), order.lstrip("-")
        by_value = sorted(expected, key=lambda i: str(i))
        by_value = sorted(by_value, key=lambda i: values[i][name], reverse=desc)
        assert ids(engine.states.find(Customer, order_by=order, **query)) == by_value, (
            query,
            order,
        )
    engine.repository.clear()
    for state in engine.states.find(Customer):  # decoded from the stored values: equal to the log's
        assert json.loads(encode_state(state)) == values[cast(int, state.id)]


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(history=histories, query_list=queries, data=st.data())
def test_find_and_count_equal_the_reference_sqlite(
    history: list[list[Event]],
    query_list: list[tuple[dict[str, Any], bool]],
    data: st.DataObject,
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/q.db"
        with Engine.open(url) as engine, Engine.open(url) as other:
            _check(engine, other, history, query_list, data)


@pytest.mark.postgres
@settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(history=histories, query_list=queries, data=st.data())
def test_find_and_count_equal_the_reference_postgres(
    pg_url: str,
    history: list[list[Event]],
    query_list: list[tuple[dict[str, Any], bool]],
    data: st.DataObject,
) -> None:
    schema = f"pt_test_{uuid.uuid4().hex[:12]}"
    try:
        with (
            Engine.open(own_sessions(pg_url), schema=schema) as engine,
            Engine.open(own_sessions(pg_url), schema=schema) as other,
        ):
            _check(engine, other, history, query_list, data)
    finally:
        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def test_values_of_another_class_shape_are_rebuilt_not_trusted(tmp_path: Any) -> None:
    """A heads value written by another version or shape of the class is not filtered on."""
    import sqlite3

    path = tmp_path / "shape.db"
    with Engine.open(f"sqlite:///{path}") as engine:
        _people(engine)
        assert engine.states.count(Customer, balance__gt=1000) == 0
    conn = sqlite3.connect(path)  # as an older class would have left it: another shape
    conn.execute(
        "UPDATE pt_heads SET value = json_set(value, '$.balance', 5000), "
        "value_fingerprint = 'older-shape' WHERE state_type = 'r.Customer' AND state_id = '1'"
    )
    conn.commit()
    conn.close()
    with Engine.open(f"sqlite:///{path}") as engine:
        assert engine.states.count(Customer, balance__gt=1000) == 0  # rebuilt from the log first
        assert ids(engine.states.find(Customer, balance__gt=120)) == [1]
        assert engine.load(Customer, 1).balance == 150
