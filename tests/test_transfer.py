"""Export and import of the log: format, checks, refusals, round trips between stores."""

from __future__ import annotations

import gzip
import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from playthrough import Engine, Event
from playthrough._model import key_of
from playthrough._serialization import encode_state
from playthrough._stores import LinkedEntry, Store
from playthrough._stores._base import SCHEMA_VERSION
from playthrough._transfer import CHAIN_START, FORMAT_VERSION
from playthrough.errors import EventRejected, SchemaVersionError, TransferError
from playthrough.examples.bank import Account, Deposited, Ledger, Transferred
from playthrough.testing import reference_states
from playthrough.testing.checks import ref_of

from .domain import Hub, Node
from .strategies import events


def linked_log(store: Store) -> list[LinkedEntry]:
    return [
        LinkedEntry(e.event, sorted(e.links, key=lambda link: link.key))
        for page in store.read_linked_log(chunk=7)
        for e in page
    ]


def bank_history(engine: Engine) -> None:
    engine.fire(Deposited(account_id=1, amount=100))
    engine.fire(Deposited(account_id=2, amount=50))
    engine.commit()
    engine.fire(Transferred(source_id=1, target_id=2, amount=30))
    engine.commit()
    engine.fire(Deposited(account_id=3, amount=7))
    engine.commit()


def exported(engine: Engine, after: int = 0) -> bytes:
    out = io.BytesIO()
    engine.log.export(out, after=after)
    return out.getvalue()


def log_part(data: bytes) -> list[dict[str, Any]]:
    """The header, the event lines and the trailer of an export (the sections after it dropped)."""
    lines = [json.loads(line) for line in data.splitlines()]
    end = next(n for n, line in enumerate(lines) if isinstance(line, dict) and "trailer" in line)
    return lines[: end + 1]


def events_part(data: bytes) -> bytes:
    """The header, the event lines and the trailer, as bytes (a version 1 file's shape)."""
    lines = data.splitlines(keepends=True)
    end = next(n for n, line in enumerate(lines) if line.startswith(b'{"trailer"'))
    return b"".join(lines[: end + 1])


def test_the_export_format_has_a_header_events_and_a_trailer() -> None:
    with Engine.open("sqlite://") as engine:
        bank_history(engine)
        lines = log_part(exported(engine))
    header, *rows, trailer = lines
    assert header == {
        "format": "playthrough-log",
        "version": FORMAT_VERSION,
        "schema_version": SCHEMA_VERSION,
        "after": 0,
        "until": 4,
        "chain": CHAIN_START,
        "sections": ["schedule", "pending_handlers", "completed", "event_keys", "forgotten"],
    }
    assert [r["position"] for r in rows] == [1, 2, 3, 4]
    transfer = rows[2]
    assert transfer["type"] == Transferred._pt_type_name
    assert json.loads(transfer["data"]) == {"source_id": 1, "target_id": 2, "amount": 30}
    assert transfer["caused_by"] is None and transfer["fired_at"]
    # one apply over both accounts and the ledger: one coupling group
    assert sorted(transfer["links"]) == [
        ["bank.Account", "1", 0],
        ["bank.Account", "2", 0],
        ["bank.Ledger", "", 0],
    ]
    # Deposited's two hooks (account; ledger) couple nothing: two groups
    assert sorted(rows[0]["links"]) == [["bank.Account", "1", 0], ["bank.Ledger", "", 1]]
    assert trailer["trailer"] is True and trailer["count"] == 4
    assert len(trailer["sha256"]) == 64


def test_export_after_a_position_holds_only_the_rest() -> None:
    with Engine.open("sqlite://") as engine:
        bank_history(engine)
        header, *rows, trailer = log_part(exported(engine, after=2))
    assert (header["after"], header["until"]) == (2, 4)
    assert [r["position"] for r in rows] == [3, 4]
    assert trailer["count"] == 2


