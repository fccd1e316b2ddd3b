"""The domain the stateful model of the whole engine drives (``tests/test_model.py``).

Like ``evolution_domain``, it exists in several worlds (versions of the code);
``activate(world)`` makes one world's classes the registered ones, as a deploy
would. Names are prefixed ``model.`` so no other test's classes are touched.

- ``v1``: ``Acct`` (``n``, ``memo`` read from the event's metadata, ``owner``
  personal, ``hits``) and the singleton ``Hub``; ``Add`` (units, touches the
  account and the hub; ``bonus=True`` makes its ``handle`` fire a ``Tick``),
  ``Move`` (coupled: moves at most what the source holds), ``Tick``, ``Named``
  (a personal field, the account is its data subject), ``Claim`` (takes units
  from an account, refused unless it holds them; its ``fired`` hook fires a
  ``Tick`` into the same commit).
- ``v2`` (the redeploy): ``Add`` is renamed ``Credit`` (version 2, alias
  ``model.Add``) counting cents, ``Move`` and ``Claim`` version 2 count cents; they upcast
  their v1 rows (amount x 100). ``Acct`` and ``Hub`` are *unchanged*, so a heads
  value or snapshot written under v1 holds units where v2 code means cents: a
  load may only use it if it knows the event classes changed.
- ``v2same``: the same renames, but the upcasters keep the values (``x 1``), so
  values written under v1 stay right under v2 (used while the stale-values hole
  is open, see ``KNOWN_HOLES`` in the test).

The reference model in the test works in units and multiplies by the world's
``SCALE`` (every hook is linear in the amounts).
"""

from __future__ import annotations

from typing import Any

import attrs

from playthrough import Engine, Event, Personal, Projection, SingletonState, State, state_id
from playthrough._model import registry
from playthrough._stores._base import FollowerTransaction
from playthrough.errors import EventRejected

WORLDS = ("v1", "v2", "v2same")
SCALE = {"v1": 1, "v2": 100, "v2same": 1}
PREFIX = "model."


def _forget() -> None:
    for table in (registry.states, registry.events):
        for name in [n for n in table if n.startswith(PREFIX)]:
            del table[name]


@attrs.define
class Acct(State, type_name="model.Acct"):
    n: int = 0
    memo: str = ""
    owner: str = ""
    hits: int = 0


@attrs.define
class Hub(SingletonState, type_name="model.Hub"):
    total: int = 0


