"""The command line as a whole: what every command offers, checked over all of them.

Commands are found on the group, so a command added later is covered too.
"""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner

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
