"""Archival: the old log moves to a file; every load stays exact or refuses loudly."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from playthrough import Engine, Event
from playthrough._model import key_of
from playthrough._serialization import encode_state
from playthrough._stores import SQLiteStore
from playthrough.errors import ArchivedRangeError, PlaythroughError
from playthrough.examples.bank import Account, Deposited, Ledger, Transferred
from playthrough.testing import reference_states

from .domain import Node
from .strategies import events, operations
from .test_reconstitution_properties import expected, ref_class, run_history, snapshot_of

REFS: list[int | None] = [1, 2, 3, 4, None]
_files = itertools.count()


def _check_loads(engine: Engine, committed: list[Event], positions: list[int]) -> None:
    for ref in REFS:
        assert snapshot_of(engine.load(*ref_class(ref))) == expected(committed, ref)
        for p in positions:
            cls, sid = ref_class(ref)
            got = engine.load(cls, sid, at=p)
            assert snapshot_of(got) == expected(committed, ref, upto=p), (ref, p)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    ops=operations(),
    cut_at=st.floats(0, 1),
    travel=st.lists(st.floats(0, 1), max_size=3),
    more=st.lists(events(), max_size=6),
)
def test_archive_at_a_random_cut_keeps_every_load_exact(
    tmp_path: Path,
    ops: list[tuple[object, ...]],
    cut_at: float,
    travel: list[float],
    more: list[Event],
) -> None:
    db = tmp_path / f"a{next(_files)}.db"
    store = SQLiteStore(str(db), synchronous="OFF")
    committed: list[Event] = []
    run_history(Engine(store), ops, committed)
    head = Engine(store).head()
    if head < 2:
        store.close()
        return
    cut = 1 + int(cut_at * (head - 2))  # 1 <= cut < head
    archive = tmp_path / f"a{next(_files)}.jsonl.gz"
    report = Engine(store).admin.archive(before=cut + 1, to=archive)
    assert (report.after, report.until, report.events) == (0, cut, cut)
    after_cut = sorted({cut + int(f * (head - cut)) for f in travel})
    before_cut = sorted({int(f * (cut - 1)) for f in travel})

    fresh = Engine(store)  # loads at and after the cut: from the base snapshots
    _check_loads(fresh, committed, after_cut)
    for p in before_cut:
        with pytest.raises(ArchivedRangeError, match=rf"positions 1\.\.{cut} were archived"):
            fresh.load(Node, 1, at=p)
    with pytest.raises(ArchivedRangeError, match="archived"):
        fresh.admin.replay()
    with pytest.raises(ArchivedRangeError, match="archived"):
        fresh.admin.snapshot([(Node, 1)], at=cut - 1)
    fresh.admin.drop_snapshots()  # the base snapshots stay: they stand for the archived events
    _check_loads(Engine(store), committed, after_cut)

    reading = Engine(store, archive=archive)  # before the cut: from the archive file
    _check_loads(reading, committed, before_cut + after_cut)

    writer = Engine(store)  # new commits go on where the log was
    for event in more:
        try:
            writer.fire(event)
        except PlaythroughError:
            continue
        committed.extend(writer.commit())
    writer.admin.snapshot()
    _check_loads(Engine(store), committed, after_cut)
    store.close()


def test_a_second_archive_chains_after_the_first(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'bank.db'}"
    committed: list[Event] = []
    with Engine.open(url, snapshot_every=3) as engine:
        for n in range(12):
            engine.fire(Deposited(account_id=n % 3, amount=10))
            if n % 4 == 3:
                engine.fire(Transferred(source_id=n % 3, target_id=(n + 1) % 3, amount=5))
            committed.extend(engine.commit())
        first = engine.admin.archive(before=6, to=tmp_path / "one.jsonl.gz")
        second = engine.admin.archive(before=12, to=tmp_path / "two.jsonl.gz")
        assert (first.after, first.until, second.after, second.until) == (0, 5, 5, 11)
        with pytest.raises(PlaythroughError, match="already exists"):
            engine.admin.archive(before=14, to=tmp_path / "two.jsonl.gz")
        with pytest.raises(PlaythroughError, match="must be after the archived"):
            engine.admin.archive(before=8, to=tmp_path / "three.jsonl.gz")
        with pytest.raises(PlaythroughError, match="before the head"):
            engine.admin.archive(before=engine.head() + 1, to=tmp_path / "three.jsonl.gz")
    reference = reference_states(committed)
    files = [tmp_path / "one.jsonl.gz", tmp_path / "two.jsonl.gz"]
    with Engine.open(url, archive=files) as engine:
        for n in range(3):
            for p in (0, 3, 5, 8, 11, engine.head()):
                want = reference_states(committed, upto=p).get(key_of(Account, n))
                got = engine.load(Account, n, at=p)
                assert want is None or encode_state(got) == encode_state(want)
            assert encode_state(engine.load(Account, n)) == encode_state(
                reference[key_of(Account, n)]
            )
        assert engine.load(Ledger).transfers == 3
    with Engine.open(url, archive=files[1:]) as engine:
        with pytest.raises(ArchivedRangeError, match="must hold the archived log from position 1"):
            engine.load(Account, 1, at=2)


def test_archive_before_a_date_takes_the_events_fired_before_it(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'bank.db'}"
    with Engine.open(url) as engine:
        for n in range(4):
            engine.fire(Deposited(account_id=1, amount=n + 1))
            engine.commit()
        fired = [
            datetime.fromisoformat(e.event.fired_at) for p in engine.store.read_log() for e in p
        ]
        report = engine.admin.archive(before=fired[2], to=tmp_path / "old.jsonl.gz")
        assert report.until == 2
        with pytest.raises(ValueError, match="time zone"):
            engine.admin.archive(before=datetime(2030, 1, 1), to=tmp_path / "x.jsonl.gz")
        with pytest.raises(PlaythroughError, match="nothing to archive"):
            engine.admin.archive(before=fired[0] - timedelta(days=1), to=tmp_path / "y.jsonl.gz")
        assert engine.load(Account, 1).balance == 1 + 2 + 3 + 4
        assert datetime.now(UTC) > fired[-1]


@pytest.mark.postgres
def test_archive_on_postgres(tmp_path: Path, pg_url: str, pg_schema: str) -> None:
    url = f"{pg_url}?schema={pg_schema}"
    with Engine.open(url, snapshot_every=2, snapshot_history=1) as engine:
        for n in range(9):
            engine.fire(Deposited(account_id=n % 2, amount=n + 1))
            engine.fire(Transferred(source_id=n % 2, target_id=1 - n % 2, amount=1))
            engine.commit()
        balances = [engine.load(Account, i).balance for i in (0, 1)]
        before = engine.load(Account, 0, at=7)
        engine.admin.archive(before=10, to=tmp_path / "pg.jsonl.gz")
        engine.admin.snapshot()  # history 1: a newer snapshot must not trim the base away
        engine.admin.snapshot()
    with Engine.open(url) as engine:
        assert [engine.load(Account, i).balance for i in (0, 1)] == balances
        assert engine.load(Ledger).transfers == 9
        with pytest.raises(ArchivedRangeError):
            engine.load(Account, 0, at=7)
    with Engine.open(url, archive=tmp_path / "pg.jsonl.gz") as engine:
        assert engine.load(Account, 0, at=7) == before


def test_verify_checks_an_archived_log_from_its_cut(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'bank.db'}"
    with Engine.open(url) as engine:
        for n in range(6):
            engine.fire(Deposited(account_id=n % 2, amount=n + 1))
            engine.fire(Transferred(source_id=n % 2, target_id=1 - n % 2, amount=1))
            engine.commit()
        engine.admin.archive(before=6, to=tmp_path / "old.jsonl.gz")
        engine.admin.snapshot()
        report = engine.admin.verify(apps=["playthrough.examples.bank"])
        assert report.ok, report.to_text()
        assert report.start == 5
        # the set at the head and the heads values; the base at the cut is the start
        assert report.snapshots.checked == 6
        assert report.determinism.ran and not report.determinism.mismatches
        with pytest.raises(ArchivedRangeError, match="snapshot-free rebuild"):
            engine.admin.verify(sample=1)
        # a wrong snapshot after the cut is still caught
        head = engine.head()
        with engine.store._transaction("BEGIN IMMEDIATE") as conn:  # type: ignore[attr-defined]
            conn.execute(
                "UPDATE pt_snapshots SET data = replace(data, '\"balance\":', '\"balance\":9') "
                "WHERE position = ? AND state_type = 'bank.Account'",
                (head,),
            )
        bad = engine.admin.verify(determinism=False)
        assert not bad.ok
        assert bad.snapshots.mismatches


def test_the_cli_archives(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    db = tmp_path / "bank.db"
    with Engine.open(f"sqlite:///{db}") as engine:
        for n in range(5):
            engine.fire(Deposited(account_id=1, amount=n + 1))
            engine.commit()
    command = [sys.executable, "-m", "playthrough._cli", "archive", f"sqlite:///{db}"]
    env = {**os.environ, "CI": "1"}
    done = subprocess.run(
        [
            *command,
            "--before",
            "4",
            "--to",
            str(tmp_path / "a.jsonl.gz"),
            "--app",
            "playthrough.examples.bank",
        ],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "archived 3 events (0, 3]" in done.stdout
    bad = subprocess.run(
        [*command, "--before", "yesterday", "--to", str(tmp_path / "b.jsonl.gz")],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert bad.returncode == 2 and "neither a position nor an ISO date" in bad.stderr
    with Engine.open(f"sqlite:///{db}") as engine:
        assert engine.load(Account, 1).balance == 15
        with pytest.raises(ArchivedRangeError):
            engine.load(Account, 1, at=2)
    with Engine.open(f"sqlite:///{db}", archive=tmp_path / "a.jsonl.gz") as engine:
        assert engine.load(Account, 1, at=2).balance == 3


# ---------------------------------------------------------------- progress, durability, space


def _bank_log(url: str, commits: int) -> None:
    with Engine.open(url) as engine:
        for n in range(commits):
            engine.fire(Deposited(account_id=n % 50, amount=n + 1))
            engine.commit()


def test_archive_reports_progress_by_stage(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'bank.db'}"
    _bank_log(url, 30)
    seen: list[tuple[str, int, int]] = []
    with Engine.open(url) as engine:
        engine.admin.archive(
            before=21, to=tmp_path / "a.jsonl.gz", progress=lambda *step: seen.append(step)
        )
    stages = list(dict.fromkeys(stage for stage, _, _ in seen))
    assert stages == ["states", "export", "delete"]
    states = seen[0][2]  # 20 accounts and the ledger
    assert seen[0] == ("states", 0, states) and ("states", states, states) in seen
    assert states == 21
    assert ("export", 20, 20) in seen and ("delete", 1, 1) in seen


def test_the_cli_shows_a_progress_bar_only_when_asked_or_on_a_terminal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from collections.abc import Iterator
    from contextlib import contextmanager

    from click.testing import CliRunner

    from playthrough import _cli
    from playthrough._cli import _shared

    wanted: list[bool | None] = []
    shown: list[tuple[str, int, int]] = []

    @contextmanager
    def bar(want: bool | None) -> Iterator[object]:
        wanted.append(want)
        yield (lambda *step: shown.append(step)) if want else None

    monkeypatch.setattr(_shared, "progress_bar", bar)
    db = tmp_path / "bank.db"
    _bank_log(f"sqlite:///{db}", 10)
    args = ["archive", f"sqlite:///{db}", "--app", "playthrough.examples.bank"]
    quiet = CliRunner().invoke(_cli.main, [*args, "--before", "4", "--to", str(tmp_path / "1.gz")])
    assert quiet.exit_code == 0, quiet.output
    assert wanted == [None] and shown == []  # None: a bar only on a terminal (not under CI)
    asked = CliRunner().invoke(
        _cli.main, [*args, "--before", "8", "--to", str(tmp_path / "2.gz"), "--progress"]
    )
    assert asked.exit_code == 0, asked.output
    assert wanted == [None, True] and ("export", 4, 4) in shown


def test_the_progress_bar_draws_on_stderr() -> None:
    from playthrough._cli._shared import progress_bar as _progress_bar

    with _progress_bar(True) as update:
        assert update is not None
        update("export", 1, 2)  # a rich bar on stderr, removed when done
    with _progress_bar(False) as update:
        assert update is None


def test_the_archive_file_and_its_rename_are_on_disk_before_the_delete(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os
    import stat

    url = f"sqlite:///{tmp_path / 'bank.db'}"
    _bank_log(url, 10)
    calls: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        calls.append("fsync dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "fsync file")
        real_fsync(fd)

    def replace(src: str, dst: str) -> None:
        calls.append("rename")
        real_replace(src, dst)

    with Engine.open(url) as engine:
        real_archive = engine.store.archive

        def archive(*args: object) -> int:
            calls.append("delete")
            return real_archive(*args)  # type: ignore[arg-type]

        monkeypatch.setattr(engine.store, "archive", archive)
        monkeypatch.setattr(os, "fsync", fsync)
        monkeypatch.setattr(os, "replace", replace)
        engine.admin.archive(before=5, to=tmp_path / "a.jsonl.gz")
        monkeypatch.undo()
    renamed = calls.index("rename")
    assert "fsync file" in calls[:renamed]  # the file's bytes, then its name, then the delete
    assert calls[renamed + 1 : renamed + 2] == ["fsync dir"]
    assert calls.index("delete") > renamed + 1


def test_vacuum_gives_the_space_back_on_sqlite(tmp_path: Path) -> None:
    import sqlite3

    db = tmp_path / "bank.db"
    url = f"sqlite:///{db}"
    _bank_log(url, 400)
    with Engine.open(url) as engine:  # without --vacuum the file keeps its free pages
        engine.admin.archive(before=200, to=tmp_path / "1.jsonl.gz")
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA freelist_count").fetchone()[0] > 0
    conn.close()
    size = db.stat().st_size
    with Engine.open(url) as engine:
        report = engine.admin.archive(before=390, to=tmp_path / "2.jsonl.gz", vacuum=True)
        assert engine.load(Account, 1).balance == sum(n + 1 for n in range(400) if n % 50 == 1)
    assert report.vacuumed is not None
    was, now = report.vacuumed
    assert now < was
    assert db.stat().st_size < size  # the file itself shrank (WAL checkpointed)
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA freelist_count").fetchone()[0] == 0
    conn.close()


def test_the_cli_vacuums(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from playthrough._cli import main

    db = tmp_path / "bank.db"
    _bank_log(f"sqlite:///{db}", 100)
    done = CliRunner().invoke(
        main,
        [
            *("archive", f"sqlite:///{db}", "--before", "90", "--to", str(tmp_path / "a.gz")),
            *("--app", "playthrough.examples.bank", "--vacuum"),
        ],
    )
    assert done.exit_code == 0, done.output
    assert "vacuumed: " in done.output and " MB -> " in done.output


def test_vacuum_on_postgres(tmp_path: Path, pg_url: str, pg_schema: str) -> None:
    url = f"{pg_url}?schema={pg_schema}"
    _bank_log(url, 200)
    with Engine.open(url) as engine:
        report = engine.admin.archive(before=190, to=tmp_path / "pg.jsonl.gz", vacuum=True)
        assert engine.load(Account, 1).balance == sum(n + 1 for n in range(200) if n % 50 == 1)
    assert report.vacuumed is not None
    assert all(size > 0 for size in report.vacuumed)  # (VACUUM may add free space maps)


def test_a_state_first_touched_after_the_cut_loads_after_a_redeploy(
    any_url: str, tmp_path: Path
) -> None:
    """A snapshot written by the old event classes after the cut is skipped; a state no
    archived event touched has no base snapshot and starts blank, which is exact."""
    from . import model_domain as dom

    try:
        v1 = dom.activate("v1")
        with Engine.open(any_url) as engine:
            for _ in range(3):
                engine.fire(dom.add("v1", v1, 1, 3))
                engine.commit()
            engine.fire(dom.move("v1", v1, 1, 2, 2))  # Acct(2)'s first event: after the cut
            engine.commit()
            engine.admin.snapshot()  # under the v1 classes
        v2 = dom.activate("v2")  # the redeploy: amounts in cents
        with Engine.open(any_url) as engine:
            engine.fire(dom.add("v2", v2, 2, 3))
            engine.commit()
            engine.admin.archive(before=4, to=tmp_path / "old.jsonl.gz")
            with Engine.open(any_url) as fresh:
                assert (fresh.load(dom.Acct, 1).n, fresh.load(dom.Acct, 2).n) == (700, 500)
                assert fresh.load(dom.Hub).total == 1200
    finally:
        dom.activate("v1")


def test_a_blank_snapshot_at_the_cut_is_not_a_base_after_a_redeploy(
    any_url: str, tmp_path: Path
) -> None:
    """A snapshot set at the cut holds a state no event had touched (a blank value, written
    by the old classes): it stands for no archived event, so skipping it is exact."""
    from . import model_domain as dom

    try:
        v1 = dom.activate("v1")
        with Engine.open(any_url) as engine:
            for units in (3, 1):
                engine.fire(dom.add("v1", v1, 1, units))
                engine.commit()
            engine.admin.snapshot([(dom.Acct, 1), (dom.Acct, 2)], at=1)  # Acct(2): blank, at 1
        v2 = dom.activate("v2")  # the redeploy
        with Engine.open(any_url) as engine:
            engine.admin.archive(before=2, to=tmp_path / "old.jsonl.gz")
            engine.admin.drop_snapshots()  # base snapshots at the cut stay, and so did Acct(2)'s
            with Engine.open(any_url) as fresh:
                assert fresh.load_many(dom.Acct, [1, 2]) == [dom.Acct(n=400), dom.Acct()]
            with Engine.open(any_url) as fresh:
                assert fresh.load(dom.Acct, 2) == dom.Acct()
            engine.fire(dom.add("v2", v2, 2, 4))
            engine.commit()
            with Engine.open(any_url) as fresh:
                assert fresh.load(dom.Acct, 2).n == 400
    finally:
        dom.activate("v1")


def test_info_after_an_archive_says_what_the_archive_holds(any_url: str, tmp_path: Path) -> None:
    """A state's first event may be archived: info says so instead of naming the first event
    after the cut as its creation (or failing on a time it cannot read)."""
    with Engine.open(any_url) as engine:
        for account in (1, 2):
            engine.fire(Deposited(account_id=account, amount=5))  # positions 1 and 2
            engine.commit()
        engine.fire(Deposited(account_id=1, amount=1))  # position 3: account 1 after the cut
        engine.commit()
        engine.fire(Deposited(account_id=3, amount=1))  # position 4: account 3 is new
        engine.commit()
        engine.admin.archive(before=3, to=tmp_path / "old.jsonl.gz")  # the cut: 2
        with Engine.open(any_url) as fresh:
            one, two, three = (fresh.states.info(Account, n) for n in (1, 2, 3))
    assert (one.created_position, one.created_at, one.archived_until) == (None, None, 2)
    assert (one.last_position, one.events) == (3, 1)
    assert one.last_at is not None
    assert "created before the archive cut #2" in str(one)
    assert (two.created_position, two.last_position, two.last_at) == (None, 2, None)
    assert two.archived_until == 2
    assert "last event #2 (archived)" in str(two)
    assert (three.created_position, three.last_position, three.archived_until) == (4, 4, None)
    assert three.created_at is not None and three.created_at == three.last_at
