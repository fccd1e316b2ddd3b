"""``playthrough verify`` and ``playthrough schema``: checks with an exit status for CI."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from .._errors import UnknownTypeError
from .._urls import shown_url
from .._verify import VerifyInterrupted, VerifyOptions
from . import _shared
from ._group import main
from ._shared import (
    app_option,
    existing_store_url,
    format_option,
    no_sqlite_file,
    open_engine,
    unknown_type,
)

_VERIFY_EPILOG = """\b
Exit status: 0 when every check holds (coupled snapshots out of sync are a
warning unless --strict-sync), 1 when one does not, 2 for usage errors
(a bad option, a database that cannot be opened, a module that cannot be
imported, an event type no --app module defines), 130 when Ctrl-C stopped
it (the report then says what was found so far and what was not checked).
"""


@main.command(epilog=_VERIFY_EPILOG)
@click.argument("database_url")
@app_option()
@format_option("How to print the report on stdout.")
@click.option(
    "--junit-xml",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Also write a JUnit XML report (one testcase per check and state) for CI.",
)
@click.option(
    "--sample", type=click.IntRange(min=1), default=None, help="Check a random sample of N states."
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the --sample draw.")
@click.option(
    "--start",
    type=click.IntRange(min=0),
    default=None,
    help="Check snapshots at positions >= START and states touched after it.",
)
@click.option(
    "--end",
    type=click.IntRange(min=0),
    default=None,
    help="Check up to this position (default: the log's head).",
)
@click.option(
    "--time-budget",
    type=click.FloatRange(min=0),
    default=None,
    metavar="SECONDS",
    help="Stop cleanly after this long and report what was not checked.",
)
@click.option(
    "--strict-sync",
    is_flag=True,
    default=False,
    help="Fail (exit 1) when coupled snapshots are out of sync; by default a warning, "
    "since a load then rewinds (slower) but is not wrong.",
)
@click.option(
    "--subprocess/--no-subprocess",
    "subprocess_replay",
    default=None,
    help="Run the second replay in a subprocess with another PYTHONHASHSEED "
    "(default: when --app is given and the database is not in memory).",
)
@_shared.progress_option()
@click.option(
    "--allow-empty",
    is_flag=True,
    default=False,
    help="Exit 0 for a store that is empty or does not exist (by default an error: "
    "green CI on nothing is not a check).",
)
@click.pass_context
def verify(
    ctx: click.Context,
    /,
    database_url: str,
    output_format: str,
    junit_xml: Path | None,
    progress: bool | None,
    allow_empty: bool,
    **checks: Any,
) -> None:
    """Check a store: snapshots against the log, deterministic replay, snapshot sync.

    DATABASE_URL is a store URL (sqlite:///path.db, postgresql://...) or the
    path of a SQLite file. Example:

        playthrough verify sqlite:///app.db --app mypackage.events
    """
    if allow_empty and no_sqlite_file(database_url):
        click.echo(f"{shown_url(database_url)}: no store there, nothing to check (--allow-empty)")
        ctx.exit(0)
    # The options the command shares with engine.admin.verify() are VerifyOptions' fields;
    # the URL (with its password) is the one a subprocess replay opens.
    options = VerifyOptions(url=existing_store_url(database_url), **checks)
    engine = open_engine(database_url, tuple(options.apps), allow_empty=allow_empty)
    with engine, _shared.progress_bar(progress) as report_progress:
        if engine.head() == 0 and not allow_empty:
            click.echo(
                f"Error: the store at {shown_url(database_url)} is empty: nothing to verify "
                "(pass --allow-empty to accept that)",
                err=True,
            )
            ctx.exit(1)
        try:
            report = engine.admin.verify(options, progress=report_progress)
        except VerifyInterrupted as stopped:  # Ctrl-C: what was found so far, then 130
            report = stopped.report
        except UnknownTypeError as exc:
            unknown_type(exc)
        except ValueError as exc:
            raise click.UsageError(str(exc)) from exc
    if output_format == "json":
        click.echo(json.dumps(report.to_dict(), indent=2, ensure_ascii=False))
    else:
        click.echo(report.to_text())
    if junit_xml is not None:
        junit_xml.parent.mkdir(parents=True, exist_ok=True)
        junit_xml.write_text(report.to_junit_xml(), encoding="utf-8")
    ctx.exit(130 if report.interrupted else 0 if report.ok else 1)


@main.command(
    epilog="""\b
Exit status: 0 when this code reads every stored event and can use every stored
snapshot and heads value, 1 when it cannot, 2 for usage errors.
"""
)
@click.argument("database_url")
@app_option()
@format_option("How to print the report on stdout.")
@click.option(
    "--sample",
    type=click.IntRange(min=0),
    default=100,
    show_default=True,
    help="Decode this many stored rows of each type and version (0: only count them).",
)
@click.option("--all", "decode_all", is_flag=True, help="Decode every stored row.")
@click.pass_context
def schema(
    ctx: click.Context,
    database_url: str,
    apps: tuple[str, ...],
    output_format: str,
    sample: int,
    decode_all: bool,
) -> None:
    """Which versions of each type the store holds, and whether this code reads them.

    Per stored event type and state type: the versions present in the log and
    in snapshots and heads values (counted by the database), and for each
    whether the classes in the --app modules read it (directly, through
    upcasters or an alias) or not (an unknown type, a version written by newer
    code, a snapshot without an upcaster path, whose class changed without a
    version bump, or made by event classes that changed since). Then it decodes
    a sample of the stored rows of each type and version (--all: every row)
    through the upcaster chain and checks them against the fields' types, and
    names each row that fails (a field renamed without a version bump, a
    required field added, a changed type, an upcaster that raises or returns
    the wrong thing). Run it in CI before deploying a change to event or state
    classes:

        playthrough schema "$DATABASE_URL" --app mypackage.events
    """
    import json

    from .._schema import schema_report

    with open_engine(database_url, apps) as engine:
        report = schema_report(engine.store, sample=None if decode_all else sample)
    if output_format == "json":
        click.echo(json.dumps(report.to_dict(), indent=2, ensure_ascii=False))
    else:
        click.echo(report.to_text())
    ctx.exit(0 if report.ok else 1)
