"""Hypothesis strategies derived from a user's attrs event classes, kept in one place.

- :func:`values` — values of a field type: int, str, bool, float, Decimal,
  datetime, date, UUID, enums, Literal, lists, tuples, sets, dicts, optional
  and union types, nested attrs classes;
- :func:`event_strategy` / :func:`events` — events whose ``state_id`` fields
  draw from a small pool of ids, so that events collide on states;
- :func:`histories` — lists of events;
- :func:`check_reconstitution` — a ready property: for any history and any
  snapshot placement, loads equal the naive reference replay and replay is
  deterministic. Rejected events (``validate`` raising ``EventRejected``) are
  skipped.

::

    from playthrough.testing import check_reconstitution
    from mybank.events import AccountOpened, Deposited, Transferred

    def test_my_domain_reconstitutes():
        check_reconstitution([AccountOpened, Deposited, Transferred], max_examples=50)

Needs Hypothesis (``pip install hypothesis``).
"""

from __future__ import annotations

import collections.abc
import enum
import sys
import types
import typing
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, TypeVar

import attrs
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .._engine import Engine
from .._errors import EventRejected
from .._model import _STATE_FIELD, Event, StateKey
from .checks import assert_reconstitutes, play_history, ref_of

E = TypeVar("E", bound=Event)

#: Per-field strategies: ``{"amount": st.integers(1, 100)}`` for every class with
#: that field, or ``{(Deposited, "amount"): ...}`` for one class.
Overrides = Mapping[str | tuple[type, str], st.SearchStrategy[Any]]

_SIZE = 4  # the largest list, set or dict drawn for a field


def ids(id_type: Any = int, pool: int = 3) -> st.SearchStrategy[Any]:
    """State ids from a pool of ``pool`` values of ``id_type`` (int, str or UUID)."""
    if pool < 1:
        raise ValueError("an id pool holds at least one id")
    if id_type is str:
        return st.sampled_from([f"s{i}" for i in range(1, pool + 1)])
    if id_type is uuid.UUID:
        return st.sampled_from([uuid.UUID(int=i) for i in range(1, pool + 1)])
    return st.integers(min_value=1, max_value=pool)


