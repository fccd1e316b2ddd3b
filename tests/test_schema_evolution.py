"""Schema evolution: versions, upcasters, aliases, strict decoding, unusable snapshots.

Each test writes rows under an "old" class, then forgets it (as a deploy of new
code does) and reads them under a "new" class registered under the same type
name. Type names are unique per test (the registry is global). Engines here
keep no heads values (``head_values=False``), so loads decode the stored rows;
``test_a_heads_value_of_a_changed_class_is_not_used`` covers the values.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import attrs
import pytest

from playthrough import Engine, Event, State, state_id
from playthrough._model import key_of, registry
from playthrough._stores import SQLiteStore
from playthrough._stores._base import SCHEMA_VERSION
from playthrough._upcasting import value_mark
from playthrough._versions import fingerprint
from playthrough.errors import DecodeError, DefinitionError, UnknownKeysError


def forget(*classes: type[State] | type[Event]) -> None:
    """Unregister classes (names and aliases), as if their code had been deleted."""
    for cls in classes:
        table: dict[str, Any] = registry.states if issubclass(cls, State) else registry.events
        for name in (cls._pt_type_name, *cls._pt_aliases):
            if table.get(name) is cls:
                del table[name]


@attrs.define
class Purse(State, type_name="se.Purse"):
    cents: int = 0


def write_old_deposit(engine: Engine, type_name: str, **fields: Any) -> type[Event]:
    """Fire and commit one event of an "old" class with the given fields; forget the class."""
    namespace: dict[str, Any] = {"__annotations__": {"purse_id": int}}
    namespace["purse_id"] = state_id(Purse)
    for name, value in fields.items():
        namespace["__annotations__"][name] = type(value)
        namespace[name] = type(value)()
    old = attrs.define(type("OldDeposit", (Event,), namespace, type_name=type_name))
    engine.fire(old(purse_id=1, **fields))
    engine.commit()
    forget(old)
    return old


# --------------------------------------------------------------------------- strict decoding


def test_a_renamed_event_field_is_refused_naming_type_position_and_keys() -> None:
    with Engine.open("sqlite://", head_values=False) as engine:
        engine.fire(Deposit0(purse_id=2, cents=1))  # position 1: another event first
        engine.commit()
        write_old_deposit(engine, "se.Renamed", amount=40)  # position 2

        @attrs.define
        class Renamed(Event, type_name="se.Renamed"):
            purse_id: int = state_id(Purse)
            cents: int = 0  # was ``amount``: with a default, the old row would decode as 0

            def apply(self, purse: Purse) -> None:
                purse.cents += self.cents

        fresh = Engine(engine.store, head_values=False)
        with pytest.raises(UnknownKeysError) as caught:
            fresh.load(Purse, 1)
        error = caught.value
        assert (error.type_name, error.position, error.keys) == ("se.Renamed", 2, ("amount",))
        message = str(error)
        assert "'se.Renamed'" in message and "position 2" in message and "'amount'" in message
        assert "upcast_v1" in message and "version=2" in message  # says how to fix it
        forget(Renamed)


@attrs.define
class Deposit0(Event, type_name="se.Deposit0"):
    purse_id: int = state_id(Purse)
    cents: int = 0

    def apply(self, purse: Purse) -> None:
        purse.cents += self.cents


def test_an_upcaster_that_consumes_the_old_key_reads_the_old_rows() -> None:
    with Engine.open("sqlite://", head_values=False) as engine:
        write_old_deposit(engine, "se.Upcast", amount=40)

        @attrs.define
        class Upcast(Event, type_name="se.Upcast", version=2):
            purse_id: int = state_id(Purse)
            cents: int = 0

            @staticmethod
            def upcast_v1(data: dict[str, Any]) -> dict[str, Any]:
                data = dict(data)
                data["cents"] = data.pop("amount") * 100
                return data

            def apply(self, purse: Purse) -> None:
                purse.cents += self.cents

        engine.fire(Upcast(purse_id=1, cents=5))
        engine.commit()
        assert Engine(engine.store, head_values=False).load(Purse, 1).cents == 4005
        with engine.store.reader() as reader:
            assert [e.version for e in reader.events_after(0, 10)] == [1, 2]
        forget(Upcast)


def test_a_field_added_with_a_default_reads_old_rows_with_the_default() -> None:
    with Engine.open("sqlite://", head_values=False) as engine:
        write_old_deposit(engine, "se.Added", cents=7)

        @attrs.define
        class Added(Event, type_name="se.Added"):
            purse_id: int = state_id(Purse)
            cents: int = 0
            bonus: int = 3  # new field: old rows take the default

            def apply(self, purse: Purse) -> None:
                purse.cents += self.cents + self.bonus

        assert Engine(engine.store, head_values=False).load(Purse, 1).cents == 10
        forget(Added)


@attrs.define
class Inner:
    x: int = 0


def test_a_nested_unknown_key_is_named_by_its_path() -> None:
    @attrs.define
    class Nested(Event, type_name="se.Nested"):
        purse_id: int = state_id(Purse)
        inner: Inner = attrs.Factory(Inner)

    with Engine.open("sqlite://", head_values=False) as engine:
        engine.store.append(
            [_raw("se.Nested", {"purse_id": 1, "inner": {"x": 1, "y": 2}, "z": 0})], {}
        )
        with pytest.raises(UnknownKeysError) as caught:
            engine.load(Purse, 1)
    assert caught.value.keys == ("inner.y", "z")
    assert "'inner.y'" in str(caught.value) and "position 1" in str(caught.value)
    forget(Nested)


def _raw(type_name: str, data: dict[str, Any], version: int = 1) -> Any:
    from playthrough._stores import NewEvent

    return NewEvent(
        type=type_name,
        data=json.dumps(data),
        links=((key_of(Purse, 1), 0),),
        caused_by=None,
        fired_at="2026-01-01T00:00:00+00:00",
        version=version,
    )


def test_an_event_written_by_newer_code_is_refused() -> None:
    with Engine.open("sqlite://", head_values=False) as engine:
        engine.store.append([_raw("se.Deposit0", {"purse_id": 1, "cents": 1}, version=4)], {})
        with pytest.raises(DecodeError, match=r"'se.Deposit0' at position 1.*version 4"):
            engine.load(Purse, 1)


def test_a_failing_or_bad_upcaster_is_named_with_the_type_and_position() -> None:
    @attrs.define
    class Fails(Event, type_name="se.Fails", version=3):
        purse_id: int = state_id(Purse)

        @staticmethod
        def upcast_v1(data: dict[str, Any]) -> dict[str, Any]:
            return data

        @staticmethod
        def upcast_v2(data: dict[str, Any]) -> dict[str, Any]:
            raise KeyError("amount")

    @attrs.define
    class NotADict(Event, type_name="se.NotADict", version=2):
        purse_id: int = state_id(Purse)

        @staticmethod
        def upcast_v1(data: dict[str, Any]) -> Any:
            return [data]

    with Engine.open("sqlite://", head_values=False) as engine:
        engine.store.append([_raw("se.Fails", {"purse_id": 1})], {})
        with pytest.raises(DecodeError, match=r"'se.Fails' at position 1.*upcast_v2 raised"):
            engine.load(Purse, 1)
    with Engine.open("sqlite://", head_values=False) as engine:
        engine.store.append([_raw("se.NotADict", {"purse_id": 1})], {})
        with pytest.raises(DecodeError, match=r"'se.NotADict' at position 1.*returned list"):
            engine.load(Purse, 1)
    forget(Fails, NotADict)


def test_a_current_version_log_never_takes_the_upcasting_path(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The decode hot path does no schema work when the versions match."""
    import playthrough._upcasting as upcasting

    def refuse(*_: Any) -> Any:
        raise AssertionError("the slow path was taken")

    with Engine.open("sqlite://", head_values=False) as engine:
        for cents in (1, 2, 3):
            engine.fire(Deposit0(purse_id=1, cents=cents))
        engine.commit()
        monkeypatch.setattr(upcasting, "read_event", refuse)
        assert Engine(engine.store, head_values=False).load(Purse, 1).cents == 6
        engine.store.append([_raw("se.Deposit0", {"purse_id": 1, "cents": 1}, version=2)], {})
        with pytest.raises(AssertionError, match="slow path"):
            Engine(engine.store, head_values=False).load(Purse, 1)


