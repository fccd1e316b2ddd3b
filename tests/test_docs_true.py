"""The docs name only what exists: file paths in design/, README and CONTRIBUTING, the version.

A path is a backquoted name with a known suffix or a trailing slash
(``benchmarks/compare.py``, ``_stores/_tables.py``, ``pyproject.toml``); some
file of the repository must have that path or end with it (the design
documents name modules by their path in the package, or by their bare name in
a row about their package).
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

import playthrough

ROOT = Path(__file__).resolve().parent.parent
DOCS = sorted([*ROOT.glob("design/*.md"), ROOT / "README.md", ROOT / "CONTRIBUTING.md"])
SUFFIXES = (".py", ".md", ".toml", ".css", ".yml", ".yaml", ".cfg", ".json")
# Names that look like paths but are not in the repository: examples of user files.
NOT_OURS = re.compile(r"^(app|myapp|mypackage|log|path|relative|abs|data)\b|\.db$|\.gz$|^/|\*|<|\{")


def _paths(text: str) -> set[str]:
    found = set()
    for token in re.findall(r"`([^`\s]+)`", text):
        token = token.rstrip(".,:;)").split("::")[0]
        if NOT_OURS.search(token) or "://" in token:
            continue
        if token.endswith(SUFFIXES) or (token.endswith("/") and len(token) > 1):
            found.add(token)
    return found


def _files() -> set[str]:
    found = set()
    for top in ("src", "tests", "benchmarks", "examples", "design", "docs", ".ci", ".github"):
        for path in (ROOT / top).rglob("*"):
            if "__pycache__" not in path.parts:
                found.add(path.relative_to(ROOT).as_posix())
    found.update(p.name for p in ROOT.iterdir())
    return found


FILES = _files()


def _exists(path: str) -> bool:
    base = path.rstrip("/")
    return base in FILES or any(f.endswith("/" + base) for f in FILES)


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_every_path_a_doc_names_exists(doc: Path) -> None:
    missing = sorted(p for p in _paths(doc.read_text(encoding="utf-8")) if not _exists(p))
    assert missing == [], f"{doc.relative_to(ROOT)} names files that do not exist: {missing}"


def test_the_path_check_sees_a_missing_file() -> None:
    assert _paths("see `benchmarks/compare_cold_loads.py` and `_stores/_tables.py`") == {
        "benchmarks/compare_cold_loads.py",
        "_stores/_tables.py",
    }
    assert not _exists("benchmarks/compare_cold_loads.py")
    assert _exists("_stores/_tables.py") and _exists("benchmarks/compare.py")


def test_the_version_is_the_changelogs_latest_release() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    changelog = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    released = re.findall(r"^## \[(\d+\.\d+\.\d+)\]", changelog, re.M)
    assert released and released[0] == project["version"] == playthrough.__version__
    assert changelog.index("## [Unreleased]") < changelog.index(f"## [{released[0]}]")
