"""``playthrough snapshot`` and ``playthrough repair``: bring a store's derived rows up to date."""

from __future__ import annotations

import json

import click

from .._errors import PlaythroughError, UnknownTypeError
from . import _shared
from ._group import main
from ._shared import app_option, format_option, open_engine, unknown_type


@main.command()
@click.argument("database_url")
@app_option()
@click.option(
    "--rebuild",
    is_flag=True,
    help="Drop every snapshot and rebuild them all from the log (a full replay, resumable).",
)
@click.option(
    "--every",
    type=click.IntRange(min=1),
    default=10_000,
    show_default=True,
    help="Write a snapshot set (and free memory) every N events of a pass over the log.",
)
@click.option(
    "--progress/--no-progress",
    default=None,
    help="Show a progress bar on stderr (default: on a terminal, not under CI).",
)
@format_option("How to print the report on stdout.")
def snapshot(
    database_url: str,
    apps: tuple[str, ...],
    rebuild: bool,
    every: int,
    progress: bool | None,
    output_format: str,
) -> None:
    """Bring a store's shortcuts up to date: snapshots and heads values at the current
    class versions, and a current value for every state.

    1. Snapshots and heads values not at their class's current version and
       fingerprint are rewritten at their positions: upcast when the class has
       upcasters from their version, rebuilt from the log otherwise (exact).
    2. One pass over the log in bounded memory gives every state a current
       heads value (existing snapshots are kept), so cold loads read one row.

    Run it after deploying a change to state classes, or once on a store
    written before heads values existed. With --rebuild, every snapshot is
    dropped and rebuilt by a full replay, which resumes where an interrupted
    one stopped. Example:

        playthrough snapshot sqlite:///app.db --app mypackage.events
    """
    from .._schema import rewrite_snapshots

    result: dict[str, object] = {}
    lines: list[str] = []
    engine = open_engine(database_url, apps, create=True)
    with engine, _shared.progress_bar(progress) as bar:
        step = None if bar is None else (lambda done, total: bar("values", done, total))
        try:
            if rebuild:
                report = engine.admin.replay(progress=step, snapshot_every=every)
                result["mode"] = "rebuild"
                lines.append("rebuilt every snapshot from the log")
            else:
                rewritten = rewrite_snapshots(engine.store)
                result.update(mode="rewrite", **rewritten.to_dict())
                lines.append(
                    f"{rewritten.checked} outdated snapshot(s) or value(s): {rewritten.upcast} "
                    f"upcast, {rewritten.rebuilt} rebuilt from the log"
                )
                report = engine.admin.fill_head_values(progress=step, snapshot_every=every)
        except UnknownTypeError as exc:
            unknown_type(exc)
    result.update(
        events=report.played,
        position=report.position,
        snapshot_sets=report.snapshot_sets,
        peak_states=report.peak_states,
    )
    lines.append(
        f"played {report.played} event(s) up to position {report.position}, "
        f"{report.snapshot_sets} snapshot set(s), at most {report.peak_states} state(s) in memory"
    )
    click.echo(json.dumps(result, indent=2) if output_format == "json" else "\n".join(lines))


@main.command()
@click.argument("database_url")
@app_option()
@format_option()
@click.pass_context
def repair(
    ctx: click.Context, database_url: str, apps: tuple[str, ...], output_format: str
) -> None:
    """Rebuild the heads rows (each state's last event) from the state-event links.

    A heads row that lags behind its links makes the state uncommittable (every
    commit is refused as stale); ``playthrough verify`` reports such rows. The
    links are the record of which events touched which state; this makes every
    heads row agree with them, under the append lock. Example:

        playthrough repair sqlite:///app.db --app mypackage.events
    """
    with open_engine(database_url, apps) as engine:
        try:
            changed = engine.store.rebuild_heads()
        except PlaythroughError as exc:
            click.echo(f"Error: {exc}", err=True)
            ctx.exit(1)
    if output_format == "json":
        click.echo(json.dumps({"changed": changed}))
    else:
        click.echo(f"rebuilt heads from the links: {changed} row(s) changed")