# --------------------------------------------------------------------------- aliases


def test_rows_stored_under_an_alias_decode_as_the_renamed_class() -> None:
    with Engine.open("sqlite://", head_values=False) as engine:
        write_old_deposit(engine, "se.MoneyIn", cents=40)

        @attrs.define
        class Deposited(Event, type_name="se.Deposited", aliases=("se.MoneyIn",)):
            purse_id: int = state_id(Purse)
            cents: int = 0

            def apply(self, purse: Purse) -> None:
                purse.cents += self.cents

        engine.fire(Deposited(purse_id=1, cents=2))
        engine.commit()
        assert Engine(engine.store, head_values=False).load(Purse, 1).cents == 42
        with engine.store.reader() as reader:
            assert [e.type for e in reader.events_after(0, 10)] == ["se.MoneyIn", "se.Deposited"]
        forget(Deposited)


def test_a_name_claimed_twice_is_refused_at_definition() -> None:
    @attrs.define
    class Holder(Event, type_name="se.Holder", aliases=("se.OldHolder",)):
        purse_id: int = state_id(Purse)

    with pytest.raises(DefinitionError, match=r"'se.OldHolder' is already taken.*as an alias"):

        @attrs.define
        class Thief(Event, type_name="se.Thief", aliases=("se.OldHolder",)):
            purse_id: int = state_id(Purse)

    with pytest.raises(DefinitionError, match=r"'se.Holder' is already taken.*type name"):

        @attrs.define
        class Thief2(Event, type_name="se.Thief2", aliases=("se.Holder",)):
            purse_id: int = state_id(Purse)

    assert "se.Thief" not in registry.events and "se.Thief2" not in registry.events
    with pytest.raises(DefinitionError, match="tuple of names"):

        class Bad(Event, type_name="se.Bad", aliases="se.Old"):
            pass

    with pytest.raises(DefinitionError, match="its own type name"):

        class Bad2(Event, type_name="se.Bad2", aliases=("se.Bad2",)):
            pass

    with pytest.raises(DefinitionError, match=r"State takes no aliases=.*type_name='se.Old'"):

        class Renamed(State, type_name="se.NewName", aliases=("se.Old",)):
            pass

    assert "se.NewName" not in registry.states
    forget(Holder)


