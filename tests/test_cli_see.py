"""The commands that show things: explain, graph, history, serve; ids as written."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from playthrough import Engine
from playthrough._cli import main

from .see_domain import Customer, story

APP = ["--app", "tests.see_domain"]


@pytest.fixture
def db(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'shop.db'}"
    with Engine.open(url, head_values=False) as engine:
        story(engine)
        engine.admin.snapshot([(Customer, 1)], at=5)
    return url


def run(*args: str, code: int = 0) -> str:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    assert result.exit_code == code, result.output
    return result.output


def test_explain_in_every_format(db: str) -> None:
    text = run("explain", db, "see.Order", "o2", *APP)
    assert text.startswith("plan for see.Order(o2) at position 7: 4 state(s)")
    assert "  see.Customer(1): starts from blank" in text and "REWOUND" in text
    lines = [line.split(":")[0].strip() for line in text.splitlines()[1:5]]
    assert lines == ["see.Order(o2)", "see.Customer(1)", "see.Order(13)", "see.Order(o10)"]
    data = json.loads(run("explain", db, "see.Order", "o2", *APP, "--format", "json"))
    assert [n["label"] for n in data["nodes"] if n["id"] in data["rewound"]] == ["see.Customer(1)"]
    assert data["edges"][0]["label"] == "#2 see.Placed"
    assert 'n0 -->|"#2 see.Placed"| n1' in run(
        "explain", db, "see.Order", "o2", *APP, "--format", "mermaid"
    )
    assert "n0 -> n1 [label=" in run("explain", db, "see.Order", "o2", *APP, "--format", "dot")
    early = json.loads(run("explain", db, "see.Order", "o2", *APP, "--at", "2", "--format", "json"))
    assert early["at"] == 2
    assert "past the log's head (7)" in run(
        "explain", db, "see.Order", "o2", *APP, "--at", "9", code=2
    )
    assert "see.Customer ids are ints" in run("explain", db, "see.Customer", "ada", *APP, code=2)


def test_graph_needs_no_store(tmp_path: Path) -> None:
    out = run("graph", *APP)
    assert out.startswith("flowchart LR") and "class s0 hot" in out and "==>" in out
    data = json.loads(run("graph", *APP, "--format", "json"))
    assert data["hot"] == ["see.Order"]
    assert "digraph coupling {" in run("graph", *APP, "--format", "dot")
    assert "--app MODULE" in run("graph", code=2)
    assert "no event classes are defined in json" in run("graph", "--app", "json", code=1)


def test_history_text_and_json(db: str) -> None:
    text = run("history", db, "see.Order", "o10", *APP)
    assert text.startswith("history of see.Order(o10): 3 event(s) up to 7")
    assert "#7" in text and "caused by #6" in text and 'status: "shipped" -> "followed up"' in text
    data = json.loads(
        run("history", db, "see.Customer", "1", *APP, "--format", "json", "--at", "3")
    )
    assert [e["position"] for e in data["events"]] == [1, 2, 3]
    assert data["events"][1]["metadata"] == {"user": "bo"}
    assert data["events"][2]["changes"] == [
        {"field": "orders", "before": 1, "after": 2},
        {"field": "spent", "before": 30, "after": 42},
    ]
    assert "see.Shop is a singleton" in run("history", db, "see.Shop", "1", *APP, code=2)


def test_a_string_id_that_looks_like_an_int_needs_no_prefix(db: str) -> None:
    # order ids are declared str: "13" is the string "13", as with the old "s:13"
    rows = run("events", db, *APP, "--state", "see.Order:13").splitlines()
    assert [line.split()[0] for line in rows] == ["#5"]
    assert run("events", db, *APP, "--state", "see.Order:s:13") == "\n".join(rows) + "\n"
    info = json.loads(run("info", db, "see.Order", "13", *APP, "--format", "json"))
    assert info["id"] == "13" and info["events"] == 1
    assert "see.Customer ids are ints" in run("info", db, "see.Customer", "x", *APP, code=2)
    states = run("states", db, "see.Order", *APP, "--order-by", "total")
    assert states.splitlines()[0].startswith("13 ")  # printed as written, not '13'


def test_serve_warns_off_loopback_and_passes_its_options(
    db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[dict[str, Any]] = []

    def fake_serve(url: str, **kwargs: Any) -> None:
        calls.append({"url": url, **kwargs})

    monkeypatch.setattr("playthrough.inspect.serve", fake_serve)
    result = CliRunner().invoke(main, ["serve", db, *APP])
    assert result.exit_code == 0, result.output
    assert "warning" not in result.output
    assert calls[-1]["host"] == "127.0.0.1" and calls[-1]["port"] == 8765
    assert calls[-1]["show_personal"] is False and calls[-1]["modules"] == ("tests.see_domain",)
    result = CliRunner().invoke(
        main, ["serve", db, *APP, "--host", "0.0.0.0", "--port", "9000", "--show-personal"]
    )
    assert result.exit_code == 0, result.output
    assert "warning: the inspector has no authentication, and --host 0.0.0.0" in result.output
    assert calls[-1]["port"] == 9000 and calls[-1]["show_personal"] is True


def test_serve_never_prints_the_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("playthrough.inspect.serve", lambda url, **kwargs: None)
    result = CliRunner().invoke(
        main, ["serve", "postgresql://root:hunter22@127.0.0.1:5432/test?schema=x", *APP]
    )
    assert "hunter22" not in result.output and "127.0.0.1:5432" in result.output


def test_the_demo_shows_a_plan_that_rewinds_and_plays(tmp_path: Path) -> None:
    out = run("demo", "--db", str(tmp_path / "bank.db"))
    step = out[out.index("with head_values=False") :]
    assert "loading bank.Account(2) rewinds the states its events need" in step
    assert "bank.Account(1): starts from blank (no snapshot used), plays 4 event(s)" in step
    assert "REWOUND: its newest snapshot (at 6) is past position 3" in step
    assert "class n1,n2 rewound" in step
    assert "balance: 300 -> 1500" in step


def test_follow_runs_a_projection_until_idle(tmp_path: Path) -> None:
    from playthrough.examples.bank import story as bank_story

    url = f"sqlite:///{tmp_path / 'bank.db'}"
    with Engine.open(url) as engine:
        bank_story(engine)
    spec = "playthrough.examples.balances:OwnerBalances"
    bank = ["--app", "playthrough.examples.bank"]
    out = run("follow", url, *bank, "--projection", spec, "--until-idle")
    assert out.startswith("balances: processed ") and "at position 6" in out
    again = run("follow", url, *bank, "--projection", spec, "--until-idle")
    assert "processed 0, passed 0" in again
    [line] = run("followers", url, *bank, "--format", "json").splitlines()  # JSON Lines
    row = json.loads(line)
    assert (row["name"], row["position"], row["lag"]) == ("balances", 6, 0)
    assert "use module:Class" in run("follow", url, "--projection", "x", code=2)
    assert "has no Projection class 'Nope'" in run(
        "follow", url, "--projection", "playthrough.examples.balances:Nope", code=2
    )


def test_demo_into_a_missing_directory_is_a_usage_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["demo", "--db", str(tmp_path / "nowhere" / "bank.db")])
    assert result.exit_code == 2, result.output
    assert "the directory" in result.output and "does not exist" in result.output
    assert "Traceback" not in result.output and not (tmp_path / "nowhere").exists()


def test_demo_runs_the_shop_example_and_rewinds(tmp_path: Path) -> None:
    out = run("demo", "--example", "shop", "--db", str(tmp_path / "shop.db"))
    assert "the shop example" in out and "order 10: Order(customer=1" in out
    step = out[out.index("with head_values=False") :]
    assert "loading shop.Customer(1) rewinds the states its events need" in step
    assert "shop.Order(10): starts from blank (no snapshot used)" in step and "REWOUND" in step
    assert 'spent: "0" -> "13.70"' in step


def test_demo_as_json_is_one_object_with_the_rewinding_plan(tmp_path: Path) -> None:
    data = json.loads(
        run("demo", "--example", "shop", "--db", str(tmp_path / "s.db"), "--format", "json")
    )
    assert data["example"] == "shop" and len(data["events"]) == 11
    assert data["loads"]["customer 1"]["spent"] == "13.70"
    rewind = data["rewind"]
    assert rewind["plan"]["rewound"] and rewind["plan"]["events_played"] > 0
    assert [e["position"] for e in rewind["history"]["events"]] == [1, 8]
