"""Source document 003's scenario: a player enabling a modifier in a game.

``PlayerEnabledModifier`` validates against the player and changes both the
player and the game, so the two states are coupled: if the player was
snapshotted at event 100 and the game at event 50, loading the game must not
let event 60 see the player "from the future".
"""

from __future__ import annotations

import attrs

from playthrough import Engine, Event, State, state_id
from playthrough.errors import EventRejected


@attrs.define
class PlayerState(State, type_name="game.Player"):
    name: str = ""
    items: list[str] = attrs.field(factory=list)
    modifiers_enabled: int = 0


@attrs.define
class GameState(State, type_name="game.Game"):
    players: list[str] = attrs.field(factory=list)
    active_modifiers: list[str] = attrs.field(factory=list)


@attrs.define
class PlayerJoined(Event, type_name="game.PlayerJoined"):
    player_id: int = state_id(PlayerState)
    game_id: int = state_id(GameState)
    name: str = ""

    def apply(self, player: PlayerState, game: GameState) -> None:
        player.name = self.name
        game.players.append(self.name)


@attrs.define
class ItemGranted(Event, type_name="game.ItemGranted"):
    player_id: int = state_id(PlayerState)
    item: str = ""

    def apply(self, player: PlayerState) -> None:
        player.items.append(self.item)


@attrs.define
class PlayerEnabledModifier(Event, type_name="game.PlayerEnabledModifier"):
    player_id: int = state_id(PlayerState)
    game_id: int = state_id(GameState)
    modifier_id: str = ""

    def validate(self, player: PlayerState) -> None:
        if "modifier_token" not in player.items:
            raise EventRejected(f"{player.name or self.player_id} has no modifier_token")

    def apply(self, player: PlayerState, game: GameState) -> None:
        # Reads the player while changing the game: the two are coupled here.
        player.items.remove("modifier_token")
        player.modifiers_enabled += 1
        game.active_modifiers.append(f"{self.modifier_id} by {player.name}")


def story(engine: Engine) -> list[Event]:
    """Two players join a game, get tokens and enable modifiers."""
    engine.fire(PlayerJoined(player_id=1, game_id=7, name="ada"))
    engine.fire(PlayerJoined(player_id=2, game_id=7, name="grace"))
    engine.fire(ItemGranted(player_id=1, item="modifier_token"))
    engine.fire(ItemGranted(player_id=2, item="modifier_token"))
    engine.fire(PlayerEnabledModifier(player_id=1, game_id=7, modifier_id="double-points"))
    engine.fire(ItemGranted(player_id=1, item="modifier_token"))
    engine.fire(PlayerEnabledModifier(player_id=2, game_id=7, modifier_id="low-gravity"))
    return engine.commit()