# --------------------------------------------------------------------------- definition


def test_a_missing_upcaster_step_is_refused_at_definition() -> None:
    with pytest.raises(DefinitionError, match=r"version 3 but has no upcast_v2"):

        class Gap(Event, type_name="se.Gap", version=3):
            @staticmethod
            def upcast_v1(data: dict[str, Any]) -> dict[str, Any]:
                return data

    with pytest.raises(DefinitionError, match=r"upcast_v1, upcast_v2"):

        class NoSteps(Event, type_name="se.NoSteps", version=3):
            pass

    with pytest.raises(DefinitionError, match=r"defines upcast_v2 but is version 2"):

        class Stale(Event, type_name="se.StaleStep", version=2):
            @staticmethod
            def upcast_v1(data: dict[str, Any]) -> dict[str, Any]:
                return data

            @staticmethod
            def upcast_v2(data: dict[str, Any]) -> dict[str, Any]:
                return data

    with pytest.raises(DefinitionError, match=r"upcast_v1_v2: upcasters are named upcast_vK"):

        class Named(Event, type_name="se.Named", version=2):
            @staticmethod
            def upcast_v1_v2(data: dict[str, Any]) -> dict[str, Any]:
                return data

    for bad in (0, -1, "2", True):
        with pytest.raises(DefinitionError, match="must be an int >= 1"):

            class BadVersion(Event, type_name="se.BadVersion", version=bad):  # type: ignore[arg-type]
                pass

    with pytest.raises(DefinitionError, match=r"version 4 but has no upcast_v3"):

        class StateGap(State, type_name="se.StateGap", version=4):
            @staticmethod
            def upcast_v2(data: dict[str, Any]) -> dict[str, Any]:
                return data

    assert not {"se.Gap", "se.NoSteps", "se.StaleStep", "se.Named", "se.BadVersion"} & set(
        registry.events
    )


