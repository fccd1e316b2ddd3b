"""Forgetting a person: personal fields are encrypted per data subject; deleting the key
erases them everywhere while every other value stays exact."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from playthrough import (
    FORGOTTEN,
    Engine,
    Event,
    Personal,
    Projection,
    State,
    event_random,
    state_id,
)
from playthrough._personal import unseal, unsealing
from playthrough._serialization import encode_state
from playthrough._stores import FollowerBatch, FollowerTransaction, SQLiteStore
from playthrough._transfer import LOG_SECTIONS
from playthrough.errors import DefinitionError, StoreError
from playthrough.testing import stored_events


@attrs.define
class Customer(State, type_name="gdpr.Customer"):
    name: str = ""
    email: str = ""
    orders: int = 0
    spent: int = 0
    luck: int = 0
    names_seen: list[str] = attrs.field(factory=list)


@attrs.define
class Registered(Event, type_name="gdpr.Registered"):
    data_subject = "customer_id"
    customer_id: int = state_id(Customer)
    name: Personal[str] = ""
    email: str = attrs.field(default="", metadata={"personal": True})

    def apply(self, customer: Customer) -> None:
        customer.name = self.name
        customer.email = self.email
        customer.names_seen.append(self.name)
        customer.luck = event_random().randint(0, 1000)


@attrs.define
class Ordered(Event, type_name="gdpr.Ordered"):
    data_subject = "customer_id"
    customer_id: int = state_id(Customer)
    amount: int = 0
    note: Personal[str] = ""

    def apply(self, customer: Customer) -> None:
        customer.orders += 1
        customer.spent += self.amount + event_random().randint(0, 3)


def _engine(tmp_path: Path) -> Engine:
    return Engine(SQLiteStore(str(tmp_path / "gdpr.db")))


def test_personal_fields_are_stored_encrypted_and_read_back_in_clear(tmp_path: Path) -> None:
    engine = _engine(tmp_path)
    engine.fire(Registered(customer_id=1, name="Ada Lovelace", email="ada@example.org"))
    engine.commit()
    raw = sqlite3.connect(tmp_path / "gdpr.db").execute("SELECT data FROM pt_events").fetchone()[0]
    assert "Ada" not in raw and "ada@" not in raw and "$pt_personal" in raw
    fresh = Engine(engine.store)
    assert fresh.load(Customer, 1).name == "Ada Lovelace"
    [event] = stored_events(engine.store)
    assert isinstance(event, Registered) and event.email == "ada@example.org"


def test_forgetting_erases_personal_fields_everywhere_and_keeps_the_rest(tmp_path: Path) -> None:
    engine = _engine(tmp_path)
    engine.fire(Registered(customer_id=1, name="Ada", email="ada@example.org"))
    engine.fire(Registered(customer_id=2, name="Grace", email="grace@example.org"))
    engine.fire(Ordered(customer_id=1, amount=30, note="leave at the door"))
    engine.commit()
    engine.admin.snapshot()
    before = engine.load(Customer, 1)
    assert engine.admin.forget(1) is True
    assert engine.admin.forget(1) is False  # nothing left to forget
    after = engine.load(Customer, 1)
    assert (after.name, after.email, after.names_seen) == (FORGOTTEN, FORGOTTEN, [FORGOTTEN])
    assert (after.orders, after.spent, after.luck) == (before.orders, before.spent, before.luck)
    assert engine.load(Customer, 2).name == "Grace"  # another person is untouched
    assert engine.load(Customer, 1, at=1).name == FORGOTTEN  # time travel
    events = stored_events(engine.store)  # an export of the log
    assert [getattr(e, "name", None) for e in events[:2]] == [FORGOTTEN, "Grace"]
    assert isinstance(events[2], Ordered) and events[2].note == FORGOTTEN
    assert events[2].amount == 30
    engine.admin.replay()
    assert encode_state(engine.load(Customer, 1)) == encode_state(after)
    report = engine.admin.verify()
    assert report.ok, report.to_text()


def test_the_subject_field_is_required_and_cannot_be_personal() -> None:
    with pytest.raises(DefinitionError, match="no data_subject"):

        @attrs.define
        class NoSubject(Event, type_name="gdpr.NoSubject"):
            customer_id: int = state_id(Customer)
            name: Personal[str] = ""

            def apply(self, customer: Customer) -> None:
                customer.name = self.name

    with pytest.raises(DefinitionError, match="cannot be personal"):

        @attrs.define
        class SelfSubject(Event, type_name="gdpr.SelfSubject"):
            data_subject = "email"
            customer_id: int = state_id(Customer)
            email: Personal[str] = ""

            def apply(self, customer: Customer) -> None:
                customer.email = self.email


# --------------------------------------------------------------------------- the property

OPS = st.lists(
    st.one_of(
        st.builds(
            lambda c, n: Registered(customer_id=c, name=n, email=n + "@x"),
            st.integers(0, 2),
            st.text(max_size=5),
        ),
        st.builds(
            lambda c, a, n: Ordered(customer_id=c, amount=a, note=n),
            st.integers(0, 2),
            st.integers(0, 50),
            st.text(max_size=5),
        ),
    ),
    max_size=15,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    events=OPS,
    snapshot_after=st.integers(0, 15),
    forgotten=st.sets(st.integers(0, 2)),
)
def test_forgetting_never_changes_non_personal_fields(
    events: list[Event], snapshot_after: int, forgotten: set[int]
) -> None:
    engine = Engine(SQLiteStore())
    for n, event in enumerate(events):
        engine.fire(event)
        engine.commit()
        if n == snapshot_after:
            engine.admin.snapshot()
    before = {c: engine.load(Customer, c) for c in range(3)}
    for c in forgotten:
        engine.admin.forget(c)
    fresh = Engine(engine.store)
    for c in range(3):
        after = fresh.load(Customer, c)
        want = before[c]
        assert (after.orders, after.spent, after.luck) == (want.orders, want.spent, want.luck)
        if c in forgotten:
            assert {after.name, after.email} <= {FORGOTTEN, ""}
            assert after.names_seen == [FORGOTTEN] * len(want.names_seen)
        else:
            assert encode_state(after) == encode_state(want)


def test_forgetting_on_postgres(pg_url: str, pg_schema: str) -> None:
    engine = Engine.open(f"{pg_url}?schema={pg_schema}")
    try:
        engine.fire(Registered(customer_id=1, name="Ada", email="ada@example.org"))
        engine.fire(Ordered(customer_id=1, amount=5, note="n"))
        engine.commit()
        engine.admin.snapshot()
        assert Engine(engine.store).load(Customer, 1).name == "Ada"
        before = engine.load(Customer, 1)
        assert engine.admin.forget(1)
        after = Engine(engine.store).load(Customer, 1)
        assert (after.name, after.email) == (FORGOTTEN, FORGOTTEN)
        assert (after.orders, after.spent, after.luck) == (before.orders, before.spent, before.luck)
        assert engine.admin.verify().ok
    finally:
        engine.close()


def test_scheduled_events_keep_personal_fields_sealed_until_due(tmp_path: Path) -> None:
    from datetime import UTC, datetime, timedelta

    from playthrough.testing import ManualClock

    clock = ManualClock(datetime(2030, 1, 1, tzinfo=UTC))
    engine = Engine(SQLiteStore(str(tmp_path / "s.db")), clock=clock)
    engine.scheduler.schedule(
        Registered(customer_id=1, name="Ada", email="a@x"), after=timedelta(hours=1)
    )
    engine.scheduler.schedule(
        Registered(customer_id=2, name="Bob", email="b@x"), after=timedelta(hours=1)
    )
    raw = sqlite3.connect(tmp_path / "s.db").execute("SELECT data FROM pt_schedule").fetchall()
    assert raw and not any("Ada" in d or "Bob" in d for (d,) in raw)
    assert engine.admin.forget(2)  # forgotten before the event is due
    clock.advance(hours=2)
    assert [r.status for r in engine.scheduler.run_due()] == ["fired", "fired"]
    assert engine.load(Customer, 1).name == "Ada"
    assert engine.load(Customer, 2).name == FORGOTTEN


def test_forgetting_keeps_an_archives_base_snapshots(tmp_path: Path) -> None:
    engine = _engine(tmp_path)
    engine.fire(Registered(customer_id=1, name="Ada", email="a@x"))
    engine.fire(Ordered(customer_id=1, amount=5, note="n"))
    engine.fire(Ordered(customer_id=1, amount=7, note="m"))
    engine.commit()
    before = engine.load(Customer, 1)
    engine.admin.archive(before=3, to=tmp_path / "old.jsonl.gz")
    assert engine.admin.forget(1)
    after = Engine(engine.store).load(Customer, 1)  # from the kept base snapshot at the cut
    assert (after.orders, after.spent, after.luck) == (before.orders, before.spent, before.luck)
    with engine.store.reader() as reader:
        [kept] = unsealing(reader).events_after(2, 10)  # the hot log after the cut
    assert FORGOTTEN in kept.data and '"amount":7' in kept.data


# --------------------------------------------------------------------------- the holes, both stores


@pytest.fixture
def url(any_url: str) -> str:
    return any_url


def _rows(engine: Engine, sql: str) -> list[tuple[object, ...]]:
    """Every row of a query on the store's own tables (the store's schema on PostgreSQL)."""
    store = engine.store
    if isinstance(store, SQLiteStore):
        return store._conn.execute(sql).fetchall()
    import psycopg

    from playthrough._stores.postgres import PostgresStore

    assert isinstance(store, PostgresStore)
    with psycopg.connect(PG_SERVER, autocommit=True) as conn:
        conn.execute(f'SET search_path TO "{store.schema}"')
        return conn.execute(sql).fetchall()


PG_SERVER = "postgresql://root@127.0.0.1:5432/test"


def _everything(engine: Engine) -> str:
    """Every table's every row, as text (whatever tables the store has)."""
    if isinstance(engine.store, SQLiteStore):
        found = _rows(engine, "SELECT name FROM sqlite_master WHERE type = 'table'")
    else:
        found = _rows(
            engine,
            "SELECT table_name FROM information_schema.tables "
            "WHERE table_schema = current_schema()",
        )
    tables = sorted(str(t) for (t,) in found if not str(t).startswith("sqlite_"))
    assert "pt_events" in tables and "pt_subject_keys" in tables
    return "\n".join(f"{t}: {_rows(engine, f'SELECT * FROM {t}')!r}" for t in tables)


