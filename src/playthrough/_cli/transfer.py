"""``playthrough export``, ``import`` and ``archive``: the log to and from files."""

from __future__ import annotations

import contextlib
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from .._errors import PlaythroughError, UnknownTypeError
from .._transfer import TransferReport
from .._urls import shown_url
from . import _shared
from ._group import main
from ._shared import app_option, existing_store_url, format_option, open_engine, unknown_type


@main.command("export")
@click.argument("database_url")
@click.option(
    "--after",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Export the events after this position (0: the whole log).",
)
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write to this file instead of stdout (gzip when it ends in .gz).",
)
@click.option(
    "--progress/--no-progress",
    default=None,
    help="Show a progress bar on stderr (default: on a terminal, not under CI).",
)
@click.option(
    "--with-followers",
    is_flag=True,
    default=False,
    help="Carry the followers' positions too (the copy's followers go on where these were).",
)
@click.option(
    "--without-keys",
    is_flag=True,
    default=False,
    help="Leave out the data subjects' keys: the copy can only read personal values as "
    "forgotten (import --forgotten).",
)
@format_option(
    "How to print the summary (on stderr when the export goes to stdout): text, or json "
    "(one object)."
)
def export_command(
    database_url: str,
    after: int,
    output: Path | None,
    progress: bool | None,
    with_followers: bool,
    without_keys: bool,
    output_format: str,
) -> None:
    """Stream the store as gzipped JSON Lines: the log, then what the store needs besides it.

    Header, events (personal values stay sealed), trailer with a checksum, then
    the scheduled events, pending handlers, completions, the followers'
    positions (--with-followers) and last the data subjects' keys (not with
    --without-keys).

    playthrough export sqlite:///app.db > log.jsonl.gz
    """
    import gzip
    import sys

    from .._transfer import export_log

    existing_store_url(database_url)  # a bad DATABASE_URL is the first thing said
    if output is None and sys.stdout.isatty():
        raise click.UsageError("refusing to write compressed data to a terminal: redirect stdout")
    engine = open_engine(database_url, create=True)
    store = engine.store
    try:
        with contextlib.ExitStack() as stack:
            if output is None:
                target: Any = gzip.GzipFile(fileobj=sys.stdout.buffer, mode="wb", compresslevel=6)
            elif output.suffix == ".gz":
                target = gzip.open(output, "wb", compresslevel=6)
            else:
                target = output.open("wb")
            stack.enter_context(target)
            bar = stack.enter_context(_shared.tty_progress(progress, "export"))
            try:
                report = export_log(
                    store,
                    target,
                    after=after,
                    progress=bar,
                    with_followers=with_followers,
                    keys=not without_keys,
                )
            except ValueError as exc:
                raise click.UsageError(str(exc)) from exc
    finally:
        engine.close()
    if output_format == "json":
        click.echo(json.dumps(_transfer_dict(report)), err=output is None)
        return
    click.echo(
        f"exported {report.count} events ({report.after}, {report.until}] sha256 {report.sha256}",
        err=True,
    )


def _transfer_dict(report: TransferReport) -> dict[str, Any]:
    return {
        "count": report.count,
        "after": report.after,
        "until": report.until,
        "sha256": report.sha256,
        "chain": report.chain,
        "sections": list(report.sections),
    }