def test_a_state_chain_may_start_late_or_be_empty() -> None:
    @attrs.define
    class Late(State, type_name="se.Late", version=3):
        n: int = 0

        @staticmethod
        def upcast_v2(data: dict[str, Any]) -> dict[str, Any]:
            return data

    @attrs.define
    class Bumped(State, type_name="se.Bumped", version=5):  # old snapshots: all unused
        n: int = 0

    assert (Late._pt_version, Bumped._pt_version) == (3, 5)
    forget(Late, Bumped)


# --------------------------------------------------------------------------- snapshots


@attrs.define
class Counter(State, type_name="se.Counter"):
    n: int = 0


@attrs.define
class Count(Event, type_name="se.Count"):
    counter_id: int = state_id(Counter)

    def apply(self, counter: Counter) -> None:
        counter.n += 1


def _counted(engine: Engine, times: int) -> None:
    for _ in range(times):
        engine.fire(Count(counter_id=1))
    engine.commit()


def test_snapshots_store_the_version_and_fingerprint_of_their_class() -> None:
    with Engine.open("sqlite://", head_values=False) as engine:
        _counted(engine, 2)
        engine.admin.snapshot()
        with engine.store.reader() as reader:
            (record,) = reader.snapshots([key_of(Counter, 1)], 10)[key_of(Counter, 1)]
    assert (record.version, record.fingerprint) == (1, value_mark(Counter))


def test_a_fingerprint_follows_field_names_and_types_and_is_stable_across_processes() -> None:
    @attrs.define
    class A:
        x: int = 0

    @attrs.define
    class B:
        x: str = ""

    @attrs.define
    class C:
        y: int = 0

    assert len({fingerprint(A), fingerprint(B), fingerprint(C)}) == 3
    code = (
        "from playthrough.examples import bank; from playthrough._versions import fingerprint; "
        "print(fingerprint(bank.Account))"
    )
    from playthrough.examples import bank

    for seed in ("1", "2"):
        out = subprocess.run(
            [sys.executable, "-c", code],
            env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            check=True,
        )
        assert out.stdout.strip() == fingerprint(bank.Account)


def _reshaped_counter_store(engine: Engine) -> type[State]:
    """Counter snapshots at 2, then the class gains a computed field without a version bump."""
    _counted(engine, 2)
    engine.admin.snapshot()
    _counted(engine, 1)
    forget(Counter, Count)

    @attrs.define
    class Counter2(State, type_name="se.Counter"):
        n: int = 0
        doubled: int = 0  # computed by the hook: the old snapshot cannot know it

    @attrs.define
    class Count2(Event, type_name="se.Count"):
        counter_id: int = state_id(Counter2)

        def apply(self, counter: Counter2) -> None:
            counter.n += 1
            counter.doubled += 2

    return Counter2


def _restore_counter() -> None:
    for name in ("se.Counter",):
        registry.states[name] = Counter
    registry.events["se.Count"] = Count


