"""Followers: exactly once into a read model in the same database, restarts, failures, locks.

Run on SQLite (a file, so other processes share it) and on PostgreSQL.
"""

from __future__ import annotations

import multiprocessing
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import attrs
import pytest

from playthrough import Engine, Event, FollowerTransaction, Projection
from playthrough._stores import SQLiteStore, open_store
from playthrough.errors import DefinitionError, FollowerFailed, StoreError
from playthrough.examples.balances import OwnerBalances, balances
from playthrough.examples.bank import Account, Deposited, Transferred
from playthrough.examples.bank import Deposited as BankDeposited

from .follower_workers import (
    AuditedBalances,
    crash_worker,
    follow_worker,
    open_engine,
    setup_bank,
    write_worker,
)
from .read_domain import own_sessions

DEADLINE = 120.0  # seconds for a multi-process run; a hang fails instead of blocking the suite


@pytest.fixture(params=["sqlite", "postgresql"])
def where(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, str | None]:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'bank.db'}", None
    return own_sessions(request.getfixturevalue("pg_url")), request.getfixturevalue("pg_schema")


@pytest.fixture
def engine(where: tuple[str, str | None]) -> Iterator[Engine]:
    e = open_engine(*where)
    try:
        yield e
    finally:
        e.close()


def _read(engine: Engine, sql: str) -> list[tuple[Any, ...]]:
    """Rows of the read model, through a follower transaction (the store's own database)."""
    with engine.store.follow("__reader__", 0) as batch:
        assert batch is not None
        return batch.tx.execute(sql)


def _batches(n: int) -> Any:
    """A ``stop`` for engine.followers.run that lets exactly ``n`` batches run."""
    calls = iter(range(n + 1))
    return lambda: next(calls) >= n


def _expected_balances(engine: Engine) -> dict[str, int]:
    out: dict[str, int] = {}
    for account in engine.states.find(Account):
        out[account.owner] = out.get(account.owner, 0) + account.balance
    return out


def test_projection_catches_up_and_resumes(engine: Engine) -> None:
    setup_bank(engine)
    first = engine.followers.run(OwnerBalances(), until_idle=True, batch_size=5)
    assert (first.processed, first.position) == (12, 12)
    assert first.batches == 3  # 5 + 5 + 2 events
    assert _read(engine, "SELECT count(*) FROM account_owner") == [(6,)]
    engine.fire(Transferred(source_id=0, target_id=1, amount=7))
    engine.fire(Deposited(account_id=2, amount=5))
    engine.commit()
    [status] = [f for f in engine.followers() if f.name == "balances"]
    assert (status.position, status.lag) == (12, 2)
    second = engine.followers.run(OwnerBalances(), until_idle=True)
    assert (second.processed, second.position) == (2, 14)
    assert engine.followers.run(OwnerBalances(), until_idle=True).processed == 0
    assert dict(_read(engine, "SELECT owner, balance FROM owner_balance")) == _expected_balances(
        engine
    )


def test_a_raising_handler_stops_there_and_keeps_nothing(engine: Engine) -> None:
    setup_bank(engine)
    engine.fire(Deposited(account_id=1, amount=99))
    engine.commit()  # position 13

    class Picky(AuditedBalances):
        fail = True

        def on_Deposited(self, event: Deposited, tx: FollowerTransaction) -> None:
            super().on_Deposited(event, tx)
            if self.fail and event.amount == 99:
                raise RuntimeError("cannot take 99")

    engine.followers.run(Picky(), batch_size=10, stop=_batches(1))  # 1..10 committed
    picky = Picky()
    with pytest.raises(
        FollowerFailed, match=r"'balances' stopped at event 13 .*position stays 10"
    ) as info:
        engine.followers.run(picky, until_idle=True, batch_size=10)
    assert info.value.position == 10 and cast(Any, info.value.event).id == 13
    assert isinstance(info.value.__cause__, RuntimeError)
    assert [f.position for f in engine.followers() if f.name == "balances"] == [10]
    assert _read(engine, "SELECT max(position) FROM seen") == [(10,)]  # 11, 12 rolled back too
    picky.fail = False
    assert engine.followers.run(picky, until_idle=True).processed == 3
    assert [p for (p,) in _read(engine, "SELECT position FROM seen ORDER BY position")] == list(
        range(1, 14)
    )


def test_reset_reprojects_from_zero(engine: Engine) -> None:
    setup_bank(engine)
    engine.followers.run(AuditedBalances(), until_idle=True)
    before = _read(engine, "SELECT owner, balance FROM owner_balance ORDER BY owner")
    engine.followers.reset(AuditedBalances())
    assert [f.position for f in engine.followers() if f.name == "balances"] == [0]
    assert _read(engine, "SELECT count(*) FROM seen") == [(0,)]
    assert engine.followers.run(AuditedBalances(), until_idle=True).processed == 12
    assert _read(engine, "SELECT owner, balance FROM owner_balance ORDER BY owner") == before