def test_archive_then_forget_reads_forgotten_from_the_base_snapshots(
    url: str, tmp_path: Path
) -> None:
    with Engine.open(url) as engine:
        engine.fire(Registered(customer_id=7, name="Ada Byron", email="ada@example.org"))
        engine.fire(Registered(customer_id=8, name="Grace Hopper", email="grace@example.org"))
        engine.fire(Ordered(customer_id=7, amount=5, note="ring twice"))
        engine.fire(Ordered(customer_id=8, amount=5, note="n"))
        engine.commit()
        before = engine.load(Customer, 7)
        other = encode_state(engine.load(Customer, 8))
        engine.admin.archive(before=4, to=tmp_path / "old.jsonl.gz")
        assert "Ada Byron" in _everything(engine)  # the base snapshot held it in clear
        assert engine.admin.forget(7)
        text = _everything(engine)
        assert "Ada Byron" not in text and "ada@example.org" not in text
        assert "ring twice" not in text
        with Engine.open(url) as fresh:
            after = fresh.load(Customer, 7)
            assert (after.name, after.email) == (FORGOTTEN, FORGOTTEN)
            assert (after.orders, after.spent, after.luck) == (
                before.orders,
                before.spent,
                before.luck,
            )
            assert encode_state(fresh.load(Customer, 8)) == other  # another person: as before
            assert list(fresh.states.find(Customer, name="Ada Byron")) == []
            assert [c.name for c in fresh.states.find(Customer, name="Grace Hopper")] == [
                "Grace Hopper"
            ]
            report = fresh.admin.verify()
            assert report.ok, report.to_text()
            assert "Ada Byron" not in report.to_text()