def test_a_snapshot_of_a_changed_class_is_not_used_and_explain_and_verify_say_why() -> None:
    try:
        with Engine.open("sqlite://", head_values=False) as engine:
            counter2 = _reshaped_counter_store(engine)
            fresh = Engine(engine.store, head_values=False)
            plan = fresh.explain(counter2, 1)
            text = plan.explain()
            assert "snapshot at 2 NOT USED" in text and "without a version bump" in text
            assert plan.states[key_of(counter2, 1)].start == 0
            state: Any = fresh.load(counter2, 1)
            assert (state.n, state.doubled) == (3, 6)  # exact: replayed from blank
            report = fresh.admin.verify()
            assert report.ok  # nothing is wrong, a shortcut is unused
            assert any("at 2 is not used" in w for w in report.warnings), report.warnings
            assert "WARN" in report.to_text() and report.to_dict()["warnings"]
            sync = fresh.admin.snapshot_sync()
            assert sync.in_sync
    finally:
        _restore_counter()


def test_a_snapshot_upcaster_leaving_an_unknown_key_is_refused_naming_it() -> None:
    try:
        with Engine.open("sqlite://", head_values=False) as engine:
            _counted(engine, 2)
            engine.admin.snapshot()
            forget(Counter, Count)

            @attrs.define
            class Counter3(State, type_name="se.Counter", version=2):
                total: int = 0

                @staticmethod
                def upcast_v1(data: dict[str, Any]) -> dict[str, Any]:
                    return {**data, "total": data["n"]}  # forgets to drop "n"

            @attrs.define
            class Count3(Event, type_name="se.Count"):
                counter_id: int = state_id(Counter3)

            with pytest.raises(UnknownKeysError) as caught:
                Engine(engine.store, head_values=False).load(Counter3, 1)
            error = caught.value
            assert (error.type_name, error.position, error.keys) == ("se.Counter", 2, ("n",))
            assert "snapshot of se.Counter(1) at position 2" in str(error)
    finally:
        _restore_counter()


# --------------------------------------------------------------------------- migration

_V1_SCHEMA = """
CREATE TABLE pt_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE pt_events (position INTEGER PRIMARY KEY AUTOINCREMENT, type TEXT NOT NULL,
    data TEXT NOT NULL, caused_by INTEGER, fired_at TEXT NOT NULL);
CREATE TABLE pt_links (state_type TEXT NOT NULL, state_id TEXT NOT NULL,
    position INTEGER NOT NULL, grp INTEGER NOT NULL,
    PRIMARY KEY (state_type, state_id, position)) WITHOUT ROWID;
CREATE INDEX pt_links_by_position ON pt_links (position);
CREATE TABLE pt_heads (state_type TEXT NOT NULL, state_id TEXT NOT NULL,
    last_position INTEGER NOT NULL, PRIMARY KEY (state_type, state_id)) WITHOUT ROWID;
CREATE TABLE pt_snapshots (state_type TEXT NOT NULL, state_id TEXT NOT NULL,
    position INTEGER NOT NULL, last_event_id INTEGER, data TEXT NOT NULL,
    PRIMARY KEY (state_type, state_id, position)) WITHOUT ROWID;
INSERT INTO pt_meta VALUES ('schema_version', '1');
INSERT INTO pt_events VALUES (1, 'se.Count', '{"counter_id":1}', NULL, '2026-01-01T00:00:00+00:00');
INSERT INTO pt_events VALUES (2, 'se.Count', '{"counter_id":1}', NULL, '2026-01-01T00:00:00+00:00');
INSERT INTO pt_links VALUES ('se.Counter', '1', 1, 0), ('se.Counter', '1', 2, 0);
INSERT INTO pt_heads VALUES ('se.Counter', '1', 2);
INSERT INTO pt_snapshots VALUES ('se.Counter', '1', 1, 1, '{"n":1}');
"""