def test_bad_projections_are_refused() -> None:
    class Nameless(Projection):
        def on_Deposited(self, event: Any, tx: Any) -> None: ...

    class Typo(Projection):
        name = "typo"

        def on_Deposit(self, event: Any, tx: Any) -> None: ...

    class Empty(Projection):
        name = "empty"

    with Engine.open("sqlite://") as engine:
        with pytest.raises(DefinitionError, match="needs a `name"):
            engine.followers.run(Nameless(), until_idle=True)
        with pytest.raises(DefinitionError, match=r"Typo\.on_Deposit: no event type 'Deposit'"):
            engine.followers.run(Typo(), until_idle=True)
        with pytest.raises(DefinitionError, match="handles no event"):
            engine.followers.run(Empty(), until_idle=True)


def test_a_crash_mid_batch_resumes_from_the_stored_position(where: tuple[str, str | None]) -> None:
    with open_engine(*where) as engine:
        setup_bank(engine)
        for n in range(20):
            engine.fire(Deposited(account_id=n % 6, amount=n + 1))
        engine.commit()  # positions 13..32
    ctx = multiprocessing.get_context("spawn")
    proc = ctx.Process(target=crash_worker, args=(*where, 20))
    proc.start()
    proc.join(DEADLINE)
    assert proc.exitcode == 3, "the follower process did not crash where it should"
    with open_engine(*where) as engine:
        # Died inside its only batch: nothing of it was kept.
        assert [f.position for f in engine.followers() if f.name == "balances"] in ([], [0])
        assert engine.followers.run(AuditedBalances(), until_idle=True).processed == 32
        seen = [p for (p,) in _read(engine, "SELECT position FROM seen ORDER BY position")]
        assert seen == list(range(1, 33))
        assert dict(_read(engine, "SELECT owner, balance FROM owner_balance")) == (
            _expected_balances(engine)
        )


def test_a_second_process_cannot_take_a_batch_while_one_is_open(
    where: tuple[str, str | None],
) -> None:
    url, schema = where
    first = open_store(url, schema=schema) if schema else open_store(url)
    second = (
        open_store(url, schema=schema)
        if schema
        else SQLiteStore(url[len("sqlite:///") :], busy_timeout=0.2)
    )
    try:
        with first.follow("balances", 10) as batch:
            assert batch is not None
            if schema:  # PostgreSQL: the row lock is taken NOWAIT, the other side backs off
                with second.follow("balances", 10) as other:
                    assert other is None
            else:  # SQLite: the batch holds the write lock; another writer cannot begin
                with pytest.raises(StoreError, match="locked"):
                    with second.follow("balances", 10):
                        pass
        with second.follow("balances", 10) as other:
            assert other is not None  # released with the first batch
    finally:
        first.close()
        second.close()


@pytest.mark.parametrize("batch_size", [3, 50])
def test_followers_in_two_processes_with_concurrent_writers(
    where: tuple[str, str | None], batch_size: int
) -> None:
    """Three writer processes and two processes running the same follower, all at once.

    Every handled event lands in the read model exactly once (``seen`` has a
    primary key on the position, so a second processing would fail the
    follower), none is skipped although writers commit concurrently, and the
    balances equal the states' own.
    """
    url, schema = where
    writers, commits = 3, 40
    with open_engine(url, schema) as engine:
        setup_bank(engine)
        final_head = engine.head() + writers * commits
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(writers + 2) as pool:
        followers = [
            pool.apply_async(follow_worker, (url, schema, final_head, batch_size)) for _ in range(2)
        ]
        written = [
            pool.apply_async(write_worker, (url, schema, seed, commits)) for seed in range(writers)
        ]
        for w in written:
            w.get(timeout=DEADLINE)
        processed = [f.get(timeout=DEADLINE) for f in followers]
    with open_engine(url, schema) as engine:
        assert engine.head() == final_head
        handled = [e.id for e in engine.log.events(types=[*OwnerBalances_types()])]
        seen = [p for (p,) in _read(engine, "SELECT position FROM seen ORDER BY position")]
        assert seen == handled, "an event was skipped or processed twice"
        assert sum(processed) == len(handled)
        assert dict(_read(engine, "SELECT owner, balance FROM owner_balance")) == (
            _expected_balances(engine)
        )


def OwnerBalances_types() -> list[type]:
    from playthrough.examples.bank import AccountOpened

    return [AccountOpened, Deposited, Transferred]