def values(tp: Any) -> st.SearchStrategy[Any]:
    """A strategy for values of the type ``tp`` that round-trip through playthrough's JSON."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is type(None) or tp is None:
        return st.none()
    if tp is Any:
        return st.one_of(st.none(), st.booleans(), st.integers(-100, 100), st.text(max_size=8))
    if origin is typing.Annotated:
        return values(args[0])
    if origin is typing.Literal:
        return st.sampled_from(args)
    if origin in (typing.Union, types.UnionType):
        return st.one_of(*(values(a) for a in args))
    if origin in (list, collections.abc.Sequence, collections.abc.MutableSequence):
        return st.lists(values(args[0] if args else int), max_size=_SIZE)
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return st.lists(values(args[0]), max_size=_SIZE).map(tuple)
        return st.tuples(*(values(a) for a in args))
    if origin in (set, collections.abc.Set, collections.abc.MutableSet):
        return st.sets(values(args[0] if args else int), max_size=_SIZE)
    if origin is frozenset:
        return st.frozensets(values(args[0] if args else int), max_size=_SIZE)
    if origin in (dict, collections.abc.Mapping, collections.abc.MutableMapping):
        key, value = args if args else (str, int)
        return st.dictionaries(values(key), values(value), max_size=_SIZE)
    if isinstance(tp, type):
        if issubclass(tp, bool):
            return st.booleans()
        if issubclass(tp, enum.Enum):
            return st.sampled_from(list(tp))
        if issubclass(tp, int):
            return st.integers(min_value=-100, max_value=1_000)
        if issubclass(tp, float):
            return st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False)
        if issubclass(tp, str):
            return st.text(max_size=8)
        if issubclass(tp, Decimal):
            return st.decimals(-(10**6), 10**6, places=2, allow_nan=False, allow_infinity=False)
        if issubclass(tp, datetime):
            return st.datetimes(datetime(2000, 1, 1), datetime(2100, 1, 1), timezones=st.just(UTC))
        if issubclass(tp, date):
            return st.dates(date(2000, 1, 1), date(2100, 1, 1))
        if issubclass(tp, uuid.UUID):
            return st.uuids()
        if attrs.has(tp):
            return _builds(tp, {}, pool=3)
    return st.from_type(tp)


def _field_types(cls: type) -> dict[str, Any]:
    """The resolved type of each field (string annotations resolved where possible)."""
    try:
        return typing.get_type_hints(cls, include_extras=True)
    except Exception:  # noqa: BLE001 - locally defined names: resolve field by field below
        pass
    module = vars(sys.modules.get(cls.__module__, types.ModuleType("_")))
    out: dict[str, Any] = {}
    for a in attrs.fields(cls):
        tp = a.type
        if isinstance(tp, str):
            try:
                tp = eval(tp, dict(module), dict(vars(typing)))
            except Exception:  # noqa: BLE001 - unresolvable: the field keeps its default
                tp = None
        out[a.name] = tp
    return out


def _builds(cls: type, overrides: Overrides, pool: int) -> st.SearchStrategy[Any]:
    hints = _field_types(cls)
    kwargs: dict[str, st.SearchStrategy[Any]] = {}
    for a in attrs.fields(cls):
        if not a.init:
            continue
        name = a.alias or a.name
        override = overrides.get((cls, a.name), overrides.get(a.name))
        tp = hints.get(a.name)
        if override is not None:
            kwargs[name] = override
        elif isinstance(a.metadata, Mapping) and _STATE_FIELD in a.metadata:
            _, many = a.metadata[_STATE_FIELD]
            id_type = typing.get_args(tp)[0] if many and typing.get_args(tp) else tp
            pick = ids(id_type if id_type in (int, str, uuid.UUID) else int, pool)
            kwargs[name] = st.lists(pick, min_size=1, max_size=3, unique=True) if many else pick
        elif tp is not None:
            kwargs[name] = values(tp)
        elif a.default is not attrs.NOTHING:
            continue  # unknown type: keep the default
        else:
            raise TypeError(f"cannot derive a strategy for {cls.__qualname__}.{a.name}")
    return st.builds(cls, **kwargs)


def event_strategy(
    cls: type[E], *, id_pool: int = 3, overrides: Overrides | None = None
) -> st.SearchStrategy[E]:
    """Events of one class: field values from their types, state ids from a pool of ``id_pool``."""
    if not (isinstance(cls, type) and issubclass(cls, Event)):
        raise TypeError(f"event_strategy() takes an Event subclass, not {cls!r}")
    return _builds(cls, overrides or {}, id_pool)


def events(
    event_classes: Sequence[type[Event]],
    *,
    id_pool: int = 3,
    overrides: Overrides | None = None,
) -> st.SearchStrategy[Event]:
    """Events of any of ``event_classes``."""
    if not event_classes:
        raise ValueError("events() needs at least one event class")
    return st.one_of(
        *(event_strategy(c, id_pool=id_pool, overrides=overrides) for c in event_classes)
    )


def histories(
    event_classes: Sequence[type[Event]],
    *,
    min_size: int = 0,
    max_size: int = 15,
    id_pool: int = 3,
    overrides: Overrides | None = None,
) -> st.SearchStrategy[list[Event]]:
    """Lists of events to fire in order (some may be rejected when fired)."""
    return st.lists(
        events(event_classes, id_pool=id_pool, overrides=overrides),
        min_size=min_size,
        max_size=max_size,
    )


def snapshot_placements(
    keys: Sequence[StateKey], head: int, *, max_sets: int = 4
) -> st.SearchStrategy[list[tuple[int, list[StateKey]]]]:
    """Snapshot sets to write: ``(position, keys)``, anywhere in ``0..head``, any states."""
    if not keys:
        return st.just([])
    return st.lists(
        st.tuples(
            st.integers(0, head),
            st.lists(st.sampled_from(list(keys)), min_size=1, max_size=len(keys), unique=True),
        ),
        max_size=max_sets,
    )


def check_reconstitution(
    event_classes: Sequence[type[Event]],
    *,
    max_examples: int = 50,
    max_events: int = 15,
    id_pool: int = 3,
    overrides: Overrides | None = None,
    rejections: tuple[type[BaseException], ...] = (EventRejected,),
    engine_factory: Callable[[], Engine] | None = None,
    settings_: settings | None = None,
) -> None:
    """The property, for your domain: any history, any snapshot placement, loads = reference.

    Draws a history of ``event_classes`` and fires its first part into a fresh
    engine from ``engine_factory`` (in-memory SQLite by default; it must give
    an empty store), committing each event and skipping those rejected with
    ``rejections``; writes snapshot sets at drawn positions for drawn states;
    fires the rest from a second engine on the same store (its loads start
    from those snapshots); writes more snapshot sets, then runs
    :func:`playthrough.testing.checks.assert_reconstitutes` at the head and at
    a few drawn positions. Hypothesis shrinks a failure to a small
    history. ``settings_`` replaces the Hypothesis settings built from
    ``max_examples``.
    """
    if engine_factory is None:

        def engine_factory() -> Engine:
            return Engine.open("sqlite://")

    chosen = settings_ or settings(
        max_examples=max_examples,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    history = histories(event_classes, max_size=max_events, id_pool=id_pool, overrides=overrides)

    @chosen
    @given(history=history, data=st.data())
    def reconstitutes_like_the_reference(history: list[Event], data: st.DataObject) -> None:
        engine = engine_factory()
        try:
            split = data.draw(st.integers(0, len(history)), label="split")
            play_history(engine, history[:split], rejections=rejections)
            keys = sorted(k for k, _ in engine.repository.items())
            early = data.draw(snapshot_placements(keys, engine.head()), label="early snapshots")
            for at, refs in early:
                engine.admin.snapshot([ref_of(k) for k in refs], at=at)
            # The rest of the history in a second engine on the same store, whose
            # loads start from those snapshots (as an application restarting would).
            later = Engine(engine.store)
            play_history(later, history[split:], rejections=rejections)
            head = later.head()
            keys = sorted({*keys, *(k for k, _ in later.repository.items())})
            placements = data.draw(snapshot_placements(keys, head), label="snapshots")
            positions = data.draw(
                st.lists(st.integers(0, head), max_size=3, unique=True), label="positions"
            )
            assert_reconstitutes(later, snapshots=placements, positions=sorted({*positions, head}))
        finally:
            engine.discard()
            engine.close()

    reconstitutes_like_the_reference()