def test_a_version_1_sqlite_store_is_upgraded_on_open(tmp_path: Path) -> None:
    path = tmp_path / "v1.db"
    with sqlite3.connect(path) as conn:
        conn.executescript(_V1_SCHEMA)
    conn.close()
    with Engine(SQLiteStore(str(path)), head_values=False) as engine:
        with engine.store.reader() as reader:
            assert reader.meta("schema_version") == str(SCHEMA_VERSION)
            assert [e.version for e in reader.events_after(0, 10)] == [1, 1]
            (record,) = reader.snapshots([key_of(Counter, 1)], 10)[key_of(Counter, 1)]
            assert (record.version, record.fingerprint) == (1, None)
        plan = engine.explain(Counter, 1)
        assert "snapshot at 1 NOT USED: written without a class fingerprint" in plan.explain()
        assert engine.load(Counter, 1).n == 2
        _counted(engine, 1)
        engine.admin.snapshot()
    with Engine(
        SQLiteStore(str(path)), head_values=False
    ) as engine:  # reopening a version-2 store changes nothing
        assert engine.explain(Counter, 1).states[key_of(Counter, 1)].start == 3
        assert engine.load(Counter, 1).n == 3


def test_a_version_1_postgres_store_is_upgraded_on_open(pg_url: str, pg_schema: str) -> None:
    import psycopg

    from playthrough._stores.postgres import _SCHEMA, PostgresStore  # the version-1 tables

    s = f'"{pg_schema}"'
    with psycopg.connect(pg_url, autocommit=True) as conn:
        for statement in _SCHEMA:  # the version-1 tables: later versions are migration steps
            conn.execute(statement.replace("{s}", s))
        conn.execute(f"INSERT INTO {s}.pt_meta VALUES ('schema_version', '1')")
        for p in (1, 2):
            conn.execute(
                f"INSERT INTO {s}.pt_events VALUES (%s, 'se.Count', '{{\"counter_id\":1}}', "
                "NULL, '2026-01-01T00:00:00+00:00')",
                (p,),
            )
            conn.execute(f"INSERT INTO {s}.pt_links VALUES ('se.Counter', '1', %s, 0)", (p,))
        conn.execute(f"INSERT INTO {s}.pt_heads VALUES ('se.Counter', '1', 2)")
        conn.execute(
            f"INSERT INTO {s}.pt_snapshots VALUES ('se.Counter', '1', 1, 1, '{{\"n\":1}}')"
        )
    with Engine(PostgresStore(pg_url, schema=pg_schema), head_values=False) as engine:
        with engine.store.reader() as reader:
            assert reader.meta("schema_version") == str(SCHEMA_VERSION)
            assert [e.version for e in reader.events_after(0, 10)] == [1, 1]
        assert (
            "NOT USED: written without a class fingerprint" in engine.explain(Counter, 1).explain()
        )
        assert engine.load(Counter, 1).n == 2
        _counted(engine, 1)
        engine.admin.snapshot()
        with engine.store.reader() as reader:
            versions = reader.snapshot_versions()
        assert [(v.type, v.version, v.fingerprint, v.rows) for v in versions] == [
            ("se.Counter", 1, value_mark(Counter), 1),
            ("se.Counter", 1, None, 1),
        ]
    with Engine(PostgresStore(pg_url, schema=pg_schema), head_values=False) as engine:
        assert engine.load(Counter, 1).n == 3