def _define(world: str) -> dict[str, Any]:
    """One world's event classes (defined with the registry clear) and its projection."""
    _forget()
    registry.states[Acct._pt_type_name] = Acct
    registry.states[Hub._pt_type_name] = Hub

    @attrs.define
    class Tick(Event, type_name="model.Tick"):
        acct_id: int = state_id(Acct)

        def apply(self, acct: Acct) -> None:
            acct.hits += 1

    @attrs.define
    class Named(Event, type_name="model.Named"):
        data_subject = "acct_id"
        acct_id: int = state_id(Acct)
        name: Personal[str] = ""

        def apply(self, acct: Acct) -> None:
            acct.owner = self.name

    add: Any
    move: Any
    claim: Any
    if world == "v1":

        @attrs.define
        class Add(Event, type_name="model.Add"):
            acct_id: int = state_id(Acct)
            amount: int = 0
            bonus: bool = False

            def apply(self, acct: Acct, hub: Hub) -> None:
                acct.n += self.amount
                acct.memo = str(self.metadata.get("memo", ""))
                hub.total += self.amount

            def handle(self, engine: Engine) -> None:
                if self.bonus:
                    engine.fire(Tick(acct_id=self.acct_id))

        @attrs.define
        class Move(Event, type_name="model.Move"):
            src_id: int = state_id(Acct)
            dst_id: int = state_id(Acct)
            amount: int = 0

            def apply(self, src: Acct, dst: Acct) -> None:
                moved = min(self.amount, max(src.n, 0))
                src.n -= moved
                dst.n += moved

        @attrs.define
        class Claim(Event, type_name="model.Claim"):
            acct_id: int = state_id(Acct)
            amount: int = 0

            def validate(self, acct: Acct) -> None:
                if acct.n < self.amount:
                    raise EventRejected("not enough to claim")

            def apply(self, acct: Acct) -> None:
                acct.n -= self.amount

            def fired(self, engine: Engine) -> None:
                engine.fire(Tick(acct_id=self.acct_id))  # joins the claim's commit

        add, move, claim = Add, Move, Claim
    else:
        factor = SCALE[world]

        @attrs.define
        class Credit(Event, type_name="model.Credit", version=2, aliases=("model.Add",)):
            acct_id: int = state_id(Acct)
            cents: int = 0
            bonus: bool = False

            @staticmethod
            def upcast_v1(data: dict[str, Any]) -> dict[str, Any]:
                data = dict(data)
                data["cents"] = data.pop("amount") * factor
                return data

            def apply(self, acct: Acct, hub: Hub) -> None:
                acct.n += self.cents
                acct.memo = str(self.metadata.get("memo", ""))
                hub.total += self.cents

            def handle(self, engine: Engine) -> None:
                if self.bonus:
                    engine.fire(Tick(acct_id=self.acct_id))

        @attrs.define
        class Move2(Event, type_name="model.Move", version=2):
            src_id: int = state_id(Acct)
            dst_id: int = state_id(Acct)
            cents: int = 0

            @staticmethod
            def upcast_v1(data: dict[str, Any]) -> dict[str, Any]:
                data = dict(data)
                data["cents"] = data.pop("amount") * factor
                return data

            def apply(self, src: Acct, dst: Acct) -> None:
                moved = min(self.cents, max(src.n, 0))
                src.n -= moved
                dst.n += moved

        @attrs.define
        class Claim2(Event, type_name="model.Claim", version=2):
            acct_id: int = state_id(Acct)
            cents: int = 0

            @staticmethod
            def upcast_v1(data: dict[str, Any]) -> dict[str, Any]:
                data = dict(data)
                data["cents"] = data.pop("amount") * factor
                return data

            def validate(self, acct: Acct) -> None:
                if acct.n < self.cents:
                    raise EventRejected("not enough to claim")

            def apply(self, acct: Acct) -> None:
                acct.n -= self.cents

            def fired(self, engine: Engine) -> None:
                engine.fire(Tick(acct_id=self.acct_id))  # joins the claim's commit

        add, move, claim = Credit, Move2, Claim2

    class Seen(Projection):
        """A read model: which account each Add (Credit) and Tick touched, by position."""

        name = "model_seen"
        table = "model_seen"

        def setup(self, tx: FollowerTransaction) -> None:
            tx.execute(
                f"CREATE TABLE IF NOT EXISTS {self.table} "
                "(position BIGINT PRIMARY KEY, kind TEXT NOT NULL, acct BIGINT NOT NULL)"
            )

        def reset(self, tx: FollowerTransaction) -> None:
            tx.execute(f"DELETE FROM {self.table}")

        def _seen(self, events: list[Any], kind: str, tx: FollowerTransaction) -> None:
            tx.executemany(
                f"INSERT INTO {self.table} (position, kind, acct) VALUES (?, ?, ?)",
                [(event.id, kind, event.acct_id) for event in events],
            )

    class SeenBatched(Seen):
        """The same read model, kept by a batched projection (a list per handler call)."""

        name = table = "model_seen_batched"
        batched = True

    def on_add(self: Any, event: Any, tx: FollowerTransaction) -> None:
        self._seen([event], "add", tx)

    def on_tick(self: Any, event: Any, tx: FollowerTransaction) -> None:
        self._seen([event], "tick", tx)

    def on_adds(self: Any, events: list[Any], tx: FollowerTransaction) -> None:
        self._seen(events, "add", tx)

    def on_ticks(self: Any, events: list[Any], tx: FollowerTransaction) -> None:
        self._seen(events, "tick", tx)

    setattr(Seen, "on_" + add._pt_type_name, on_add)
    setattr(Seen, "on_" + Tick._pt_type_name, on_tick)
    setattr(SeenBatched, "on_" + add._pt_type_name, on_adds)
    setattr(SeenBatched, "on_" + Tick._pt_type_name, on_ticks)
    return {
        "Add": add,
        "Move": move,
        "Claim": claim,
        "Tick": Tick,
        "Named": Named,
        "Seen": Seen,
        "SeenBatched": SeenBatched,
    }


_DEFINED = {world: _define(world) for world in WORLDS}
_forget()


def activate(world: str) -> dict[str, Any]:
    """Make ``world``'s classes the registered ones; returns them by role."""
    _forget()
    classes = _DEFINED[world]
    registry.states[Acct._pt_type_name] = Acct
    registry.states[Hub._pt_type_name] = Hub
    for role, cls in classes.items():
        if role in ("Seen", "SeenBatched"):
            continue
        for name in (cls._pt_type_name, *cls._pt_aliases):
            registry.events[name] = cls
    return classes


def add(world: str, classes: dict[str, Any], acct: int, units: int, bonus: bool = False) -> Event:
    """An Add of ``units`` in ``world``'s classes."""
    if world == "v1":
        return classes["Add"](acct_id=acct, amount=units, bonus=bonus)  # type: ignore[no-any-return]
    return classes["Add"](acct_id=acct, cents=units * SCALE[world], bonus=bonus)  # type: ignore[no-any-return]


def move(world: str, classes: dict[str, Any], src: int, dst: int, units: int) -> Event:
    if world == "v1":
        return classes["Move"](src_id=src, dst_id=dst, amount=units)  # type: ignore[no-any-return]
    return classes["Move"](src_id=src, dst_id=dst, cents=units * SCALE[world])  # type: ignore[no-any-return]


def claim(world: str, classes: dict[str, Any], acct: int, units: int) -> Event:
    """A Claim of ``units`` in ``world``'s classes (refused unless the account holds them)."""
    if world == "v1":
        return classes["Claim"](acct_id=acct, amount=units)  # type: ignore[no-any-return]
    return classes["Claim"](acct_id=acct, cents=units * SCALE[world])  # type: ignore[no-any-return]


def units_of(world: str, event: Event) -> int:
    """The units an Add, Move or Claim carries (the inverse of ``add``/``move``/``claim``)."""
    value: int = getattr(event, "amount") if world == "v1" else getattr(event, "cents")  # noqa: B009
    return value // SCALE[world]
