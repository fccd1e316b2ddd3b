"""find/count are exact: states that satisfy the filter as returned, at one cut of the log,
with exact numbers, any dict key, any list length; values no store holds are refused."""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest

from playthrough import Engine, Event, State, state_id
from playthrough._serialization import encode_state
from playthrough.errors import EventRejected, PlaythroughError, QueryError

from .read_domain import Changed, Customer, Moved, own_sessions


@attrs.define
class Gauge(State, type_name="qx.Gauge"):
    level: float = 0.0
    readings: dict[str, float] = attrs.field(factory=dict)


@attrs.define
class Read(Event, type_name="qx.Read"):
    gauge_id: int = state_id(Gauge)
    level: float = 0.0
    readings: dict[str, float] = attrs.field(factory=dict)

    def apply(self, gauge: Gauge) -> None:
        gauge.level = self.level
        gauge.readings.update(self.readings)


@attrs.define
class Squared(Event, type_name="qx.Squared"):
    gauge_id: int = state_id(Gauge)

    def apply(self, gauge: Gauge) -> None:
        gauge.level = gauge.level * gauge.level  # 1e200 squared is inf


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, dict[str, Any]]:
    """A URL and options two engines can share."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'q.db'}", {}
    url = own_sessions(request.getfixturevalue("pg_url"))
    return url, {"schema": request.getfixturevalue("pg_schema")}


@pytest.fixture
def engine(store: tuple[str, dict[str, Any]]) -> Iterator[Engine]:
    url, opts = store
    with Engine.open(url, **opts) as e:
        yield e


def ids(states: Any) -> list[Any]:
    return [s.id for s in states]


# --------------------------------------------------------------------------- one cut, live states


def test_a_long_lived_engine_returns_states_as_matched(store: tuple[str, dict[str, Any]]) -> None:
    url, opts = store
    with Engine.open(url, **opts) as a, Engine.open(url, **opts) as b:
        a.fire(Changed(customer_id=1, owner="ada", balance=150))
        a.fire(Changed(customer_id=2, owner="bob", balance=5))
        a.commit()
        held = a.load(Customer, 1)  # in a's identity map at balance 150
        b.fire(Moved(source_id=1, target_id=2, amount=145))  # now 5 and 150
        b.commit()
        low = list(a.states.find(Customer, balance__lt=10))
        assert [(s.id, s.balance) for s in low] == [(1, 5)]
        assert low[0] is not held and a.load(Customer, 1) is low[0]  # replaced in the map
        high = list(a.states.find(Customer, balance__gt=100))
        assert [(s.id, s.balance) for s in high] == [(2, 150)]
        again = next(a.states.find(Customer, owner="ada"))
        assert again is low[0]  # at the row's position: the live object itself
        a.fire(Changed(customer_id=1, balance=7))  # the found state is usable to fire
        a.commit()
        assert a.load(Customer, 1).balance == 7 and b.load(Customer, 1).balance == 5


def test_find_refuses_while_events_on_the_type_are_pending(engine: Engine) -> None:
    engine.fire(Changed(customer_id=1, owner="ada", balance=100))
    engine.commit()
    engine.fire(Changed(customer_id=1, balance=5))  # pending: not in the log yet
    with pytest.raises(PlaythroughError, match=r"uncommitted events on r\.Customer"):
        engine.states.find(Customer, balance__gt=50)
    with pytest.raises(PlaythroughError, match="uncommitted"):
        engine.states.find(Customer, balance__gt=50, completed=None)
    assert engine.states.count(Customer, balance__gt=50) == 1  # the committed log
    assert ids(engine.states.find(Gauge)) == []  # another type: no pending events on it
    engine.commit()
    assert ids(engine.states.find(Customer, balance__gt=50)) == []
    [found] = engine.states.find(Customer, balance__lt=50)
    assert found.balance == 5


def test_reads_under_concurrent_writers_match_their_filter(
    store: tuple[str, dict[str, Any]],
) -> None:
    """A long-lived engine reads while another engine commits: every state returned
    satisfies the filter as returned, and each answer is one cut (the total is kept)."""
    url, opts = store
    states, rounds = 6, 60
    with Engine.open(url, **opts) as seed:
        for i in range(states):
            seed.fire(Changed(customer_id=i, balance=10))
        seed.commit()
    done = threading.Event()
    failures: list[BaseException] = []

    def write() -> None:
        try:
            with Engine.open(url, **opts) as writer:
                for n in range(rounds):
                    writer.fire(Moved(source_id=n % states, target_id=(n + 1) % states, amount=3))
                    writer.commit()
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            failures.append(exc)
        finally:
            done.set()

    thread = threading.Thread(target=write)
    reads = 0
    with Engine.open(url, **opts) as reader:
        for i in range(states):
            reader.load(Customer, i)  # long-lived: every state in the map from the start
        thread.start()
        while not done.is_set() or reads < 5:
            low = list(reader.states.find(Customer, balance__lt=10))
            assert all(s.balance < 10 for s in low), [(s.id, s.balance) for s in low]
            every = list(reader.states.find(Customer))
            assert sum(s.balance for s in every) == 10 * states  # one cut: moves keep the total
            reads += 1
        thread.join()
    assert not failures, failures


# --------------------------------------------------------------------------- numbers


def test_floats_compare_exactly(engine: Engine) -> None:
    for i, level in enumerate([0.3, 0.1 + 0.2, 1 / 3, 0.1, 2.0**53]):
        engine.fire(Read(gauge_id=i, level=level))
    engine.commit()
    assert ids(engine.states.find(Gauge, level=0.1 + 0.2)) == [1]
    assert ids(engine.states.find(Gauge, level=0.3)) == [0]
    assert ids(engine.states.find(Gauge, level=1 / 3)) == [2]
    assert ids(engine.states.find(Gauge, level__in=[1 / 3, 0.1 + 0.2])) == [1, 2]
    assert ids(engine.states.find(Gauge, level__gt=0.3, level__lt=0.34)) == [1, 2]
    assert ids(engine.states.find(Gauge, level__lte=0.3)) == [0, 3]
    assert ids(engine.states.find(Gauge, level=2**53)) == [4]  # int and float equal by value
    assert ids(engine.states.find(Gauge, level__lt=2**53 + 1)) == [0, 1, 2, 3, 4]
    assert engine.states.count(Gauge, level__ne=0.1 + 0.2) == 4


def test_ints_beyond_2_to_the_53_compare_and_sort_exactly(engine: Engine) -> None:
    big = 2**53
    for i, balance in enumerate([big + 1, big, big - 1, 2**63 - 1]):
        engine.fire(Changed(customer_id=i, balance=balance))
    engine.commit()
    assert ids(engine.states.find(Customer, balance=big + 1)) == [0]
    assert ids(engine.states.find(Customer, balance__gt=float(big))) == [0, 3]
    assert ids(engine.states.find(Customer, balance__gte=float(big), balance__lt=2**63 - 1)) == [
        0,
        1,
    ]
    assert ids(engine.states.find(Customer, balance=float(big))) == [1]
    assert ids(engine.states.find(Customer, order_by="-balance")) == [3, 0, 1, 2]
    assert ids(engine.states.find(Customer, balance__in=[big - 1, 2**63 - 1])) == [2, 3]
    assert ids(engine.states.find(Customer, balance=-(2**63))) == []


@pytest.mark.parametrize("value", [2**63, -(2**63) - 1, 10**30])
def test_ints_beyond_64_bits_as_filters_are_query_errors(engine: Engine, value: int) -> None:
    engine.fire(Changed(customer_id=1, balance=1))
    engine.commit()
    with pytest.raises(QueryError, match="64 bits"):
        engine.states.count(Customer, balance=value)
    with pytest.raises(QueryError, match="64 bits"):
        list(engine.states.find(Customer, balance__gt=value))
    with pytest.raises(QueryError, match="64 bits"):
        engine.states.count(Customer, balance__in=[1, value])
    with pytest.raises(QueryError, match="64 bits"):
        engine.states.count(Customer, flags__contains={"a": value})


# --------------------------------------------------------------------------- non-finite floats


@pytest.mark.parametrize("bad", [math.inf, -math.inf, math.nan])
def test_non_finite_floats_are_refused_at_fire(engine: Engine, bad: float) -> None:
    engine.fire(Read(gauge_id=1, level=1.0))
    engine.commit()
    with pytest.raises(EventRejected, match=r"Read \(qx\.Read\): field 'level' holds"):
        engine.fire(Read(gauge_id=1, level=bad))
    with pytest.raises(EventRejected, match=r"field 'readings\.north' holds"):
        engine.fire(Read(gauge_id=2, readings={"north": bad, "south": 2.0}))
    assert engine.pending == ()  # nothing queued
    assert engine.states.count(Gauge, level__gt=0) == 1  # and the type stays queryable
    assert ids(engine.states.find(Gauge, level=1.0)) == [1]


def test_a_state_that_becomes_infinite_is_not_stored(engine: Engine) -> None:
    engine.fire(Read(gauge_id=1, level=1e200))
    engine.commit()
    head = engine.head()
    engine.fire(Squared(gauge_id=1))
    with pytest.raises(PlaythroughError, match=r"qx\.Gauge\(1\).*field 'level' holds inf"):
        engine.commit()
    assert engine.head() == head  # nothing written
    assert [s.level for s in engine.states.find(Gauge, level__gt=1)] == [1e200]


@pytest.mark.parametrize("bad", [math.inf, -math.inf, math.nan])
def test_non_finite_filter_values_are_query_errors(engine: Engine, bad: float) -> None:
    engine.fire(Read(gauge_id=1, level=1.0))
    engine.commit()
    for filters in ({"level": bad}, {"level__lt": bad}, {"level__in": [1.0, bad]}):
        with pytest.raises(QueryError, match="finite"):
            engine.states.count(Gauge, **filters)
    with pytest.raises(QueryError, match="finite"):
        list(engine.states.find(Gauge, readings__contains={"n": bad}))


# --------------------------------------------------------------------------- dict keys

ODD_KEYS = ["{s}", "{s}.pt_heads", "%s", "%", "a.b", "a b", "it's", "é", "a\\b", "a\nb", "[0]", "$"]


def test_odd_dict_keys_are_data(engine: Engine) -> None:
    for i, key in enumerate(ODD_KEYS):
        engine.fire(Read(gauge_id=i, readings={key: float(i), "plain": 1.0}))
    engine.commit()
    for i, key in enumerate(ODD_KEYS):
        eq: dict[str, Any] = {f"readings__{key}": float(i)}
        assert ids(engine.states.find(Gauge, **eq)) == [i], key
        assert ids(engine.states.find(Gauge, readings__contains={key: float(i)})) == [i], key
        assert engine.states.count(Gauge, **{f"readings__{key}__isnull": False}) == 1, key
        assert engine.states.count(Gauge, **{f"readings__{key}__gte": 0}) == 1, key
        assert ids(engine.states.find(Gauge, order_by=f"-readings__{key}", limit=1)) == [i], key


def test_a_double_quote_in_a_key(request: pytest.FixtureRequest, engine: Engine) -> None:
    engine.fire(Read(gauge_id=1, readings={'say "hi"': 2.0}))
    engine.commit()
    if engine.store.url.startswith("sqlite"):  # SQLite's JSON paths cannot name it
        with pytest.raises(QueryError, match="double quote"):
            engine.states.count(Gauge, **{'readings__say "hi"': 2.0})
        with pytest.raises(QueryError, match="double quote"):
            list(engine.states.find(Gauge, order_by='readings__say "hi"'))
    else:
        assert engine.states.count(Gauge, **{'readings__say "hi"': 2.0}) == 1
    # as part of a compared value (not a path) it works on both
    assert engine.states.count(Gauge, readings={'say "hi"': 2.0}) == 1


# --------------------------------------------------------------------------- __in


def test_in_takes_a_list_of_any_length(engine: Engine) -> None:
    for i in range(6):
        engine.fire(Changed(customer_id=i, owner=f"o{i}", balance=i * 1000))
    engine.fire(Changed(customer_id=6, owner="", tags=["vip"], active=True))
    engine.commit()
    owners = [f"x{i}" for i in range(70_000)] + ["o1", "o4"]
    assert ids(engine.states.find(Customer, owner__in=owners)) == [1, 4]
    assert engine.states.count(Customer, balance__in=list(range(-35_000, 35_000))) == 7
    assert engine.states.count(Customer, balance__in=[float(i) for i in range(1, 70_001)]) == 5
    assert engine.states.count(Customer, owner__in=owners, balance__gt=1000) == 1
    # mixed kinds, each matching only its own kind
    mixed: list[Any] = [None, True, "o2", 3000, ["vip"], 0.0]
    assert ids(engine.states.find(Customer, owner__in=mixed)) == [2]
    assert ids(engine.states.find(Customer, balance__in=mixed)) == [0, 3, 6]
    assert ids(engine.states.find(Customer, active__in=mixed)) == [6]
    assert ids(engine.states.find(Customer, note__in=mixed)) == [0, 1, 2, 3, 4, 5, 6]
    assert ids(engine.states.find(Customer, tags__in=mixed)) == [6]
    assert ids(engine.states.find(Customer, tags__in=[[]])) == [0, 1, 2, 3, 4, 5]
    assert ids(engine.states.find(Customer, address__zip__in=["1"])) == []
    assert engine.states.count(Customer, owner__in=[1, True, None]) == 0


# --------------------------------------------------------------------------- the statement cache


@pytest.mark.postgres
def test_the_postgres_statement_cache_stays_bounded(pg_url: str, pg_schema: str) -> None:
    from playthrough._stores.postgres import RENDERED_MAX, PostgresStore

    with Engine.open(own_sessions(pg_url), schema=pg_schema) as engine:
        store = engine.store
        assert isinstance(store, PostgresStore)
        engine.fire(Changed(customer_id=1, flags={"k7": 1}))
        engine.commit()
        for i in range(RENDERED_MAX + 40):  # a distinct filter text each time
            assert engine.states.count(Customer, **{f"flags__k{i}": 1}) == (1 if i == 7 else 0)
        assert len(store._rendered) <= RENDERED_MAX
        for i in range(RENDERED_MAX * 2):  # the bound itself, least recently used first out
            store._sql(f"SELECT {i} FROM {{s}}.pt_heads")
        assert len(store._rendered) == RENDERED_MAX
        assert store._sql("SELECT 1 FROM {s}.pt_heads") == (f'SELECT 1 FROM "{pg_schema}".pt_heads')
        assert engine.states.count(Customer, flags__k7=1) == 1  # evicted constants come back
        assert engine.load(Customer, 1).flags == {"k7": 1}


def test_found_values_equal_their_stored_json(engine: Engine) -> None:
    """What find decodes is what was stored (floats and big ints included)."""
    engine.fire(Read(gauge_id=1, level=0.1 + 0.2, readings={"{s}": 1 / 3}))
    engine.fire(Changed(customer_id=1, balance=2**62 + 1))
    engine.commit()
    engine.repository.clear()
    [g] = engine.states.find(Gauge)
    [c] = engine.states.find(Customer)
    assert json.loads(encode_state(g)) == {"level": 0.1 + 0.2, "readings": {"{s}": 1 / 3}}
    assert c.balance == 2**62 + 1