def test_an_upcaster_that_makes_an_old_event_touch_another_state_is_refused() -> None:
    """Links are written once, at commit: an upcast event touching a new state is loud."""
    with Engine.open("sqlite://", head_values=False) as engine:
        write_old_deposit(engine, "se.Split", cents=4)

        @attrs.define
        class Split(Event, type_name="se.Split", version=2):
            purse_id: int = state_id(Purse)
            counter_id: int = state_id(Counter)
            cents: int = 0

            @staticmethod
            def upcast_v1(data: dict[str, Any]) -> dict[str, Any]:
                return {**data, "counter_id": data["purse_id"]}

            def apply(self, purse: Purse, counter: Counter) -> None:
                purse.cents += self.cents
                counter.n += 1

        report = engine.admin.verify()
        assert not report.ok
        (error,) = report.errors
        assert "'se.Split' at position 1" in error and "se.Counter(1)" in error
        assert "did not touch when it was written" in error
        with pytest.raises(DecodeError, match=r"'se.Split' at position 1: upcast from version 1"):
            engine.admin.replay()
        forget(Split)


def test_a_heads_value_of_a_changed_class_is_not_used_and_is_rewritten() -> None:
    try:
        # with heads values: the commit writes Counter's value
        with Engine.open("sqlite://") as engine:
            counter2 = _reshaped_counter_store(engine)
            key = key_of(counter2, 1)
            row = engine.store.heads([key])[key]
            assert row.fresh and row.value_fingerprint == value_mark(Counter)
            fresh = Engine(engine.store)
            text = fresh.explain(counter2, 1).explain()
            assert "snapshot at 3 NOT USED" in text  # the heads value, exact at 3
            state: Any = fresh.load(counter2, 1)
            assert (state.n, state.doubled) == (3, 6)  # planned and played, exact
            row = engine.store.heads([key])[key]  # written back in the current shape
            assert row.fresh and row.value_fingerprint == value_mark(counter2)
            again: Any = Engine(engine.store).load(counter2, 1)
            assert (again.n, again.doubled) == (3, 6)
            assert Engine(engine.store).explain(counter2, 1).states[key].start == 3
    finally:
        _restore_counter()


def test_an_unusable_base_snapshot_of_an_archived_log_is_refused(tmp_path: Path) -> None:
    """After an archive, skipping the base snapshot would drop the archived events: loud."""
    from playthrough.errors import ArchivedRangeError

    try:
        with Engine.open("sqlite://") as engine:
            for _ in range(4):
                _counted(engine, 1)
            engine.admin.archive(before=3, to=tmp_path / "old.jsonl.gz")
            assert Engine(engine.store).load(Counter, 1).n == 4
            forget(Counter, Count)

            @attrs.define
            class Counter4(State, type_name="se.Counter"):  # changed, no version bump
                n: int = 0
                extra: int = 0

            @attrs.define
            class Count4(Event, type_name="se.Count"):
                counter_id: int = state_id(Counter4)

                def apply(self, counter: Counter4) -> None:
                    counter.n += 1

            with pytest.raises(ArchivedRangeError, match=r"se.Counter\(1\) needs its snapshot"):
                Engine(engine.store).load(Counter4, 1)
    finally:
        _restore_counter()


def test_export_and_import_keep_each_event_s_class_version() -> None:
    import io

    @attrs.define
    class Versioned(Event, type_name="se.Versioned", version=2):
        purse_id: int = state_id(Purse)
        cents: int = 0

        @staticmethod
        def upcast_v1(data: dict[str, Any]) -> dict[str, Any]:
            data = dict(data)
            data["cents"] = data.pop("amount") * 100
            return data

        def apply(self, purse: Purse) -> None:
            purse.cents += self.cents

    try:
        with Engine.open("sqlite://", head_values=False) as source:
            source.store.append([_raw("se.Versioned", {"purse_id": 1, "amount": 4})], {})
            source.fire(Versioned(purse_id=1, cents=5))
            source.commit()
            buffer = io.BytesIO()
            source.log.export(buffer)
        with Engine.open("sqlite://", head_values=False) as target:
            buffer.seek(0)
            target.admin.import_log(buffer)
            with target.store.reader() as reader:
                assert [e.version for e in reader.events_after(0, 10)] == [1, 2]
            assert Engine(target.store, head_values=False).load(Purse, 1).cents == 405
    finally:
        forget(Versioned)