def test_a_live_engine_cannot_write_a_forgotten_person_back(url: str) -> None:
    from playthrough._errors import StaleForgetError

    with Engine.open(url) as worker, Engine.open(url) as admin:
        worker.fire(Registered(customer_id=1, name="Ada Byron", email="ada@example.org"))
        worker.commit()
        assert worker.load(Customer, 1).name == "Ada Byron"  # held in memory
        assert admin.admin.forget(1)
        worker.fire(Ordered(customer_id=1, amount=5, note=""))
        with pytest.raises(StaleForgetError, match="forgotten since this engine loaded"):
            worker.commit()
        assert "Ada Byron" not in _everything(worker)
        # The worker dropped its states: the retry works on the store's truth.
        worker.fire(Ordered(customer_id=1, amount=5, note=""))
        worker.commit()
        assert worker.load(Customer, 1).name == FORGOTTEN
        assert "Ada Byron" not in _everything(worker)
        assert Engine(worker.store).load(Customer, 1).orders == 1


def test_states_found_by_value_cannot_write_a_forgotten_person_back(url: str) -> None:
    """find() puts the stored states in the identity map, as a load does: a forget
    after it must refuse the engine's next commit, or its heads values would carry
    the subject's clear values back into the store."""
    from playthrough._errors import StaleForgetError

    with Engine.open(url) as writer, Engine.open(url) as worker, Engine.open(url) as admin:
        writer.fire(Registered(customer_id=1, name="Ada Byron", email="ada@example.org"))
        writer.commit()
        [found] = worker.states.find(Customer, name="Ada Byron")  # its first read
        assert admin.admin.forget(1)
        worker.fire(Ordered(customer_id=1, amount=5, note=""))  # on the state find gave
        with pytest.raises(StaleForgetError, match="forgotten since this engine loaded"):
            worker.commit()
        assert found.name == "Ada Byron"  # the object handed out earlier is the caller's
        assert "Ada Byron" not in _everything(worker)
        assert Engine(worker.store).load(Customer, 1).name == FORGOTTEN


def test_a_live_engine_cannot_snapshot_a_forgotten_person(url: str) -> None:
    with Engine.open(url) as worker, Engine.open(url) as admin:
        worker.fire(Registered(customer_id=1, name="Ada Byron", email="ada@example.org"))
        worker.fire(Registered(customer_id=2, name="Grace Hopper", email="g@x"))
        worker.commit()
        worker.load(Customer, 1)
        worker.load(Customer, 2)
        assert admin.admin.forget(1)
        worker.admin.snapshot()  # rebuilt from the store: the memory is older than the forget
        text = _everything(worker)
        assert "Ada Byron" not in text and "Grace Hopper" in text
        assert Engine(worker.store).load(Customer, 1).name == FORGOTTEN


def test_a_snapshot_written_after_a_forget_it_did_not_see_is_refused(url: str) -> None:
    from playthrough._errors import StaleForgetError
    from playthrough._upcasting import snapshot_record

    engine = Engine.open(url)
    engine.fire(Registered(customer_id=1, name="Ada Byron", email="a@x"))
    engine.commit()
    state = engine.load(Customer, 1)
    record = snapshot_record(
        state_key_of(Customer, 1), 1, state, encode_state(state)
    )  # built at epoch 0
    assert Engine(engine.store).admin.forget(1)
    with pytest.raises(StaleForgetError):
        engine.store.write_snapshots([record], 3, epoch=0)
    assert engine.store.write_values([record], epoch=0) == 0
    assert "Ada Byron" not in _everything(engine)
    engine.close()


def state_key_of(cls: type[State], state_id: object) -> object:
    from playthrough._model import key_of

    return key_of(cls, state_id)


def test_forgetting_keeps_every_other_states_value(url: str) -> None:
    with Engine.open(url) as engine:
        for c in range(1, 21):
            engine.fire(Registered(customer_id=c, name=f"person {c}", email=f"{c}@x"))
            engine.fire(Ordered(customer_id=c, amount=c, note="n"))
        engine.commit()
        engine.admin.snapshot()
        assert engine.admin.forget(3)
        values = dict((str(i), v) for i, v in _rows(engine, "SELECT state_id, value FROM pt_heads"))
        snapshots = {str(i) for (i,) in _rows(engine, "SELECT state_id FROM pt_snapshots")}
        assert values["3"] is None and "3" not in snapshots  # only the forgotten one's
        assert all(values[str(c)] is not None for c in range(1, 21) if c != 3)
        assert snapshots == {str(c) for c in range(1, 21) if c != 3}
        with Engine.open(url) as fresh:
            plan = fresh.explain(Customer, 5)
            assert plan.events_played == 0  # a cold load of an unrelated state stays free
            assert fresh.load(Customer, 5).name == "person 5"


def test_forget_vacuums_the_tables_it_deleted_from_on_postgres(pg_url: str, pg_schema: str) -> None:
    with Engine.open(f"{pg_url}?schema={pg_schema}") as engine:
        engine.fire(Registered(customer_id=1, name="Ada Byron", email="a@x"))
        engine.commit()
        assert engine.admin.forget(1)
        vacuumed = {
            str(t)
            for (t,) in _rows(
                engine,
                "SELECT relname FROM pg_stat_user_tables WHERE schemaname = current_schema() "
                "AND last_vacuum IS NOT NULL",
            )
        }
        assert {"pt_subject_keys", "pt_heads", "pt_snapshots", "pt_schedule"} <= vacuumed


