"""Export and import carry everything a store needs besides its events.

Scheduled events, pending handlers, completions, followers' positions and the
data subjects' keys (sealed values stay sealed in the file); a damaged file of
any kind is a TransferError with nothing written; an append checks the log's
running hash.
"""

from __future__ import annotations

import gzip
import io
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from playthrough import FORGOTTEN, Engine
from playthrough._stores import TransferTables
from playthrough._transfer import CHAIN_START, log_chain
from playthrough.errors import HandlerFailed, TransferError
from playthrough.testing import ManualClock

from .sched_domain import Order, OrderPlaced, PaymentReceived, PaymentTimedOut
from .transfer_domain import Mailed, Person, PersonJoined, Visits

START = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def mail() -> Iterator[None]:
    Mailed.broken = False
    Mailed.sent.clear()
    yield
    Mailed.broken = False


def populate(engine: Engine, clock: ManualClock) -> None:
    """Orders with pending timeouts, a completed order, personal data, a pending handler,
    a forgotten person and a follower."""
    engine.fire(OrderPlaced(order_id=1))
    engine.fire(OrderPlaced(order_id=2))
    engine.commit()  # their handlers schedule a timeout each, due at 9:15
    clock.advance(minutes=5)
    engine.fire(OrderPlaced(order_id=3))  # due at 9:20
    engine.commit()
    engine.fire(PaymentReceived(order_id=1))  # completes order 1, cancels its timeout
    engine.commit()
    engine.fire(PersonJoined(person_id=7, name="Ada Lovelace"))
    engine.fire(PersonJoined(person_id=8, name="Bob"))
    engine.commit()
    assert engine.admin.forget(8) is True
    Mailed.broken = True
    engine.fire(Mailed(box_id=1))
    with pytest.raises(HandlerFailed):
        engine.commit().raise_for_failures()
    Mailed.broken = False
    engine.followers.run(Visits(), until_idle=True)
    engine.fire(PersonJoined(person_id=7, name="Ada King"))  # after the follower's position
    engine.commit()


def everything(engine: Engine) -> tuple[object, ...]:
    """The log (as stored: sealed) and every carried table."""
    with engine.store.reader() as reader:
        head = reader.head()
        log = [
            (e, sorted(reader.links_between(e.position - 1, e.position)))
            for e in reader.events_after_sealed(0, 1000)
        ]
        return head, log, reader.transfer_tables()


def exported(engine: Engine, *, with_followers: bool = False, keys: bool = True) -> bytes:
    out = io.BytesIO()
    engine.log.export(out, with_followers=with_followers, keys=keys)
    return out.getvalue()


def fire_due(engine: Engine, clock: ManualClock, at: datetime) -> list[tuple[str, str, str]]:
    """Move the clock to ``at``, run the scheduler, and say what it fired when."""
    clock.set(at)
    engine.scheduler.run_due()
    return [
        (str(e.order_id), str(e.fired_at and e.fired_at.isoformat()), str(e.id))
        for e in engine.log.events()
        if isinstance(e, PaymentTimedOut)
    ]


def check_faithful(engine: Engine, original: tuple[object, ...]) -> None:
    head, _log, tables = original
    assert isinstance(tables, TransferTables)
    assert everything(engine) == original
    assert engine.admin.verify().ok
    pending = [r for r in tables.schedule or () if r.status == "pending"]
    assert len(pending) == 2
    for row in pending:
        assert engine.scheduler.scheduled(row.id).status == "pending"
    assert (
        engine.states.completion(Order, 1) is not None
        and engine.states.completion(Order, 2) is None
    )
    assert engine.load(Person, 7).name == "Ada King"
    assert engine.load(Person, 8).name == FORGOTTEN
    with engine.store.reader() as reader:
        assert reader.pending_handlers(10) == list(tables.pending_handlers or ())
        assert [(f.name, f.position) for f in reader.followers()] == [
            ("transfer.visits", head - 1)  # type: ignore[operator]
        ]


