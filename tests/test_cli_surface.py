"""The command line as a whole: what every command offers, checked over all of them.

Commands are found on the group, so a command added later is covered too.
"""

from __future__ import annotations

import attrs
import click
import pytest
from click.testing import CliRunner

from playthrough import Engine, Event
from playthrough._cli import main


def _commands() -> list[str]:
    return sorted(main.commands)


@pytest.mark.parametrize("name", ["", *_commands()])
def test_dash_h_is_help_everywhere(name: str) -> None:
    args = [name] if name else []
    short = CliRunner().invoke(main, [*args, "-h"])
    long = CliRunner().invoke(main, [*args, "--help"])
    assert short.exit_code == 0, short.output
    assert short.output == long.output
    assert "Usage:" in short.output


def test_verify_options_are_the_engine_verify_options() -> None:
    """The verify command's checks are VerifyOptions' fields, option for field."""
    import attrs

    from playthrough._verify import VerifyOptions

    command = main.commands["verify"]
    params = {p.name for p in command.params if isinstance(p, click.Option)}
    fields = {f.name for f in attrs.fields(VerifyOptions)}
    cli_only = {"output_format", "junit_xml", "progress", "allow_empty", "help"}
    engine_only = {"url", "determinism"}  # the CLI gives its DATABASE_URL; it always replays
    assert params - cli_only == fields - engine_only


def test_the_readme_lists_every_command() -> None:
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    listed = set(re.findall(r"^- `playthrough ([a-z]+)\b", readme, re.M))
    assert listed == set(main.commands)


def test_json_output_is_one_object_or_json_lines(tmp_path: object) -> None:
    """Lists print JSON Lines (nothing for an empty list), reports one object."""
    import json
    from pathlib import Path

    from playthrough import Engine
    from playthrough.examples.bank import story

    assert isinstance(tmp_path, Path)
    url = f"sqlite:///{tmp_path / 'bank.db'}"
    with Engine.open(url) as engine:
        story(engine)
    app = ["--app", "playthrough.examples.bank"]

    def run(*args: str) -> str:
        result = CliRunner().invoke(main, [*args, "--format", "json"], catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return result.output

    assert run("scheduled", url) == "" and run("followers", url, *app) == ""
    assert json.loads(run("repair", url, *app)) == {"changed": 0}
    info = json.loads(run("info", url, "bank.Account", "1", *app))
    assert info["completed"] is None and info["events"] >= 1
    lines = run("events", url, *app).splitlines()
    assert lines and all(isinstance(json.loads(x), dict) for x in lines)


#: Commands with no text output of their own: serve starts a web server.
_NO_TEXT = {"serve"}


@pytest.mark.parametrize("name", sorted(set(_commands()) - _NO_TEXT))
def test_every_command_with_text_output_speaks_json(name: str) -> None:
    command = main.commands[name]
    [option] = [p for p in command.params if "--format" in getattr(p, "opts", ())]
    assert isinstance(option.type, click.Choice) and "json" in option.type.choices


def test_the_lifecycle_and_transfer_commands_as_json(tmp_path: object) -> None:
    """handlers (one object), reschedule and scheduler (JSON Lines), export, import,
    archive and follow (one object each)."""
    import json
    from datetime import UTC, datetime
    from pathlib import Path

    from playthrough import Engine
    from playthrough.examples.bank import Deposited, story

    assert isinstance(tmp_path, Path)
    url = f"sqlite:///{tmp_path / 'bank.db'}"
    with Engine.open(url) as engine:
        story(engine)
        engine.scheduler.schedule(Deposited(account_id=1, amount=5), at=datetime.now(UTC))
        engine.scheduler.schedule(Deposited(account_id=1, amount=-5), at=datetime.now(UTC))
        engine.commit()
    app = ["--app", "playthrough.examples.bank"]

    def run(*args: str, code: int = 0) -> str:
        result = CliRunner().invoke(main, [*args, "--format", "json"], catch_exceptions=False)
        assert result.exit_code == code, result.output
        return result.stdout

    assert json.loads(run("handlers", url, *app)) == {"ran": [], "failed": []}
    handled = [json.loads(x) for x in run("scheduler", url, *app, "--until-idle").splitlines()]
    assert sorted(r["status"] for r in handled) == ["fired", "rejected"]
    assert run("reschedule", url, "--all-failed") == ""  # nothing failed: an empty stream
    exported = tmp_path / "log.jsonl.gz"
    summary = json.loads(run("export", url, "-o", str(exported)))
    assert summary["count"] >= 7 and summary["after"] == 0
    copy = f"sqlite:///{tmp_path / 'copy.db'}"
    imported = json.loads(run("import", str(exported), copy, *app))
    assert imported["count"] == summary["count"] and imported["ok"] is True
    assert imported["store"].endswith("copy.db")
    archived = json.loads(
        run("archive", copy, "--before", "3", "--to", str(tmp_path / "a.gz"), *app)
    )
    assert (archived["until"], archived["events"], archived["vacuumed"]) == (2, 2, None)
    spec = "playthrough.examples.balances:OwnerBalances"
    followed = json.loads(run("follow", url, *app, "--projection", spec, "--until-idle"))
    assert followed["name"] and followed["position"] == summary["until"]


@attrs.define
class CliSurfaceFailingHandler(Event, type_name="cli_surface.FailingHandler"):
    def handle(self, engine: Engine) -> None:
        raise RuntimeError("side effect failed")


def test_handlers_forever_reports_each_event_to_its_reporter() -> None:
    """``handlers --forever --format json`` prints one line per event through ``report``."""
    from playthrough._handlers import serve

    seen: list[tuple[str, object]] = []
    with Engine.open("sqlite://") as engine:
        engine.fire(CliSurfaceFailingHandler())
        engine.commit()  # its handler failed: pending
        done = serve(
            engine,
            passes=1,
            echo=lambda line: seen.append(("text", line)),
            report=lambda event, error: seen.append((type(event).__name__, repr(error))),
            sleep=lambda _: None,
        )
    assert done == 0
    assert seen == [("CliSurfaceFailingHandler", "RuntimeError('side effect failed')")]