def test_import_keeps_positions_links_and_states(tmp_path: Path) -> None:
    with Engine.open("sqlite://") as source:
        bank_history(source)
        data = exported(source)
        before = linked_log(source.store)
    with Engine.open(f"sqlite:///{tmp_path / 'copy.db'}") as target:
        report = target.admin.import_log(io.BytesIO(gzip.compress(data)))
        assert (report.count, report.after, report.until, report.verify) == (4, 0, 4, None)
        assert linked_log(target.store) == before
        assert target.load(Account, 2).balance == 80
        assert target.load(Ledger).transfers == 1
        assert target.load(Account, 1).last_event_id == 3
        # the heads moved: new commits are checked and numbered after the import
        target.fire(Deposited(account_id=1, amount=1))
        (event,) = target.commit()
        assert event.id == 5


def _damage(data: bytes) -> bytes:
    lines = data.splitlines(keepends=True)
    lines[2] = lines[2].replace(b'"amount\\":50', b'"amount\\":51')
    assert lines[2] != data.splitlines(keepends=True)[2]
    return b"".join(lines)


def _lines(data: bytes, change: Any) -> bytes:
    """The file with its list of lines changed (line 0 the header, line 1 the first event)."""
    return b"".join(change(data.splitlines(keepends=True)))


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (_damage, "checksum mismatch"),
        (lambda d: b"".join(events_part(d).splitlines(keepends=True)[:-1]), "truncated"),
        (lambda d: b"".join(events_part(d).splitlines(keepends=True)[:-2]), "truncated"),
        (lambda d: b"".join(d.splitlines(keepends=True)[:-1]), "no end line"),
        (
            lambda d: d.replace(b'"count":4', b'"count":5'),
            "the trailer counts 5 events, the file holds 4",
        ),
        (lambda d: b"garbage\n" + d, "not a playthrough log export"),
        (lambda d: d + b"{}\n", "not a section"),
        (lambda d: events_part(d) + b"{}\n", "not a section"),
        (lambda d: _lines(d, lambda x: [*x[:2], x[3], x[2], *x[4:]]), "position 3 where 2 was"),
        (lambda d: _lines(d, lambda x: x[:2] + x[3:]), "position 3 where 2 was expected"),
        (lambda d: _lines(d, lambda x: [*x[:2], x[2][:-1] + b' {"x":1}\n', *x[3:]]), "extra data"),
        (lambda d: _lines(d, lambda x: [*x[:2], b"[1]\n", *x[3:]]), "line 3 is not an event"),
    ],
)
def test_a_damaged_file_is_refused_and_nothing_is_written(damage: object, message: str) -> None:
    with Engine.open("sqlite://") as source:
        bank_history(source)
        data = exported(source)
    with Engine.open("sqlite://") as target:
        with pytest.raises(TransferError, match=message):
            target.admin.import_log(io.BytesIO(damage(data)))  # type: ignore[operator]
        assert target.head() == 0
        assert linked_log(target.store) == []
        with target.store.reader() as reader:
            assert reader.state_heads([key_of(Account, 1)]) == {}


def test_a_newer_format_or_schema_is_refused() -> None:
    with Engine.open("sqlite://") as source:
        bank_history(source)
        data = exported(source)
    newer_format = data.replace(f'"version":{FORMAT_VERSION}'.encode(), b'"version":99', 1)
    newer_schema = data.replace(
        f'"schema_version":{SCHEMA_VERSION}'.encode(), b'"schema_version":99', 1
    )
    assert newer_schema != data
    with Engine.open("sqlite://") as target:
        with pytest.raises(TransferError, match="format version 99"):
            target.admin.import_log(io.BytesIO(newer_format))
        with pytest.raises(SchemaVersionError, match="schema version 99"):
            target.admin.import_log(io.BytesIO(newer_schema))


def test_a_non_empty_store_is_refused_unless_append_continues_its_head() -> None:
    with Engine.open("sqlite://") as source:
        bank_history(source)
        whole, tail = exported(source), exported(source, after=2)
        log = linked_log(source.store)
    with Engine.open("sqlite://") as target:
        target.admin.import_log(io.BytesIO(exported_prefix(whole, 2)))
        with pytest.raises(TransferError, match="not empty"):
            target.admin.import_log(io.BytesIO(tail))
        with pytest.raises(TransferError, match="after position 0"):
            target.admin.import_log(io.BytesIO(whole), append=True)
        report = target.admin.import_log(io.BytesIO(tail), append=True)
        assert (report.after, report.until) == (2, 4)
        assert linked_log(target.store) == log
    with (
        Engine.open("sqlite://") as empty,
        pytest.raises(TransferError, match="cannot continue an empty store"),
    ):
        empty.admin.import_log(io.BytesIO(tail))