def test_a_round_trip_keeps_everything_on_sqlite(tmp_path: Path) -> None:
    clock = ManualClock(START)
    with Engine.open(f"sqlite:///{tmp_path / 'a.db'}", clock=clock) as source:
        populate(source, clock)
        original = everything(source)
        data = exported(source, with_followers=True)
    assert b"Ada" not in data  # personal values stay sealed in the file
    copy_clock = ManualClock(START + timedelta(minutes=5))
    with Engine.open(f"sqlite:///{tmp_path / 'b.db'}", clock=copy_clock) as copy:
        copy.admin.import_log(io.BytesIO(gzip.compress(data)))
        check_faithful(copy, original)
        assert copy.admin.forget(7) is True  # the keys came along: erasure works in the copy
        assert copy.load(Person, 7).name == FORGOTTEN


@pytest.mark.postgres
def test_sqlite_to_postgres_to_sqlite_keeps_everything_and_fires_the_same_events(
    tmp_path: Path, pg_url: str, pg_schema: str
) -> None:
    clock = ManualClock(START)
    with Engine.open(f"sqlite:///{tmp_path / 'first.db'}", clock=clock) as source:
        populate(source, clock)
        original = everything(source)
        data = exported(source, with_followers=True)
        expected = fire_due(source, clock, START + timedelta(hours=1))
    assert [fired_at for _, fired_at, _ in expected] == [
        "2026-03-01T09:15:00+00:00",
        "2026-03-01T09:20:00+00:00",
    ]
    pg_clock = ManualClock(START + timedelta(minutes=5))
    with Engine.open(f"{pg_url}?schema={pg_schema}", clock=pg_clock) as pg:
        pg.admin.import_log(io.BytesIO(data))
        check_faithful(pg, original)
        back = exported(pg, with_followers=True)
    assert back == data  # byte for byte: the same log, tables and keys
    last_clock = ManualClock(START + timedelta(minutes=5))
    with Engine.open(f"sqlite:///{tmp_path / 'last.db'}", clock=last_clock) as last:
        last.admin.import_log(io.BytesIO(back))
        check_faithful(last, original)
        assert fire_due(last, last_clock, START + timedelta(hours=1)) == expected
        assert last.load(Order, 2).timed_out_at == datetime(2026, 3, 1, 9, 15, tzinfo=UTC)
        assert last.admin.verify().ok


@pytest.mark.postgres
def test_an_import_into_postgres_of_a_file_without_keys_is_refused_unless_forgotten(
    pg_url: str, pg_schema: str
) -> None:
    clock = ManualClock(START)
    with Engine.open("sqlite://", clock=clock) as source:
        populate(source, clock)
        data = exported(source, keys=False)
    with Engine.open(f"{pg_url}?schema={pg_schema}") as pg:
        with pytest.raises(TransferError, match=r"no key.*--forgotten"):
            pg.admin.import_log(io.BytesIO(data))
        assert pg.head() == 0
        pg.admin.import_log(io.BytesIO(data), forgotten=True)
        assert pg.load(Person, 7).name == FORGOTTEN


def test_without_keys_the_import_is_refused_unless_told_to_forget() -> None:
    clock = ManualClock(START)
    with Engine.open("sqlite://", clock=clock) as source:
        populate(source, clock)
        whole, stripped = exported(source), exported(source, keys=False)
    assert stripped == whole[: len(stripped)]  # the keys section is the file's tail
    with Engine.open("sqlite://") as target:
        with pytest.raises(TransferError, match=r"2 data subject\(s\) \('7', '8'\) have no key"):
            target.admin.import_log(io.BytesIO(stripped))
        assert target.head() == 0 and everything(target)[2] == TransferTables((), (), (), (), ())
        report = target.admin.import_log(io.BytesIO(stripped), forgotten=True)
        assert "subject_keys" not in report.sections
        assert target.load(Person, 7).name == FORGOTTEN
        assert target.admin.forget(7) is False  # there was no key to delete


def test_followers_travel_only_when_asked() -> None:
    clock = ManualClock(START)
    with Engine.open("sqlite://", clock=clock) as source:
        populate(source, clock)
        data = exported(source)
    assert json.loads(data.splitlines()[0])["sections"] == [
        "schedule",
        "pending_handlers",
        "completed",
        "event_keys",
        "forgotten",
    ]
    with Engine.open("sqlite://") as target:
        target.admin.import_log(io.BytesIO(data))
        assert target.followers() == []
        assert target.scheduler.scheduled(target.load(Order, 2).timeout_id).status == "pending"


