"""One domain at four points of its life, for the schema-evolution tests.

The registry is global and holds one class per stored name, as a process
running one version of the code would; ``activate(world)`` makes a world's
classes the registered ones (the others are forgotten, like deleted code).
Names are prefixed ``evo.`` so no other test's classes are touched.

- ``old``: ``Wallet`` v1 counts ``balance`` in units; ``MoneyIn`` (v1, ``amount``
  in units) deposits; ``Moved`` v1 moves up to ``amount`` units between two
  wallets (coupled: how much moves depends on the source).
- ``mid``: the deposit class is renamed ``Deposited`` (v2, ``amount`` in cents,
  alias ``evo.MoneyIn``), ``Moved`` v2 (``cents``), ``Wallet`` v2 (``cents``).
- ``new``: ``Deposited`` v3 (``amount`` renamed ``cents``),
  ``Wallet`` v3 (adds ``flag``, never set by a hook; upcasters from v1 and v2).
- ``stale``: like ``new`` but ``Wallet`` gains a field the hooks compute
  (``deposited``, the sum of deposits) without a version bump and without
  upcasters: no old snapshot may be used, every load replays from blank.
"""

from __future__ import annotations

from typing import Any

import attrs

from playthrough import Event, State, state_id
from playthrough._model import registry

WORLDS = ("old", "mid", "new", "stale")
PREFIX = "evo."


def _forget() -> None:
    for table in (registry.states, registry.events):
        for name in [n for n in table if n.startswith(PREFIX)]:
            del table[name]


def _define(world: str) -> dict[str, type]:
    """The classes of one world (each world's classes are defined with the registry clear)."""
    _forget()
    if world == "old":

        @attrs.define
        class Wallet(State, type_name="evo.Wallet"):
            balance: int = 0
            deposits: int = 0

        @attrs.define
        class MoneyIn(Event, type_name="evo.MoneyIn"):
            wallet_id: int = state_id(Wallet)
            amount: int = 0

            def apply(self, wallet: Wallet) -> None:
                wallet.balance += self.amount
                wallet.deposits += 1

        @attrs.define
        class Moved(Event, type_name="evo.Moved"):
            source_id: int = state_id(Wallet)
            target_id: int = state_id(Wallet)
            amount: int = 0

            def apply(self, source: Wallet, target: Wallet) -> None:
                moved = min(self.amount, source.balance)
                source.balance -= moved
                target.balance += moved

        return {"Wallet": Wallet, "Deposit": MoneyIn, "Moved": Moved}

    if world == "mid":

        @attrs.define
        class Wallet(State, type_name="evo.Wallet", version=2):  # type: ignore[no-redef]
            cents: int = 0
            deposits: int = 0

            @staticmethod
            def upcast_v1(data: dict[str, Any]) -> dict[str, Any]:
                data = dict(data)
                data["cents"] = data.pop("balance") * 100
                return data

        @attrs.define
        class Deposited(Event, type_name="evo.Deposited", version=2, aliases=("evo.MoneyIn",)):
            wallet_id: int = state_id(Wallet)
            amount: int = 0  # cents

            @staticmethod
            def upcast_v1(data: dict[str, Any]) -> dict[str, Any]:
                return {**data, "amount": data["amount"] * 100}

            def apply(self, wallet: Any) -> None:
                wallet.cents += self.amount
                wallet.deposits += 1

        @attrs.define
        class Moved(Event, type_name="evo.Moved", version=2):  # type: ignore[no-redef]
            source_id: int = state_id(Wallet)
            target_id: int = state_id(Wallet)
            cents: int = 0

            @staticmethod
            def upcast_v1(data: dict[str, Any]) -> dict[str, Any]:
                data = dict(data)
                data["cents"] = data.pop("amount") * 100
                return data

            def apply(self, source: Any, target: Any) -> None:
                moved = min(self.cents, source.cents)
                source.cents -= moved
                target.cents += moved

        return {"Wallet": Wallet, "Deposit": Deposited, "Moved": Moved}

    wallet: Any
    if world == "new":

        @attrs.define
        class NewWallet(State, type_name="evo.Wallet", version=3):
            cents: int = 0
            deposits: int = 0
            flag: bool = False

            @staticmethod
            def upcast_v1(data: dict[str, Any]) -> dict[str, Any]:
                data = dict(data)
                data["cents"] = data.pop("balance") * 100
                return data

            @staticmethod
            def upcast_v2(data: dict[str, Any]) -> dict[str, Any]:
                return data  # v3 only adds a field with a default

        wallet = NewWallet
    else:

        @attrs.define
        class StaleWallet(State, type_name="evo.Wallet", version=2):
            cents: int = 0
            deposits: int = 0
            deposited: int = 0  # computed by the hooks: old snapshots cannot know it

        wallet = StaleWallet

    @attrs.define
    class NewDeposited(Event, type_name="evo.Deposited", version=3, aliases=("evo.MoneyIn",)):
        wallet_id: int = state_id(wallet)
        cents: int = 0

        @staticmethod
        def upcast_v1(data: dict[str, Any]) -> dict[str, Any]:
            return {**data, "amount": data["amount"] * 100}

        @staticmethod
        def upcast_v2(data: dict[str, Any]) -> dict[str, Any]:
            data = dict(data)
            data["cents"] = data.pop("amount")
            return data

        def apply(self, wallet: Any) -> None:
            wallet.cents += self.cents
            wallet.deposits += 1
            if hasattr(wallet, "deposited"):
                wallet.deposited += self.cents

    @attrs.define
    class NewMoved(Event, type_name="evo.Moved", version=2):
        source_id: int = state_id(wallet)
        target_id: int = state_id(wallet)
        cents: int = 0

        @staticmethod
        def upcast_v1(data: dict[str, Any]) -> dict[str, Any]:
            data = dict(data)
            data["cents"] = data.pop("amount") * 100
            return data

        def apply(self, source: Any, target: Any) -> None:
            moved = min(self.cents, source.cents)
            source.cents -= moved
            target.cents += moved

    return {"Wallet": wallet, "Deposit": NewDeposited, "Moved": NewMoved}


_DEFINED = {world: _define(world) for world in WORLDS}
_forget()


def activate(world: str) -> dict[str, type]:
    """Make ``world``'s classes the registered ones; returns them by role."""
    _forget()
    classes = _DEFINED[world]
    for found in classes.values():
        cls: Any = found
        table: dict[str, Any] = registry.states if issubclass(cls, State) else registry.events
        for name in (cls._pt_type_name, *cls._pt_aliases):
            table[name] = cls
    return classes


def deposit(world: str, classes: dict[str, type], wallet: int, units: int) -> Event:
    amount = units if world == "old" else units * 100
    if world in ("new", "stale"):
        return classes["Deposit"](wallet_id=wallet, cents=amount)  # type: ignore[no-any-return]
    return classes["Deposit"](wallet_id=wallet, amount=amount)  # type: ignore[no-any-return]


def move(world: str, classes: dict[str, type], source: int, target: int, units: int) -> Event:
    if world == "old":
        return classes["Moved"](source_id=source, target_id=target, amount=units)  # type: ignore[no-any-return]
    return classes["Moved"](source_id=source, target_id=target, cents=units * 100)  # type: ignore[no-any-return]