def test_sqlite_read_model_is_a_plain_table(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'bank.db'}"
    with Engine.open(url) as engine:
        setup_bank(engine)
        engine.followers.run(OwnerBalances(), until_idle=True)
    conn = sqlite3.connect(tmp_path / "bank.db")
    rows = dict(conn.execute("SELECT owner, balance FROM owner_balance").fetchall())
    conn.close()
    assert rows == {"ada": 2_000_000, "bob": 2_000_000, "cy": 2_000_000}
    with Engine.open(url) as engine, engine.store.follow("x", 0) as batch:
        assert batch is not None
        assert balances(batch.tx) == rows


def test_handler_names_resolve_by_type_name_first() -> None:
    import attrs

    from playthrough import Event

    def twin(type_name: str) -> Any:
        @attrs.define
        class Twin(Event, type_name=type_name):
            amount: int = 0

        return Twin

    twin("follow.a.Twin")
    twin("follow.b.Twin")

    class Ambiguous(Projection):
        name = "ambiguous"

        def on_Twin(self, event: Any, tx: Any) -> None: ...

    with Engine.open("sqlite://") as engine:
        with pytest.raises(DefinitionError, match=r"'Twin' names several event types"):
            engine.followers.run(Ambiguous(), until_idle=True)
        exact = twin("Twin")  # a type registered under exactly that name wins
        engine.fire(exact(amount=5))
        engine.fire(twin("follow.a.Twin")(amount=6))
        engine.commit()
        assert engine.followers.run(Ambiguous(), until_idle=True).processed == 1


def test_a_shared_class_name_resolves_by_dotted_name_or_annotation(
    isolated_registry: None,
) -> None:
    """With two ``Deposited`` classes, ``on_Deposited`` is ambiguous unless the event
    parameter's annotation names one; ``on_bank__Deposited`` spells a dotted type name."""
    seen: list[tuple[str, int]] = []

    @attrs.define
    class Deposited(Event, type_name="follow.other.Deposited"):  # an app's own Deposited
        amount: int = 0

    other = Deposited

    class Annotated(Projection):
        name = "annotated"

        def on_Deposited(self, event: BankDeposited, tx: FollowerTransaction) -> None:
            seen.append(("annotated", event.amount))

    class Dotted(Projection):
        name = "dotted"

        def on_follow__other__Deposited(self, event: Any, tx: FollowerTransaction) -> None:
            seen.append(("dotted", event.amount))

    class Unsaid(Projection):
        name = "unsaid"

        def on_Deposited(self, event: Any, tx: FollowerTransaction) -> None: ...

    with Engine.open("sqlite://") as engine:
        engine.fire(BankDeposited(account_id=1, amount=5))
        engine.fire(other(amount=7))
        engine.commit()
        with pytest.raises(DefinitionError, match=r"on_bank__Deposited, on_follow__other__Dep"):
            engine.followers.run(Unsaid(), until_idle=True)
        assert engine.followers.run(Annotated(), until_idle=True).processed == 1
        assert engine.followers.run(Dotted(), until_idle=True).processed == 1
    assert seen == [("annotated", 5), ("dotted", 7)]


# --------------------------------------------------------------------------- batched projections


class Ledger(Projection):
    """A batched read model: every deposit and transfer as a row, written with executemany."""

    name = "ledger"
    batched = True
    calls: list[tuple[str, list[int]]]

    def __init__(self) -> None:
        self.calls = []

    def setup(self, tx: FollowerTransaction) -> None:
        tx.execute(
            "CREATE TABLE IF NOT EXISTS ledger "
            "(position BIGINT PRIMARY KEY, account BIGINT NOT NULL, amount BIGINT NOT NULL)"
        )

    def reset(self, tx: FollowerTransaction) -> None:
        tx.execute("DELETE FROM ledger")

    def on_Deposited(self, events: list[Deposited], tx: FollowerTransaction) -> None:
        self.calls.append(("Deposited", [cast(int, e.id) for e in events]))
        tx.executemany(
            "INSERT INTO ledger VALUES (?, ?, ?)", [(e.id, e.account_id, e.amount) for e in events]
        )

    def on_Transferred(self, events: list[Transferred], tx: FollowerTransaction) -> None:
        self.calls.append(("Transferred", [cast(int, e.id) for e in events]))
        tx.executemany(
            "INSERT INTO ledger VALUES (?, ?, ?)",
            [(e.id, e.target_id, e.amount) for e in events],
        )