def test_the_deleted_key_and_values_leave_the_sqlite_files(tmp_path: Path) -> None:
    import base64

    engine = _engine(tmp_path)
    engine.fire(Registered(customer_id=1, name="Ada Byron", email="ada@example.org"))
    engine.fire(Registered(customer_id=2, name="Grace Hopper", email="g@x"))
    engine.commit()
    engine.admin.snapshot()
    [(key_text,)] = _rows(engine, "SELECT key FROM pt_subject_keys WHERE subject = '1'")
    key = base64.b64decode(str(key_text))
    assert engine.admin.forget(1)
    for suffix in ("", "-wal"):
        path = tmp_path / f"gdpr.db{suffix}"
        raw = path.read_bytes() if path.exists() else b""
        for secret in (key, str(key_text).encode(), b"Ada Byron", b"ada@example.org"):
            assert secret not in raw, (suffix, secret)
    assert b"Grace Hopper" in (tmp_path / "gdpr.db").read_bytes()
    # Set by the store, not left to the build (CPython's Windows and macOS builds are off).
    assert engine.store._conn.execute("PRAGMA secure_delete").fetchone() == (1,)  # type: ignore[attr-defined]


@attrs.define
class Greeted(Event, type_name="gdpr.Greeted"):
    data_subject = "customer_id"
    customer_id: int = state_id(Customer)
    name: Personal[str] = ""

    def apply(self, customer: Customer) -> None:
        raise RuntimeError(f"cannot greet {self.name}")


def test_a_scheduled_rows_error_text_is_scrubbed(url: str) -> None:
    from datetime import UTC, datetime, timedelta

    from playthrough.testing import ManualClock

    clock = ManualClock(datetime(2030, 1, 1, tzinfo=UTC))
    with Engine.open(url, clock=clock) as engine:
        engine.fire(Registered(customer_id=1, name="Ada Byron", email="a@x"))
        engine.fire(Registered(customer_id=2, name="Grace Hopper", email="g@x"))
        engine.commit()
        engine.scheduler.schedule(
            Greeted(customer_id=1, name="Ada Byron"), after=timedelta(hours=1)
        )
        engine.scheduler.schedule(
            Greeted(customer_id=2, name="Grace Hopper"), after=timedelta(hours=1)
        )
        clock.advance(hours=2)
        assert [r.status for r in engine.scheduler.run_due()] == ["failed", "failed"]
        assert "cannot greet Ada Byron" in _everything(engine)
        assert engine.admin.forget(1)
        errors = sorted(str(e) for (e,) in _rows(engine, "SELECT error FROM pt_schedule"))
        assert errors == sorted(
            [f"RuntimeError: cannot greet {FORGOTTEN}", "RuntimeError: cannot greet Grace Hopper"]
        )
        assert "Ada Byron" not in _everything(engine)


def test_old_values_stay_forgotten_when_the_subject_comes_back(url: str, tmp_path: Path) -> None:
    with Engine.open(url) as engine:
        engine.fire(Registered(customer_id=1, name="Ada Byron", email="a@x"))
        engine.commit()
        assert engine.admin.forget(1)
        engine.fire(Registered(customer_id=1, name="Ada Again", email="b@x"))  # a new key
        engine.commit()
        assert engine.load(Customer, 1).names_seen == [FORGOTTEN, "Ada Again"]
        assert Engine(engine.store).load(Customer, 1, at=1).name == FORGOTTEN
        assert [getattr(e, "name", None) for e in stored_events(engine.store)] == [
            FORGOTTEN,
            "Ada Again",
        ]
        engine.admin.replay()
        assert Engine(engine.store).load(Customer, 1).names_seen == [FORGOTTEN, "Ada Again"]
        with open(tmp_path / "out.jsonl", "wb") as out:
            engine.log.export(out)
        assert engine.admin.verify().ok


def test_a_tampered_ciphertext_is_corruption_not_forgetting(tmp_path: Path) -> None:
    from playthrough.errors import CorruptionError

    engine = _engine(tmp_path)
    engine.fire(Registered(customer_id=1, name="Ada Byron", email="a@x"))
    engine.commit()
    [(data,)] = _rows(engine, "SELECT data FROM pt_events")
    text = str(data)
    cut = text.index('"v":"') + 5
    flipped = text[:cut] + ("B" if text[cut] == "A" else "A") + text[cut + 1 :]
    engine.store._conn.execute("UPDATE pt_events SET data = ?", (flipped,))  # type: ignore[attr-defined]
    with pytest.raises(CorruptionError, match="altered"):
        stored_events(engine.store)


def test_personal_fields_without_the_crypto_extra_fail_at_class_definition(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "cryptography.hazmat.primitives.ciphers.aead", None)
    with pytest.raises(DefinitionError, match=r"pip install 'playthrough\[crypto\]'"):

        @attrs.define
        class Signed(Event, type_name="gdpr.Signed"):
            data_subject = "customer_id"
            customer_id: int = state_id(Customer)
            name: Personal[str] = ""

            def apply(self, customer: Customer) -> None:
                customer.name = self.name


