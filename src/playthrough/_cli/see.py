"""The commands that show things: ``explain``, ``graph``, ``history``, ``serve``, ``follow``.

Ids are read the way the
state type declares them (``Order 13`` is the string ``"13"`` when order ids
are strings) and printed as written.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import click

from .._engine import Engine
from .._followers import Projection
from .._ids import label, parse_state_id
from .._model import State, decode_id, key_of, registry
from .._urls import parse_store_url, shown_url
from ._group import main
from ._shared import existing_store_url, format_option, import_apps
from .read import _APP, _engine, _state_class


def _parse_id(cls: type[State], text: str | None) -> Any:
    try:
        return parse_state_id(cls, text)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="ID") from None


def _state_at(at_help: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """The arguments of a command about one state as of a position: URL TYPE [ID] --at P."""

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        command = click.option("--at", type=click.IntRange(min=0), default=None, help=at_help)(
            command
        )
        command = _APP(command)
        command = click.argument("state_id", metavar="ID", required=False)(command)
        command = click.argument("type_name", metavar="TYPE")(command)
        return click.argument("database_url")(command)

    return decorate


@contextmanager
def _state_on(
    database_url: str, type_name: str, state_id: str | None, apps: tuple[str, ...], at: int | None
) -> Iterator[tuple[Engine, type[State], Any]]:
    """The engine, the state class and the parsed id; ``--at`` past the head is refused."""
    with _engine(database_url, apps) as engine:
        cls = _state_class(type_name, apps)
        ident = _parse_id(cls, state_id)
        if at is not None and at > engine.head():
            raise click.BadParameter(
                f"{at} is past the log's head ({engine.head()})", param_hint="--at"
            )
        yield engine, cls, ident


def demo_rewind(
    story: Callable[[Engine], Any],
    cls: type[State],
    state_id: Any,
    say: Callable[[str], object] = click.echo,
) -> dict[str, Any] | None:
    """The demo's step that shows the idea: with ``head_values=False`` and snapshots out
    of step (the coupled states snapshotted after the events that need them), a load's
    plan rewinds those states and plays the log. Returns that plan and the state's
    history as data (None when the example couples nothing to the state)."""
    with Engine.open("sqlite://", head_values=False) as engine:
        story(engine)
        target = key_of(cls, state_id)
        others = [
            (registry.states[k.type], decode_id(k.id))
            for k in engine.explain(cls, state_id).states
            if k != target
        ]
        if not others:
            return None
        engine.admin.snapshot(others)  # at the head: past every event of the target
        plan = engine.explain(cls, state_id)
        if not plan.rewound:
            return None
        history = engine.log.history(cls, state_id)
        say(
            "\nthe same story in memory with head_values=False and every other state "
            f"snapshotted at the head: loading {label(target)} rewinds the states its "
            "events need just before them, and plays the log"
        )
        say("  " + plan.explain().replace("\n", "\n  "))
        say("\nthat plan as a picture (playthrough explain URL TYPE ID --format mermaid):")
        say("  " + plan.to_mermaid().rstrip("\n").replace("\n", "\n  "))
        say(f"\nthe history of {label(target)} (playthrough history URL TYPE ID):")
        say("  " + str(history).replace("\n", "\n  "))
        return {"plan": plan.to_dict(), "history": history.to_dict()}


@main.command()
@_state_at("Plan a load as of P.")
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["text", "json", "mermaid", "dot"]),
    default="text",
    show_default=True,
    help="text; json (nodes, edges, rewound); mermaid or dot: a picture to render.",
)
def explain(
    database_url: str,
    type_name: str,
    state_id: str | None,
    apps: tuple[str, ...],
    at: int | None,
    output_format: str,
) -> None:
    """Show the plan a load of a state runs: snapshots, events, rewound states.

    playthrough explain sqlite:///app.db Order o13 --app myapp.events --format mermaid
    """
    with _state_on(database_url, type_name, state_id, apps, at) as (engine, cls, ident):
        plan = engine.explain(cls, ident, at=at)
        firsts = sorted({min(p) for p in plan.edges.values()})
        with engine.store.reader() as reader:
            names = {row.position: row.type for row in reader.events(firsts)}
    if output_format == "json":
        click.echo(json.dumps(plan.to_dict(names), ensure_ascii=False))
    elif output_format == "mermaid":
        click.echo(plan.to_mermaid(names), nl=False)
    elif output_format == "dot":
        click.echo(plan.to_dot(names), nl=False)
    else:
        click.echo(plan.explain())


@main.command()
@_APP
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["mermaid", "dot", "json"]),
    default="mermaid",
    show_default=True,
)
def graph(apps: tuple[str, ...], output_format: str) -> None:
    """Event types -> the state types they touch: coupled hooks, hot spots. Reads the
    classes of the --app modules (and their submodules); no store.

    playthrough graph --app myapp.events --format dot | dot -Tsvg > coupling.svg
    """
    from .._coupling import coupling_graph

    if not apps:
        raise click.UsageError("pass the modules that define your classes with --app MODULE")
    import_apps(apps)
    found = coupling_graph(modules=apps)
    if not found.events:
        raise click.ClickException(f"no event classes are defined in {', '.join(apps)}")
    if output_format == "json":
        click.echo(json.dumps(found.to_dict(), ensure_ascii=False))
    elif output_format == "dot":
        click.echo(found.to_dot(), nl=False)
    else:
        click.echo(found.to_mermaid(), nl=False)


@main.command()
@_state_at("Up to position P.")
@format_option("text for a terminal; json: one object.")
def history(
    database_url: str,
    type_name: str,
    state_id: str | None,
    apps: tuple[str, ...],
    at: int | None,
    output_format: str,
) -> None:
    """Every event that touched a state, in order, with what it changed (before -> after).

    playthrough history sqlite:///app.db Account 7 --app myapp.events
    """
    with _state_on(database_url, type_name, state_id, apps, at) as (engine, cls, ident):
        found = engine.log.history(cls, ident, at=at)
    if output_format == "json":
        click.echo(json.dumps(found.to_dict(), ensure_ascii=False))
    else:
        click.echo(str(found))


@main.command()
@click.argument("database_url")
@_APP
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option("--port", type=click.IntRange(1, 65535), default=8765, show_default=True)
@click.option(
    "--show-personal",
    is_flag=True,
    default=False,
    help="Show personal fields in clear (by default [personal]; forgotten ones stay [forgotten]).",
)
def serve(
    database_url: str, apps: tuple[str, ...], host: str, port: int, show_personal: bool
) -> None:
    """A local, read-only web inspector of the store, with a JSON API under /api/.

    Needs pip install 'playthrough[inspect]'.
    playthrough serve sqlite:///app.db --app myapp.events   # then open http://127.0.0.1:8765
    """
    from .. import inspect

    url = existing_store_url(database_url)
    import_apps(apps)
    parse_store_url(url)  # a bad URL is refused before anything starts
    if not inspect.is_loopback(host):
        click.echo(
            f"warning: the inspector has no authentication, and --host {host} is not a "
            "loopback address: anyone who can reach it can read the whole store",
            err=True,
        )
    click.echo(f"playthrough inspector on http://{host}:{port} for {shown_url(database_url)}")
    try:
        inspect.serve(url, host=host, port=port, show_personal=show_personal, modules=apps)
    except ImportError as exc:
        raise click.ClickException(str(exc)) from exc


def _projection(spec: str) -> Projection:
    import importlib

    module_name, sep, class_name = spec.partition(":")
    if not sep or not module_name or not class_name:
        raise click.BadParameter(f"use module:Class, not {spec!r}", param_hint="--projection")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise click.BadParameter(
            f"cannot import {module_name}: {exc}", param_hint="--projection"
        ) from exc
    cls = getattr(module, class_name, None)
    if not (isinstance(cls, type) and issubclass(cls, Projection)):
        raise click.BadParameter(
            f"{module_name} has no Projection class {class_name!r}", param_hint="--projection"
        )
    try:
        return cls()
    except TypeError as exc:
        raise click.BadParameter(
            f"{spec}() cannot be made without arguments: {exc}", param_hint="--projection"
        ) from exc


@main.command()
@click.argument("database_url")
@_APP
@click.option("--projection", "spec", required=True, metavar="MODULE:CLASS")
@click.option("--until-idle", is_flag=True, default=False, help="Stop at the head.")
@click.option("--interval", type=click.FloatRange(min=0.01), default=1.0, show_default=True)
@format_option("How to print the report at the end: text, or json (one object).")
def follow(
    database_url: str,
    apps: tuple[str, ...],
    spec: str,
    until_idle: bool,
    interval: float,
    output_format: str,
) -> None:
    """Run a projection (a follower) from a shell: until stopped, or --until-idle.

    playthrough follow sqlite:///app.db --app myapp.events --projection myapp.read:Balances
    """
    projection = _projection(spec)
    with _engine(database_url, apps) as engine:
        report = engine.followers.run(projection, until_idle=until_idle, poll_interval=interval)
    if output_format == "json":
        data = {
            "name": report.name,
            "processed": report.processed,
            "passed": report.passed,
            "batches": report.batches,
            "position": report.position,
        }
        click.echo(json.dumps(data, ensure_ascii=False))
        return
    click.echo(
        f"{report.name}: processed {report.processed}, passed {report.passed} "
        f"in {report.batches} batch(es); at position {report.position}"
    )