def exported_prefix(data: bytes, until: int) -> bytes:
    """An export of (0, until] built by exporting a store holding just that prefix."""
    with Engine.open("sqlite://") as engine:
        engine.admin.import_log(io.BytesIO(data))
        out = io.BytesIO()
        from playthrough._transfer import export_log

        export_log(engine.store, out, until=until)
        return out.getvalue()


def test_import_runs_the_snapshot_check_when_snapshots_exist() -> None:
    with Engine.open("sqlite://") as source:
        bank_history(source)
        head = exported(source, after=0)
    with Engine.open("sqlite://") as target:
        target.admin.import_log(io.BytesIO(exported_prefix(head, 3)))
        target.load(Account, 1)
        target.admin.snapshot()
        report = target.admin.import_log(io.BytesIO(_tail_of(head, 3)), append=True)
        assert report.verify is not None and report.verify.ok
        assert report.verify.snapshots.checked >= 1
        assert report.ok


def _tail_of(data: bytes, after: int) -> bytes:
    with Engine.open("sqlite://") as engine:
        engine.admin.import_log(io.BytesIO(data))
        return exported(engine, after=after)


@pytest.mark.postgres
def test_sqlite_to_postgres_to_sqlite_gives_identical_logs_and_states(
    tmp_path: Path, pg_url: str, pg_schema: str
) -> None:
    from .domain import Bump, Copy, Feed, Spread, Swap, Tick

    history: list[Event] = [
        Bump(node_id=1, amount=5),
        Copy(src_id=1, dst_id=2),
        Feed(node_id=2),
        Swap(a_id=1, b_id=3),
        Tick(node_id=3),
        Spread(node_ids=[1, 2, 4]),
        Feed(node_id=4),
    ]
    first = f"sqlite:///{tmp_path / 'first.db'}"
    with Engine.open(first) as engine:
        for event in history:
            engine.fire(event)
            engine.commit()
        original = linked_log(engine.store)
        states = {k: engine.load(Node, k).value for k in (1, 2, 3, 4)}
        hub = engine.load(Hub)
        data = exported(engine)
    pg = f"{pg_url}?schema={pg_schema}"
    with Engine.open(pg) as engine:
        engine.admin.import_log(io.BytesIO(data))
        assert linked_log(engine.store) == original
        back = exported(engine)
    assert back == data  # byte for byte: the same log, the same checksum
    with Engine.open(f"sqlite:///{tmp_path / 'second.db'}") as engine:
        engine.admin.import_log(io.BytesIO(back))
        assert linked_log(engine.store) == original
        assert {k: engine.load(Node, k).value for k in (1, 2, 3, 4)} == states
        assert engine.load(Hub) == hub


@pytest.mark.postgres
def test_a_damaged_file_leaves_postgres_untouched(pg_url: str, pg_schema: str) -> None:
    with Engine.open("sqlite://") as source:
        bank_history(source)
        data = exported(source)
    with Engine.open(f"{pg_url}?schema={pg_schema}") as target:
        with pytest.raises(TransferError, match="checksum"):
            target.admin.import_log(io.BytesIO(_damage(data)))
        assert target.head() == 0


@settings(max_examples=40, deadline=None)
@given(history=st.lists(events(), min_size=1, max_size=30), cut=st.floats(0, 1))
def test_export_then_import_loads_like_the_reference(history: list[Event], cut: float) -> None:
    committed: list[Event] = []
    with Engine.open("sqlite://") as source:
        for event in history:
            try:
                source.fire(event)
            except EventRejected:  # refused by validate: not part of the history
                continue
            committed.extend(source.commit())
        if not committed:
            return
        after = int(cut * source.head())
        data, tail = exported(source), exported(source, after=after)
    with Engine.open("sqlite://") as target:
        target.admin.import_log(io.BytesIO(data))
        for key, state in reference_states(committed).items():
            loaded = target.load(*ref_of(key))
            assert (encode_state(loaded), loaded.last_event_id) == (
                encode_state(state),
                state.last_event_id,
            )
    with Engine.open("sqlite://") as target:  # the same log in two pieces
        target.admin.import_log(io.BytesIO(exported_prefix(data, after)))
        target.admin.import_log(io.BytesIO(tail), append=True)
        assert linked_log(target.store) == linked_log_of(data)


