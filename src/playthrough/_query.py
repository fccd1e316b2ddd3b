"""Finding states by their values: ``engine.states.find``, ``count``, ``info``.

Every state's current value lives in its heads row (``value``, exact at
``value_position``; fresh iff that equals ``last_position``). A query first
brings the stale or missing values of the queried type up to date (the
states are reconstituted, in plans of up to ``REFRESH_CHUNK`` states, and the
values written back only where no commit moved the state meanwhile), then
filters in SQL over the JSON, in a read transaction that also checks that no
value of the type is stale: the answer is exact as of that transaction's head.
"""

from __future__ import annotations

import math
import time
import types
import typing
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, TypeVar, cast

import attrs

from . import _telemetry
from ._archived import archived_until_steps
from ._errors import NotFoundError, PlaythroughError, QueryError
from ._model import SingletonState, State, StateKey, decode_id, key_of
from ._serialization import converter, decode, encode_state
from ._slots import mark_state
from ._steps import Call, Read, Steps, call, read_one, run_sync
from ._stores import Condition, Order
from ._stores._base import FORGET_EPOCH, LOOKUPS, Completion
from ._upcasting import current_value_shape, snapshot_record

if TYPE_CHECKING:
    from ._reconstitution import StateReconstitutor
    from ._stores import Store
    from ._work import UnitOfWork

S = TypeVar("S", bound=State)

REFRESH_CHUNK = 2_000  # states reconstituted per plan while refreshing stored values
_ATTEMPTS = 20  # refresh rounds before a query gives up on a type that never settles
_SCALARS = (int, float, str, bool)
_UNORDERED = (Decimal, datetime)  # their JSON text neither orders nor compares like the values


@attrs.frozen
class StateInfo:
    """What the store knows of one state (``engine.states.info(Account, 7)``)."""

    key: StateKey
    id: Any
    #: Its first event, None when that event was archived (see ``archived``).
    created_position: int | None
    created_at: datetime | None
    last_position: int
    last_at: datetime | None  # None when its last event is archived
    events: int  # events that touched the state (in the log: archived ones are not counted)
    snapshot_position: int | None  # its newest stored snapshot
    value_position: int | None  # where its stored current value is exact
    completed: Completion | None = None  # the event that completed it (completed states)
    #: Events up to this archive cut touched it: they are in the archive files, not counted.
    archived_until: int | None = None

    def __str__(self) -> str:
        snap = "none" if self.snapshot_position is None else f"#{self.snapshot_position}"
        done = (
            ""
            if self.completed is None
            else f", completed by {self.completed.event_type} at #{self.completed.position}"
        )
        created = (
            f"created #{self.created_position} ({_when(self.created_at)})"
            if self.archived_until is None
            else f"created before the archive cut #{self.archived_until}"
        )
        return (
            f"{self.key}: {created}, last event #{self.last_position} ({_when(self.last_at)}), "
            f"{self.events} events{' since the cut' if self.archived_until else ''}, "
            f"snapshot {snap}{done}"
        )


def _when(at: datetime | None) -> str:
    return "archived" if at is None else at.isoformat()


StateInfo.__module__ = "playthrough"


# --------------------------------------------------------------------------- parsing


def _unwrap(hint: Any) -> Any:
    """``X | None`` -> X; everything else unchanged."""
    args = typing.get_args(hint)
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        rest = [a for a in args if a is not type(None)]
        if len(rest) == 1:
            return rest[0]
        return Any
    return hint


def _hints(cls: type) -> dict[str, Any]:
    try:
        return typing.get_type_hints(cls)
    except Exception:  # noqa: BLE001 - unresolvable annotations: fields are still known
        return {a.name: Any for a in attrs.fields(cls)}


def _leaf_type(cls: type[State], path: Sequence[str], arg: str) -> Any:
    """The declared type at ``path`` in ``cls``; QueryError naming an unknown field."""
    current: Any = cls
    for depth, name in enumerate(path):
        current = _unwrap(current)
        where = cls.__qualname__ + "".join("." + p for p in path[:depth])
        if isinstance(current, type) and attrs.has(current):
            fields = {a.name for a in attrs.fields(current)}
            if name not in fields:
                raise QueryError(
                    f"{where} has no field {name!r} (in {arg!r}); its fields are "
                    f"{', '.join(sorted(fields)) or 'none'}"
                )
            current = _hints(current).get(name, Any)
            continue
        origin = typing.get_origin(current)
        if current is Any or origin in (dict, Mapping) or current is dict:
            args = typing.get_args(current)
            current = args[1] if len(args) == 2 else Any
            continue
        if depth == len(path) - 1:
            raise QueryError(
                f"unknown lookup {name!r} in {arg!r} ({where} is not an attrs class or a "
                f"dict); the lookups are {', '.join(LOOKUPS)}"
            )
        raise QueryError(
            f"{where} is not an attrs class or a dict: cannot look up {name!r} in {arg!r}"
        )
    return _unwrap(current)


