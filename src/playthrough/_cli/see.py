"""The commands that show things: ``explain``, ``graph``, ``history`` and ``serve``.

Ids are read the way the
state type declares them (``Order 13`` is the string ``"13"`` when order ids
are strings) and printed as written.
"""

from __future__ import annotations

import json
from typing import Any

import click

from .._ids import parse_state_id
from .._model import State
from .._urls import parse_store_url, shown_url
from ._group import main
from ._shared import existing_store_url, import_apps
from .read import _APP, _engine, _state_class


def _parse_id(cls: type[State], text: str | None) -> Any:
    try:
        return parse_state_id(cls, text)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="ID") from None


@main.command()
@click.argument("database_url")
@click.argument("type_name", metavar="TYPE")
@click.argument("state_id", metavar="ID", required=False)
@_APP
@click.option("--at", type=click.IntRange(min=0), default=None, help="Plan a load as of P.")
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
    with _engine(database_url, apps) as engine:
        cls = _state_class(type_name)
        ident = _parse_id(cls, state_id)
        if at is not None and at > engine.head():
            raise click.BadParameter(
                f"{at} is past the log's head ({engine.head()})", param_hint="--at"
            )
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
@click.argument("database_url")
@click.argument("type_name", metavar="TYPE")
@click.argument("state_id", metavar="ID", required=False)
@_APP
@click.option("--at", type=click.IntRange(min=0), default=None, help="Up to position P.")
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="text for a terminal; json: one object.",
)
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
    with _engine(database_url, apps) as engine:
        cls = _state_class(type_name)
        ident = _parse_id(cls, state_id)
        if at is not None and at > engine.head():
            raise click.BadParameter(
                f"{at} is past the log's head ({engine.head()})", param_hint="--at"
            )
        found = engine.history(cls, ident, at=at)
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
