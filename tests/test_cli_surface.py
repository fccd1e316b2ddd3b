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
