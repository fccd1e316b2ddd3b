"""The read-side commands: ``events``, ``states``, ``info`` and ``followers``.

Text output is for a terminal; ``--format json`` prints one JSON object per
line (events, states: a long log streams) or one object (info, followers).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import attrs
import click

from .._engine import Engine
from .._errors import PlaythroughError
from .._followers import Projection
from .._ids import parse_state_id
from .._model import Event, SingletonState, State, registry
from .._serialization import converter, dumps
from ._group import main
from ._shared import app_option, format_option, open_engine

C = TypeVar("C", bound=type)

_APP = app_option()
_FORMAT = format_option()


@contextmanager
def _engine(database_url: str, apps: tuple[str, ...]) -> Iterator[Engine]:
    """An engine on a store that exists; a stored row this code cannot read is an error."""
    with open_engine(database_url, apps) as engine:
        try:
            yield engine
        except PlaythroughError as exc:
            hint = "" if apps else "\n(pass the module that defines your classes with --app MODULE)"
            raise click.ClickException(f"{exc}{hint}") from exc


def _in_apps(cls: type, apps: tuple[str, ...]) -> bool:
    module = cls.__module__
    return any(module == app or module.startswith(app + ".") for app in apps)


def _short(classes: list[C], apps: tuple[str, ...]) -> list[C]:
    """The classes a short name matches: those the ``--app`` modules define when there are
    some (a class of the same name elsewhere, the library's examples say, does not make
    the name ambiguous), else all of them."""
    mine = [c for c in classes if _in_apps(c, apps)]
    return mine or classes


def _state_class(name: str, apps: tuple[str, ...] = ()) -> type[State]:
    if name in registry.states:
        return registry.states[name]
    matches = _short(
        [c for c in dict.fromkeys(registry.states.values()) if c.__name__ == name], apps
    )
    if len(matches) == 1:
        return matches[0]
    if matches:
        names = ", ".join(sorted(c._pt_type_name for c in matches))
        raise click.BadParameter(f"{name!r} names several state types: {names}", param_hint="TYPE")
    known = ", ".join(sorted(n for n, c in registry.states.items() if c is not SingletonState))
    known = known or "none (pass --app MODULE)"
    raise click.BadParameter(f"no state type {name!r}; known: {known}", param_hint="TYPE")


def _event_type(name: str, apps: tuple[str, ...] = ()) -> str:
    if name in registry.events:
        return name
    classes = _short(
        [c for c in dict.fromkeys(registry.events.values()) if c.__name__ == name], apps
    )
    matches = [c._pt_type_name for c in classes]
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise click.BadParameter(
            f"{name!r} names several event types: {', '.join(sorted(matches))}",
            param_hint="--type",
        )
    known = ", ".join(sorted(registry.events)) or "none (pass --app MODULE)"
    raise click.BadParameter(f"no event type {name!r}; known: {known}", param_hint="--type")


def _parse_id(cls: type[State], text: str | None, hint: str) -> Any:
    """The id ``text`` names, read as the state type declares its ids (``_ids``)."""
    try:
        return parse_state_id(cls, text or None)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint=hint) from None


def _value(text: str) -> Any:
    """A --where value: JSON when it parses (100, true, "x", ["a"]), else the text itself."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def _event_dict(event: Event) -> dict[str, Any]:
    return {
        "position": event.id,
        "type": type(event)._pt_type_name,
        "fired_at": event.fired_at.isoformat() if event.fired_at else None,
        "caused_by": event.caused_by,
        "correlation": event.correlation,
        "metadata": event.metadata,
        "data": converter.unstructure(event),
    }


def _event_line(event: Event) -> str:
    fired = event.fired_at.isoformat(timespec="seconds") if event.fired_at else "-"
    fields = ", ".join(f"{k}={v!r}" for k, v in attrs.asdict(event, recurse=False).items())  # type: ignore[arg-type]
    extra = f"  caused by #{event.caused_by}" if event.caused_by is not None else ""
    meta = f"  {dumps(event.metadata)}" if event.metadata else ""
    return f"#{event.id:<6} {fired}  {type(event)._pt_type_name}({fields}){extra}{meta}"


@main.command()
@click.argument("database_url")
@_APP
@click.option("--after", type=click.IntRange(min=0), default=0, show_default=True)
@click.option("--type", "types", multiple=True, metavar="TYPE", help="Event type; repeatable.")
@click.option("--state", metavar="TYPE:ID", default=None, help="Only events touching this state.")
@click.option("--caused-by", type=int, default=None, help="Only direct effects of this event.")
@click.option("--correlation", default=None, help="Only this business transaction.")
@click.option("--limit", type=click.IntRange(min=0), default=None)
@_FORMAT
def events(
    database_url: str,
    apps: tuple[str, ...],
    after: int,
    types: tuple[str, ...],
    state: str | None,
    caused_by: int | None,
    correlation: str | None,
    limit: int | None,
    output_format: str,
) -> None:
    """List the log's events, oldest first, decoded.

    playthrough events sqlite:///app.db --app myapp.events --state Account:7
    """
    with _engine(database_url, apps) as engine:
        ref = None
        if state is not None:
            name, sep, ident = state.partition(":")
            if not sep or not name:
                raise click.BadParameter("use TYPE:ID, e.g. Account:7", param_hint="--state")
            cls = _state_class(name, apps)
            ref = (cls, _parse_id(cls, ident, "--state"))
        stream = engine.log.events(
            after=after,
            types=[_event_type(t, apps) for t in types] or None,
            state=ref,
            caused_by=caused_by,
            correlation=correlation,
            limit=limit,
        )
        for event in stream:
            if output_format == "json":
                click.echo(json.dumps(_event_dict(event), ensure_ascii=False))
            else:
                click.echo(_event_line(event))


