"""``playthrough schema`` and ``playthrough snapshot``: what a user runs before deploying."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest
from click.testing import CliRunner

from playthrough import Engine, Event, State, state_id
from playthrough._cli import main
from playthrough._model import key_of, registry
from playthrough._stores import NewEvent
from playthrough._upcasting import value_mark

APP = ["--app", "tests.test_schema_cli"]


@attrs.define
class Tally(State, type_name="sc.Tally"):
    n: int = 0


@attrs.define
class Tick(Event, type_name="sc.Tick"):
    tally_id: int = state_id(Tally)

    def apply(self, tally: Tally) -> None:
        tally.n += 1


@pytest.fixture(autouse=True)
def _registered() -> Iterator[None]:
    yield
    registry.states["sc.Tally"] = Tally
    registry.events["sc.Tick"] = Tick


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, [*args])
    return result.exit_code, result.output


def ticked(tmp_path: Path, times: int = 3, snapshot: bool = True) -> str:
    url = f"sqlite:///{tmp_path / 'tally.db'}"
    with Engine.open(url) as engine:
        for _ in range(times):
            engine.fire(Tick(tally_id=1))
            engine.commit()
        if snapshot:
            engine.admin.snapshot()
    return url


def test_schema_lists_the_stored_versions_and_exits_0_when_all_are_readable(
    tmp_path: Path,
) -> None:
    url = ticked(tmp_path)
    code, out = run("schema", url, *APP)
    assert code == 0, out
    assert "ok   sc.Tick v1: 3 row(s), Tick, current version" in out
    # the snapshot at 3 and the heads value the commit wrote (also exact at 3)
    assert f"ok   sc.Tally v1 [{value_mark(Tally)}]: 2 row(s)" in out
    assert out.splitlines()[-1].startswith("OK")
    code, out = run("schema", url, *APP, "--format", "json")
    data = json.loads(out)
    assert code == 0 and data["ok"] is True
    assert {(t["kind"], t["type"], t["version"], t["rows"]) for t in data["types"]} == {
        ("event", "sc.Tick", 1, 3),
        ("snapshot", "sc.Tally", 1, 2),
    }


def test_schema_exits_1_naming_unknown_types_and_versions_from_newer_code(
    tmp_path: Path,
) -> None:
    url = ticked(tmp_path, snapshot=False)
    with Engine.open(url) as engine:
        link = ((key_of(Tally, 1), 0),)
        at = "2026-01-01T00:00:00+00:00"
        engine.store.append(
            [
                NewEvent("sc.Ghost", "{}", link, None, at),
                NewEvent("sc.Tick", '{"tally_id":1}', link, None, at, version=7),
            ],
            {},
        )
    code, out = run("schema", url, *APP)
    assert code == 1, out
    assert "FAIL sc.Ghost v1: 1 row(s), no Event class has this type name" in out
    assert "FAIL sc.Tick v7: 1 row(s), written by newer code: Tick here is version 1" in out
    assert "ok   sc.Tick v1: 3 row(s)" in out
    assert out.splitlines()[-1] == "FAILED: 2 stored type version(s) this code cannot read or use"


def _new_tally(upcast: bool) -> type[State]:
    """Replace Tally by a version that also counts ``twice`` (computed by the hook)."""
    del registry.states["sc.Tally"], registry.events["sc.Tick"]
    if upcast:

        @attrs.define
        class Tally2(State, type_name="sc.Tally", version=2):
            n: int = 0
            twice: int = 0

            @staticmethod
            def upcast_v1(data: dict[str, Any]) -> dict[str, Any]:
                return {**data, "twice": 2 * data["n"]}

        cls: type[State] = Tally2
    else:

        @attrs.define
        class Tally3(State, type_name="sc.Tally"):  # no version bump: old snapshots unusable
            n: int = 0
            twice: int = 0

        cls = Tally3

    @attrs.define
    class Tick2(Event, type_name="sc.Tick"):
        tally_id: int = state_id(cls)

        def apply(self, tally: Any) -> None:
            tally.n += 1
            tally.twice += 2

    return cls


@pytest.mark.parametrize("upcast", [False, True])
def test_snapshot_rewrites_outdated_snapshots_so_schema_passes(
    tmp_path: Path, upcast: bool
) -> None:
    url = ticked(tmp_path)
    tally = _new_tally(upcast)
    code, out = run("schema", url, *APP)
    if upcast:
        assert code == 0 and "ok   sc.Tally v1" in out and "upcast v1 -> v2" in out, out
    else:
        assert code == 1 and "FAIL sc.Tally v1" in out and "NOT USED by loads" in out, out
    code, out = run("snapshot", url, *APP, "--format", "json")
    assert code == 0, out
    data = json.loads(out)
    assert {k: data[k] for k in ("mode", "checked", "upcast", "rebuilt")} == {
        "mode": "rewrite",
        "checked": 1,  # one position: the snapshot and the heads value there
        "upcast": 1 if upcast else 0,
        "rebuilt": 0 if upcast else 1,
    }
    assert data["events"] == 3  # then every state gets a current value
    code, out = run("schema", url, *APP)
    assert code == 0, out
    assert f"ok   sc.Tally v{2 if upcast else 1} [{value_mark(tally)}]: 2 row(s)" in out
    with Engine.open(url) as engine:
        plan = engine.explain(tally, 1)
        assert plan.states[key_of(tally, 1)].start == 3  # the rewritten snapshot is used
        state = engine.load(tally, 1)
        assert (state.n, state.twice) == (3, 6)  # type: ignore[attr-defined]
        assert engine.admin.verify().ok
    code, out = run("snapshot", url, *APP)  # nothing left to do
    assert code == 0
    assert (
        out.splitlines()[0]
        == "0 outdated snapshot(s) or value(s): 0 upcast, 0 rebuilt from the log"
    )


def test_snapshot_rebuild_replays_the_log_into_current_snapshots(tmp_path: Path) -> None:
    url = ticked(tmp_path)
    tally = _new_tally(upcast=False)
    code, out = run("snapshot", url, *APP, "--rebuild")
    assert code == 0 and "played 3 event(s)" in out, out
    code, out = run("schema", url, *APP)
    assert code == 0, out
    with Engine.open(url) as engine:
        state = engine.load(tally, 1)
        assert (state.n, state.twice) == (3, 6)  # type: ignore[attr-defined]


def test_schema_refuses_a_missing_database(tmp_path: Path) -> None:
    code, out = run("schema", str(tmp_path / "nope.db"), *APP)
    assert code == 2 and "neither a database URL nor an existing SQLite file" in out
