"""The README's tour runs as written (on a temporary database)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

# the tour defines classes with short names: they leave the registry after each test
pytestmark = pytest.mark.usefixtures("isolated_registry")

README = Path(__file__).resolve().parent.parent / "README.md"


def test_readme_tour_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert blocks, "the README has no python block"
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {"__name__": "readme_tour"}
    exec(compile(blocks[0], str(README), "exec"), namespace)
    assert (tmp_path / "bank.db").exists()
    committed = namespace["committed"]
    assert isinstance(committed, list) and [e.id for e in committed] == [1, 2]


def test_readme_engine_per_request_example_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert len(blocks) >= 2 and "playthrough.connect" in blocks[1]
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {"__name__": "readme_tour"}
    exec(compile(blocks[0], str(README), "exec"), namespace)  # the classes and bank.db
    exec(compile(blocks[1], str(README), "exec"), namespace)  # asserts its own result


def test_readme_names_the_test_command_ci_runs() -> None:
    ci = (README.parent / ".ci" / "run").read_text()
    command = ".venv/bin/python -m pytest -n auto --dist loadfile"
    assert command in README.read_text()
    assert command in ci


def test_readme_read_side_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    [reading] = [b for b in blocks if "engine.states.find(" in b]
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {"__name__": "readme_tour"}
    exec(compile(blocks[0], str(README), "exec"), namespace)  # the classes and bank.db
    exec(compile(reading, str(README), "exec"), namespace)  # asserts its own results


@pytest.mark.postgres
def test_readme_moving_story_ends_with_verify_and_the_scheduler(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pg_url: str, pg_schema: str
) -> None:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    [moving] = [b for b in blocks if "import_log(" in b]
    assert "prod.admin.verify().ok" in moving and "run_due()" in moving
    story = moving.replace(
        "postgresql://root@127.0.0.1:5432/test?schema=bank", f"{pg_url}?schema={pg_schema}"
    )
    assert story != moving
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {"__name__": "readme_tour"}
    exec(compile(blocks[0], str(README), "exec"), namespace)  # the classes and bank.db
    exec(compile(story, str(README), "exec"), namespace)  # asserts its own results


def test_readme_async_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    [example] = [b for b in blocks if "playthrough.aio.connect(" in b]
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {"__name__": "readme_tour"}
    exec(compile(blocks[0], str(README), "exec"), namespace)  # the classes and bank.db
    exec(compile(example, str(README), "exec"), namespace)  # asserts its own results


def test_readme_pictures_and_history_example_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    [pictures] = [b for b in blocks if "to_mermaid" in b]
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {"__name__": "readme_tour"}
    exec(compile(blocks[0], str(README), "exec"), namespace)  # the classes and bank.db
    capsys.readouterr()
    exec(compile(pictures, str(README), "exec"), namespace)
    out = capsys.readouterr().out
    assert out.startswith("flowchart LR\n") and "n0[" in out
    assert "\n2 Transferred [('balance', 0, 30)]\n" in out