@main.command()
@click.argument("database_url")
@click.argument("type_name", metavar="TYPE")
@_APP
@click.option(
    "--where",
    multiple=True,
    metavar="FIELD__LOOKUP=VALUE",
    help="A filter (balance__gt=100, owner=ada, tags__contains='[\"vip\"]'); repeatable.",
)
@click.option("--order-by", default=None, metavar="FIELD", help="Order by a field; -FIELD: desc.")
@click.option("--limit", type=click.IntRange(min=0), default=None)
@click.option("--count", "count_only", is_flag=True, help="Print only how many match.")
@_FORMAT
def states(
    database_url: str,
    type_name: str,
    apps: tuple[str, ...],
    where: tuple[str, ...],
    order_by: str | None,
    limit: int | None,
    count_only: bool,
    output_format: str,
) -> None:
    """List stored states of a type by value, exact as of the log's head.

    playthrough states sqlite:///app.db Account --app myapp.events --where balance__gt=100
    """
    with _engine(database_url, apps) as engine:
        cls = _state_class(type_name, apps)
        filters = {}
        for item in where:
            name, sep, text = item.partition("=")
            if not sep or not name:
                raise click.BadParameter(f"{item!r}: use FIELD__LOOKUP=VALUE", param_hint="--where")
            filters[name] = _value(text)
        if count_only:
            n = engine.states.count(cls, **filters)
            click.echo(json.dumps({"count": n}) if output_format == "json" else str(n))
            return
        for found in engine.states.find(cls, limit=limit, order_by=order_by, **filters):
            data = converter.unstructure(found)
            if output_format == "json":
                row = {"id": converter.unstructure(found.id), "last_event": found.last_event_id}
                click.echo(json.dumps({**row, "value": data}, ensure_ascii=False))
            else:
                click.echo(f"{found.id!s:<12} #{found.last_event_id:<6} {dumps(data)}")


@main.command()
@click.argument("database_url")
@click.argument("type_name", metavar="TYPE")
@click.argument("state_id", metavar="ID", required=False)
@_APP
@_FORMAT
def info(
    database_url: str,
    type_name: str,
    state_id: str | None,
    apps: tuple[str, ...],
    output_format: str,
) -> None:
    """When a state was created and last changed, how many events, its newest snapshot."""
    with _engine(database_url, apps) as engine:
        cls = _state_class(type_name, apps)
        found = engine.states.info(cls, _parse_id(cls, state_id, "ID"))
        if output_format == "json":
            data = {
                "type": found.key.type,
                "id": converter.unstructure(found.id),
                "created_position": found.created_position,
                "created_at": None if found.created_at is None else found.created_at.isoformat(),
                "last_position": found.last_position,
                "last_at": None if found.last_at is None else found.last_at.isoformat(),
                "events": found.events,
                "archived_until": found.archived_until,
                "snapshot_position": found.snapshot_position,
                "value_position": found.value_position,
                "completed": None
                if found.completed is None
                else {
                    "position": found.completed.position,
                    "event_type": found.completed.event_type,
                },
            }
            click.echo(json.dumps(data, ensure_ascii=False))
        else:
            click.echo(str(found))


@main.command()
@click.argument("database_url")
@_APP
@click.option("--reset", "reset_name", default=None, metavar="NAME", help="Re-project NAME from 0.")
@_FORMAT
def followers(
    database_url: str, apps: tuple[str, ...], reset_name: str | None, output_format: str
) -> None:
    """Show every follower's position and lag; --reset NAME moves one back to 0.

    With --reset, a Projection named NAME in an --app module (constructible
    without arguments) clears its read model in the same transaction.
    """
    with _engine(database_url, apps) as engine:
        if reset_name is not None:
            target: Projection | str = reset_name
            for cls in _projections():
                if getattr(cls, "name", None) == reset_name:
                    try:
                        target = cls()
                    except TypeError:
                        click.echo(
                            f"note: {cls.__qualname__}() needs arguments; its read model was "
                            "not cleared, only the position reset",
                            err=True,
                        )
                    break
            engine.followers.reset(target)
        rows = engine.followers()
        if output_format == "json":  # JSON Lines, one follower a line, like events and states
            for f in rows:
                row = {
                    "name": f.name,
                    "position": f.position,
                    "lag": f.lag,
                    "updated_at": f.updated_at.isoformat(),
                }
                click.echo(json.dumps(row, ensure_ascii=False))
            return
        if not rows:
            click.echo("no followers")
        for f in rows:
            updated = f.updated_at.isoformat(timespec="seconds")
            click.echo(f"{f.name:<24} position {f.position:<8} lag {f.lag:<8} updated {updated}")


def _projections() -> list[type[Projection]]:
    out: list[type[Projection]] = []
    todo: list[type[Projection]] = [Projection]
    while todo:
        for sub in todo.pop().__subclasses__():
            out.append(sub)
            todo.append(sub)
    return out
