"""``playthrough demo``: an example domain on a SQLite file, fired, loaded, explained."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from .._asdict import asdict
from .._engine import Engine
from .._model import State
from .._urls import sqlite_url
from ._group import main
from ._shared import describe, format_option


@main.command()
@click.option(
    "--example",
    type=click.Choice(["bank", "game", "shop"]),
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
@format_option("text for a terminal; json: one object with every step's result.")
def demo(example: str, db_path: Path | None, output_format: str) -> None:
    """Run an example on a SQLite file and show what happened.

    Fires the example's events in one engine, then loads the states back in a
    fresh engine (a new process would see the same), shows the load plan,
    writes a snapshot set and travels back in time; last, the same story with
    an old mix of snapshots (no heads values), where a load rewinds and plays.
    """
    if db_path is None:
        db_path = Path(tempfile.mkdtemp(prefix="playthrough-demo-")) / f"{example}.db"
    elif db_path.exists():
        raise click.UsageError(f"{db_path} already exists; the demo writes a new database")
    elif not db_path.parent.is_dir():
        raise click.UsageError(
            f"--db {db_path}: the directory {db_path.parent} does not exist; the demo creates "
            "the database file, not its directory"
        )
    url = sqlite_url(os.path.abspath(db_path))
    story, loads, (cls, state_id) = _example(example)
    as_json = output_format == "json"
    say: Callable[[str], object] = (lambda _text: None) if as_json else click.echo
    out: dict[str, Any] = {"example": example, "db": str(db_path)}

    say(f"playthrough demo: the {example} example on {url}\n")
    with Engine.open(url) as engine:
        committed = story(engine)
    out["events"] = [asdict(e) for e in committed]
    say(f"fired and committed {len(committed)} events:")
    for event in committed:
        say(f"  {describe(event)}")

    say("\nloaded back in a fresh engine:")
    out["loads"] = {}
    with Engine.open(url) as engine:
        for name, load in loads:
            state = load(engine)
            out["loads"][name] = asdict(state)
            say(f"  {name}: {state!r}  (last event #{state.last_event_id})")
        plan = engine.explain(cls, state_id)
        out["plan"] = plan.to_dict()
        say("\nhow a fresh load of that state is planned:")
        say("  " + plan.explain().replace("\n", "\n  "))
        position = engine.admin.snapshot()
        plan = engine.explain(cls, state_id)
        out["snapshot_position"] = position
        out["plan_after_snapshot"] = plan.to_dict()
        say(f"\nwrote an aligned snapshot set at position {position}; the plan now:")
        say("  " + plan.explain().replace("\n", "\n  "))
        middle = max(1, position // 2)
        past = engine.load(cls, state_id, at=middle)
        out["time_travel"] = {"at": middle, "state": asdict(past)}
        say(f"\ntime travel, {cls.__name__}({state_id}) as of position {middle}: {past!r}")
        from .see import demo_rewind

        out["rewind"] = demo_rewind(story, cls, state_id, say)
    say(f"\nthe log is in {db_path}")
    if as_json:
        click.echo(json.dumps(out, ensure_ascii=False, default=str))


Loads = list[tuple[str, Callable[[Engine], State]]]


def _example(example: str) -> tuple[Callable[[Engine], Any], Loads, tuple[type[State], object]]:
    """The story, the loads to show and the state whose plan is explained."""
    if example == "bank":
        from ..examples import bank

        return (
            bank.story,
            [
                ("account 1", lambda e: e.load(bank.Account, 1)),
                ("account 2", lambda e: e.load(bank.Account, 2)),
                ("ledger", lambda e: e.load(bank.Ledger)),
            ],
            (bank.Account, 2),
        )
    if example == "shop":
        from ..examples import shop

        return (
            shop.story,
            [
                ("customer 1", lambda e: e.load(shop.Customer, 1)),
                ("customer 2", lambda e: e.load(shop.Customer, 2)),
                ("order 10", lambda e: e.load(shop.Order, 10)),
                ("order 11", lambda e: e.load(shop.Order, 11)),
            ],
            (shop.Customer, 1),
        )
    from ..examples import game

    return (
        game.story,
        [
            ("player 1", lambda e: e.load(game.PlayerState, 1)),
            ("player 2", lambda e: e.load(game.PlayerState, 2)),
            ("game 7", lambda e: e.load(game.GameState, 7)),
        ],
        (game.GameState, 7),
    )
