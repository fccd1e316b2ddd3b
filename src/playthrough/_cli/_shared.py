"""What every command shares: the options, the one way to open a store, the progress bar."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import attrs
import click

from .._engine import Engine
from .._errors import ConfigurationError, PlaythroughError, StoreError, UnknownTypeError
from .._model import Event
from .._urls import parse_store_url, shown_url, sqlite_url

if TYPE_CHECKING:
    from rich.progress import TaskID

_F = TypeVar("_F", bound=Callable[..., Any])

#: What a usage error about an unknown event or state type suggests.
APP_HINT = "(pass the module that defines it with --app MODULE)"


def app_option(
    help: str = "Module defining the states and events (imported so they register); repeatable.",
) -> Callable[[_F], _F]:
    """``--app MODULE`` (repeatable), the option every command that reads stored events takes."""
    return click.option("--app", "apps", multiple=True, metavar="MODULE", help=help)


def format_option(
    help: str = "text for a terminal; json: one JSON object (JSON Lines for a stream).",
) -> Callable[[_F], _F]:
    """``--format text|json``: every command with text output also speaks JSON."""
    return click.option(
        "--format",
        "output_format",
        type=click.Choice(["text", "json"]),
        default="text",
        show_default=True,
        help=help,
    )


def progress_option() -> Callable[[_F], _F]:
    return click.option(
        "--progress/--no-progress",
        default=None,
        help="Show a progress bar on stderr (default: on a terminal, not under CI).",
    )


def describe(event: Event) -> str:
    """One event on one line, for the commands that list what they ran."""
    fields = attrs.asdict(event, recurse=False)  # type: ignore[arg-type]
    args = ", ".join(f"{k}={v!r}" for k, v in fields.items())
    cause = f"  (caused by #{event.caused_by})" if event.caused_by is not None else ""
    return f"#{event.id} {type(event).__name__}({args}){cause}"


def unknown_type(exc: UnknownTypeError, hint: str = APP_HINT) -> NoReturn:
    """An event or state type no ``--app`` module defines: a usage error (exit status 2)."""
    raise click.UsageError(f"{exc}\n{hint}") from exc


def open_engine(
    database_url: str,
    apps: tuple[str, ...] = (),
    *,
    create: bool = False,
    existing: bool = True,
    allow_empty: bool = False,
) -> Engine:
    """The one way a command opens a store: an engine on it, after importing ``apps``.

    - ``existing`` (default): DATABASE_URL must name a store that can exist (a
      database URL or an existing SQLite file, not memory); ``import`` passes
      False, it may create one.
    - ``create``: whether the store may be created or migrated (commands that
      write); False (commands that only read or check): a missing store is an
      error (exit status 1), or with ``allow_empty`` a note and exit status 0.

    A store that cannot be opened is a usage error (exit status 2); no message
    shows a password the URL carries.
    """
    url = existing_store_url(database_url) if existing else database_url
    import_apps(apps)
    from .._stores._base import NoStoreError

    try:
        return Engine.open(url, create=create)
    except NoStoreError as exc:
        if allow_empty:
            click.echo(
                f"{shown_url(database_url)}: no store there, nothing to check (--allow-empty)"
            )
            raise click.exceptions.Exit(0) from None
        raise click.ClickException(str(exc)) from exc
    except PlaythroughError as exc:
        raise click.UsageError(f"cannot open {shown_url(database_url)}: {exc}") from exc


def no_sqlite_file(text: str) -> bool:
    """Whether ``text`` names a SQLite file (a path or a file URL) that does not exist."""
    if "://" not in text:
        return not Path(text).exists()
    try:
        parsed = parse_store_url(text)
    except StoreError:
        return False  # existing_store_url says what is wrong with it
    return (
        parsed.kind == "sqlite"
        and not parsed.is_memory
        and (parsed.path is None or not Path(parsed.path).exists())
    )


def existing_store_url(text: str) -> str:
    """The URL to open; refuses what would create a new, empty database instead."""
    if "://" not in text:
        path = Path(text)
        if not path.is_file():
            raise click.BadParameter(
                f"{text!r} is neither a database URL nor an existing SQLite file",
                param_hint="DATABASE_URL",
            )
        return sqlite_url(path.resolve())
    try:
        parsed = parse_store_url(text)  # its messages never repeat a password
    except (StoreError, ConfigurationError) as exc:
        raise click.BadParameter(str(exc), param_hint="DATABASE_URL") from exc
    if parsed.kind == "sqlite":
        if parsed.is_memory:
            raise click.BadParameter(
                "an in-memory database is empty: nothing to verify", param_hint="DATABASE_URL"
            )
        if parsed.path is None or not Path(parsed.path).is_file():
            raise click.BadParameter(f"no SQLite file at {parsed.path}", param_hint="DATABASE_URL")
    return text


def import_apps(apps: tuple[str, ...]) -> None:
    """Import the modules that define the user's classes (from the current directory too)."""
    import importlib
    import sys

    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    for name in apps:
        try:
            importlib.import_module(name)
        except Exception as exc:
            raise click.BadParameter(
                f"cannot import {name!r}: {exc!r}", param_hint="--app"
            ) from exc


@contextmanager
def tty_progress(wanted: bool | None, label: str) -> Iterator[Callable[[int, int], None] | None]:
    """:func:`progress_bar` for one stage."""
    with progress_bar(wanted) as update:
        if update is None:
            yield None
        else:
            yield lambda done, total: update(label, done, total)


@contextmanager
def progress_bar(wanted: bool | None) -> Iterator[Callable[[str, int, int], None] | None]:
    """A rich progress bar on stderr, or None (not a terminal, under CI, or --no-progress)."""
    import sys

    if wanted is None:
        wanted = sys.stderr.isatty() and not os.environ.get("CI")
    if not wanted:
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    labels = {
        "sync": "snapshot sync",
        "heads": "heads and snapshot metadata",
        "snapshots": "snapshots vs log, links vs payloads",
        "determinism": "second replay (determinism)",
        "locate": "locating events",
        "values": "heads values",
        "states": "states at the cut",
        "export": "events to the archive",
        "delete": "deleting archived rows",
        "vacuum": "vacuum",
    }
    tasks: dict[str, TaskID] = {}
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        console=Console(stderr=True),
        transient=True,
    ) as bar:

        def update(stage: str, done: int, total: int) -> None:
            task = tasks.get(stage)
            if task is None:
                task = tasks[stage] = bar.add_task(labels.get(stage, stage), total=total)
            bar.update(task, completed=done, total=total)

        yield update