def _runs(kinds: dict[int, str], batch: int, handled: set[str]) -> list[tuple[str, list[int]]]:
    """The calls a batched projection should get: per batch of positions, each run of one
    handled type (the other types do not break a run)."""
    out: list[tuple[str, list[int]]] = []
    positions = sorted(kinds)
    for start in range(0, len(positions), batch):
        current: str | None = None
        for p in positions[start : start + batch]:
            kind = kinds[p]
            if kind not in handled:
                continue
            if kind != current:
                out.append((kind, []))
                current = kind
            out[-1][1].append(p)
    return out


def test_a_batched_projection_gets_each_run_of_its_types_in_order(engine: Engine) -> None:
    setup_bank(engine)  # opened and deposited, alternately: 1..12
    engine.fire(Transferred(source_id=0, target_id=1, amount=7))  # 13
    engine.fire(Transferred(source_id=1, target_id=2, amount=8))  # 14
    engine.fire(Deposited(account_id=2, amount=5))  # 15
    engine.fire(Transferred(source_id=2, target_id=3, amount=9))  # 16
    engine.commit()
    kinds = {e.id or 0: type(e).__name__ for e in engine.log.events()}
    assert len(kinds) == 16
    ledger = Ledger()
    report = engine.followers.run(ledger, until_idle=True, batch_size=5)
    assert ledger.calls == _runs(kinds, 5, {"Deposited", "Transferred"})
    # Opened events between deposits do not break their run; the batch ends do.
    assert ledger.calls[:2] == [("Deposited", [2, 4]), ("Deposited", [6, 8, 10])]
    assert (report.processed, report.passed, report.position) == (10, 6, 16)
    rows = _read(engine, "SELECT position FROM ledger ORDER BY position")
    assert [p for (p,) in rows] == [p for p, k in sorted(kinds.items()) if k != "AccountOpened"]
    assert _read(engine, "SELECT amount FROM ledger WHERE position = 16") == [(9,)]


def test_a_raising_batched_handler_keeps_nothing_of_its_batch(engine: Engine) -> None:
    setup_bank(engine)

    class Failing(Ledger):
        def on_Deposited(self, events: list[Deposited], tx: FollowerTransaction) -> None:
            super().on_Deposited(events, tx)
            if any(e.id == 8 for e in events):
                raise RuntimeError("cannot take 8")

    with pytest.raises(
        FollowerFailed, match=r"'ledger' stopped at events 6\.\.10 .*position stays 5"
    ) as info:
        engine.followers.run(Failing(), until_idle=True, batch_size=5)
    assert info.value.position == 5 and cast(Any, info.value.event).id == 6
    assert isinstance(info.value.__cause__, RuntimeError)
    assert [f.position for f in engine.followers() if f.name == "ledger"] == [5]
    assert _read(engine, "SELECT position FROM ledger ORDER BY position") == [(2,), (4,)]
    assert engine.followers.run(Ledger(), until_idle=True, batch_size=5).processed == 4


def test_executemany_runs_a_statement_per_row_with_question_marks(engine: Engine) -> None:
    with engine.store.follow("__writer__", 0) as batch:
        assert batch is not None
        batch.tx.execute("CREATE TABLE many (k BIGINT, v TEXT)")
        batch.tx.executemany("INSERT INTO many VALUES (?, ?)", [(1, "5%"), (2, "x?")])
        batch.tx.executemany("INSERT INTO many VALUES (?, ?)", iter([(3, "z")]))
        batch.tx.executemany("INSERT INTO many VALUES (?, ?)", [])
    assert _read(engine, "SELECT k, v FROM many ORDER BY k") == [(1, "5%"), (2, "x?"), (3, "z")]


def test_batched_must_be_a_bool() -> None:
    class Odd(Ledger):
        batched = "yes"  # type: ignore[assignment]

    with Engine.open("sqlite://") as engine:
        with pytest.raises(DefinitionError, match=r"Odd\.batched must be True or False"):
            engine.followers.run(Odd(), until_idle=True)


def test_a_batched_handler_is_resolved_by_its_list_annotation(isolated_registry: None) -> None:
    @attrs.define
    class Deposited(Event, type_name="follow.batched.Deposited"):  # shares the bank's name
        amount: int = 0

    seen: list[list[int]] = []

    class Annotated(Projection):
        name = "annotated_batched"
        batched = True

        def on_Deposited(self, events: list[BankDeposited], tx: FollowerTransaction) -> None:
            seen.append([e.amount for e in events])

    with Engine.open("sqlite://") as engine:
        engine.fire(BankDeposited(account_id=1, amount=5))
        engine.fire(Deposited(amount=7))
        engine.fire(BankDeposited(account_id=1, amount=6))
        engine.commit()
        assert engine.followers.run(Annotated(), until_idle=True).processed == 2
    assert seen == [[5, 6]]  # the other Deposited is passed over: it does not end the run
