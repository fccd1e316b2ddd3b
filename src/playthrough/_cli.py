"""The ``playthrough`` command (click)."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from ._engine import Engine
from ._errors import ConfigurationError, StoreError
from ._model import Event, State
from ._scheduling import ScheduledEvent
from ._stores import Store, open_store, parse_store_url, sqlite_url

if TYPE_CHECKING:
    from rich.progress import TaskID


def _describe(event: Event) -> str:
    fields = {k: v for k, v in _fields(event).items()}
    args = ", ".join(f"{k}={v!r}" for k, v in fields.items())
    cause = f"  (caused by #{event.caused_by})" if event.caused_by is not None else ""
    return f"#{event.id} {type(event).__name__}({args}){cause}"


def _fields(obj: object) -> dict[str, object]:
    import attrs

    return attrs.asdict(obj, recurse=False)  # type: ignore[arg-type]


_F = TypeVar("_F", bound=Callable[..., Any])


def app_option(
    help: str = "Module defining the states and events (imported so they register); repeatable.",
) -> Callable[[_F], _F]:
    """``--app MODULE`` (repeatable), the option every command that reads stored events takes."""
    return click.option("--app", "apps", multiple=True, metavar="MODULE", help=help)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="playthrough")
def main() -> None:
    """playthrough: event-sourced states, where every load is a playthrough of one log."""


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
        from .examples import bank

        story = bank.story
        loads = [
            ("account 1", lambda e: e.load(bank.Account, 1)),
            ("account 2", lambda e: e.load(bank.Account, 2)),
            ("ledger", lambda e: e.load(bank.Ledger)),
        ]
        explain_target: tuple[type[State], object] = (bank.Account, 2)
    else:
        from .examples import game

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
        click.echo(f"  {_describe(event)}")

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
        from ._cli_see import demo_rewind

        demo_rewind(story, cls, state_id)
    click.echo(f"\nthe log is in {db_path}")


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
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="How to print the report on stdout.",
)
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
@click.option(
    "--progress/--no-progress",
    default=None,
    help="Show a progress bar on stderr (default: on a terminal, not under CI).",
)
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
    database_url: str,
    apps: tuple[str, ...],
    output_format: str,
    junit_xml: Path | None,
    sample: int | None,
    seed: int,
    start: int | None,
    end: int | None,
    time_budget: float | None,
    strict_sync: bool,
    subprocess_replay: bool | None,
    progress: bool | None,
    allow_empty: bool,
) -> None:
    """Check a store: snapshots against the log, deterministic replay, snapshot sync.

    DATABASE_URL is a store URL (sqlite:///path.db, postgresql://...) or the
    path of a SQLite file. Example:

        playthrough verify sqlite:///app.db --app mypackage.events
    """
    import json

    from ._errors import UnknownTypeError
    from ._verify import VerifyInterrupted

    if allow_empty and _no_sqlite_file(database_url):
        click.echo(f"{public_url(database_url)}: no store there, nothing to check (--allow-empty)")
        ctx.exit(0)
    url = _existing_store_url(database_url)
    _import_apps(apps)
    engine = _open_without_creating(ctx, database_url, url, allow_empty)
    with engine, _progress_bar(progress) as report_progress:
        if engine.head() == 0 and not allow_empty:
            click.echo(
                f"Error: the store at {public_url(database_url)} is empty: nothing to verify "
                "(pass --allow-empty to accept that)",
                err=True,
            )
            ctx.exit(1)
        try:
            report = engine.verify(
                sample=sample,
                seed=seed,
                start=start,
                end=end,
                time_budget=time_budget,
                strict_sync=strict_sync,
                progress=report_progress,
                apps=apps,
                url=url,
                subprocess_replay=subprocess_replay,
            )
        except VerifyInterrupted as stopped:  # Ctrl-C: what was found so far, then 130
            report = stopped.report
        except UnknownTypeError as exc:
            raise click.UsageError(
                f"{exc}\n(pass the module that defines it with --app MODULE)"
            ) from exc
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


_APP_OPTION = app_option()
_FORMAT_OPTION = click.option(
    "--format",
    "output_format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="How to print the report on stdout.",
)


def _open_existing(database_url: str, apps: tuple[str, ...], *, create: bool = True) -> Engine:
    """An engine on the store; ``create=False`` (commands that only read): never create
    or migrate one, and a missing store is an error (exit status 1)."""
    from ._errors import PlaythroughError
    from ._stores._base import NoStoreError

    url = _existing_store_url(database_url)
    _import_apps(apps)
    try:
        return Engine.open(url, create=create)
    except NoStoreError as exc:
        raise click.ClickException(str(exc)) from exc
    except PlaythroughError as exc:
        raise click.UsageError(f"cannot open {public_url(database_url)}: {exc}") from exc


@main.command(
    epilog="""\b
Exit status: 0 when this code reads every stored event and can use every stored
snapshot and heads value, 1 when it cannot, 2 for usage errors.
"""
)
@click.argument("database_url")
@_APP_OPTION
@_FORMAT_OPTION
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

    from ._schema import schema_report

    with _open_existing(database_url, apps, create=False) as engine:
        report = schema_report(engine.store, sample=None if decode_all else sample)
    if output_format == "json":
        click.echo(json.dumps(report.to_dict(), indent=2, ensure_ascii=False))
    else:
        click.echo(report.to_text())
    ctx.exit(0 if report.ok else 1)


@main.command()
@click.argument("database_url")
@_APP_OPTION
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
@click.pass_context
def handlers(
    ctx: click.Context,
    database_url: str,
    apps: tuple[str, ...],
    limit: int,
    forever: bool,
    interval: float,
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
    from ._errors import HandlerFailed, PlaythroughError, UnknownTypeError
    from ._handlers import serve

    url = _existing_store_url(database_url)
    _import_apps(apps)
    engine = _open_without_creating(ctx, database_url, url, allow_empty=False)
    with engine:
        try:
            if forever:
                serve(engine, interval=interval, limit=limit, echo=click.echo)
                return  # pragma: no cover - serve() without passes ends by an exception
            ran = engine.run_pending_handlers(limit)
        except UnknownTypeError as exc:
            raise click.UsageError(
                f"{exc}\n(pass the module that defines it with --app MODULE)"
            ) from exc
        except HandlerFailed as exc:
            click.echo(f"handlers failed again for {len(exc.failures)} event(s):")
            for event, error in exc.failures:
                click.echo(f"  {_describe(event)}: {error!r}")
            ctx.exit(1)
        except PlaythroughError as exc:
            click.echo(f"Error: {exc}", err=True)
            ctx.exit(1)
        except KeyboardInterrupt:
            click.echo("stopped", err=True)
            return
    click.echo(f"ran the pending handlers of {len(ran)} event(s)")
    for event in ran:
        click.echo(f"  {_describe(event)}")


_STATUSES = ("pending", "fired", "cancelled", "rejected", "failed")


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
@click.pass_context
def scheduled(ctx: click.Context, database_url: str, status: str | None) -> None:
    """List the scheduled events, oldest due first: id, type, due time, status, error.

    playthrough scheduled sqlite:///app.db --status failed
    """
    url = _existing_store_url(database_url)
    with _open_without_creating(ctx, database_url, url, allow_empty=False) as engine:
        with engine.store.reader() as reader:
            rows = reader.schedules(status)
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
@click.pass_context
def reschedule(
    ctx: click.Context,
    database_url: str,
    schedule_ids: tuple[str, ...],
    all_failed: bool,
    at_text: str | None,
) -> None:
    """Re-arm failed scheduled events (pending again, due now or --at), by id or all.

    Exit status 0 when every one was re-armed, 1 when some could not be (an
    unknown id, or a row that fired, was cancelled or rejected), 2 for usage errors.

        playthrough reschedule sqlite:///app.db --all-failed
        playthrough reschedule sqlite:///app.db 3f2a... --at 2030-01-01T09:00:00+00:00
    """
    from ._errors import PlaythroughError

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
    url = _existing_store_url(database_url)
    problems = 0
    with _open_without_creating(ctx, database_url, url, allow_empty=False) as engine:
        ids = list(schedule_ids)
        if all_failed:
            with engine.store.reader() as reader:
                ids = [r.id for r in reader.schedules("failed")]
            if not ids:
                click.echo("no failed scheduled events")
        for schedule_id in ids:
            try:
                done = engine.reschedule(schedule_id, at=at)
            except PlaythroughError as exc:
                problems += 1
                click.echo(f"Error: {exc}", err=True)
                continue
            click.echo(_schedule_line(done))
    ctx.exit(1 if problems else 0)


@main.command()
@click.argument("database_url")
@app_option()
@click.pass_context
def repair(ctx: click.Context, database_url: str, apps: tuple[str, ...]) -> None:
    """Rebuild the heads rows (each state's last event) from the state-event links.

    A heads row that lags behind its links makes the state uncommittable (every
    commit is refused as stale); ``playthrough verify`` reports such rows. The
    links are the record of which events touched which state; this makes every
    heads row agree with them, under the append lock. Example:

        playthrough repair sqlite:///app.db --app mypackage.events
    """
    from ._errors import PlaythroughError

    url = _existing_store_url(database_url)
    _import_apps(apps)
    engine = _open_without_creating(ctx, database_url, url, allow_empty=False)
    with engine:
        try:
            changed = engine.store.rebuild_heads()
        except PlaythroughError as exc:
            click.echo(f"Error: {exc}", err=True)
            ctx.exit(1)
    click.echo(f"rebuilt heads from the links: {changed} row(s) changed")


def _open_without_creating(ctx: click.Context, given: str, url: str, allow_empty: bool) -> Engine:
    """An engine on a store that exists: commands never create (or migrate) one."""
    from ._errors import PlaythroughError
    from ._stores._base import NoStoreError

    try:
        return Engine.open(url, create=False)
    except NoStoreError as exc:
        if allow_empty:
            click.echo(f"{public_url(given)}: no store there, nothing to check (--allow-empty)")
            ctx.exit(0)
        click.echo(f"Error: {exc}", err=True)
        ctx.exit(1)
    except PlaythroughError as exc:
        raise click.UsageError(f"cannot open {public_url(given)}: {exc}") from exc
    raise AssertionError("unreachable")  # pragma: no cover - ctx.exit raises


def public_url(text: str) -> str:
    """The URL as every message shows it: without a password, wherever the URL put one."""
    try:
        return parse_store_url(text).redacted()
    except (StoreError, ConfigurationError):
        return "(the DATABASE_URL given)"  # unparsable: showing it could show a password


def _password_in(text: str) -> str | None:
    """The password a URL carries (in its user info or a ``password=`` option), if any."""
    from urllib.parse import parse_qsl, unquote, urlsplit

    try:
        parts = urlsplit(text)
        userinfo, at, _ = parts.netloc.rpartition("@")
        if at and ":" in userinfo:
            return unquote(userinfo.partition(":")[2]) or None
        return dict(parse_qsl(parts.query)).get("password") or None
    except ValueError:
        return None


@main.command()
@click.argument("database_url")
@_APP_OPTION
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
@_FORMAT_OPTION
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
    import json

    from ._errors import UnknownTypeError
    from ._schema import rewrite_snapshots

    result: dict[str, object] = {}
    lines: list[str] = []
    with _open_existing(database_url, apps) as engine, _progress_bar(progress) as bar:
        step = None if bar is None else (lambda done, total: bar("values", done, total))
        try:
            if rebuild:
                report = engine.replay(progress=step, snapshot_every=every)
                result["mode"] = "rebuild"
                lines.append("rebuilt every snapshot from the log")
            else:
                rewritten = rewrite_snapshots(engine.store)
                result.update(mode="rewrite", **rewritten.to_dict())
                lines.append(
                    f"{rewritten.checked} outdated snapshot(s) or value(s): {rewritten.upcast} "
                    f"upcast, {rewritten.rebuilt} rebuilt from the log"
                )
                report = engine.fill_head_values(progress=step, snapshot_every=every)
        except UnknownTypeError as exc:
            raise click.UsageError(
                f"{exc}\n(pass the module that defines it with --app MODULE)"
            ) from exc
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


@contextmanager
def _tty_progress(wanted: bool | None, label: str) -> Iterator[Callable[[int, int], None] | None]:
    with _progress_bar(wanted) as update:
        if update is None:
            yield None
        else:
            yield lambda done, total: update(label, done, total)


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
def export_command(
    database_url: str,
    after: int,
    output: Path | None,
    progress: bool | None,
    with_followers: bool,
    without_keys: bool,
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

    from ._transfer import export_log

    url = _existing_store_url(database_url)
    if output is None and sys.stdout.isatty():
        raise click.UsageError("refusing to write compressed data to a terminal: redirect stdout")
    store = _open_store_for_cli(url, database_url)
    try:
        with contextlib.ExitStack() as stack:
            if output is None:
                target: Any = gzip.GzipFile(fileobj=sys.stdout.buffer, mode="wb", compresslevel=6)
            elif output.suffix == ".gz":
                target = gzip.open(output, "wb", compresslevel=6)
            else:
                target = output.open("wb")
            stack.enter_context(target)
            bar = stack.enter_context(_tty_progress(progress, "export"))
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
        store.close()
    click.echo(
        f"exported {report.count} events ({report.after}, {report.until}] sha256 {report.sha256}",
        err=True,
    )


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
@click.pass_context
def import_command(
    ctx: click.Context,
    file: Any,
    database_url: str,
    append: bool,
    apps: tuple[str, ...],
    progress: bool | None,
    forgotten: bool,
) -> None:
    """Load an export (FILE, or - for stdin) into a store, keeping positions.

    The store must be empty unless --append, and then the file must start right
    after its head and continue its log (the header's chain hash). Checksums are
    checked before anything is committed, in one transaction with the tables the
    file carries; the import ends with verify's snapshot check.

        playthrough import log.jsonl.gz postgresql://db/app
    """
    from ._errors import PlaythroughError, UnknownTypeError

    _import_apps(apps)
    try:
        engine = Engine.open(database_url)
    except PlaythroughError as exc:
        raise click.UsageError(f"cannot open {public_url(database_url)}: {exc}") from exc
    with engine, _tty_progress(progress, "import") as bar:
        try:
            report = engine.import_log(file, append=append, progress=bar, forgotten=forgotten)
        except UnknownTypeError as exc:
            raise click.UsageError(
                f"{exc}\n(the events were imported; pass --app MODULE to check the snapshots)"
            ) from exc
        except PlaythroughError as exc:
            raise click.ClickException(str(exc)) from exc
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
def archive_command(
    database_url: str,
    before: str,
    to: Path,
    apps: tuple[str, ...],
    vacuum: bool,
    progress: bool | None,
) -> None:
    """Move the old part of the log to a file; loads after the cut stay exact.

    Writes a snapshot at the cut of every state touched before it, exports the
    archived events to --to, then deletes them in one transaction. Time travel
    before the cut then needs Engine.open(url, archive=FILE). The store keeps
    its size (new rows reuse the free space) unless --vacuum.

        playthrough archive sqlite:///app.db --before 2026-01-01 --to 2025.jsonl.gz --app myapp
    """
    from datetime import UTC, datetime

    from ._errors import PlaythroughError, UnknownTypeError

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
    url = _existing_store_url(database_url)
    _import_apps(apps)
    try:
        engine = Engine.open(url)  # a writer: upgrades an old store, as its help says
    except PlaythroughError as exc:
        raise click.UsageError(f"cannot open {public_url(database_url)}: {exc}") from exc
    with engine, _progress_bar(progress) as bar:
        try:
            report = engine.archive(before=cut, to=to, progress=bar, vacuum=vacuum)
        except UnknownTypeError as exc:
            raise click.UsageError(
                f"{exc}\n(pass the module that defines it with --app MODULE)"
            ) from exc
        except PlaythroughError as exc:
            raise click.ClickException(str(exc)) from exc
    click.echo(
        f"archived {report.events} events ({report.after}, {report.until}] to {report.path} "
        f"(sha256 {report.sha256}); {report.states} states based at {report.until}"
    )
    if report.vacuumed is not None:
        was, now = report.vacuumed
        click.echo(f"vacuumed: {was / 1e6:.1f} MB -> {now / 1e6:.1f} MB")


def _open_store_for_cli(url: str, given: str) -> Store:
    from ._errors import PlaythroughError

    try:
        return open_store(url)
    except PlaythroughError as exc:
        raise click.UsageError(f"cannot open {public_url(given)}: {exc}") from exc


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
def scheduler(
    database_url: str,
    apps: tuple[str, ...],
    interval: float,
    limit: int,
    once: bool,
    until_idle: bool,
) -> None:
    """Fire scheduled events when they are due (a long-running worker).

    Run as many as you like against one store: each due event is fired exactly
    once. Prints one line per scheduled event handled. Stop it with Ctrl-C.

        playthrough scheduler postgresql://app@db/app --app mypackage.events
    """
    from ._errors import PlaythroughError, UnknownTypeError
    from ._scheduling import serve

    url = _existing_store_url(database_url)
    _import_apps(apps)
    try:
        engine = Engine.open(url)
    except PlaythroughError as exc:
        raise click.UsageError(f"cannot open {public_url(database_url)}: {exc}") from exc
    with engine:
        try:
            serve(
                engine,
                interval=interval,
                limit=limit,
                passes=1 if once else None,
                until_idle=until_idle,
                echo=click.echo,
            )
        except UnknownTypeError as exc:  # the row was given back for a worker that knows it
            raise click.UsageError(
                f"{exc}\n(pass the module that defines it with --app MODULE)"
            ) from exc
        except KeyboardInterrupt:
            click.echo("stopped", err=True)


def _no_sqlite_file(text: str) -> bool:
    """Whether ``text`` names a SQLite file (a path or a file URL) that does not exist."""
    if "://" not in text:
        return not Path(text).exists()
    try:
        parsed = parse_store_url(text)
    except StoreError:
        return False  # _existing_store_url says what is wrong with it
    return (
        parsed.kind == "sqlite"
        and not parsed.is_memory
        and (parsed.path is None or not Path(parsed.path).exists())
    )


def _existing_store_url(text: str) -> str:
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
        parsed = parse_store_url(text)
    except (StoreError, ConfigurationError) as exc:
        message = str(exc)
        password = _password_in(text)
        if password:
            message = message.replace(password, "***")
        raise click.BadParameter(message, param_hint="DATABASE_URL") from exc
    if parsed.kind == "sqlite":
        if parsed.is_memory:
            raise click.BadParameter(
                "an in-memory database is empty: nothing to verify", param_hint="DATABASE_URL"
            )
        if parsed.path is None or not Path(parsed.path).is_file():
            raise click.BadParameter(f"no SQLite file at {parsed.path}", param_hint="DATABASE_URL")
    return text


def _import_apps(apps: tuple[str, ...]) -> None:
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
def _progress_bar(wanted: bool | None) -> Iterator[Callable[[str, int, int], None] | None]:
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


if __name__ == "__main__":  # pragma: no cover
    main()

from . import _cli_read  # noqa: E402, F401 - registers events, states, info, followers