def test_forget_is_logged_without_the_subject_or_the_data(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    engine = _engine(tmp_path)
    engine.fire(Registered(customer_id=424242, name="Ada Byron", email="a@x"))
    engine.commit()
    with caplog.at_level(logging.INFO, logger="playthrough"):
        assert engine.admin.forget(424242)
        assert not engine.admin.forget(424242)
    records = [r for r in caplog.records if r.getMessage().startswith("forgot data subject")]
    assert len(records) == 2
    assert [getattr(r, "forgotten", None) for r in records] == [True, False]
    for r in records:
        assert "424242" not in r.getMessage() and "Ada" not in r.getMessage()
        assert getattr(r, "subject_hash", "") and "424242" not in str(r.__dict__)


class Names(Projection):
    """A read model holding personal data: it must erase it when told."""

    name = "gdpr.names"
    told: list[str]

    def __init__(self) -> None:
        self.told = []

    def setup(self, tx: FollowerTransaction) -> None:
        tx.execute("CREATE TABLE IF NOT EXISTS gdpr_names (id TEXT, name TEXT)")

    def on_Registered(self, event: Registered, tx: FollowerTransaction) -> None:
        tx.execute("INSERT INTO gdpr_names VALUES (?, ?)", (str(event.customer_id), event.name))

    def on_forgotten(self, subject: str, tx: FollowerTransaction) -> None:
        self.told.append(subject)
        tx.execute("DELETE FROM gdpr_names WHERE id = ?", (subject,))


def test_followers_are_told_once_in_their_own_transaction(url: str) -> None:
    with Engine.open(url) as engine:
        engine.fire(Registered(customer_id=1, name="Ada Byron", email="a@x"))
        engine.fire(Registered(customer_id=2, name="Grace Hopper", email="g@x"))
        engine.commit()
        names = Names()
        engine.followers.run(names, until_idle=True)
        assert sorted(map(str, _rows(engine, "SELECT name FROM gdpr_names"))) == sorted(
            map(str, [("Ada Byron",), ("Grace Hopper",)])
        )
        assert engine.admin.forget(1)
        engine.fire(Registered(customer_id=1, name="Ada Again", email="b@x"))  # after the forget
        engine.commit()
        engine.followers.run(names, until_idle=True)
        assert names.told == ["1"]
        # The forget came before the new event: the new row survives it.
        assert sorted(str(n) for (n,) in _rows(engine, "SELECT name FROM gdpr_names")) == [
            "Ada Again",
            "Grace Hopper",
        ]
        engine.followers.run(names, until_idle=True)
        again = Names()
        engine.followers.run(again, until_idle=True)
        assert names.told == ["1"] and again.told == []  # exactly once per follower
        assert "Ada Byron" not in _everything(engine)


def test_a_follower_batch_comes_sealed_and_opens_with_its_own_keys(url: str) -> None:
    with Engine.open(url) as engine:
        engine.fire(Registered(customer_id=1, name="Ada Byron", email="a@x"))
        engine.commit()
        with engine.store.follow("gdpr.peek", 10) as batch:
            assert batch is not None
            [row] = batch.events
            assert "Ada" not in row.data  # the store returns it as stored
            [opened] = unseal(batch.events, batch.subject_keys)  # keys of its transaction
            assert '"name":"Ada Byron"' in opened.data
            lone = FollowerBatch("x", 0, [row], batch.tx)  # a store that reads no keys
        with pytest.raises(StoreError, match="reads no subject keys"):
            unseal(lone.events, lone.subject_keys)


def test_a_forget_splits_a_batched_projections_run(url: str) -> None:
    class BatchedNames(Names):
        name = "gdpr.batched"
        batched = True
        runs: list[list[int]]

        def __init__(self) -> None:
            super().__init__()
            self.runs = []

        def on_Registered(  # type: ignore[override]
            self, events: list[Registered], tx: FollowerTransaction
        ) -> None:
            self.runs.append([e.id or 0 for e in events])
            self.told.append(f"run of {len(events)}")
            tx.executemany(
                "INSERT INTO gdpr_names VALUES (?, ?)",
                [(str(e.customer_id), e.name) for e in events],
            )

    with Engine.open(url) as engine:
        engine.fire(Registered(customer_id=1, name="Ada Byron", email="a@x"))
        engine.fire(Registered(customer_id=2, name="Grace Hopper", email="g@x"))
        engine.commit()  # 1, 2
        assert engine.admin.forget(1)
        engine.fire(Registered(customer_id=1, name="Ada Again", email="b@x"))
        engine.fire(Registered(customer_id=3, name="Edsger", email="e@x"))
        engine.commit()  # 3, 4: after the forget
        names = BatchedNames()
        assert engine.followers.run(names, until_idle=True).processed == 4
        assert names.runs == [[1, 2], [3, 4]]  # one batch, two runs: the forget in between
        assert names.told == ["run of 2", "1", "run of 2"]
        assert sorted(str(n) for (n,) in _rows(engine, "SELECT name FROM gdpr_names")) == [
            "Ada Again",
            "Edsger",
            "Grace Hopper",
        ]


def test_a_follower_that_fails_to_forget_keeps_its_position(url: str) -> None:
    from playthrough.errors import FollowerFailed

    class Failing(Names):
        name = "gdpr.failing"

        def on_forgotten(self, subject: str, tx: FollowerTransaction) -> None:
            raise RuntimeError("read model unavailable")

    with Engine.open(url) as engine:
        engine.fire(Registered(customer_id=1, name="Ada Byron", email="a@x"))
        engine.commit()
        engine.followers.run(Failing(), until_idle=True)
        assert engine.admin.forget(1)
        with pytest.raises(FollowerFailed, match="failed to forget a data subject"):
            engine.followers.run(Failing(), until_idle=True)

        class Fixed(Names):
            name = "gdpr.failing"  # the same follower, fixed: told now

        fixed = Fixed()
        engine.followers.run(fixed, until_idle=True)
        assert fixed.told == ["1"]


# --------------------------------------------------------------------------- the erasure property

SUBJECTS = range(4)


def _clear(subject: int, k: int) -> str:
    """A personal value no other value contains (so a search for it means something)."""
    return f"Zq{subject}n{k}x"


HISTORY = st.lists(
    st.one_of(
        st.tuples(st.just("register"), st.sampled_from(SUBJECTS), st.integers(0, 9)),
        st.tuples(st.just("order"), st.sampled_from(SUBJECTS), st.integers(0, 9)),
        st.tuples(st.just("snapshot"), st.just(0), st.just(0)),
        st.tuples(st.just("archive"), st.just(0), st.just(0)),
    ),
    min_size=1,
    max_size=14,
)


def _play(engine: Engine, history: list[tuple[str, int, int]], archive: Path) -> list[Path]:
    """Play the history; the archive files it wrote, in order."""
    cut = 0
    files: list[Path] = []
    for n, (op, c, k) in enumerate(history):
        if op == "register":
            engine.fire(Registered(customer_id=c, name=_clear(c, k), email=_clear(c, k + 10)))
            engine.commit()
        elif op == "order":
            engine.fire(Ordered(customer_id=c, amount=k, note=_clear(c, k + 20)))
            engine.commit()
        elif op == "snapshot":
            engine.admin.snapshot()
        else:
            with engine.store.reader() as reader:
                head = reader.head()
            if cut < head - 1:
                files.append(archive.with_suffix(f".{n}.jsonl.gz"))
                engine.admin.archive(before=head, to=files[-1])
                cut = head - 1
    return files


def _copies(engine: Engine, archives: list[Path], tmp: Path, n: int) -> list[Path]:
    """After a forget: one more archive when the log allows, an export of the rest, and
    a SQLite copy built from every archive file (those written before the forget
    included) and the export. Returns the files written after the forget, decompressed,
    and the copy's database file; every one of them must be free of the subject."""
    with engine.store.reader() as reader:
        head = reader.head()
        cut = int(reader.meta("archived_until") or 0)
    written: list[Path] = []
    if cut < head - 1:
        archives.append(tmp / f"after-{n}.jsonl.gz")
        engine.admin.archive(before=head, to=archives[-1])
        written.append(archives[-1])
        cut = head - 1
    export = tmp / f"export-{n}.jsonl"
    with export.open("wb") as out:
        engine.log.export(out, after=cut)
    written.append(export)
    copy_path = tmp / f"copy-{n}.db"
    with Engine.open(f"sqlite:///{copy_path}") as copy:
        for i, path in enumerate([*archives, export]):
            with path.open("rb") as source:
                copy.admin.import_log(source, append=i > 0)
        assert copy.head() == head
    plain = []
    for path in written:
        data = path.read_bytes()
        plain_path = path.with_suffix(".plain")
        plain_path.write_bytes(gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data)
        plain.append(plain_path)
    return [*plain, copy_path, Path(f"{copy_path}-wal")]


def _check_forgotten(
    engine: Engine,
    forgotten: dict[int, bytes],
    history: list[tuple[str, int, int]],
    files: list[Path],
) -> None:
    import base64

    text = _everything(engine).encode()
    raw = b"".join(p.read_bytes() for p in files if p.exists())
    for c, key in forgotten.items():
        secrets = [key, base64.b64encode(key)]
        secrets += [
            _clear(c, k + extra).encode()
            for op, s, k in history
            if s == c and op in ("register", "order")
            for extra in (0, 10, 20)
        ]
        for secret in secrets:
            assert secret not in text, (c, secret)
            assert secret not in raw, (c, secret)


def _reference(engine: Engine) -> dict[int, Customer]:
    fresh = Engine(engine.store)
    return {c: fresh.load(Customer, c) for c in SUBJECTS}


def _check_reads(engine: Engine, want: dict[int, Customer], forgotten: set[int]) -> None:
    fresh = Engine(engine.store)
    for c in SUBJECTS:
        got = fresh.load(Customer, c)
        if c in forgotten:
            assert (got.orders, got.spent, got.luck) == (
                want[c].orders,
                want[c].spent,
                want[c].luck,
            )
            assert {got.name, got.email} <= {FORGOTTEN, ""}
            assert got.names_seen == [FORGOTTEN] * len(want[c].names_seen)
        else:
            assert encode_state(got) == encode_state(want[c])


def _keys(engine: Engine) -> dict[int, bytes]:
    import base64

    return {
        int(str(s)): base64.b64decode(str(k))
        for s, k in _rows(engine, "SELECT subject, key FROM pt_subject_keys")
    }


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(history=HISTORY, forgets=st.lists(st.sampled_from(SUBJECTS), min_size=1, max_size=4))
def test_after_each_forget_nothing_stored_holds_the_subjects_data(
    history: list[tuple[str, int, int]], forgets: list[int]
) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "p.db"
        engine = Engine(SQLiteStore(str(path)))
        try:
            archives = _play(engine, history, Path(tmp) / "archive")
            want = _reference(engine)
            keys = _keys(engine)
            forgotten: dict[int, bytes] = {}
            for n, c in enumerate(forgets):
                assert engine.admin.forget(c) == (c in keys and c not in forgotten)
                if c in keys:
                    forgotten[c] = keys[c]
                files = [path, Path(f"{path}-wal")]
                files += _copies(engine, archives, Path(tmp), n)
                _check_forgotten(engine, forgotten, history, files)
                _check_reads(engine, want, set(forgotten))
        finally:
            engine.store.close()


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(history=HISTORY, forgets=st.lists(st.sampled_from(SUBJECTS), min_size=1, max_size=3))
def test_after_each_forget_nothing_stored_holds_the_subjects_data_on_postgres(
    pg_url: str, history: list[tuple[str, int, int]], forgets: list[int]
) -> None:
    import tempfile
    import uuid

    import psycopg

    schema = f"pt_test_{uuid.uuid4().hex[:12]}"
    with tempfile.TemporaryDirectory() as tmp, Engine.open(f"{pg_url}?schema={schema}") as engine:
        try:
            archives = _play(engine, history, Path(tmp) / "archive")
            want = _reference(engine)
            keys = _keys(engine)
            forgotten: dict[int, bytes] = {}
            for n, c in enumerate(forgets):
                engine.admin.forget(c)
                if c in keys:
                    forgotten[c] = keys[c]
                files = _copies(engine, archives, Path(tmp), n)
                _check_forgotten(engine, forgotten, history, files)
                _check_reads(engine, want, set(forgotten))
        finally:
            with psycopg.connect(pg_url, autocommit=True) as conn:
                conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


# --------------------------------------------------------------------------- copies of the store


@pytest.fixture
def copy_url(url: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[str]:
    """A second, empty store of the same kind as ``url`` (dropped afterwards)."""
    if url.startswith("sqlite"):
        yield f"sqlite:///{tmp_path / 'copy.db'}"
        return
    import uuid

    import psycopg

    pg_url: str = request.getfixturevalue("pg_url")
    name = f"pt_test_{uuid.uuid4().hex[:12]}"
    yield f"{pg_url}?schema={name}"
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


def _export(engine: Engine, after: int = 0) -> bytes:
    out = io.BytesIO()
    engine.log.export(out, after=after)
    return out.getvalue()


def _key_text(engine: Engine, subject: int) -> str:
    [(key,)] = _rows(engine, f"SELECT key FROM pt_subject_keys WHERE subject = '{subject}'")
    return str(key)


def test_an_archive_written_before_a_forget_never_brings_the_key_back(
    url: str, copy_url: str, tmp_path: Path
) -> None:
    """The archive file keeps the key it was written with; the store the log came from,
    a copy built from the archive and a later export, and an archive reader all read
    the subject as forgotten, and the key is in none of their tables."""
    old = tmp_path / "old.jsonl.gz"
    with Engine.open(url) as engine:
        engine.fire(Registered(customer_id=7, name="Ada Byron", email="ada@example.org"))
        engine.fire(Registered(customer_id=8, name="Grace Hopper", email="g@x"))
        engine.commit()
        engine.fire(Ordered(customer_id=8, amount=3, note="n"))
        engine.commit()
        key = _key_text(engine, 7)
        engine.admin.archive(before=3, to=old)
        assert key.encode() in gzip.decompress(old.read_bytes())  # written before the forget
        assert engine.admin.forget(7)
        tail = _export(engine, after=2)
        assert key.encode() not in tail
        later = tmp_path / "later.jsonl.gz"
        engine.fire(Ordered(customer_id=8, amount=1, note="m"))
        engine.commit()
        engine.admin.archive(before=4, to=later)  # written after the forget: no key
        assert key.encode() not in gzip.decompress(later.read_bytes())
        with Engine.open(url, archive=[old, later]) as reader:
            assert reader.load(Customer, 7, at=1).name == FORGOTTEN
            assert reader.load(Customer, 8, at=2).name == "Grace Hopper"
        with Engine.open(copy_url) as copy:
            with old.open("rb") as source:
                copy.admin.import_log(source)
            copy.admin.import_log(io.BytesIO(tail), append=True)
            assert (copy.load(Customer, 7).name, copy.load(Customer, 7).orders) == (FORGOTTEN, 0)
            assert copy.load(Customer, 8).name == "Grace Hopper"
            assert key not in _everything(copy)
            assert "Ada Byron" not in _everything(copy)
            # the copy carries the forget on: its own exports say so
            again = _export(copy)
            assert b'"forgotten"' in again and key.encode() not in again


def test_a_subject_that_came_back_keeps_only_its_new_key_in_a_copy(
    url: str, copy_url: str, tmp_path: Path
) -> None:
    old = tmp_path / "old.jsonl.gz"
    with Engine.open(url) as engine:
        engine.fire(Registered(customer_id=7, name="Ada Byron", email="a@x"))
        engine.fire(Registered(customer_id=8, name="Grace Hopper", email="g@x"))
        engine.commit()
        first = _key_text(engine, 7)
        engine.admin.archive(before=2, to=old)
        assert engine.admin.forget(7)
        engine.fire(Registered(customer_id=7, name="Ada Again", email="b@x"))  # a new key
        engine.commit()
        tail = _export(engine, after=1)
        with Engine.open(copy_url) as copy:
            with old.open("rb") as source:
                copy.admin.import_log(source)
            copy.admin.import_log(io.BytesIO(tail), append=True)
            assert copy.load(Customer, 7).names_seen == [FORGOTTEN, "Ada Again"]
            assert _key_text(copy, 7) == _key_text(engine, 7) != first
            assert first not in _everything(copy)


def test_idempotency_keys_survive_an_export_and_an_import(
    url: str, copy_url: str, tmp_path: Path
) -> None:
    from playthrough.errors import DuplicateEvent

    old = tmp_path / "old.jsonl.gz"
    with Engine.open(url) as engine:
        engine.fire(Ordered(customer_id=1, amount=1), key="order-1")
        engine.commit()
        engine.fire(Ordered(customer_id=1, amount=2), key="order-2")
        engine.commit()
        engine.fire(Ordered(customer_id=1, amount=3), key="order-3")
        engine.commit()
        engine.admin.archive(before=2, to=old)  # order-1 is archived: its key stays refused
        tail = _export(engine, after=1)
        with Engine.open(copy_url) as copy:
            with old.open("rb") as source:
                copy.admin.import_log(source)
            copy.admin.import_log(io.BytesIO(tail), append=True)
            for key in ("order-1", "order-2", "order-3"):
                copy.fire(Ordered(customer_id=1, amount=9), key=key)
                with pytest.raises(DuplicateEvent):
                    copy.commit()
            copy.fire(Ordered(customer_id=1, amount=9), key="order-4")
            copy.commit()
            assert copy.load(Customer, 1).orders == 4


def _as_version_2(data: bytes) -> bytes:
    """An export as the previous format wrote it: no event keys, no forgets."""
    out = []
    skipping = False
    for line in data.splitlines(keepends=True):
        obj = json.loads(line)
        if isinstance(obj, dict) and obj.get("section") in ("event_keys", "forgotten"):
            skipping = True
        if not skipping:
            if isinstance(obj, dict) and obj.get("format"):
                obj["version"] = 2
                obj["sections"] = [s for s in obj["sections"] if s not in LOG_SECTIONS]
                line = (json.dumps(obj, separators=(",", ":")) + "\n").encode()
            out.append(line)
        if isinstance(obj, dict) and obj.get("end") in ("event_keys", "forgotten"):
            skipping = False
    return b"".join(out)


def test_a_version_2_file_still_imports_and_its_null_key_forgets(url: str) -> None:
    with Engine.open("sqlite://") as source:
        source.fire(Registered(customer_id=7, name="Ada Byron", email="a@x"))
        source.fire(Registered(customer_id=8, name="Grace Hopper", email="g@x"))
        source.commit()
        first = _export(source)
        assert source.admin.forget(7)
        source.fire(Ordered(customer_id=8, amount=1, note="x"))
        source.commit()
        second = _export(source, after=2)
    with Engine.open(url) as copy:
        copy.admin.import_log(io.BytesIO(_as_version_2(first)))
        assert copy.load(Customer, 7).name == "Ada Byron"
        # the old format: the subject's key is null in the file that follows the forget
        tail = _with_null_key(_as_version_2(second), "7")
        copy.admin.import_log(io.BytesIO(tail), append=True)
        assert Engine(copy.store).load(Customer, 7).name == FORGOTTEN
        assert Engine(copy.store).load(Customer, 8).orders == 1


def _with_null_key(data: bytes, subject: str) -> bytes:
    """The file with a ``[subject, null]`` row in its keys section (checksum fixed)."""
    lines = data.splitlines(keepends=True)
    start = next(i for i, ln in enumerate(lines) if ln.startswith(b'{"section":"subject_keys"'))
    lines.insert(start + 1, json.dumps([subject, None]).encode() + b"\n")
    rows = lines[start + 1 : -1]
    end = json.loads(lines[-1])
    end["count"] = len(rows)
    end["sha256"] = hashlib.sha256(b"".join(rows)).hexdigest()
    lines[-1] = (json.dumps(end, separators=(",", ":")) + "\n").encode()
    return b"".join(lines)


def test_a_forget_while_snapshots_are_rewritten_is_not_undone(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from playthrough import _schema

    with Engine.open(url) as engine:
        engine.fire(Registered(customer_id=7, name="Ada Byron", email="a@x"))
        engine.fire(Registered(customer_id=8, name="Grace Hopper", email="g@x"))
        engine.commit()
        engine.admin.snapshot()
        other = encode_state(engine.load(Customer, 8))
        store = engine.store
        original = store.write_snapshots
        calls: list[int] = []

        def write_after_a_forget(*args: object, **kwargs: object) -> None:
            if not calls:  # the batch was read; now someone forgets a subject in it
                assert Engine(store).admin.forget(7)
            calls.append(1)
            original(*args, **kwargs)  # type: ignore[arg-type]

        monkeypatch.setattr(store, "write_snapshots", write_after_a_forget)
        monkeypatch.setattr(_schema, "_outdated", lambda *args: True)  # rewrite them all
        _schema.rewrite_snapshots(store)
        assert len(calls) == 2  # refused once, then read and written again
        assert "Ada Byron" not in _everything(engine)
        assert Engine(store).load(Customer, 7).name == FORGOTTEN
        assert encode_state(Engine(store).load(Customer, 8)) == other


def test_a_store_from_before_the_subject_index_forgets_its_old_events(url: str) -> None:
    """The upgrade to schema 11 indexes the personal events already in the log."""
    with Engine.open(url) as engine:
        engine.fire(Registered(customer_id=7, name="Ada Byron", email="a@x"))
        engine.fire(Registered(customer_id=8, name="Grace Hopper", email="g@x"))
        engine.commit()
        engine.admin.snapshot()
        # As a schema 10 store was: no index of the subjects' events.
        if url.startswith("sqlite"):
            script = "DROP TRIGGER pt_events_subjects; DROP TABLE pt_subject_events"
        else:
            script = "DROP TABLE pt_subject_events; DROP TRIGGER pt_events_subjects ON pt_events"
        for statement in script.split("; "):
            _execute(engine, statement)
        _execute(engine, "UPDATE pt_meta SET value = '10' WHERE key = 'schema_version'")
    with Engine.open(url) as engine:
        assert sorted(_rows(engine, "SELECT subject, position FROM pt_subject_events")) == [
            ("7", 1),
            ("8", 2),
        ]
        assert engine.admin.forget(7)
        assert engine.load(Customer, 7).name == FORGOTTEN
        assert "Ada Byron" not in _everything(engine)
        assert _rows(engine, "SELECT subject FROM pt_subject_events") == [("8",)]
        engine.fire(Registered(customer_id=9, name="Alan Turing", email="t@x"))
        engine.commit()  # new events are indexed as they are written
        assert sorted(_rows(engine, "SELECT subject FROM pt_subject_events")) == [("8",), ("9",)]


def _execute(engine: Engine, sql: str) -> None:
    store = engine.store
    if isinstance(store, SQLiteStore):
        store._conn.execute(sql)
        return
    import psycopg

    from playthrough._stores.postgres import PostgresStore

    assert isinstance(store, PostgresStore)
    with psycopg.connect(PG_SERVER, autocommit=True) as conn:
        conn.execute(f'SET search_path TO "{store.schema}"')
        conn.execute(sql)


def test_an_imported_store_keeps_the_seal_and_can_forget(url: str, copy_url: str) -> None:
    with Engine.open(url) as engine:
        engine.fire(Registered(customer_id=7, name="Ada Byron", email="ada@example.org"))
        engine.fire(Registered(customer_id=8, name="Grace Hopper", email="g@x"))
        engine.commit()
        data = _export(engine)
    assert b"Ada Byron" not in data and b"ada@example.org" not in data
    with Engine.open(copy_url) as copy:
        copy.admin.import_log(io.BytesIO(data))
        assert "Ada Byron" not in _everything(copy)  # sealed in the copy too
        assert copy.load(Customer, 7).name == "Ada Byron"
        key = _key_text(copy, 7)
        assert copy.admin.forget(7)
        assert Engine(copy.store).load(Customer, 7).name == FORGOTTEN
        assert Engine(copy.store).load(Customer, 8).name == "Grace Hopper"
        assert key not in _everything(copy)


def test_find_on_a_live_engine_after_a_forget_returns_the_stored_values(url: str) -> None:
    with Engine.open(url) as worker, Engine.open(url) as admin:
        worker.fire(Registered(customer_id=7, name="Ada Byron", email="a@x"))
        worker.commit()  # the worker holds Customer 7 with the clear values
        assert admin.admin.forget(7)
        [found] = worker.states.find(Customer, orders=0)
        assert (found.name, found.email) == (FORGOTTEN, FORGOTTEN)
