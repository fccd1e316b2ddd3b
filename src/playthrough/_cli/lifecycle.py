"""The lifecycle's workers and lists: ``handlers``, ``scheduled``, ``reschedule``, ``scheduler``."""

from __future__ import annotations

import json
from datetime import datetime

import click

from .._errors import HandlerFailed, PlaythroughError, UnknownTypeError
from .._model import Event
from .._scheduling import ScheduledEvent
from ._group import main
from ._shared import app_option, describe, format_option, open_engine, unknown_type
from .read import _event_dict as event_dict


@main.command()
@click.argument("database_url")
@app_option()
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    default=1_000,
    show_default=True,
    help="Run the handlers of at most this many pending events (per pass).",
)
@click.option(
    "--forever",
    is_flag=True,
    default=False,
    help="Keep running, pass after pass (a long-running worker); stop it with Ctrl-C.",
)
@click.option(
    "--interval",
    type=click.FloatRange(min=0),
    default=1.0,
    show_default=True,
    metavar="SECONDS",
    help="With --forever: pause after a pass that completed nothing.",
)
@format_option(
    "text for a terminal; json: one object {ran, failed} (ran is null when some failed), "
    "or with --forever JSON Lines, one event a line with its outcome."
)
@click.pass_context
def handlers(
    ctx: click.Context,
    database_url: str,
    apps: tuple[str, ...],
    limit: int,
    forever: bool,
    interval: float,
    output_format: str,
) -> None:
    """Run the handle hooks that failed or that a crash interrupted.

    Committed events whose handlers have not completed are recorded in the
    store; this runs them (at least once: a handler may run again if it was
    running elsewhere, but what it fires is committed once however many
    runners there are). Exit status 0 when all completed, 1 when some failed
    again (each is listed), 2 for usage errors. With --forever it keeps
    running; failed handlers are listed and retried on later passes.

        playthrough handlers sqlite:///app.db --app mypackage.events
        playthrough handlers postgresql://app@db/app --app mypackage.events --forever
    """
    from .._handlers import serve

    as_json = output_format == "json"

    def report(event: Event, error: BaseException | None) -> None:  # --forever --format json
        outcome = "handled" if error is None else "failed"
        line = {**event_dict(event), "outcome": outcome, "error": _error(error)}
        click.echo(json.dumps(line, ensure_ascii=False))

    with open_engine(database_url, apps) as engine:
        try:
            if forever:
                serve(
                    engine,
                    interval=interval,
                    limit=limit,
                    echo=click.echo,
                    report=report if as_json else None,
                )
                return  # pragma: no cover - serve() without passes ends by an exception
            ran = engine.admin.run_pending_handlers(limit)
        except UnknownTypeError as exc:
            unknown_type(exc)
        except HandlerFailed as exc:
            if as_json:
                failed = [{**event_dict(e), "error": _error(err)} for e, err in exc.failures]
                out = {"ran": None, "failed": failed}  # which others ran is not reported
                click.echo(json.dumps(out, ensure_ascii=False))
                ctx.exit(1)
            click.echo(f"handlers failed again for {len(exc.failures)} event(s):")
            for event, error in exc.failures:
                click.echo(f"  {describe(event)}: {error!r}")
            ctx.exit(1)
        except PlaythroughError as exc:
            click.echo(f"Error: {exc}", err=True)
            ctx.exit(1)
        except KeyboardInterrupt:
            click.echo("stopped", err=True)
            return
    if as_json:
        click.echo(json.dumps({"ran": [event_dict(e) for e in ran], "failed": []}))
        return
    click.echo(f"ran the pending handlers of {len(ran)} event(s)")
    for event in ran:
        click.echo(f"  {describe(event)}")


def _error(error: BaseException | None) -> str | None:
    return None if error is None else f"{type(error).__name__}: {error}"


_STATUSES = ("pending", "fired", "cancelled", "rejected", "failed")


def _schedule_dict(r: ScheduledEvent) -> dict[str, object]:
    return {
        "id": r.id,
        "event_type": r.event_type,
        "due_at": r.due_at.isoformat(),
        "status": r.status,
        "position": r.position,
        "error": r.error,
    }


def _schedule_line(r: ScheduledEvent) -> str:
    where = f" at position {r.position}" if r.position is not None else ""
    error = f": {r.error}" if r.error else ""
    return f"{r.id} {r.event_type} due {r.due_at.isoformat()}: {r.status}{where}{error}"


