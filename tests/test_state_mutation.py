"""A state changes only inside an apply hook of an event that declares it.

Anywhere else (user code holding a loaded state, a validate or handle hook, an
apply hook reaching a state its event does not declare) an assignment raises
StateMutationError naming the state and the field, and nothing is changed,
snapshotted or served to other processes.
"""

from __future__ import annotations

from pathlib import Path

import attrs
import pytest

from playthrough import Engine, Event, State, state_id
from playthrough.errors import EventRejected, HandlerFailed, StateMutationError


@attrs.define
class Vault(State, type_name="t.mut.Vault"):
    gold: int = 0
    log: list[str] = attrs.field(factory=list)


@attrs.define
class Stored(Event, type_name="t.mut.Stored"):
    vault_id: int = state_id(Vault)
    gold: int = 1

    def apply(self, vault: Vault) -> None:
        vault.gold += self.gold
        vault.log.append(f"+{self.gold}")


@attrs.define
class Peeked(Event, type_name="t.mut.Peeked"):
    """A validate hook that assigns to the state before rejecting."""

    vault_id: int = state_id(Vault)

    def validate(self, vault: Vault) -> None:
        vault.gold = 1_000_000
        raise EventRejected("just looking")


@attrs.define
class Scribbled(Event, type_name="t.mut.Scribbled"):
    """A validate hook that changes the state in place, then accepts."""

    vault_id: int = state_id(Vault)

    def validate(self, vault: Vault) -> None:
        vault.log.append("scribble")

    def apply(self, vault: Vault) -> None:
        vault.gold += 1


@attrs.define
class Robbed(Event, type_name="t.mut.Robbed"):
    """A handle hook that writes the state after the commit."""

    vault_id: int = state_id(Vault)

    def apply(self, vault: Vault) -> None:
        vault.gold -= 1

    def handle(self, vault: Vault) -> None:
        vault.gold = 0


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'vault.db'}"


def test_user_code_cannot_assign_to_a_loaded_state(url: str) -> None:
    with Engine.open(url) as engine:
        engine.fire(Stored(vault_id=1, gold=5))
        engine.commit()
        vault = engine.load(Vault, 1)
        with pytest.raises(StateMutationError, match=r"Vault\(1\): cannot set Vault\.gold"):
            vault.gold = 99
        assert vault.gold == 5
        engine.admin.snapshot()
    with Engine.open(url) as fresh:
        assert fresh.load(Vault, 1).gold == 5


def test_a_validate_hook_that_assigns_is_refused_and_changes_nothing(url: str) -> None:
    with Engine.open(url) as engine:
        engine.fire(Stored(vault_id=1, gold=5))
        with pytest.raises(StateMutationError, match=r"Vault\.gold"):
            engine.fire(Peeked(vault_id=1))
        assert engine.load(Vault, 1).gold == 5 and len(engine.pending) == 1


def test_a_validate_hook_that_changes_a_state_in_place_is_undone_and_refused(url: str) -> None:
    with Engine.open(url) as engine:
        engine.fire(Stored(vault_id=1, gold=5))
        with pytest.raises(StateMutationError, match=r"validate hook of Scribbled.*'log'"):
            engine.fire(Scribbled(vault_id=1))
        vault = engine.load(Vault, 1)
        assert vault.log == ["+5"] and vault.gold == 5 and len(engine.pending) == 1


def test_a_handle_hook_cannot_write_states(url: str) -> None:
    with Engine.open(url) as engine:
        engine.fire(Stored(vault_id=1, gold=5))
        engine.fire(Robbed(vault_id=1))
        with pytest.raises(HandlerFailed) as info:
            engine.commit().raise_for_failures()
        assert isinstance(info.value.__cause__, StateMutationError)
        assert engine.load(Vault, 1).gold == 4


def test_an_apply_hook_may_not_write_a_state_its_event_does_not_declare(url: str) -> None:
    stolen: list[Vault] = []

    @attrs.define
    class Grabbed(Event, type_name="t.mut.Grabbed"):
        vault_id: int = state_id(Vault)

        def apply(self, vault: Vault) -> None:
            stolen.append(vault)
            for other in stolen:
                other.gold += 1

    with Engine.open(url) as engine:
        engine.fire(Grabbed(vault_id=1))
        with pytest.raises(StateMutationError, match=r"Vault\(1\)"):
            engine.fire(Grabbed(vault_id=2))  # writes vault 1 through an alias
        assert engine.load(Vault, 1).gold == 1 and engine.load(Vault, 2).gold == 0


def test_states_the_user_builds_are_plain_values() -> None:
    vault = Vault()
    vault.gold = 3  # not managed by playthrough: a plain attrs object
    assert vault.gold == 3