_INT64 = (-(2**63), 2**63 - 1)


def _check_storable(value: object, arg: str, given: object) -> None:
    """QueryError for a filter value no stored value can be compared with exactly."""
    if isinstance(value, float) and not math.isfinite(value):
        raise QueryError(
            f"{arg}: cannot compare with {given!r}: stored values hold only finite floats "
            "(JSON has no infinity or NaN)"
        )
    if isinstance(value, int) and not isinstance(value, bool):
        if not _INT64[0] <= value <= _INT64[1]:
            raise QueryError(
                f"{arg}: cannot compare with {given!r}: integer filter values must fit in "
                "64 bits (-2**63 to 2**63 - 1)"
            )
    elif isinstance(value, list):
        for item in value:
            _check_storable(item, arg, given)
    elif isinstance(value, dict):
        for item in value.values():
            _check_storable(item, arg, given)


def _json_value(value: object, arg: str) -> object:
    try:
        out = converter.unstructure(value)
    except Exception as exc:
        raise QueryError(f"{arg}: cannot compare with {value!r}: {exc}") from exc
    _check_storable(out, arg, value)
    return out


def _check_comparable(leaf: Any, arg: str, lookup: str) -> None:
    if isinstance(leaf, type) and issubclass(leaf, _UNORDERED):
        raise QueryError(
            f"{arg}: a {leaf.__name__} field is stored as text whose order and equality differ "
            f"from the values' ({lookup!r} would be wrong); load the states and compare in Python"
        )


def parse_filters(cls: type[State], filters: Mapping[str, Any]) -> list[Condition]:
    out = []
    for arg, value in filters.items():
        parts = arg.split("__")
        if len(parts) > 1 and parts[-1] in LOOKUPS:
            lookup, path = parts[-1], tuple(parts[:-1])
        else:
            lookup, path = "eq", tuple(parts)
        if not all(path):
            raise QueryError(f"bad filter {arg!r}: empty field name")
        leaf = _leaf_type(cls, path, arg)
        if lookup == "isnull":
            if not isinstance(value, bool):
                raise QueryError(f"{arg} takes True or False, not {value!r}")
            out.append(Condition(path, lookup, value))
            continue
        _check_comparable(leaf, arg, lookup)
        if lookup in ("eq", "ne"):
            out.append(Condition(path, lookup, _json_value(value, arg)))
        elif lookup == "in":
            if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, typing.Iterable):
                raise QueryError(f"{arg} takes a list of values, not {value!r}")
            out.append(Condition(path, lookup, [_json_value(v, arg) for v in value]))
        elif lookup in ("gt", "gte", "lt", "lte"):
            j = _json_value(value, arg)
            if not isinstance(j, (int, float, str)) or isinstance(j, bool):
                raise QueryError(f"{arg} compares numbers or strings, not {value!r}")
            origin = typing.get_origin(leaf) or leaf
            if isinstance(origin, type) and issubclass(origin, (list, dict, tuple, set, frozenset)):
                raise QueryError(f"{arg}: a {origin.__name__} field has no order")
            out.append(Condition(path, lookup, j))
        else:  # contains
            j = _json_value(value, arg)
            origin = typing.get_origin(leaf) or leaf
            if isinstance(j, dict):
                out.append(Condition(path, lookup, j))
                continue
            if not isinstance(j, list):
                j = [j]
            if any(isinstance(v, (list, dict)) for v in j):
                raise QueryError(
                    f"{arg}: a list field's contains takes scalar items, not {value!r}"
                )
            if (
                isinstance(origin, type)
                and not issubclass(origin, (list, tuple, set, frozenset))
                and leaf is not Any
            ):
                raise QueryError(
                    f"{arg}: contains needs a list or dict field, not {origin.__name__}"
                )
            out.append(Condition(path, lookup, j))
    return out


def parse_order(cls: type[State], order_by: str | Sequence[str] | None) -> list[Order]:
    if order_by is None:
        return []
    items = [order_by] if isinstance(order_by, str) else list(order_by)
    out = []
    for item in items:
        desc = item.startswith("-")
        path = tuple(item.lstrip("-").split("__"))
        if not all(path):
            raise QueryError(f"bad order_by {item!r}")
        leaf = _leaf_type(cls, path, f"order_by={item!r}")
        _check_comparable(leaf, f"order_by={item!r}", "order_by")
        out.append(Order(path, desc))
    return out


