"""Source document 003: mixed snapshots of coupled states, loaded exactly.

The player is snapshotted at event 100 and the game at event 50. Event 61 reads
the player while changing the game. A naive loader would start the player at
100 and let event 61 see it "from the future"; the plan rewinds the player
instead, and the result equals a full replay from blank.
"""

from __future__ import annotations

from playthrough import Engine
from playthrough.examples.game import (
    GameState,
    ItemGranted,
    PlayerEnabledModifier,
    PlayerJoined,
    PlayerState,
)


def main() -> None:
    with Engine.open("sqlite://") as engine:
        engine.fire(PlayerJoined(player_id=1, game_id=1, name="ada"))
        for n in range(2, 60):
            engine.fire(ItemGranted(player_id=1, item=f"coin{n}"))
        engine.fire(ItemGranted(player_id=1, item="modifier_token"))  # event 60
        engine.fire(PlayerEnabledModifier(player_id=1, game_id=1, modifier_id="m"))  # 61
        for n in range(62, 121):
            engine.fire(ItemGranted(player_id=1, item=f"coin{n}"))
        engine.commit()

        engine.admin.snapshot([(PlayerState, 1)], at=100)
        engine.admin.snapshot([(GameState, 1)], at=50)
        print(engine.admin.snapshot_sync())

        engine.refresh()  # forget live states: the next loads reconstitute
        print(engine.explain(GameState, 1))
        print("game:", engine.load(GameState, 1))

        engine.admin.snapshot()  # an aligned set: both states as of one position
        print(engine.admin.snapshot_sync())


if __name__ == "__main__":
    main()