def test_the_pending_handler_runs_in_the_copy() -> None:
    clock = ManualClock(START)
    with Engine.open("sqlite://", clock=clock) as source:
        populate(source, clock)
        data = exported(source)
    with Engine.open("sqlite://") as target:
        target.admin.import_log(io.BytesIO(data))
        Mailed.sent.clear()
        target.admin.run_pending_handlers()
        assert Mailed.sent == [1]
        with target.store.reader() as reader:
            assert reader.pending_handlers(10) == []


def version_1(data: bytes) -> bytes:
    """The same log as a version 1 file: no chain, no sections."""
    lines = data.splitlines(keepends=True)
    end = next(n for n, line in enumerate(lines) if line.startswith(b'{"trailer"'))
    header = json.loads(lines[0])
    header["version"] = 1
    del header["chain"], header["sections"]
    trailer = json.loads(lines[end])
    del trailer["chain"]
    return b"".join(
        [
            (json.dumps(header, separators=(",", ":")) + "\n").encode(),
            *lines[1:end],
            (json.dumps(trailer, separators=(",", ":")) + "\n").encode(),
        ]
    )


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def target_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'target.db'}"
    pg_url = request.getfixturevalue("pg_url")
    return f"{pg_url}?schema={request.getfixturevalue('pg_schema')}"


@pytest.mark.parametrize("append", [False, True])
def test_a_version_1_file_imports_and_its_completions_are_rebuilt(
    append: bool, target_url: str
) -> None:
    with Engine.open("sqlite://") as source:
        source.fire(OrderPlaced(order_id=1))
        source.fire(OrderPlaced(order_id=2))
        source.commit()
        placed = source.head()
        first = exported(source)
        source.fire(PaymentReceived(order_id=1))
        source.commit()
        assert source.states.completion(Order, 1) is not None
        head = source.head()
        whole, tail = exported(source), exported_after(source, placed)
    with Engine.open(target_url) as target:
        if append:  # the first part as it was then, the rest as a version 1 file
            target.admin.import_log(io.BytesIO(first))
            assert target.states.completion(Order, 1) is None
            target.admin.import_log(io.BytesIO(version_1(tail)), append=True)
        else:
            report = target.admin.import_log(io.BytesIO(version_1(whole)))
            assert report.chain is None and report.sections == ()
        assert target.head() == head
        done = target.states.completion(Order, 1)
        assert done is not None and done.event_type == PaymentReceived._pt_type_name
        assert target.states.completion(Order, 2) is None
        assert target.admin.verify().ok


def exported_after(engine: Engine, after: int) -> bytes:
    out = io.BytesIO()
    engine.log.export(out, after=after)
    return out.getvalue()


def test_an_append_of_another_logs_tail_is_refused_even_when_the_heads_agree(
    target_url: str,
) -> None:
    with Engine.open("sqlite://") as one, Engine.open(target_url) as other:
        one.fire(OrderPlaced(order_id=1))
        one.commit()
        other.fire(OrderPlaced(order_id=99))
        other.commit()
        one.fire(OrderPlaced(order_id=2))
        one.commit()
        assert one.head() == 4 and other.head() == 2  # each order's handler fired one more
        tail = exported_after(one, 2)
        with pytest.raises(TransferError, match="continues another log"):
            other.admin.import_log(io.BytesIO(tail), append=True)
        assert other.head() == 2
        assert log_chain(one.store, 0) == CHAIN_START
        assert log_chain(one.store, 2) != log_chain(other.store, 2)


def test_an_append_of_the_same_logs_tail_is_accepted_and_matches() -> None:
    with Engine.open("sqlite://") as source:
        source.fire(OrderPlaced(order_id=1))
        source.commit()
        first = exported(source)
        source.fire(PaymentReceived(order_id=1))
        source.commit()
        tail = exported_after(source, 2)
        original = everything(source)
    with Engine.open("sqlite://") as copy:
        copy.admin.import_log(io.BytesIO(first))
        report = copy.admin.import_log(io.BytesIO(tail), append=True)
        assert report.chain == log_chain(copy.store, copy.head())
        assert everything(copy) == original
        assert copy.admin.verify().ok