@main.command("import")
@click.argument("file", type=click.File("rb"))
@click.argument("database_url")
@click.option(
    "--append",
    is_flag=True,
    default=False,
    help="Continue a non-empty store's log (the file must start right after its head).",
)
@app_option(
    "Module defining the states and events, for the snapshot check and the completions "
    "of a version 1 file; repeatable."
)
@click.option(
    "--progress/--no-progress",
    default=None,
    help="Show a progress bar on stderr (default: on a terminal, not under CI).",
)
@click.option(
    "--forgotten",
    is_flag=True,
    default=False,
    help="Import sealed personal values whose keys the file lacks, as forgotten.",
)
@format_option("How to print the report: text, or json (one object).")
@click.pass_context
def import_command(
    ctx: click.Context,
    file: Any,
    database_url: str,
    append: bool,
    apps: tuple[str, ...],
    progress: bool | None,
    forgotten: bool,
    output_format: str,
) -> None:
    """Load an export (FILE, or - for stdin) into a store, keeping positions.

    The store must be empty unless --append, and then the file must start right
    after its head and continue its log (the header's chain hash). Checksums are
    checked before anything is committed, in one transaction with the tables the
    file carries; the import ends with verify's snapshot check.

        playthrough import log.jsonl.gz postgresql://db/app
    """
    engine = open_engine(database_url, apps, create=True, existing=False)
    with engine, _shared.tty_progress(progress, "import") as bar:
        try:
            report = engine.admin.import_log(file, append=append, progress=bar, forgotten=forgotten)
        except UnknownTypeError as exc:
            raise click.UsageError(
                f"{exc}\n(the events were imported; pass --app MODULE to check the snapshots)"
            ) from exc
        except PlaythroughError as exc:
            raise click.ClickException(str(exc)) from exc
    if output_format == "json":
        data = {
            **_transfer_dict(report),
            "store": shown_url(engine.store.url),
            "ok": report.ok,
            "verify": None if report.verify is None else report.verify.to_dict(),
        }
        click.echo(json.dumps(data, ensure_ascii=False))
        ctx.exit(0 if report.ok else 1)
    click.echo(
        f"imported {report.count} events ({report.after}, {report.until}] "
        f"into {engine.store.url}, sha256 {report.sha256}; "
        f"with {', '.join(report.sections) or 'the events only'}"
    )
    if report.verify is None:
        click.echo("snapshot check: the store holds no snapshots")
    else:
        click.echo(report.verify.to_text())
    ctx.exit(0 if report.ok else 1)


@main.command("archive")
@click.argument("database_url")
@click.option(
    "--before",
    required=True,
    metavar="POSITION|DATE",
    help="Archive the events before this position, or fired before this ISO date "
    "(a date without a time zone is UTC).",
)
@click.option(
    "--to",
    "to",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The archive file to write (gzip JSON Lines, the export format); must not exist.",
)
@app_option("Module defining the states and events (the cut's snapshots are rebuilt); repeatable.")
@click.option(
    "--vacuum",
    is_flag=True,
    default=False,
    help="Then give the deleted rows' space back (SQLite: VACUUM rewrites the file and "
    "needs as much free disk; PostgreSQL: VACUUM of the log's tables).",
)
@click.option(
    "--progress/--no-progress",
    default=None,
    help="Show a progress bar on stderr (default: on a terminal, not under CI).",
)
@format_option("How to print the report: text, or json (one object).")
def archive_command(
    database_url: str,
    before: str,
    to: Path,
    apps: tuple[str, ...],
    vacuum: bool,
    progress: bool | None,
    output_format: str,
) -> None:
    """Move the old part of the log to a file; loads after the cut stay exact.

    Writes a snapshot at the cut of every state touched before it, exports the
    archived events to --to, then deletes them in one transaction. Time travel
    before the cut then needs Engine.open(url, archive=FILE). The store keeps
    its size (new rows reuse the free space) unless --vacuum.

        playthrough archive sqlite:///app.db --before 2026-01-01 --to 2025.jsonl.gz --app myapp
    """
    cut: int | datetime
    if before.isdigit():
        cut = int(before)
    else:
        try:
            cut = datetime.fromisoformat(before)
        except ValueError as exc:
            raise click.BadParameter(
                f"{before!r} is neither a position nor an ISO date", param_hint="--before"
            ) from exc
        if cut.tzinfo is None:
            cut = cut.replace(tzinfo=UTC)
    engine = open_engine(database_url, apps, create=True)  # a writer: upgrades an old store
    with engine, _shared.progress_bar(progress) as bar:
        try:
            report = engine.admin.archive(before=cut, to=to, progress=bar, vacuum=vacuum)
        except UnknownTypeError as exc:
            unknown_type(exc)
        except PlaythroughError as exc:
            raise click.ClickException(str(exc)) from exc
    if output_format == "json":
        vacuumed = report.vacuumed
        data = {
            "after": report.after,
            "until": report.until,
            "events": report.events,
            "states": report.states,
            "path": report.path,
            "sha256": report.sha256,
            "vacuumed": None if vacuumed is None else {"before": vacuumed[0], "after": vacuumed[1]},
        }
        click.echo(json.dumps(data, ensure_ascii=False))
        return
    click.echo(
        f"archived {report.events} events ({report.after}, {report.until}] to {report.path} "
        f"(sha256 {report.sha256}); {report.states} states based at {report.until}"
    )
    if report.vacuumed is not None:
        was, now = report.vacuumed
        click.echo(f"vacuumed: {was / 1e6:.1f} MB -> {now / 1e6:.1f} MB")