def _shape(cls: type[State]) -> tuple[int, str]:
    """The class's current version and value mark: a value of another one is not current."""
    return current_value_shape(cls)


def _state_class(cls: object) -> type[State]:
    if not (isinstance(cls, type) and issubclass(cls, State)) or cls in (State, SingletonState):
        raise TypeError(f"expected a State subclass, not {cls!r}")
    return cls


# --------------------------------------------------------------------------- running


def _completed_check(cls: type[State], limit: int | None, completed: object) -> None:
    """QueryError for a bad ``find(..., completed=...)`` (both engines)."""
    if not isinstance(completed, bool):
        raise QueryError(f"completed= takes True or False, not {completed!r}")
    if not cls._pt_completable:
        raise QueryError(
            f"{cls.__qualname__} declares no completion (complete_when or is_complete), "
            "so completed= cannot filter it"
        )
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
        raise QueryError(f"limit must be an int >= 0, not {limit!r}")


class StateQueries:
    """``find``/``count``/``info`` over one store, for one unit of work's identity map."""

    def __init__(self, store: Store, reconstitutor: StateReconstitutor, work: UnitOfWork) -> None:
        self._store = store
        self._reconstitutor = reconstitutor
        self._work = work

    def refresh(self, cls: type[State]) -> int:
        """Bring every stale or missing stored value of ``cls`` up to date; returns how many."""
        return run_sync(self.refresh_steps(cls), self._store)

    def _stale_steps(
        self, cls: type[State]
    ) -> Steps[tuple[list[tuple[StateKey, int]], dict[StateKey, State], int]]:
        """In one read: up to a chunk of stale values of ``cls``, rebuilt at the head."""
        stale = yield call("stale_states", cls._pt_type_name, REFRESH_CHUNK, _shape(cls))
        if not stale:
            return [], {}, 0
        head = yield call("head")
        epoch = yield call("meta", FORGET_EPOCH)  # a forget since: nothing written, go round
        keys = [k for k, _ in stale]
        states, _ = yield from self._reconstitutor.reconstitute_steps(keys, head)
        return stale, states, int(epoch) if epoch else 0

    def refresh_steps(self, cls: type[State]) -> Steps[int]:
        """:meth:`refresh` as store requests (both engines)."""
        name = cls._pt_type_name
        written = 0
        conflicts = 0
        while True:
            stale, states, epoch = yield Read(self._stale_steps(cls))
            if not stale:
                return written
            values = []
            for key, last in stale:
                state = states[key]
                if state.last_event_id != last:
                    raise PlaythroughError(
                        f"{key}: rebuilt to position {state.last_event_id}, but its heads row "
                        f"says {last}; the store's links and heads disagree"
                    )
                values.append(snapshot_record(key, last, state, encode_state(state)))
            done = yield call("write_values", values, epoch)
            written += done
            if done < len(values):  # commits moved some states meanwhile: they go round again
                conflicts += 1
                if conflicts > _ATTEMPTS:
                    raise PlaythroughError(
                        f"the stored values of {name} kept going stale while being refreshed "
                        f"({_ATTEMPTS} rounds): writers are faster than the refresh; try again"
                    )

    def _settled(self, cls: type[State], request: Call, with_epoch: bool = False) -> Steps[Any]:
        """Send ``request`` to a reader whose transaction sees no value of ``cls`` stale
        (``with_epoch``: the answer and that transaction's forget epoch)."""
        for _ in range(_ATTEMPTS):
            found, answer = yield Read(self._if_settled(cls, request, with_epoch))
            if found:
                return answer  # every value current in that very transaction
            yield from self.refresh_steps(cls)  # then check again: a commit may land meanwhile
        raise PlaythroughError(
            f"the stored values of {cls._pt_type_name} kept going stale before the query could "
            "read them; try again"
        )

    @staticmethod
    def _if_settled(
        cls: type[State], request: Call, with_epoch: bool = False
    ) -> Steps[tuple[bool, Any]]:
        if (yield call("stale_states", cls._pt_type_name, 1, _shape(cls))):
            return False, None
        answer = yield request
        if not with_epoch:
            return True, answer
        epoch = yield call("meta", FORGET_EPOCH)
        return True, (answer, int(epoch) if epoch else 0)

    def count(self, cls: type[State], filters: Mapping[str, Any]) -> int:
        return run_sync(self.count_steps(cls, filters), self._store)

    def count_steps(self, cls: type[State], filters: Mapping[str, Any]) -> Steps[int]:
        cls = _state_class(cls)
        conditions = parse_filters(cls, filters)
        started = time.perf_counter()
        found = yield from self._settled(cls, call("count_states", cls._pt_type_name, conditions))
        _telemetry.queried("count", cls._pt_type_name, found, time.perf_counter() - started)
        return cast(int, found)

    def find(
        self,
        cls: type[S],
        filters: Mapping[str, Any],
        limit: int | None,
        order_by: str | Sequence[str] | None,
    ) -> Iterator[S]:
        return iter(run_sync(self.find_steps(cls, filters, limit, order_by), self._store))

    def find_steps(
        self,
        cls: type[S],
        filters: Mapping[str, Any],
        limit: int | None,
        order_by: str | Sequence[str] | None,
    ) -> Steps[list[S]]:
        cls = cast(type[S], _state_class(cls))
        conditions = parse_filters(cls, filters)
        order = parse_order(cls, order_by)
        if limit is not None and (
            isinstance(limit, bool) or not isinstance(limit, int) or limit < 0
        ):
            raise QueryError(f"limit must be an int >= 0, not {limit!r}")
        name = cls._pt_type_name
        pending = self._work.pending_types()
        if name in pending:
            raise PlaythroughError(
                f"find({cls.__qualname__}) while this engine has uncommitted events on "
                f"{name} states: it answers from the committed log, so the states it returned "
                "could contradict the filter; commit or discard first"
            )
        request = call("query_states", name, conditions, order, limit)
        started = time.perf_counter()
        rows, epoch = yield from self._settled(cls, request, with_epoch=True)
        _telemetry.queried("find", name, len(rows), time.perf_counter() - started)
        mine = self._work.epoch
        if mine is None:
            # The states it returns join the identity map as of this read's forget epoch,
            # as a load's do: a forget after it refuses this engine's next commit, which
            # would otherwise write their values (a subject's clear ones) back.
            self._work.epoch = epoch
        return self._states(cls, rows, stale=mine is not None and mine != epoch)

    def _states(self, cls: type[S], rows: list[tuple[str, str, int]], stale: bool) -> list[S]:
        """The states of ``rows`` (one read's cut): a live one only where it is at that cut.

        A state this engine holds at another position (older: other engines
        committed since it was loaded) is replaced in the identity map by the
        row's value, so every state returned satisfies the filter as returned.
        So is every one when a subject was forgotten since this engine loaded
        its states (``stale``): a live state may hold the subject's clear values
        at the same position (the engine's next commit is refused as well).
        """
        repository = self._work.repository
        out = []
        for state_id, value, position in rows:
            key = StateKey(cls._pt_type_name, state_id)
            live = repository.get(key)
            if stale or live is None or live.last_event_id != position:
                live = decode(cls, value, f"stored value of {key} at position {position}")
                mark_state(live, id=decode_id(state_id), last_event_id=position)
                repository.put(key, live)
            out.append(cast(S, live))
        return out

    def info(self, cls: type[State], state_id: Any) -> StateInfo:
        return run_sync(self.info_steps(cls, state_id), self._store)

    def info_steps(self, cls: type[State], state_id: Any) -> Steps[StateInfo]:
        """:meth:`info` as store requests (both engines)."""
        cls = _state_class(cls)
        key = key_of(cls, state_id)
        info: StateInfo = yield Read(_info_steps(cls, key))
        return info