def _sections_swapped(data: bytes) -> bytes:
    """The pending handlers section before the schedule section."""
    lines = data.splitlines(keepends=True)
    start = {json.loads(x).get("section"): n for n, x in enumerate(lines) if x.startswith(b'{"s')}
    schedule = lines[start["schedule"] : start["pending_handlers"]]
    handlers = lines[start["pending_handlers"] : start["completed"]]
    return b"".join(
        [*lines[: start["schedule"]], *handlers, *schedule, *lines[start["completed"] :]]
    )


def _row_changed(data: bytes) -> bytes:
    """A scheduled event's due time moved by an hour, its section's checksum left as it was."""
    lines = data.splitlines(keepends=True)
    n = next(n for n, x in enumerate(lines) if x.startswith(b'["'))
    changed = lines[n].replace(b"T09:", b"T10:", 1)
    assert changed != lines[n]
    return b"".join([*lines[:n], changed, *lines[n + 1 :]])


def _trailer_garbled(data: bytes) -> bytes:
    lines = data.splitlines(keepends=True)
    n = next(n for n, x in enumerate(lines) if x.startswith(b'{"trailer"'))
    return b"".join([*lines[:n], lines[n][:30] + b"\n", *lines[n + 1 :]])


def _keys_cut(data: bytes) -> bytes:
    """The file ends inside its keys section."""
    lines = data.splitlines(keepends=True)
    n = next(n for n, x in enumerate(lines) if x.startswith(b'{"section":"subject_keys"'))
    return b"".join(lines[: n + 1])


def _header_version(data: bytes) -> bytes:
    return data.replace(b'"schema_version":', b'"schema_version":"seven","x":', 1)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda d: gzip.compress(d)[:-40], "truncated or damaged"),
        (lambda d: gzip.compress(d)[:60], "truncated or damaged"),
        (lambda d: gzip.compress(d)[:-12] + b"\x00" * 12, "truncated or damaged"),
        (_trailer_garbled, "the trailer is not a JSON object"),
        (_header_version, "schema_version is 'seven', not a number"),
        (lambda d: d.replace(b'"version":3', b'"version":"3"', 1), "format version '3'"),
        (_sections_swapped, "'pending_handlers' where 'schedule' was expected"),
        (_row_changed, "checksum mismatch in section 'schedule'"),
        (_keys_cut, "section 'subject_keys' has no end line"),
        (lambda d: d.replace(b'"chain":"0000', b'"chain":"1111', 1), "continues another log"),
        (
            lambda d: d.replace(b'"sections":["schedule",', b'"sections":["keys",', 1),
            "unknown or disordered sections",
        ),
    ],
)
def test_every_kind_of_damage_is_a_transfer_error_and_writes_nothing(
    damage: object, message: str
) -> None:
    clock = ManualClock(START)
    with Engine.open("sqlite://", clock=clock) as source:
        populate(source, clock)
        data = exported(source, with_followers=True)
    with Engine.open("sqlite://") as target:
        with pytest.raises(TransferError, match=message):
            target.admin.import_log(io.BytesIO(damage(data)))  # type: ignore[operator]
        assert target.head() == 0
        assert everything(target) == (0, [], TransferTables((), (), (), (), ()))


@pytest.mark.postgres
def test_a_truncated_gzip_leaves_postgres_untouched(pg_url: str, pg_schema: str) -> None:
    clock = ManualClock(START)
    with Engine.open("sqlite://", clock=clock) as source:
        populate(source, clock)
        data = gzip.compress(exported(source, with_followers=True))
    with Engine.open(f"{pg_url}?schema={pg_schema}") as target:
        for damaged in (data[:-40], _sections_swapped(gzip.decompress(data))):
            with pytest.raises(TransferError):
                target.admin.import_log(io.BytesIO(damaged))
            assert everything(target) == (0, [], TransferTables((), (), (), (), ()))


