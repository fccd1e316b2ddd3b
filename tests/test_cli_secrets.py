"""No output of any CLI command contains a password from a URL.

Every command that takes a DATABASE_URL is run (found by introspection, so a
new command is covered too) with URLs that carry a password in the user info
or as a ``password=`` option, on paths that fail in different places: a server
that refuses the connection, a malformed URL, a store that opens. Neither
stdout, stderr, the exception text nor a JUnit file may contain the password.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

import click
import pytest
from click.testing import CliRunner

from playthrough._cli import main

SECRET = "S3cret-Pa55"


def _url_commands() -> list[str]:
    found = []
    for name, command in main.commands.items():
        if any(isinstance(p, click.Argument) and p.name == "database_url" for p in command.params):
            found.append(name)
    return sorted(found)


def test_the_commands_that_take_a_url_are_known() -> None:
    assert _url_commands() == [
        "archive",
        "events",
        "explain",
        "export",
        "follow",
        "followers",
        "handlers",
        "history",
        "import",
        "info",
        "repair",
        "reschedule",
        "scheduled",
        "scheduler",
        "schema",
        "serve",
        "snapshot",
        "states",
        "verify",
    ]


def _urls(pg_url: str | None) -> list[str]:
    urls = [
        f"postgresql://root:{SECRET}@127.0.0.1:1/test",  # refused
        f"postgresql://root@127.0.0.1:1/test?password={SECRET}",  # refused, password option
        f"postgresql://root:{SECRET}@127.0.0.1:notaport/test",  # malformed
        f"postgresql://root:{SECRET}@[::1/test",  # unparsable
    ]
    if pg_url is not None:  # a server that answers (it may ignore the password)
        parts = urlsplit(pg_url)
        user = parts.username or "root"
        host = parts.hostname or "127.0.0.1"
        urls.append(f"postgresql://{user}:{SECRET}@{host}:{parts.port or 5432}{parts.path}")
    return urls


def _pg_url_or_none(request: pytest.FixtureRequest) -> str | None:
    from .conftest import _check_pg

    return None if _check_pg() is not None else str(request.getfixturevalue("pg_url"))


@pytest.mark.parametrize("command", _url_commands())
def test_no_password_in_any_output(
    command: str, tmp_path: Path, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    if command == "serve":  # the inspector answers two requests instead of serving forever
        import uvicorn
        from starlette.testclient import TestClient

        def answer(app: object, **kwargs: object) -> None:
            client = TestClient(app)  # type: ignore[arg-type]
            for path in ("/log", "/api/events", "/api/events/99"):
                click.echo(client.get(path).text)

        monkeypatch.setattr(uvicorn, "run", answer)
    runner = CliRunner()
    for url in _urls(_pg_url_or_none(request)):
        junit = tmp_path / "report.xml"
        cmd = main.commands[command]
        args = [command] + [
            url if p.name == "database_url" else "1" if p.name == "id" else str(tmp_path / "f")
            for p in cmd.params
            if isinstance(p, click.Argument)
        ]
        if any(p.name == "apps" for p in cmd.params):
            args += ["--app", "playthrough.examples.bank"]
        if command == "scheduler":
            args += ["--once"]  # one pass, not a worker that runs until stopped
        if command == "verify":
            args += ["--junit-xml", str(junit), "--format", "json", "--no-subprocess"]
        result = runner.invoke(main, args)
        shown = result.output + (result.stderr if result.stderr_bytes else "")
        assert SECRET not in shown, (url, shown)
        assert SECRET not in repr(result.exception), url
        if junit.exists():
            assert SECRET not in junit.read_text()
            junit.unlink()
        assert result.exit_code in (0, 1, 2), (url, shown)