def completion_steps(key: StateKey) -> Steps[Completion | None]:
    """Whether the store records ``key`` completed, in one read (``states.completion``)."""
    found = yield Read(read_one("completions", [key]))
    return cast("Completion | None", found.get(key))


def _info_steps(cls: type[State], key: StateKey) -> Steps[StateInfo]:
    row = yield call("state_info", key)
    completed = (yield call("completions", [key])).get(key) if cls._pt_completable else None
    if row is None:
        raise NotFoundError(f"no event ever touched {key}")
    cut = yield from archived_until_steps()
    archived = False
    if cut:
        # Archived events touched the state exactly when it has a base snapshot at the cut
        # (the archive writes one for every such state; nothing drops it).
        snaps = (yield call("snapshots", [key], cut)).get(key, [])
        archived = any(s.position == cut and s.last_event_id is not None for s in snaps)
    return StateInfo(
        key=key,
        id=decode_id(key.id),
        created_position=None if archived else row.created_position,
        created_at=None if archived or row.created_at is None else _parse(row.created_at),
        last_position=row.last_position,
        last_at=None if row.last_at is None else _parse(row.last_at),
        events=row.events,
        snapshot_position=row.snapshot_position,
        value_position=row.value_position,
        completed=completed,
        archived_until=cut if archived else None,
    )


def _parse(at: str) -> datetime:
    return datetime.fromisoformat(at)