def test_the_cli_carries_followers_strips_keys_and_imports_as_forgotten(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from playthrough._cli import main

    clock = ManualClock(START)
    db = tmp_path / "source.db"
    with Engine.open(f"sqlite:///{db}", clock=clock) as source:
        populate(source, clock)
    runner = CliRunner()
    full, stripped = tmp_path / "full.jsonl.gz", tmp_path / "stripped.jsonl.gz"
    for out, flags in ((full, ["--with-followers"]), (stripped, ["--without-keys"])):
        done = runner.invoke(main, ["export", f"sqlite:///{db}", "-o", str(out), *flags])
        assert done.exit_code == 0, done.output
    first = gzip.decompress(full.read_bytes()).splitlines()[0]
    assert json.loads(first)["sections"][-3:] == ["followers", "event_keys", "forgotten"]
    assert b"subject_keys" not in gzip.decompress(stripped.read_bytes())
    copy = f"sqlite:///{tmp_path / 'copy.db'}"
    refused = runner.invoke(main, ["import", str(stripped), copy])
    assert refused.exit_code == 1 and "--forgotten" in refused.output
    done = runner.invoke(main, ["import", str(stripped), copy, "--forgotten"])
    assert done.exit_code == 0, done.output
    with Engine.open(copy) as engine:
        assert engine.load(Person, 7).name == FORGOTTEN
        assert engine.followers() == []
    other = f"sqlite:///{tmp_path / 'other.db'}"
    done = runner.invoke(main, ["import", str(full), other])
    assert done.exit_code == 0, done.output
    assert (
        "with schedule, pending_handlers, completed, followers, event_keys, forgotten, subject_keys"
        in done.output
    )
    with Engine.open(other) as engine:
        assert engine.load(Person, 7).name == "Ada King"
        assert [f.name for f in engine.followers()] == ["transfer.visits"]
        assert engine.admin.verify().ok


def test_an_archived_store_records_its_chain_and_can_still_be_continued(tmp_path: Path) -> None:
    clock = ManualClock(START)
    url = f"sqlite:///{tmp_path / 'source.db'}"
    with Engine.open(url, clock=clock) as source, Engine.open("sqlite://") as copy:
        populate(source, clock)
        head = source.head()
        copy.admin.import_log(io.BytesIO(exported(source)))
        report = source.admin.archive(before=head - 1, to=tmp_path / "old.jsonl.gz")
        with source.store.reader() as reader:
            assert reader.meta("archived_chain") == log_chain(copy.store, report.until)
        source.fire(PersonJoined(person_id=9, name="Cy"))
        source.commit()
        tail = exported_after(source, head)
        assert json.loads(tail.splitlines()[0])["chain"] == log_chain(copy.store, head)
        copy.admin.import_log(io.BytesIO(tail), append=True)
        carried = everything(source)[2]
        assert isinstance(carried, TransferTables)
        assert everything(copy)[2] == carried._replace(followers=())  # not asked for
        assert copy.load(Person, 9).name == "Cy" and copy.admin.verify().ok
    archived = gzip.decompress((tmp_path / "old.jsonl.gz").read_bytes())
    assert b"Ada" not in archived and b'{"section":"subject_keys"}' in archived
    with Engine.open(url, archive=[tmp_path / "old.jsonl.gz"]) as engine:
        assert engine.load(Person, 7, at=report.until).name.startswith("Ada")


def test_a_scheduled_events_personal_values_keep_their_key() -> None:
    clock = ManualClock(START)
    with Engine.open("sqlite://", clock=clock) as source:
        sid = source.scheduler.schedule(
            PersonJoined(person_id=5, name="Dee"), after=timedelta(hours=1)
        )
        assert source.head() == 0  # the subject's only sealed value is in the schedule
        data = exported(source)
    assert b"Dee" not in data
    later = ManualClock(START + timedelta(hours=2))
    with Engine.open("sqlite://", clock=later) as target:
        target.admin.import_log(io.BytesIO(data))
        [fired] = target.scheduler.run_due()
        assert fired.id == sid and target.load(Person, 5).name == "Dee"
    with Engine.open("sqlite://", clock=later) as stripped:
        with pytest.raises(TransferError, match=r"\('5'\) have no key"):
            stripped.admin.import_log(io.BytesIO(exported_without_keys(data)))


def exported_without_keys(data: bytes) -> bytes:
    return data[: data.index(b'{"section":"subject_keys"}')]


def test_a_store_holding_only_scheduled_events_is_not_empty() -> None:
    with Engine.open("sqlite://") as source:
        source.fire(OrderPlaced(order_id=1))
        source.commit()
        data = exported(source)
    with Engine.open("sqlite://") as target:
        sid = target.scheduler.schedule(OrderPlaced(order_id=2), after=timedelta(hours=1))
        with pytest.raises(TransferError, match="not empty"):
            target.admin.import_log(io.BytesIO(data))
        assert target.scheduler.scheduled(sid).status == "pending"
