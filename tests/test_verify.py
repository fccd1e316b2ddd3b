"""engine.admin.verify() and ``playthrough verify``: snapshots against the log, replay
determinism, snapshot sync, the options for big logs, and the command's exit codes.

The shop examples carry the bugs: ``shop_flawed`` reads the wall clock in
``OrderPlaced.apply`` and stores a set's iteration order in ``OrderTagged.apply``;
``shop`` is the fixed version. ``corrupt_snapshot`` rewrites a snapshot row.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from xml.etree import ElementTree

import attrs
import pytest
from click.testing import CliRunner

from playthrough import Engine, Event, State, state_id
from playthrough._cli import main
from playthrough._model import StateKey
from playthrough._verify import FieldDiff, VerifyReport, field_diffs
from playthrough.examples import bank, game, shop, shop_flawed
from playthrough.examples.tamper import corrupt_snapshot

ROOT = Path(__file__).resolve().parent.parent

# --------------------------------------------------------------------------- a test domain


@attrs.define
class VerifyCounter(State, type_name="verify_t.Counter"):
    label: str = ""
    count: int = 0


@attrs.define
class Labelled(Event, type_name="verify_t.Labelled"):
    counter_id: int = state_id(VerifyCounter)
    label: str = ""

    def apply(self, counter: VerifyCounter) -> None:
        counter.label = self.label


@attrs.define
class Counted(Event, type_name="verify_t.Counted"):
    counter_id: int = state_id(VerifyCounter)

    def apply(self, counter: VerifyCounter) -> None:
        counter.count += 1


BREAK_ON_REPLAY = {"on": False}


@attrs.define
class Fragile(Event, type_name="verify_t.Fragile"):
    counter_id: int = state_id(VerifyCounter)

    def apply(self, counter: VerifyCounter) -> None:
        if BREAK_ON_REPLAY["on"]:
            raise RuntimeError("an apply that depends on the environment")
        counter.count += 10


@pytest.fixture(autouse=True)
def _mended() -> Iterator[None]:
    yield
    BREAK_ON_REPLAY["on"] = False


# --------------------------------------------------------------------------- helpers


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


def build(path: Path, story: object, *, snapshot: bool = True) -> str:
    url = sqlite_url(path)
    with Engine.open(url, head_values=False) as engine:
        story(engine)  # type: ignore[operator]
        if snapshot:
            engine.admin.snapshot()
    return url


def check(url: str, **options: object) -> VerifyReport:
    with Engine.open(url, head_values=False) as engine:
        return engine.admin.verify(**options)  # type: ignore[arg-type]


def cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["verify", *args, "--no-progress"])
    return result.exit_code, result.output


@pytest.fixture
def bank_url(tmp_path: Path) -> str:
    return build(tmp_path / "bank.db", bank.story)


# --------------------------------------------------------------------------- clean stores


@pytest.mark.parametrize("example", [bank, game, shop], ids=lambda m: m.__name__)
def test_the_examples_verify(tmp_path: Path, example: object) -> None:
    url = build(tmp_path / "x.db", example.story)  # type: ignore[attr-defined]
    report = check(url)
    assert report.ok and report.complete, report.to_text()
    assert report.snapshots.checked == len(report.snapshots.states) > 0
    assert report.determinism.ran and report.determinism.digest is not None
    assert report.sync is not None and report.sync.in_sync
    assert report.to_text().splitlines()[-1].startswith("OK")
    data = json.loads(json.dumps(report.to_dict()))
    assert data["ok"] is True and data["snapshots"]["checked"] == report.snapshots.checked


def test_verify_leaves_the_live_repository_alone(bank_url: str) -> None:
    with Engine.open(bank_url) as engine:
        account = engine.load(bank.Account, 1)
        before = dict(engine.repository.items())
        report = engine.admin.verify()
        assert report.ok
        assert dict(engine.repository.items()) == before
        assert engine.load(bank.Account, 1) is account
        assert account == bank.Account(owner="ada", balance=1_000)


def test_engine_verify_delegates_with_options(bank_url: str) -> None:
    with Engine.open(bank_url) as engine:
        report = engine.admin.verify(sample=1, seed=4)
    assert isinstance(report, VerifyReport)
    assert report.sample is not None and report.sample[:2] == (1, 3)


def test_engine_verify_takes_only_its_named_options(bank_url: str) -> None:
    with Engine.open(bank_url) as engine, pytest.raises(TypeError, match="smaple"):
        engine.admin.verify(smaple=1)


def test_field_diffs_name_their_sides_and_keep_deprecated_aliases(bank_url: str) -> None:
    (diff,) = field_diffs('{"n":1}', '{"n":2}')
    assert diff == FieldDiff("n", expected=1, found=2)
    with pytest.warns(DeprecationWarning):
        assert (diff.a, diff.b) == (1, 2)
    with Engine.open(bank_url) as engine:
        corrupt_snapshot(engine, bank.Account, 2, changes={"balance": 9_999})
        report = engine.admin.verify()
    (m,) = report.snapshots.mismatches
    (d,) = m.diffs
    assert (d.expected, d.found) == (1_500, 9_999)
    assert report.snapshots.sides == ("log", "snapshot")
    # The snapshot check used to put the snapshot first: the aliases keep that.
    with pytest.warns(DeprecationWarning):
        assert (d.a, d.b) == (9_999, 1_500)
    with pytest.warns(DeprecationWarning):
        assert report.replay is report.determinism


# --------------------------------------------------------------------------- corrupted snapshots


def test_a_corrupted_balance_names_the_state_and_the_transfer_that_set_it(bank_url: str) -> None:
    with Engine.open(bank_url) as engine:
        corrupt_snapshot(engine, bank.Account, 2, changes={"balance": 9_999})
        report = engine.admin.verify()
    assert not report.ok
    (m,) = report.snapshots.mismatches
    assert m.state == StateKey("bank.Account", "2")
    assert m.position == 6
    assert [(d.field, d.found, d.expected) for d in m.diffs] == [("balance", 9_999, 1_500)]
    # Account 2 is touched by events 2, 4 and 5; 5 gave it the balance 1500.
    assert (m.first_event, m.first_event_type) == (5, "bank.Transferred")
    assert not m.nondeterministic
    assert report.determinism.ok and report.sync is not None and report.sync.in_sync
    assert "bank.Account(2), snapshot at 6" in report.to_text()


def test_a_corrupted_owner_names_the_opening_not_the_last_event(bank_url: str) -> None:
    with Engine.open(bank_url) as engine:
        corrupt_snapshot(engine, bank.Account, 1, changes={"owner": "mallory"})
        report = engine.admin.verify()
    (m,) = report.snapshots.mismatches
    assert m.state == StateKey("bank.Account", "1")
    assert (m.first_event, m.first_event_type) == (1, "bank.AccountOpened")
    assert [(d.field, d.found, d.expected) for d in m.diffs] == [("owner", "mallory", "ada")]


def test_bisection_finds_a_middle_event_in_few_rebuilds(tmp_path: Path) -> None:
    def story(engine: Engine) -> None:
        engine.fire(Labelled(counter_id=1, label="first"))
        for _ in range(40):
            engine.fire(Counted(counter_id=1))
        engine.fire(Labelled(counter_id=1, label="second"))  # position 42
        for _ in range(22):
            engine.fire(Counted(counter_id=1))
        engine.commit()

    url = build(tmp_path / "c.db", story)
    with Engine.open(url, head_values=False) as engine:
        corrupt_snapshot(engine, VerifyCounter, 1, changes={"label": "forged"})
        report = engine.admin.verify()
    (m,) = report.snapshots.mismatches
    assert (m.first_event, m.first_event_type) == (42, "verify_t.Labelled")
    touching = 64
    # Two rebuilds at the end (is the log reproducible?), then one per halving;
    # a linear rescan would rebuild 64 states.
    assert 0 < m.rebuilds <= math.ceil(math.log2(touching + 1)) + 2


def test_a_field_the_log_never_sets_has_no_first_event(tmp_path: Path) -> None:
    url = build(tmp_path / "c.db", lambda e: (e.fire(Counted(counter_id=1)), e.commit()))
    with Engine.open(url, head_values=False) as engine:
        corrupt_snapshot(engine, VerifyCounter, 1, changes={"label": "forged"})
        (m,) = engine.admin.verify().snapshots.mismatches
    assert m.located and m.first_event is None
    assert "never moves those fields off their blank values" in m.describe()


def test_an_undecodable_snapshot_is_a_mismatch(bank_url: str) -> None:
    with Engine.open(bank_url) as engine:
        corrupt_snapshot(engine, bank.Account, 1, changes={"balance": "lots"})
        report = engine.admin.verify()
    (m,) = report.snapshots.mismatches
    assert m.error is not None and "cannot decode" in m.error
    assert not report.ok


def test_an_older_snapshot_is_checked_at_its_own_position(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path / "b.db")
    with Engine.open(url, head_values=False) as engine:
        bank.story(engine)
        engine.admin.snapshot([(bank.Account, 1)], at=3)
        engine.admin.snapshot()
        corrupt_snapshot(engine, bank.Account, 1, position=3, changes={"balance": 1})
        report = engine.admin.verify()
    (m,) = report.snapshots.mismatches
    assert (m.state, m.position, m.first_event) == (StateKey("bank.Account", "1"), 3, 3)
    assert report.snapshots.checked == 4


# --------------------------------------------------------------------------- nondeterminism


def test_a_wall_clock_apply_is_caught_and_its_event_named(tmp_path: Path) -> None:
    url = build(tmp_path / "flawed.db", shop_flawed.story)
    report = check(url)
    assert not report.ok
    found = {m.state: m for m in report.snapshots.mismatches}
    assert set(found) == {StateKey("shop_flawed.Order", "10"), StateKey("shop_flawed.Order", "11")}
    first = found[StateKey("shop_flawed.Order", "10")]
    # Order 10 is touched by events 3, 4, 5, 8 and 9: 8 is the OrderPlaced that reads the clock.
    assert (first.first_event, first.first_event_type) == (8, "shop_flawed.OrderPlaced")
    assert first.nondeterministic
    assert [d.field for d in first.diffs] == ["placed_at"]
    other = found[StateKey("shop_flawed.Order", "11")]
    assert (other.first_event, other.first_event_type) == (11, "shop_flawed.OrderPlaced")
    assert {m.state for m in report.determinism.mismatches} == set(found)
    assert all([d.field for d in m.diffs] == ["placed_at"] for m in report.determinism.mismatches)


def test_the_fixed_shop_passes_with_a_subprocess_replay(tmp_path: Path) -> None:
    url = build(tmp_path / "shop.db", shop.story)
    report = check(url, apps=["playthrough.examples.shop"])
    assert report.ok, report.to_text()
    assert "subprocess" in report.determinism.mode


def test_set_order_needs_another_process_to_show(tmp_path: Path) -> None:
    url = build(tmp_path / "tags.db", shop_flawed.tagging_story, snapshot=False)
    here = check(url, subprocess_replay=False)
    assert here.ok, "one process iterates a set in one order"
    there = check(url, apps=["playthrough.examples.shop_flawed"])
    assert "PYTHONHASHSEED" in there.determinism.mode
    assert not there.ok
    assert {m.state for m in there.determinism.mismatches} == {
        StateKey("shop_flawed.Order", "20"),
        StateKey("shop_flawed.Order", "21"),
    }
    assert all([d.field for d in m.diffs] == ["tags"] for m in there.determinism.mismatches)


def test_the_fixed_tagging_passes_in_another_process(tmp_path: Path) -> None:
    url = build(tmp_path / "tags.db", shop.tagging_story)
    report = check(url, apps=["playthrough.examples.shop"])
    assert report.ok, report.to_text()
    assert "PYTHONHASHSEED" in report.determinism.mode


def test_a_failing_subprocess_falls_back_in_process_and_says_so(tmp_path: Path) -> None:
    url = build(tmp_path / "shop.db", shop.story)
    report = check(url, apps=["no_such_module_for_playthrough"])
    assert report.determinism.mode.startswith("in-process (the subprocess failed")
    assert report.ok


def test_an_apply_that_raises_on_replay_is_an_error(tmp_path: Path) -> None:
    url = build(tmp_path / "c.db", lambda e: (e.fire(Fragile(counter_id=1)), e.commit()))
    BREAK_ON_REPLAY["on"] = True
    report = check(url)
    assert not report.ok
    (error,) = report.errors
    assert "event 1 (verify_t.Fragile) raised while replaying" in error


# --------------------------------------------------------------------------- sync


def out_of_sync_store(path: Path) -> str:
    url = sqlite_url(path)
    with Engine.open(url, head_values=False) as engine:
        game.story(engine)
        # Event 5 couples player 1 and game 7 between these two snapshots.
        engine.admin.snapshot([(game.PlayerState, 1)], at=6)
        engine.admin.snapshot([(game.GameState, 7)], at=4)
    return url


def junit_root(report: VerifyReport) -> ElementTree.Element:
    return ElementTree.fromstring(report.to_junit_xml().split("\n", 1)[1])


def test_snapshots_out_of_sync_are_a_warning_by_default(tmp_path: Path) -> None:
    report = check(out_of_sync_store(tmp_path / "g.db"))
    assert report.snapshots.ok and report.determinism.ok
    assert report.sync is not None and not report.sync.in_sync
    assert report.ok, "a load rewinds past them: slower, not wrong"
    (warning,) = report.warnings
    assert "coupled by event 5" in warning
    text = report.to_text()
    assert "WARN snapshot sync" in text
    assert text.splitlines()[-1].startswith("OK with 1 warning(s)")
    data = json.loads(json.dumps(report.to_dict()))
    assert data["ok"] is True and data["warnings"] == [warning]
    assert data["sync"]["ok"] is False
    (pair,) = data["sync"]["out_of_sync"]
    assert (pair["event"], pair["state"]["name"], pair["partner"]["name"]) == (
        5,
        "game.Game(7)",
        "game.Player(1)",
    )
    root = junit_root(report)
    suite = root.find("testsuite")
    assert suite is not None and suite.get("failures") == "0"
    sync_case = root.find(".//testcase[@name='snapshot sync']")
    assert sync_case is not None and sync_case.find("failure") is None
    out = sync_case.find("system-out")
    assert out is not None and out.text is not None and "coupled by event 5" in out.text
    assert root.find(".//property[@name='warnings']") is not None


def test_strict_sync_makes_snapshots_out_of_sync_a_failure(tmp_path: Path) -> None:
    report = check(out_of_sync_store(tmp_path / "g.db"), strict_sync=True)
    assert not report.ok and report.warnings == ()
    assert "FAIL snapshot sync" in report.to_text()
    assert report.to_dict()["ok"] is False
    sync_case = junit_root(report).find(".//testcase[@name='snapshot sync']")
    assert sync_case is not None and sync_case.find("failure") is not None


def test_cli_exit_codes_for_snapshots_out_of_sync(tmp_path: Path) -> None:
    url = out_of_sync_store(tmp_path / "g.db")
    code, out = cli(url)
    assert code == 0, out
    assert "WARN snapshot sync" in out
    code, out = cli(url, "--strict-sync")
    assert code == 1, out
    assert "FAIL snapshot sync" in out


# --------------------------------------------------------------------------- big-log options


def test_a_sample_checks_only_the_drawn_states(bank_url: str) -> None:
    with Engine.open(bank_url) as engine:
        corrupt_snapshot(engine, bank.Account, 2, changes={"balance": 9_999})
    outcomes = set()
    for seed in range(8):
        report = check(bank_url, sample=1, seed=seed)
        assert report.sample == (1, 3, seed)
        (drawn,) = report.snapshots.states
        assert report.determinism.states == (drawn,)
        corrupted = drawn == StateKey("bank.Account", "2")
        assert report.ok is not corrupted
        if corrupted:
            (m,) = report.snapshots.mismatches
            assert (m.first_event, m.first_event_type) == (5, "bank.Transferred")
        outcomes.add(corrupted)
    assert outcomes == {True, False}, "eight seeds draw both kinds of state"


def test_a_sample_as_large_as_the_store_checks_everything(bank_url: str) -> None:
    report = check(bank_url, sample=99)
    assert report.sample is None and report.snapshots.checked == 3


def test_a_position_range_limits_the_snapshots_checked(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path / "b.db")
    with Engine.open(url, head_values=False) as engine:
        bank.story(engine)
        engine.admin.snapshot([(bank.Account, 1)], at=3)
        engine.admin.snapshot()
        corrupt_snapshot(engine, bank.Account, 2, changes={"balance": 9_999})
    early = check(url, end=5)
    assert early.ok and early.snapshots.checked == 1 and early.end == 5
    late = check(url, start=4)
    assert not late.ok and late.snapshots.checked == 3
    assert {k.id for k in late.determinism.states} == {"1", "2", ""}  # touched after 4
    with pytest.raises(ValueError, match="bad position range"):
        check(url, end=99)


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_zero_budget_stops_before_anything_and_says_so(bank_url: str) -> None:
    report = check(bank_url, time_budget=0)
    assert not report.complete and report.ok
    assert report.not_checked == (
        "heads and snapshot metadata vs links",
        "snapshot sync",
        "snapshots vs log",
        "links vs payloads",
        "determinism",
    )
    assert "incomplete" in report.to_text()


def test_a_budget_spent_mid_stream_reports_the_unchecked_snapshots(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path / "b.db")
    with Engine.open(url, head_values=False) as engine:
        bank.story(engine)
        engine.admin.snapshot([(bank.Account, 1)], at=3)
        engine.admin.snapshot()
    clock = FakeClock()

    def progress(stage: str, done: int, total: int) -> None:
        if stage == "snapshots":
            clock.now = 100.0  # the budget is spent once the stream has played its chunk

    report = check(url, time_budget=10, clock=clock, progress=progress)
    assert report.snapshots.checked == 1  # the snapshot at 3, passed inside the chunk
    assert report.not_checked == (
        "3 snapshot(s) at positions 6..6 (of snapshots vs log)",
        "snapshots vs log",
        "links vs payloads",
        "determinism",
    )
    assert report.ok and not report.complete


def test_a_budget_spent_while_locating_leaves_mismatches_unlocated(bank_url: str) -> None:
    with Engine.open(bank_url) as engine:
        corrupt_snapshot(engine, bank.Account, 1, changes={"owner": "x"})
        corrupt_snapshot(engine, bank.Account, 2, changes={"owner": "y"})
    clock = FakeClock()

    def progress(stage: str, done: int, total: int) -> None:
        if stage == "locate":
            clock.now = 100.0

    report = check(bank_url, time_budget=10, clock=clock, progress=progress)
    first, second = report.snapshots.mismatches
    assert first.located and not second.located
    assert "event not located: out of time" in second.describe()
    assert report.not_checked == ("locating the first differing event of 1 snapshot mismatch(es)",)
    assert not report.ok


def test_progress_reports_every_stage(bank_url: str) -> None:
    seen: list[tuple[str, int, int]] = []
    with Engine.open(bank_url) as engine:
        corrupt_snapshot(engine, bank.Account, 1, changes={"owner": "x"})
        engine.admin.verify(progress=lambda *a: seen.append(a))
    assert {s for s, _, _ in seen} == {"heads", "sync", "snapshots", "determinism", "locate"}
    assert all(0 <= done <= total for _, done, total in seen)
    assert ("snapshots", 6, 6) in seen


# --------------------------------------------------------------------------- the command


def test_cli_exits_0_on_a_clean_store_and_1_on_a_corrupted_one(bank_url: str) -> None:
    code, out = cli(bank_url, "--app", "playthrough.examples.bank")
    assert code == 0, out
    assert "subprocess" in out and out.rstrip().splitlines()[-1].startswith("OK")
    with Engine.open(bank_url) as engine:
        corrupt_snapshot(engine, bank.Account, 2, changes={"balance": 9_999})
    code, out = cli(bank_url, "--app", "playthrough.examples.bank")
    assert code == 1
    assert "bank.Account(2), snapshot at 6: differs from the log since event 5" in out


def test_cli_exits_1_on_the_flawed_shop_and_0_on_the_fixed_one(tmp_path: Path) -> None:
    flawed = build(tmp_path / "flawed.db", shop_flawed.story)
    code, out = cli(flawed, "--app", "playthrough.examples.shop_flawed")
    assert code == 1
    assert "shop_flawed.Order(10), snapshot at 11" in out
    assert "from event 8 (shop_flawed.OrderPlaced)" in out
    fixed = build(tmp_path / "fixed.db", shop.story)
    code, out = cli(fixed, "--app", "playthrough.examples.shop")
    assert code == 0, out


def test_cli_json_and_junit_outputs(tmp_path: Path, bank_url: str) -> None:
    with Engine.open(bank_url) as engine:
        corrupt_snapshot(engine, bank.Account, 2, changes={"balance": 9_999})
    junit = tmp_path / "reports" / "verify.xml"
    code, out = cli(
        bank_url,
        "--app",
        "playthrough.examples.bank",
        "--format",
        "json",
        "--junit-xml",
        str(junit),
    )
    assert code == 1
    data = json.loads(out)
    assert data["ok"] is False
    (m,) = data["snapshots"]["mismatches"]
    assert m["state"]["name"] == "bank.Account(2)" and m["first_event"] == 5
    assert m["diffs"] == [{"field": "balance", "expected": 1_500, "found": 9_999}]
    root = ElementTree.parse(junit).getroot()
    suite = root.find("testsuite")
    assert suite is not None
    # a case per state and check: the links check is one more since it exists
    assert (suite.get("tests"), suite.get("failures")) == ("8", "1")
    failed = [c.get("name") for c in suite.iter("testcase") if c.find("failure") is not None]
    assert failed == ["bank.Account(2)"]


def test_cli_accepts_a_plain_file_path_and_the_options(bank_url: str) -> None:
    path = bank_url.removeprefix("sqlite:///")
    code, out = cli(path, "--sample", "2", "--seed", "1", "--start", "0", "--end", "6")
    assert code == 0, out
    assert "a sample of 2 of 3 state(s) (seed 1)" in out
    code, out = cli(path, "--time-budget", "0")
    assert code == 0 and "not checked: determinism" in out


def test_cli_progress_bar_does_not_disturb_the_report(bank_url: str) -> None:
    result = CliRunner().invoke(main, ["verify", bank_url, "--progress", "--format", "json"])
    assert result.exit_code == 0
    assert json.loads(result.stdout)["ok"] is True


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["{missing}"], "neither a database URL nor an existing SQLite file"),
        (["sqlite:///{missing}"], "no SQLite file"),
        (["sqlite://"], "in-memory database is empty"),
        (["{bank}", "--app", "no_such_module_for_playthrough"], "cannot import"),
        (["{bank}", "--end", "99"], "bad position range"),
        (["{bank}", "--sample", "0"], "--sample"),
        (["{bank}", "--format", "xml"], "--format"),
        (["{notadb}"], "cannot open"),
    ],
)
def test_cli_usage_errors_exit_2(
    tmp_path: Path, bank_url: str, args: list[str], message: str
) -> None:
    notadb = tmp_path / "notes.db"
    notadb.write_text("not a database, just text that is long enough to be read" * 20)
    values = {
        "missing": str(tmp_path / "missing.db"),
        "bank": bank_url,
        "notadb": str(notadb),
    }
    code, out = cli(*(a.format(**values) for a in args))
    assert code == 2, out
    assert message in out


def test_cli_unknown_types_without_app_exit_2(tmp_path: Path) -> None:
    url = build(tmp_path / "x.db", shop.story)
    hidden = subprocess.run(
        [sys.executable, "-m", "playthrough._cli", "verify", url, "--no-progress"],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "PYTHONHASHSEED": "0"},
    )
    assert hidden.returncode == 2
    assert "unknown" in hidden.stderr and "--app" in hidden.stderr


def test_the_examples_script_runs_clean() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "verify_examples.py")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "all 7 outcomes as expected" in done.stdout
    assert "--> shop_flawed: exit 1 (as expected)" in done.stdout
    assert "--> game_out_of_sync: exit 0 (as expected)" in done.stdout
    assert "--> game_out_of_sync --strict-sync: exit 1 (as expected)" in done.stdout


def test_a_postgres_store_verifies_with_a_subprocess_and_the_same_digest(
    pg_url: str, pg_schema: str, bank_url: str
) -> None:
    url = f"{pg_url}?schema={pg_schema}"
    with Engine.open(url, head_values=False) as engine:
        bank.story(engine)
        engine.admin.snapshot()
        report = engine.admin.verify(apps=["playthrough.examples.bank"], url=url)
        assert report.ok, report.to_text()
        assert "subprocess" in report.determinism.mode
        corrupt_snapshot(engine, bank.Account, 1, changes={"balance": 5})
        (m,) = engine.admin.verify().snapshots.mismatches
        assert (m.state, m.first_event) == (StateKey("bank.Account", "1"), 5)
    # The same story replays to the same bytes on SQLite.
    assert report.determinism.digest == check(bank_url).determinism.digest


# --------------------------------------------------------------------------- scaling


def _counters(path: Path, states: int) -> str:
    """A store of ``states`` counters, two events each, and a snapshot of each."""
    url = sqlite_url(path)
    with Engine.open(url, head_values=False) as engine:
        for i in range(states):
            engine.fire(Labelled(counter_id=i, label="x"))
            engine.fire(Counted(counter_id=i))
        engine.commit()
        engine.admin.snapshot()
    return url


def _vm_steps(url: str, run: Callable[[Engine], object]) -> int:
    """SQLite virtual-machine instructions (in hundreds) that ``run`` costs."""
    steps = [0]

    def tick() -> int:
        steps[0] += 1
        return 0

    with Engine.open(url, head_values=False) as engine:
        conn = engine.store._conn  # type: ignore[attr-defined]
        conn.set_progress_handler(tick, 100)
        try:
            run(engine)
        finally:
            conn.set_progress_handler(None, 100)
    return steps[0]


def test_the_sqlite_heads_and_snapshot_metadata_checks_grow_linearly(tmp_path: Path) -> None:
    # A FULL OUTER JOIN against the grouped links ran as a nested loop: 4x the
    # instructions for 2x the states. Counted, not timed.
    def heads_check(engine: Engine) -> object:
        with engine.store.reader() as reader:
            return reader.heads_disagreements(21), reader.snapshot_disagreements(21)

    small = _vm_steps(_counters(tmp_path / "small.db", 300), heads_check)
    large = _vm_steps(_counters(tmp_path / "large.db", 1200), heads_check)
    assert small > 0
    assert large / small < 6, (small, large)  # linear (or n log n): about 4; quadratic: 16


# --------------------------------------------------------------------------- labels


def test_a_wrong_snapshot_and_heads_value_are_each_named_once(tmp_path: Path) -> None:
    # Both were labelled "snapshot at 3": the same line printed twice, it seemed.
    import sqlite3

    path = tmp_path / "both.db"
    url = sqlite_url(path)
    with Engine.open(url) as engine:  # head values on: each commit writes a heads value
        bank.story(engine)
        engine.fire(bank.Deposited(account_id=2, amount=1))  # account 2 moves at the head
        engine.commit()
        engine.admin.snapshot()
        head = engine.head()
    conn = sqlite3.connect(path)
    for table, column in (("pt_snapshots", "data"), ("pt_heads", "value")):
        changed = conn.execute(
            f"UPDATE {table} SET {column} = replace({column}, '\"balance\":1501', "
            "'\"balance\":7') WHERE state_type = 'bank.Account' AND state_id = '2'"
        ).rowcount
        assert changed == 1, table
    conn.commit()
    conn.close()
    with Engine.open(url) as engine:
        report = engine.admin.verify(determinism=False)
    assert sorted((m.source, m.position) for m in report.snapshots.mismatches) == [
        ("heads value", head),
        ("snapshot", head),
    ]
    lines = report.to_text().splitlines()
    assert sum(f"bank.Account(2), snapshot at {head}:" in line for line in lines) == 1
    assert sum(f"bank.Account(2), heads value at {head}:" in line for line in lines) == 1
    assert sum("balance: heads value 7 != log 1501" in line for line in lines) == 1


# --------------------------------------------------------------------------- links vs payloads


def _export_without_a_link(state_id: str) -> bytes:
    """A bank log exported with the transfer's link to account ``state_id`` removed,
    its checksum fixed up: the file imports."""
    import hashlib
    import io

    with Engine.open("sqlite://") as source:
        source.fire(bank.Deposited(account_id=1, amount=100))
        source.fire(bank.Deposited(account_id=2, amount=50))
        source.commit()
        source.fire(bank.Transferred(source_id=1, target_id=2, amount=30))
        source.commit()
        out = io.BytesIO()
        source.log.export(out)
    # Written as a version-1 file (no chain, no table sections), which imports unchanged:
    # the damage is a link, not the file's framing.
    parsed = [json.loads(x) for x in out.getvalue().splitlines()]
    end = next(i for i, r in enumerate(parsed) if r.get("trailer"))
    header, rows, trailer = parsed[0], parsed[1:end], parsed[end]
    header = {k: v for k, v in header.items() if k not in ("chain", "sections")}
    header["version"] = 1
    trailer = {k: v for k, v in trailer.items() if k != "chain"}
    (transfer,) = [r for r in rows if r["position"] == 3]
    transfer["links"] = [x for x in transfer["links"] if x[:2] != ["bank.Account", state_id]]
    lines = [json.dumps(r, separators=(",", ":")) + "\n" for r in rows]
    trailer["sha256"] = hashlib.sha256("".join(lines).encode()).hexdigest()
    text = json.dumps(header) + "\n" + "".join(lines) + json.dumps(trailer) + "\n"
    return text.encode()


def _imported_without_a_link(url: str) -> VerifyReport:
    import io

    with Engine.open(url) as engine:
        engine.admin.import_log(io.BytesIO(_export_without_a_link("2")))
        # the damage shows: account 2 never received the transfer
        assert engine.load(bank.Account, 2).balance == 50
        return engine.admin.verify()


def _assert_the_missing_link_is_reported(report: VerifyReport) -> None:
    assert not report.ok
    assert report.links.ran and report.links.checked == 3
    (m,) = report.links.mismatches
    assert (m.position, m.event_type) == (3, "bank.Transferred")
    assert m.missing == (StateKey("bank.Account", "2"),) and m.extra == ()
    text = report.to_text()
    assert "FAIL links vs payloads: 3 event(s) checked, 1 mismatch(es)" in text
    assert "event 3 (bank.Transferred): no link to bank.Account(2)" in text
    assert report.to_dict()["links"]["mismatches"][0]["position"] == 3


def test_an_imported_event_missing_a_link_fails_verify(tmp_path: Path) -> None:
    # It imported and verified OK while account 2's balance differed from the source.
    _assert_the_missing_link_is_reported(_imported_without_a_link(sqlite_url(tmp_path / "x.db")))


@pytest.mark.postgres
def test_an_imported_event_missing_a_link_fails_verify_on_postgres(
    pg_url: str, pg_schema: str
) -> None:
    _assert_the_missing_link_is_reported(_imported_without_a_link(f"{pg_url}?schema={pg_schema}"))


def test_an_extra_link_is_reported_and_the_cli_fails(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "bank.db"
    url = build(path, bank.story)
    conn = sqlite3.connect(path)
    conn.execute(
        "INSERT INTO pt_links (state_type, state_id, position, grp) "
        "VALUES ('bank.Account', '9', 1, 5)"
    )
    conn.commit()
    conn.close()
    report = check(url, determinism=False)
    (m,) = report.links.mismatches
    assert (m.position, m.missing, m.extra) == (1, (), (StateKey("bank.Account", "9"),))
    code, out = cli(url, "--app", "playthrough.examples.bank", "--no-subprocess")
    assert code == 1
    assert "linked to bank.Account(9), which its payload does not name" in out


def test_the_links_check_is_skipped_with_a_sample(bank_url: str) -> None:
    report = check(bank_url, sample=1)
    assert not report.links.ran
    assert "SKIP links vs payloads" in report.to_text()


# --------------------------------------------------------------------------- budget and Ctrl-C

TICKS: dict[str, object] = {"applied": 0, "spend_at": None, "clock": None, "interrupt_at": None}


@attrs.define
class Ticked(Event, type_name="verify_t.Ticked"):
    """Counts its applies; spends the budget or presses Ctrl-C at a chosen one."""

    counter_id: int = state_id(VerifyCounter)

    def apply(self, counter: VerifyCounter) -> None:
        counter.count += 1
        applied = int(TICKS["applied"]) + 1  # type: ignore[call-overload]
        TICKS["applied"] = applied
        if applied == TICKS["spend_at"]:
            TICKS["clock"].now = 100.0  # type: ignore[attr-defined]
        if applied == TICKS["interrupt_at"]:
            raise KeyboardInterrupt


@pytest.fixture
def ticked(tmp_path: Path) -> Iterator[str]:
    """A store of 1,000 Ticked events on 10 counters: one page of the log."""
    url = sqlite_url(tmp_path / "ticked.db")
    with Engine.open(url, head_values=False) as engine:
        for i in range(1_000):
            engine.fire(Ticked(counter_id=i % 10))
        engine.commit()
    TICKS.update(applied=0, spend_at=None, clock=None, interrupt_at=None)
    yield url
    TICKS.update(applied=0, spend_at=None, clock=None, interrupt_at=None)


def test_the_budget_is_checked_inside_a_page_of_the_log(ticked: str) -> None:
    # The clock was looked at once per page (2,000 events): a slow apply ran a whole page
    # past the budget.
    clock = FakeClock()
    TICKS.update(clock=clock, spend_at=300)
    report = check(ticked, time_budget=10, clock=clock)
    assert not report.complete and "snapshots vs log" in report.not_checked
    assert 300 <= int(TICKS["applied"]) <= 300 + 256  # type: ignore[call-overload]


def test_the_budget_is_checked_inside_the_determinism_replay(ticked: str) -> None:
    clock = FakeClock()
    TICKS.update(clock=clock, spend_at=1_000 + 300)  # 300 events into the second replay
    report = check(ticked, time_budget=10, clock=clock, subprocess_replay=False)
    assert report.not_checked == ("determinism",)
    assert 1_300 <= int(TICKS["applied"]) <= 1_300 + 256  # type: ignore[call-overload]


def test_ctrl_c_gives_a_partial_report(ticked: str) -> None:
    from playthrough._verify import VerifyInterrupted

    TICKS.update(interrupt_at=500)
    with pytest.raises(VerifyInterrupted) as caught, Engine.open(ticked) as engine:
        engine.admin.verify()
    assert isinstance(caught.value, KeyboardInterrupt)
    report = caught.value.report
    assert report.interrupted and not report.complete
    assert report.not_checked[-3:] == ("snapshots vs log", "links vs payloads", "determinism")
    assert report.to_text().splitlines()[-1].startswith("OK (incomplete: interrupted)")


def test_ctrl_c_in_the_cli_prints_the_partial_report_and_exits_130(ticked: str) -> None:
    TICKS.update(interrupt_at=500)
    code, out = cli(ticked, "--app", "tests.test_verify", "--no-subprocess")
    assert code == 130, out
    assert "not checked: snapshots vs log" in out and "(incomplete: interrupted)" in out


# --------------------------------------------------------------------------- deep payloads

_DEEP = '{"counter_id":1,"label":' + "[" * 200_000 + "]" * 200_000 + "}"


def _deep_store(url: str, rewrite: Callable[[str], None]) -> None:
    with Engine.open(url, head_values=False) as engine:
        engine.fire(Labelled(counter_id=1, label="a"))
        engine.fire(Counted(counter_id=2))
        engine.commit()
    rewrite(_DEEP)


def _assert_deep_is_reported(url: str) -> None:
    from playthrough.errors import DecodeError

    with Engine.open(url, head_values=False) as engine:
        report = engine.admin.verify()
        assert not report.ok
        (error,) = report.errors
        assert "event 'verify_t.Labelled' at position 1" in error
        assert "nests arrays or objects too deeply" in error
        with pytest.raises(DecodeError, match="nests arrays or objects too deeply"):
            engine.admin.replay()


def test_a_stored_deeply_nested_payload_is_reported_not_a_recursion_error(tmp_path: Path) -> None:
    # verify and replay raised a raw RecursionError.
    import sqlite3

    path = tmp_path / "deep.db"

    def rewrite(data: str) -> None:
        conn = sqlite3.connect(path)
        conn.execute("UPDATE pt_events SET data = ? WHERE position = 1", (data,))
        conn.commit()
        conn.close()

    _deep_store(sqlite_url(path), rewrite)
    _assert_deep_is_reported(sqlite_url(path))


@pytest.mark.postgres
def test_a_stored_deeply_nested_payload_is_reported_on_postgres(
    pg_url: str, pg_schema: str
) -> None:
    import psycopg

    def rewrite(data: str) -> None:
        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute(
                f'UPDATE "{pg_schema}".pt_events SET data = %s WHERE position = 1', (data,)
            )

    url = f"{pg_url}?schema={pg_schema}"
    _deep_store(url, rewrite)
    _assert_deep_is_reported(url)


def test_a_deeply_nested_snapshot_is_a_mismatch_not_a_crash(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "deep_snapshot.db"

    def story(engine: Engine) -> None:
        engine.fire(Labelled(counter_id=1, label="a"))
        engine.commit()

    url = build(path, story)
    conn = sqlite3.connect(path)
    deep = '{"label":' + "[" * 200_000 + "]" * 200_000 + "}"
    assert conn.execute("UPDATE pt_snapshots SET data = ?", (deep,)).rowcount == 1
    conn.commit()
    conn.close()
    report = check(url, determinism=False)
    (m,) = report.snapshots.mismatches
    assert m.error is not None and "nests arrays or objects too deeply" in m.error
    assert "cannot be decoded" in report.to_text()