@main.command()
@click.argument("database_url")
@click.option(
    "--status",
    type=click.Choice(_STATUSES),
    default=None,
    help="List only the scheduled events with this status (failed: those to re-arm).",
)
@format_option()
@click.pass_context
def scheduled(
    ctx: click.Context, database_url: str, status: str | None, output_format: str
) -> None:
    """List the scheduled events, oldest due first: id, type, due time, status, error.

    playthrough scheduled sqlite:///app.db --status failed
    """
    with open_engine(database_url) as engine, engine.store.reader() as reader:
        rows = reader.schedules(status)
    if output_format == "json":  # JSON Lines, one scheduled event a line
        for row in rows:
            click.echo(json.dumps(_schedule_dict(ScheduledEvent.from_record(row))))
        return
    for row in rows:
        click.echo(_schedule_line(ScheduledEvent.from_record(row)))
    if not rows:
        click.echo("no scheduled events" + (f" with status {status}" if status else ""))


@main.command()
@click.argument("database_url")
@click.argument("schedule_ids", nargs=-1, metavar="[ID]...")
@click.option(
    "--all-failed", is_flag=True, default=False, help="Re-arm every failed scheduled event."
)
@click.option(
    "--at",
    "at_text",
    default=None,
    metavar="ISO-TIME",
    help="When they are due again, with a time zone (default: now, the next pass fires them).",
)
@format_option("text for a terminal; json: JSON Lines, one re-armed scheduled event a line.")
@click.pass_context
def reschedule(
    ctx: click.Context,
    database_url: str,
    schedule_ids: tuple[str, ...],
    all_failed: bool,
    at_text: str | None,
    output_format: str,
) -> None:
    """Re-arm failed scheduled events (pending again, due now or --at), by id or all.

    Exit status 0 when every one was re-armed, 1 when some could not be (an
    unknown id, or a row that fired, was cancelled or rejected), 2 for usage errors.

        playthrough reschedule sqlite:///app.db --all-failed
        playthrough reschedule sqlite:///app.db 3f2a... --at 2030-01-01T09:00:00+00:00
    """
    if bool(schedule_ids) == all_failed:
        raise click.UsageError("give the ids of the scheduled events to re-arm, or --all-failed")
    at = None
    if at_text is not None:
        try:
            at = datetime.fromisoformat(at_text)
        except ValueError:
            raise click.BadParameter(
                f"{at_text!r} is not an ISO 8601 time", param_hint="--at"
            ) from None
        if at.tzinfo is None:
            raise click.BadParameter(
                f"{at_text!r} has no time zone (add +00:00 or Z)", param_hint="--at"
            )
    problems = 0
    with open_engine(database_url) as engine:
        ids = list(schedule_ids)
        if all_failed:
            with engine.store.reader() as reader:
                ids = [r.id for r in reader.schedules("failed")]
            if not ids and output_format == "text":
                click.echo("no failed scheduled events")
        for schedule_id in ids:
            try:
                done = engine.scheduler.reschedule(schedule_id, at=at)
            except PlaythroughError as exc:
                problems += 1
                click.echo(f"Error: {exc}", err=True)
                continue
            if output_format == "json":
                click.echo(json.dumps(_schedule_dict(done), ensure_ascii=False))
            else:
                click.echo(_schedule_line(done))
    ctx.exit(1 if problems else 0)


def _json_line(r: ScheduledEvent) -> None:
    click.echo(json.dumps(_schedule_dict(r), ensure_ascii=False))


@main.command()
@click.argument("database_url")
@app_option()
@click.option(
    "--interval",
    type=click.FloatRange(min=0),
    default=1.0,
    show_default=True,
    metavar="SECONDS",
    help="Pause between passes that found nothing due.",
)
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    default=100,
    show_default=True,
    help="Scheduled events leased and fired per pass.",
)
@click.option("--once", is_flag=True, default=False, help="Run one pass and exit.")
@click.option(
    "--until-idle",
    is_flag=True,
    default=False,
    help="Exit after the first pass that finds nothing due (drain, then stop).",
)
@format_option("text for a terminal; json: JSON Lines, one handled scheduled event a line.")
def scheduler(
    database_url: str,
    apps: tuple[str, ...],
    interval: float,
    limit: int,
    once: bool,
    until_idle: bool,
    output_format: str,
) -> None:
    """Fire scheduled events when they are due (a long-running worker).

    Run as many as you like against one store: each due event is fired exactly
    once. Prints one line per scheduled event handled. Stop it with Ctrl-C.

        playthrough scheduler postgresql://app@db/app --app mypackage.events
    """
    from .._scheduling import serve

    with open_engine(database_url, apps, create=True) as engine:
        try:
            serve(
                engine,
                interval=interval,
                limit=limit,
                passes=1 if once else None,
                until_idle=until_idle,
                echo=click.echo,
                report=_json_line if output_format == "json" else None,
            )
        except UnknownTypeError as exc:  # the row was given back for a worker that knows it
            unknown_type(exc)
        except KeyboardInterrupt:
            click.echo("stopped", err=True)
