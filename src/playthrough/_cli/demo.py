"""``playthrough demo``: an example domain on a SQLite file, fired, loaded, explained."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import click

from .._engine import Engine
from .._model import State
from .._urls import sqlite_url
from ._group import main
from ._shared import describe


@main.command()
@click.option(
    "--example",
    type=click.Choice(["bank", "game"]),
    default="bank",
    show_default=True,
    help="Which example domain to run.",
)
@click.option(
    "--db",
    "db_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="SQLite file to write (must not exist yet). Default: a new file in a temp directory.",
)
def demo(example: str, db_path: Path | None) -> None:
    """Run an example on a SQLite file and show what happened.

    Fires the example's events in one engine, then loads the states back in a
    fresh engine (a new process would see the same), shows the load plan,
    writes a snapshot set and travels back in time.
    """
    if db_path is None:
        db_path = Path(tempfile.mkdtemp(prefix="playthrough-demo-")) / f"{example}.db"
    elif db_path.exists():
        raise click.UsageError(f"{db_path} already exists; the demo writes a new database")
    url = sqlite_url(os.path.abspath(db_path))
    loads: list[tuple[str, Callable[[Engine], State]]]
    if example == "bank":
        from ..examples import bank

        story = bank.story
        loads = [
            ("account 1", lambda e: e.load(bank.Account, 1)),
            ("account 2", lambda e: e.load(bank.Account, 2)),
            ("ledger", lambda e: e.load(bank.Ledger)),
        ]
        explain_target: tuple[type[State], object] = (bank.Account, 2)
    else:
        from ..examples import game

        story = game.story
        loads = [
            ("player 1", lambda e: e.load(game.PlayerState, 1)),
            ("player 2", lambda e: e.load(game.PlayerState, 2)),
            ("game 7", lambda e: e.load(game.GameState, 7)),
        ]
        explain_target = (game.GameState, 7)

    click.echo(f"playthrough demo: the {example} example on {url}\n")
    with Engine.open(url) as engine:
        committed = story(engine)
    click.echo(f"fired and committed {len(committed)} events:")
    for event in committed:
        click.echo(f"  {describe(event)}")

    click.echo("\nloaded back in a fresh engine:")
    with Engine.open(url) as engine:
        for label, load in loads:
            state = load(engine)
            click.echo(f"  {label}: {state!r}  (last event #{state.last_event_id})")
        cls, state_id = explain_target
        click.echo("\nhow a fresh load of that state is planned:")
        click.echo("  " + engine.explain(cls, state_id).explain().replace("\n", "\n  "))
        position = engine.snapshot()
        click.echo(f"\nwrote an aligned snapshot set at position {position}; the plan now:")
        click.echo("  " + engine.explain(cls, state_id).explain().replace("\n", "\n  "))
        middle = max(1, position // 2)
        past = engine.load(cls, state_id, at=middle)
        click.echo(f"\ntime travel, {cls.__name__}({state_id}) as of position {middle}: {past!r}")
        from .see import demo_rewind

        demo_rewind(story, cls, state_id)
    click.echo(f"\nthe log is in {db_path}")