def linked_log_of(data: bytes) -> list[LinkedEntry]:
    with Engine.open("sqlite://") as engine:
        engine.admin.import_log(io.BytesIO(data))
        return linked_log(engine.store)


def test_the_cli_exports_and_imports(tmp_path: Path) -> None:
    db = tmp_path / "bank.db"
    with Engine.open(f"sqlite:///{db}") as engine:
        bank_history(engine)
        before = linked_log(engine.store)
    env = {**os.environ, "CI": "1"}
    out = tmp_path / "log.jsonl.gz"
    with out.open("wb") as stdout:
        exporting = subprocess.run(
            [sys.executable, "-m", "playthrough._cli", "export", f"sqlite:///{db}"],
            stdout=stdout,
            stderr=subprocess.PIPE,
            text=False,
            env=env,
            check=False,
        )
    assert exporting.returncode == 0, exporting.stderr
    assert b"exported 4 events" in exporting.stderr
    assert gzip.decompress(out.read_bytes()).startswith(b'{"format":"playthrough-log"')
    copy = tmp_path / "copy.db"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "playthrough._cli",
            "import",
            str(out),
            f"sqlite:///{copy}",
            "--app",
            "playthrough.examples.bank",
        ],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "imported 4 events (0, 4]" in done.stdout
    with Engine.open(f"sqlite:///{copy}") as engine:
        assert linked_log(engine.store) == before
    again = subprocess.run(
        [sys.executable, "-m", "playthrough._cli", "import", str(out), f"sqlite:///{copy}"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert again.returncode == 1 and "not empty" in again.stderr


def test_event_lines_are_exactly_what_json_would_write() -> None:
    import attrs

    from playthrough import State, state_id

    @attrs.define
    class Tagged(State, type_name="test_transfer.Tagged"):
        text: str = ""

    @attrs.define
    class Tag(Event, type_name="test_transfer.Tag"):
        tagged_id: str = state_id(Tagged)
        text: str = ""

        def apply(self, tagged: Tagged) -> None:
            tagged.text += self.text

    odd = 'quote " backslash \\ newline \n tab \t é 漢 \u2028 \x00 emoji 🎲'
    with Engine.open("sqlite://") as engine:
        engine.fire(Tag(tagged_id=odd, text=odd))
        engine.commit()
        data = exported(engine)
    for line in data.splitlines()[1:-1]:
        assert line.decode() == json.dumps(
            json.loads(line), ensure_ascii=False, separators=(",", ":")
        )
    with Engine.open("sqlite://") as target:
        target.admin.import_log(io.BytesIO(data))
        assert target.load(Tagged, odd).text == odd


def test_export_and_import_report_progress() -> None:
    seen: list[tuple[str, int, int]] = []
    with Engine.open("sqlite://") as source:
        bank_history(source)
        out = io.BytesIO()
        source.log.export(out, progress=lambda done, total: seen.append(("export", done, total)))
    with Engine.open("sqlite://") as target:
        target.admin.import_log(
            io.BytesIO(out.getvalue()),
            progress=lambda done, total: seen.append(("import", done, total)),
        )
    assert seen[-1] == ("import", 4, 4)
    assert ("export", 4, 4) in seen


def test_metadata_and_correlation_survive_export_and_import(tmp_path: Path) -> None:
    with Engine.open("sqlite://") as source:
        with source.metadata(user="ada", correlation="req-1"):
            source.fire(Deposited(account_id=1, amount=5), metadata={"note": "é"})
        source.fire(Deposited(account_id=2, amount=6))
        source.commit()
        data = exported(source)
        before = [(e.id, e.metadata, e.correlation) for e in source.log.events()]
    assert b'"metadata":' in data and b'"correlation":"req-1"' in data
    with Engine.open(f"sqlite:///{tmp_path / 'copy.db'}") as target:
        target.admin.import_log(io.BytesIO(data))
        after = [(e.id, e.metadata, e.correlation) for e in target.log.events()]
    assert after == before
    assert after[0][1:] == ({"user": "ada", "note": "é"}, "req-1")
