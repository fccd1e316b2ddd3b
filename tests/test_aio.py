"""playthrough.aio: the async engine gives what the sync one gives, on both stores."""

from __future__ import annotations

import asyncio
import uuid
import warnings
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, TypeVar

import attrs
import pytest

import playthrough.aio
from playthrough import (
    FORGOTTEN,
    Engine,
    Event,
    Personal,
    Projection,
    State,
    connect,
    state_id,
)
from playthrough._clock import stamp
from playthrough._model import key_of
from playthrough._steps import Call
from playthrough._stores import FollowerTransaction
from playthrough.aio import AsyncEngine, AsyncStore
from playthrough.errors import (
    CommitOutcomeUnknown,
    ConcurrencyError,
    ConfigurationError,
    DuplicateEvent,
    EventRejected,
    FollowerFailed,
    HandlerFailed,
    NotFoundError,
    PlaythroughError,
    ScheduleNotFound,
    StateMutationError,
)
from playthrough.testing import ManualClock

from .domain import Bump, Copy, Feed, Hub, Node

T = TypeVar("T")


def run(body: Callable[[AsyncStore], Coroutine[Any, Any, T]], url: str) -> T:
    """Open the async store on ``url``, run ``body(store)``, close it (bounded in time)."""

    async def main() -> T:
        store = await playthrough.aio.connect(url)
        try:
            return await asyncio.wait_for(body(store), 60)
        finally:
            await store.close()

    return asyncio.run(main())


@attrs.define
class AioAccount(State, type_name="t.aio.Account"):
    balance: int = 0
    log: list[str] = attrs.field(factory=list)


@attrs.define
class AioDeposited(Event, type_name="t.aio.AioDeposited"):
    account_id: int = state_id(AioAccount)
    amount: int = 0

    def validate(self, account: AioAccount) -> None:
        if self.amount <= 0:
            raise EventRejected("a deposit is positive")

    def apply(self, account: AioAccount) -> None:
        account.balance += self.amount


@attrs.define
class AioMeddled(Event, type_name="t.aio.AioMeddled"):
    account_id: int = state_id(AioAccount)

    def validate(self, account: AioAccount) -> None:
        account.log.append("meddled")  # a change in place: refused


@attrs.define
class AioLedger(State, type_name="t.aio.Ledger"):
    entries: int = 0


@attrs.define
class AioEntered(Event, type_name="t.aio.AioEntered"):
    ledger_id: int = state_id(AioLedger)

    def apply(self, ledger: AioLedger) -> None:
        ledger.entries += 1


class Seen:
    calls: ClassVar[list[str]] = []


@attrs.define
class AioPaidAsync(Event, type_name="t.aio.AioPaidAsync"):
    """An async def handle: it awaits the engine it gets, loading an undeclared state."""

    account_id: int = state_id(AioAccount)

    def apply(self, account: AioAccount) -> None:
        account.balance -= 1

    async def handle(self, engine: AsyncEngine) -> None:
        await asyncio.sleep(0)
        ledger = await engine.load(AioLedger, self.account_id)
        Seen.calls.append(f"async {ledger.entries}")
        await engine.fire(AioEntered(ledger_id=self.account_id))


@attrs.define
class AioPaidSync(Event, type_name="t.aio.AioPaidSync"):
    """A plain def handle under the async engine: fires on the state it declares."""

    account_id: int = state_id(AioAccount)

    def apply(self, account: AioAccount) -> None:
        account.balance -= 2

    def handle(self, account: AioAccount, engine: Any) -> None:
        Seen.calls.append(f"sync {account.balance}")
        engine.fire(AioDeposited(account_id=self.account_id, amount=10))


@attrs.define
class AioPaidSyncElsewhere(Event, type_name="t.aio.AioPaidSyncElsewhere"):
    """A plain def handle that fires on a state it neither declares nor has in memory."""

    account_id: int = state_id(AioAccount)

    def apply(self, account: AioAccount) -> None:
        account.balance -= 3

    def handle(self, engine: Any) -> None:
        engine.fire(AioEntered(ledger_id=999))


@attrs.define
class AioOrdered(Event, type_name="t.aio.AioOrdered"):
    """A fired hook: the ledger entry joins the order's commit (an async def one here)."""

    account_id: int = state_id(AioAccount)

    def apply(self, account: AioAccount) -> None:
        account.balance += 1

    async def fired(self, engine: AsyncEngine) -> None:
        await engine.fire(AioEntered(ledger_id=self.account_id + 100))  # not in memory: loads


@attrs.define
class AioRefunded(Event, type_name="t.aio.AioRefunded"):
    """A plain def fired hook under the async engine, refusing the chain when told to."""

    account_id: int = state_id(AioAccount)
    fail: bool = False

    def apply(self, account: AioAccount) -> None:
        account.balance -= 1

    def fired(self, account: AioAccount, engine: Any) -> None:
        engine.fire(AioDeposited(account_id=self.account_id, amount=5))
        if self.fail:
            raise EventRejected("refund refused")


def test_fired_hooks_join_the_commit_under_the_async_engine(any_url: str) -> None:
    async def body(store: AsyncStore) -> None:
        async with store.engine() as engine:
            await engine.fire(AioOrdered(account_id=1))
            await engine.fire(AioRefunded(account_id=1))
            assert [type(e).__name__ for e in engine.pending] == [
                "AioOrdered",
                "AioEntered",
                "AioRefunded",
                "AioDeposited",
            ]
            with pytest.raises(EventRejected):
                await engine.fire(AioRefunded(account_id=1, fail=True))
            assert len(engine.pending) == 4
            assert (await engine.load(AioAccount, 1)).balance == 5
        async with store.engine() as engine:
            assert (await engine.load(AioAccount, 1)).balance == 5
            assert (await engine.load(AioLedger, 101)).entries == 1
            assert await engine.head() == 4

    run(body, any_url)


def test_load_or_fail_under_the_async_engine(any_url: str) -> None:
    async def body(store: AsyncStore) -> None:
        async with store.engine() as engine:
            with pytest.raises(NotFoundError, match="no AioAccount with id 7"):
                await engine.load_or_fail(AioAccount, 7)
            await engine.fire(AioDeposited(account_id=7, amount=1))
            assert (await engine.load_or_fail(AioAccount, 7)).balance == 1

    run(body, any_url)


def test_fire_commit_load_find_count_and_events(any_url: str) -> None:
    async def body(store: AsyncStore) -> None:
        async with store.engine() as engine:
            await engine.fire(AioDeposited(account_id=1, amount=100))
            await engine.fire(AioDeposited(account_id=2, amount=50))
            assert len(engine.pending) == 2
        async with store.engine() as engine:
            one = await engine.load(AioAccount, 1)
            assert one.balance == 100 and one.last_event_id == 1
            assert [a.balance for a in await engine.load_many(AioAccount, [2, 1, 3])] == [
                50,
                100,
                0,
            ]
            rich = await engine.states.find(AioAccount, balance__gt=60)
            assert [a.balance for a in rich] == [100]
            assert await engine.states.count(AioAccount) == 2
            assert await engine.states.count(AioAccount, balance__lt=60) == 1
            assert (await engine.load(AioAccount, 1, at=0)).balance == 0
            await engine.fire(AioDeposited(account_id=1, amount=1))
        async with store.engine() as engine:
            seen = [e async for e in engine.log.events(types=[AioDeposited])]
            assert [(e.id, getattr(e, "amount", None)) for e in seen] == [(1, 100), (2, 50), (3, 1)]
            later = [e.id async for e in engine.log.events(after=1, page_size=1, limit=1)]
            assert later == [2]
            assert await engine.head() == 3

    run(body, any_url)


@attrs.define
class AioTab(State, type_name="t.aio.Tab"):
    complete_when = "closed"
    closed: bool = False


@attrs.define
class AioTabClosed(Event, type_name="t.aio.TabClosed"):
    tab_id: int = state_id(AioTab)

    def apply(self, tab: AioTab) -> None:
        tab.closed = True


def test_the_read_rooms_answer_as_the_sync_engines_do(any_url: str) -> None:
    """engine.log (event, causes, effects, history) and engine.states (info, completion)
    under the async engine give what the sync engine gives on the same store."""
    with Engine.open(any_url) as sync:
        sync.fire(AioDeposited(account_id=1, amount=5))
        sync.commit()
        sync.fire(AioPaidSync(account_id=1))  # its handle hook causes a deposit (position 3)
        sync.commit()
        sync.fire(AioTabClosed(tab_id=1))
        sync.commit()
        expected = (
            sync.log.event(3),
            sync.log.causes(3),
            sync.log.effects(2),
            sync.log.history(AioAccount, 1).to_dict(),
            sync.log.history(AioAccount, 1, at=1).to_dict(),
            sync.states.info(AioAccount, 1),
            sync.states.completion(AioTab, 1),
            sync.states.completion(AioTab, 2),
        )

    async def body(store: AsyncStore) -> tuple[Any, ...]:
        async with store.engine() as engine:
            log, states = engine.log, engine.states
            assert repr(log).startswith("<Log of ") and repr(states).startswith("<States of ")
            with pytest.raises(NotFoundError, match="no event at position 9"):
                await log.event(9)
            with pytest.raises(TypeError, match="an event position is an int"):
                await log.event("3")  # type: ignore[arg-type]
            with pytest.raises(ValueError, match="outside the log"):
                await log.history(AioAccount, 1, at=99)
            with pytest.raises(NotFoundError, match="no event ever touched"):
                await states.info(AioAccount, 42)
            return (
                await log.event(3),
                await log.causes(3),
                await log.effects(2),
                (await log.history(AioAccount, 1)).to_dict(),
                (await log.history(AioAccount, 1, at=1)).to_dict(),
                await states.info(AioAccount, 1),
                await states.completion(AioTab, 1),
                await states.completion(AioTab, 2),
            )

    got = run(body, any_url)
    assert got == expected
    assert got[0].caused_by == 2 and [e.id for e in got[1]] == [2]
    assert [e.id for e in got[2]] == [3]
    assert len(got[3]["events"]) == 3 and got[6] is not None and got[7] is None


def test_a_clean_block_commits_and_an_error_discards(any_url: str) -> None:
    async def body(store: AsyncStore) -> None:
        with pytest.raises(RuntimeError):
            async with store.engine() as engine:
                await engine.fire(AioDeposited(account_id=1, amount=5))
                raise RuntimeError("boom")
        async with store.engine() as engine:
            assert (await engine.load(AioAccount, 1)).balance == 0
            assert await engine.head() == 0
            with pytest.raises(EventRejected):
                await engine.fire(AioDeposited(account_id=1, amount=-1))
            assert engine.pending == ()
            assert await engine.fire_if_valid(AioDeposited(account_id=1, amount=-1)) is None
            assert await engine.fire_if_valid(AioDeposited(account_id=1, amount=2)) is not None
            assert len(engine.pending) == 1
            engine.discard()

    run(body, any_url)


def test_a_stale_commit_is_refused_and_retry_runs_the_work_again(any_url: str) -> None:
    async def body(store: AsyncStore) -> None:
        first, second = store.engine(), store.engine()
        await first.load(AioAccount, 1)
        await second.load(AioAccount, 1)
        await first.fire(AioDeposited(account_id=1, amount=1))
        await second.fire(AioDeposited(account_id=1, amount=2))
        await first.commit()
        with pytest.raises(ConcurrencyError, match=r"t\.aio\.Account\(1\)"):
            await second.commit()
        assert second.pending == ()

        attempts: list[int] = []
        other = store.engine()

        async def work(engine: AsyncEngine) -> int:
            account = await engine.load(AioAccount, 1)
            if not attempts:  # another writer commits between this load and the commit
                async with other:
                    await other.load(AioAccount, 1)
                    await other.fire(AioDeposited(account_id=1, amount=10))
            before = account.balance
            attempts.append(before)
            await engine.fire(AioDeposited(account_id=1, amount=100))
            return before

        engine = store.engine()
        await engine.load(AioAccount, 1)  # known at balance 1: stale once `other` commits
        assert await engine.retry(work, backoff=0) == 11
        assert attempts == [1, 11]
        async with store.engine() as check:
            assert (await check.load(AioAccount, 1)).balance == 111

    run(body, any_url)


def test_idempotency_keys_and_was_committed(any_url: str) -> None:
    async def body(store: AsyncStore) -> None:
        async with store.engine() as engine:
            await engine.fire(AioDeposited(account_id=1, amount=5), key="order-1")
        async with store.engine() as engine:
            commit_id = None
            await engine.fire(AioDeposited(account_id=1, amount=5), key="order-1")
            with pytest.raises(DuplicateEvent, match="order-1"):
                await engine.commit()
            await engine.fire(AioDeposited(account_id=1, amount=7))
            await engine.commit()
            commit_id = engine.last_commit_id
            assert commit_id is not None and await engine.was_committed(commit_id)
            assert not await engine.was_committed(uuid.uuid4().hex)
            assert (await engine.load(AioAccount, 1)).balance == 12

    run(body, any_url)


def test_state_mutations_are_refused_as_by_the_sync_engine(any_url: str) -> None:
    async def body(store: AsyncStore) -> None:
        async with store.engine() as engine:
            await engine.fire(AioDeposited(account_id=1, amount=5))
            with pytest.raises(StateMutationError, match="validate hook of AioMeddled"):
                await engine.fire(AioMeddled(account_id=1))
            account = await engine.load(AioAccount, 1)
            assert account.log == [] and account.balance == 5
            with pytest.raises(StateMutationError):
                account.balance = 0

    run(body, any_url)


def test_async_and_sync_handle_hooks_run_after_the_commit(any_url: str) -> None:
    Seen.calls.clear()

    async def body(store: AsyncStore) -> None:
        async with store.engine() as engine:
            await engine.fire(AioDeposited(account_id=1, amount=100))
            await engine.fire(AioPaidAsync(account_id=1))
            await engine.fire(AioPaidSync(account_id=1))
            committed = await engine.commit()
            assert [type(e).__name__ for e in committed] == [
                "AioDeposited",
                "AioPaidAsync",
                "AioPaidSync",
                "AioEntered",
                "AioDeposited",
            ]
        assert Seen.calls == ["async 0", "sync 97"]
        async with store.engine() as engine:
            assert (await engine.load(AioAccount, 1)).balance == 107
            assert (await engine.load(AioLedger, 1)).entries == 1
            await engine.fire(AioPaidSyncElsewhere(account_id=1))
            result = await engine.commit()  # the commit stands, the failure is reported
            assert len(result) == 1 and len(result.failures) == 1
            assert "t.aio.Ledger(999)" in str(result.failures[0][1])
            assert "async def" in str(result.failures[0][1])
            with pytest.raises(HandlerFailed):
                result.raise_for_failures()
        async with store.engine() as engine:  # the event stands, its handler stays pending
            assert (await engine.load(AioAccount, 1)).balance == 104

    run(body, any_url)


def test_the_admin_and_followers_rooms_under_the_async_engine(any_url: str) -> None:
    """engine.admin (run_pending_handlers, snapshot, drop_snapshots, snapshot_sync, replay,
    fill_head_values), engine.followers, explain and refresh under the async engine."""
    Seen.calls = []
    with Engine.open(any_url) as sync:
        sync.fire(AioDeposited(account_id=1, amount=100))
        sync.fire(AioPaidAsync(account_id=1))  # the sync engine refuses its async hook
        assert len(sync.commit().failures) == 1
        expected_plan = sync.explain(AioAccount, 1)
        expected_plan_at = sync.explain(AioAccount, 1, at=1)

    async def body(store: AsyncStore) -> None:
        async with store.engine() as engine:
            admin, followers = engine.admin, engine.followers
            assert repr(admin).startswith("<Admin of ")
            assert repr(followers).startswith("<Followers of ")
            assert await engine.explain(AioAccount, 1) == expected_plan
            assert await engine.explain(AioAccount, 1, at=1) == expected_plan_at
            ran = await admin.run_pending_handlers()  # the async hook is awaited now
            assert [(type(e).__name__, e.id) for e in ran] == [("AioPaidAsync", 2)]
            assert Seen.calls == ["async 0"]
            assert await admin.run_pending_handlers() == []
            assert (await engine.load(AioLedger, 1)).entries == 1
            head = await engine.head()
            assert await admin.snapshot([(AioAccount, 1), (AioLedger, 1)]) == head
            assert (await admin.snapshot_sync()).in_sync
            assert await admin.drop_snapshots([(AioLedger, 1)]) == 1
            assert await admin.drop_snapshots() == 1
            await engine.fire(AioDeposited(account_id=1, amount=1))
            with pytest.raises(PlaythroughError, match="before a replay"):
                await admin.replay()
            engine.discard()
            await engine.load(AioAccount, 1)
            key = key_of(AioAccount, 1)
            report = await admin.replay(snapshot_every=2)
            assert (report.played, report.position) == (head, head)
            assert engine.core.repository.get(key) is None  # dropped, as on the sync engine
            assert (await engine.load(AioAccount, 1)).balance == 99
            filled = await admin.fill_head_values()
            assert filled.position == head
            engine.refresh()
            assert engine.core.repository.get(key) is None
            assert await followers() == []
            admin.drop_forgotten()

    run(body, any_url)


def test_the_sync_engine_refuses_an_async_handle_hook(tmp_path: Any) -> None:
    with Engine.open(f"sqlite:///{tmp_path / 's.db'}") as engine:
        engine.fire(AioDeposited(account_id=1, amount=5))
        engine.fire(AioPaidAsync(account_id=1))
        result = engine.commit()
        assert "playthrough.aio" in str(result.failures[0][1])


def test_both_shells_share_one_store_and_one_answer(any_url: str) -> None:
    """What the sync engine commits, the async one loads and continues, and back."""
    sync_store = connect(any_url)
    try:
        with sync_store.engine() as engine:
            engine.fire(Bump(node_id=1, amount=4))
            engine.fire(Copy(src_id=1, dst_id=2))

        async def body(store: AsyncStore) -> None:
            async with store.engine() as engine:
                assert (await engine.load(Node, 2)).value == 5
                await engine.fire(Feed(node_id=2))

        run(body, any_url)
        with sync_store.engine() as engine:
            assert engine.load(Hub).total == 5
    finally:
        sync_store.close()


def _snapshots(url: str) -> list[tuple[str, int]]:
    """The stored snapshots (not heads values), as (state, position)."""
    with Engine.open(url) as sync, sync.store.reader() as reader:
        return sorted(
            (str(r.key), r.position) for r in reader.iter_snapshots() if r.source == "snapshot"
        )


def test_the_snapshot_policies_run_under_the_async_engine(any_url: str) -> None:
    """snapshot_every after commits, snapshot_after_events after a load that played, and
    engine.snapshot(): the sync engine's policies, driven through the same steps."""

    async def body(store: AsyncStore) -> None:
        async with store.engine(snapshot_every=2) as engine:
            await engine.fire(AioDeposited(account_id=1, amount=1))
            await engine.commit()
            assert _snapshots(any_url) == []
            await engine.fire(AioDeposited(account_id=2, amount=1))
            await engine.commit()  # the second commit: both states changed are snapshotted
            assert _snapshots(any_url) == [("t.aio.Account(1)", 2), ("t.aio.Account(2)", 2)]
            for _ in range(2):
                await engine.fire(AioDeposited(account_id=3, amount=1))
            await engine.commit()
            assert len(_snapshots(any_url)) == 2  # one commit since the set
            await engine.fire(AioDeposited(account_id=3, amount=1))
        assert ("t.aio.Account(3)", 5) in _snapshots(any_url)  # the block's commit: the second
        async with store.engine(head_values=False, snapshot_after_events=2) as engine:
            for _ in range(3):
                await engine.fire(AioEntered(ledger_id=7))
        assert not [s for s in _snapshots(any_url) if s[0] == "t.aio.Ledger(7)"]
        async with store.engine(head_values=False, snapshot_after_events=2) as engine:
            assert (await engine.load(AioLedger, 7)).entries == 3  # played 3 events
        assert ("t.aio.Ledger(7)", 8) in _snapshots(any_url)
        async with store.engine() as engine:
            await engine.load(AioAccount, 1)
            assert await engine.admin.snapshot([(AioAccount, 2)], at=3) == 3
            assert await engine.admin.snapshot() == 8  # the states in memory
        assert ("t.aio.Account(2)", 3) in _snapshots(any_url)
        assert ("t.aio.Account(1)", 8) in _snapshots(any_url)
        async with store.engine() as engine:
            report = await engine.admin.verify()
            assert report.ok, str(report)

    run(body, any_url)


def test_options_the_async_engine_does_not_take_are_refused(tmp_path: Any) -> None:
    async def body(store: AsyncStore) -> None:
        with pytest.raises(ConfigurationError, match="archive"):
            store.engine(archive="old.jsonl.gz")
        with pytest.raises(ConfigurationError, match="max_states"):
            store.engine(max_states=-1)

    run(body, f"sqlite:///{tmp_path / 's.db'}")
    with pytest.raises(ConfigurationError, match="nonsense"):
        asyncio.run(playthrough.aio.connect("sqlite://", nonsense=1))


def test_a_closed_store_says_so(tmp_path: Any) -> None:
    async def body() -> None:
        store = await playthrough.aio.connect(f"sqlite:///{tmp_path / 's.db'}")
        engine = store.engine()
        await store.close()
        with pytest.raises(PlaythroughError, match="closed"):
            await engine.load(AioAccount, 1)

    asyncio.run(body())


def test_a_lost_commit_outcome_is_learnt_on_postgres(pg_url: str, pg_schema: str) -> None:
    """A connection that dies under the append: the outcome is learnt, as by the sync store."""
    import psycopg

    url = f"{pg_url}?schema={pg_schema}"

    async def body(store: AsyncStore) -> None:
        async with store.engine() as engine:
            await engine.fire(AioDeposited(account_id=1, amount=5))
        engine = store.engine()
        await engine.fire(AioDeposited(account_id=1, amount=6))
        original = psycopg.AsyncConnection.execute
        calls = []

        async def dying(self: Any, query: Any, *args: Any, **kwargs: Any) -> Any:
            calls.append(str(query))
            if str(query) == "COMMIT" and len(calls) > 1:
                await self.close()  # the connection drops before COMMIT is sent
            return await original(self, query, *args, **kwargs)

        psycopg.AsyncConnection.execute = dying  # type: ignore[method-assign]
        try:
            with pytest.raises((CommitOutcomeUnknown, PlaythroughError)) as failed:
                await engine.commit()
        finally:
            psycopg.AsyncConnection.execute = original  # type: ignore[method-assign]
        assert "nothing was written" in str(failed.value) or isinstance(
            failed.value, CommitOutcomeUnknown
        )
        async with store.engine() as check:
            assert (await check.load(AioAccount, 1)).balance == 5
            assert engine.last_commit_id is not None
            assert not await check.was_committed(engine.last_commit_id)

    run(body, url)


@attrs.define
class AioMember(State, type_name="t.aio.Member"):
    name: str = ""
    joined: int = 0
    welcomed: int = 0


@attrs.define
class AioJoined(Event, type_name="t.aio.AioJoined"):
    """A scheduled event with a personal field (sealed in the schedule row until due)."""

    data_subject = "member_id"
    member_id: int = state_id(AioMember)
    name: Personal[str] = ""
    refuse: bool = False

    def validate(self, member: AioMember) -> None:
        if self.refuse:
            raise EventRejected("not today")

    def apply(self, member: AioMember) -> None:
        member.name = self.name
        member.joined += 1

    async def handle(self, engine: AsyncEngine) -> None:
        await engine.fire(AioWelcomed(member_id=self.member_id))


@attrs.define
class AioWelcomed(Event, type_name="t.aio.AioWelcomed"):
    member_id: int = state_id(AioMember)

    def apply(self, member: AioMember) -> None:
        member.welcomed += 1


def test_run_due_and_forget_under_the_async_engine(any_url: str) -> None:
    """Scheduled rows fire (their async handle hooks awaited), a refused one is recorded,
    a subject forgotten before its row is due reads FORGOTTEN, as on the sync engine."""
    clock = ManualClock(datetime(2030, 1, 1, tzinfo=UTC))
    with Engine.open(any_url, clock=clock) as sync:
        ada = sync.scheduler.schedule(AioJoined(member_id=1, name="Ada"), after=timedelta(hours=1))
        bob = sync.scheduler.schedule(AioJoined(member_id=2, name="Bob"), after=timedelta(hours=1))
        no = sync.scheduler.schedule(AioJoined(member_id=3, refuse=True), after=timedelta(hours=2))

    async def body(store: AsyncStore) -> None:
        async with store.engine(clock=clock) as engine:
            assert await engine.scheduler.run_due() == []  # nothing due yet
            assert await engine.admin.forget(2) is True
            assert await engine.admin.forget(2) is False  # nothing left to forget
            clock.advance(hours=3)
            done = await engine.scheduler.run_due()
            outcomes = {r.id: (r.status, r.error) for r in done}
            assert outcomes == {
                ada: ("fired", None),
                bob: ("fired", None),
                no: ("rejected", "EventRejected: not today"),
            }
            assert await engine.scheduler.run_due() == []  # each row fires once
            ada_now = await engine.load(AioMember, 1)
            assert (ada_now.name, ada_now.joined, ada_now.welcomed) == ("Ada", 1, 1)
            assert (await engine.load(AioMember, 2)).name == FORGOTTEN
            assert await engine.admin.forget(1) is True
            assert (await engine.load(AioMember, 1)).name == FORGOTTEN  # memory dropped
            await engine.fire(AioJoined(member_id=1, name="Ada again"))
            with pytest.raises(PlaythroughError, match="before run_due"):
                await engine.scheduler.run_due()
            with pytest.raises(PlaythroughError, match="before forget"):
                await engine.admin.forget(1)

    run(body, any_url)
    with Engine.open(any_url) as sync:
        assert sync.scheduler.scheduled(no).status == "rejected"
        assert sync.load(AioMember, 1).name == "Ada again"
        assert sync.load(AioMember, 2).name == FORGOTTEN


def test_is_valid_under_the_async_engine_leaves_nothing_behind(any_url: str) -> None:
    """Fired and undone, awaiting the loads it needs; its fired hooks' children are checked
    too; Event.is_valid refuses an async engine instead of answering a coroutine."""

    async def body(store: AsyncStore) -> None:
        async with store.engine() as engine:
            await engine.fire(AioDeposited(account_id=1, amount=3))
        async with store.engine() as engine:
            probe = AioDeposited(account_id=1, amount=2)
            assert await engine.is_valid(probe) is True
            assert await engine.is_valid(AioDeposited(account_id=1, amount=0)) is False
            assert await engine.is_valid(AioRefunded(account_id=1, fail=True)) is False
            assert await engine.is_valid(AioOrdered(account_id=1)) is True  # loads a ledger
            assert engine.pending == ()
            assert (await engine.load(AioAccount, 1)).balance == 3
            assert (await engine.load(AioLedger, 101)).entries == 0
            await engine.fire(probe)  # the probe stayed unfired
            with pytest.raises(TypeError, match=r"await engine\.is_valid"):
                probe.is_valid(engine)
        async with store.engine() as engine:
            assert (await engine.load(AioAccount, 1)).balance == 5
            assert await engine.head() == 2

    run(body, any_url)


@attrs.define
class AioRemind(Event, type_name="t.aio.AioRemind"):
    member_id: int = state_id(AioMember)

    def apply(self, member: AioMember) -> None:
        member.welcomed += 10


@attrs.define
class AioSignedUp(Event, type_name="t.aio.AioSignedUp"):
    """A plain def handle under the async engine schedules a reminder in its commit."""

    member_id: int = state_id(AioMember)

    def apply(self, member: AioMember) -> None:
        member.joined += 1

    def handle(self, engine: Any) -> None:
        engine.schedule(AioRemind(member_id=self.member_id), after=timedelta(days=1))


@attrs.define
class AioSignedUpSealed(Event, type_name="t.aio.AioSignedUpSealed"):
    """A plain def handle scheduling a personal event: sealing it needs the store."""

    member_id: int = state_id(AioMember)

    def apply(self, member: AioMember) -> None:
        member.joined += 1

    def handle(self, engine: Any) -> None:
        engine.schedule(AioJoined(member_id=self.member_id, name="Eve"), after=timedelta(days=1))


def test_a_plain_def_hook_that_must_seal_what_it_schedules_says_to_await(any_url: str) -> None:
    async def body(store: AsyncStore) -> None:
        async with store.engine() as engine:
            await engine.fire(AioSignedUpSealed(member_id=5))
            result = await engine.commit()  # the commit stands, the failure is reported
            [(_, error)] = result.failures
            assert "personal value is sealed" in str(error)
            assert "await engine.scheduler.schedule(...)" in str(error)
        with Engine.open(any_url) as sync, sync.store.reader() as reader:
            assert reader.schedules() == []  # nothing was scheduled

    run(body, any_url)


def test_schedule_cancel_and_reschedule_under_the_async_engine(any_url: str) -> None:
    """Written at once on their own, with the commit inside a transaction, from a plain def
    handle; a personal value sealed in its row; cancel and reschedule as on the sync engine."""
    clock = ManualClock(datetime(2030, 1, 1, tzinfo=UTC))

    async def body(store: AsyncStore) -> None:
        async with store.engine(clock=clock) as engine:
            ada = await engine.scheduler.schedule(
                AioJoined(member_id=1, name="Ada"), after=timedelta(hours=1)
            )
            assert (await engine.scheduler.scheduled(ada)).status == "pending"  # written at once
            gone = await engine.scheduler.schedule(AioRemind(member_id=2), at=clock.now())
            assert await engine.scheduler.cancel(gone) is True
            assert await engine.scheduler.cancel(gone) is False  # cancelled already
            async with engine.transaction():
                await engine.fire(AioSignedUp(member_id=3))
                late = await engine.scheduler.schedule(
                    AioRemind(member_id=1), after=timedelta(hours=2)
                )
                assert await engine.scheduler.cancel(late) is True  # still queued: dropped
                kept = await engine.scheduler.schedule(
                    AioRemind(member_id=1), after=timedelta(hours=2)
                )
            assert (await engine.scheduler.scheduled(kept)).status == "pending"
            with pytest.raises(ScheduleNotFound):
                await engine.scheduler.cancel("nope")
            with pytest.raises(ScheduleNotFound):
                await engine.scheduler.reschedule("nope")
            clock.advance(days=2)
            done = {r.id: r.status for r in await engine.scheduler.run_due()}
            assert done[ada] == "fired" and done[kept] == "fired" and gone not in done
            assert len(done) == 3  # and the reminder AioSignedUp's handle hook scheduled
            with pytest.raises(PlaythroughError, match="is fired"):
                await engine.scheduler.reschedule(ada)
            assert (await engine.load(AioMember, 1)).name == "Ada"
            assert (await engine.load(AioMember, 3)).welcomed == 10

    run(body, any_url)
    with Engine.open(any_url) as sync, sync.store.reader() as reader:
        assert sorted(r.status for r in reader.schedules()) == [
            "cancelled",
            "fired",
            "fired",
            "fired",
        ]


@attrs.define
class AioInvited(Event, type_name="t.aio.AioInvited"):
    """Hooks written once for both engines: they schedule through ``engine.scheduler``."""

    member_id: int = state_id(AioMember)
    by_async_hook: bool = False

    def apply(self, member: AioMember) -> None:
        member.joined += 1

    def handle(self, engine: Any) -> None:
        if not self.by_async_hook:
            engine.scheduler.schedule(AioRemind(member_id=self.member_id), after=timedelta(days=1))


@attrs.define
class AioInvitedAsync(Event, type_name="t.aio.AioInvitedAsync"):
    member_id: int = state_id(AioMember)

    def apply(self, member: AioMember) -> None:
        member.joined += 1

    async def handle(self, engine: AsyncEngine) -> None:
        remind = AioRemind(member_id=self.member_id)
        await engine.scheduler.schedule(remind, after=timedelta(days=1))


def test_a_hook_schedules_through_engine_scheduler_on_both_engines(any_url: str) -> None:
    """``engine.scheduler`` is the sync engine's room; the async engine (and the view a plain
    def hook gets under it) answer the same name, so a hook need not know its engine."""
    clock = ManualClock(datetime(2030, 1, 1, tzinfo=UTC))
    with Engine.open(any_url, clock=clock) as sync:
        sync.fire(AioInvited(member_id=1))
        assert len(sync.commit()) == 1

    async def body(store: AsyncStore) -> None:
        async with store.engine(clock=clock) as engine:
            await engine.fire(AioInvited(member_id=2))
            await engine.fire(AioInvitedAsync(member_id=3))
            await engine.commit()
            sid = await engine.scheduler.schedule(AioRemind(member_id=4), at=clock.now())
            assert (await engine.scheduler.scheduled(sid)).status == "pending"
            assert await engine.scheduler.cancel(sid) is True
            clock.advance(days=2)
            done = await engine.scheduler.run_due()
            assert sorted(r.status for r in done) == ["fired", "fired", "fired"]
            for member in (1, 2, 3):
                assert (await engine.load(AioMember, member)).welcomed == 10

    run(body, any_url)


def test_a_failed_scheduled_event_is_rescheduled_under_the_async_engine(any_url: str) -> None:
    clock = ManualClock(datetime(2030, 1, 1, tzinfo=UTC))

    async def body(store: AsyncStore) -> None:
        async with store.engine(clock=clock) as engine:
            sid = await engine.scheduler.schedule(
                AioRemind(member_id=1), after=timedelta(minutes=1)
            )
            clock.advance(minutes=2)
            # Marked failed by a worker (its module not deployed, say): re-armed for now.
            claimed = await store.call(
                Call(
                    "claim_due",
                    (stamp(clock.now()), stamp(clock.now() + timedelta(minutes=5)), "w", 10),
                )
            )
            assert [r.id for r in claimed] == [sid]
            assert await store.call(Call("finish_schedule", (sid, "w", "failed", "boom")))
            again = await engine.scheduler.reschedule(sid)
            assert (again.status, again.error, again.due_at) == ("pending", None, clock.now())
            [fired] = await engine.scheduler.run_due()
            assert (fired.id, fired.status) == (sid, "fired")

    run(body, any_url)


class AioEntries(Projection):
    """A read model in the store's database: ledger entries per ledger."""

    name = "aio-entries"
    batch_size = 2
    fail_at: ClassVar[int | None] = None

    def setup(self, tx: FollowerTransaction) -> None:
        tx.execute("CREATE TABLE IF NOT EXISTS aio_entries (ledger BIGINT PRIMARY KEY, n BIGINT)")

    def reset(self, tx: FollowerTransaction) -> None:
        tx.execute("DELETE FROM aio_entries")

    def on_AioEntered(self, event: AioEntered, tx: FollowerTransaction) -> None:
        if event.id == self.fail_at:
            raise RuntimeError("read model down")
        tx.execute(
            "INSERT INTO aio_entries VALUES (?, 1) ON CONFLICT (ledger) DO UPDATE "
            "SET n = aio_entries.n + 1",
            (event.ledger_id,),
        )

    @staticmethod
    def table(tx: FollowerTransaction) -> dict[int, int]:
        return {int(str(k)): int(str(n)) for k, n in tx.execute("SELECT * FROM aio_entries")}


def test_followers_and_verify_under_the_async_engine(any_url: str) -> None:
    """A follower runs batch by batch off the event loop, in its store transactions: the
    read model and the position commit together, a failing handler leaves both as they were."""

    async def body(store: AsyncStore) -> None:
        async with store.engine() as engine:
            for ledger in (1, 1, 2, 1, 2):
                await engine.fire(AioEntered(ledger_id=ledger))
            await engine.fire(AioDeposited(account_id=1, amount=3))  # passed over
        async with store.engine() as engine:
            report = await engine.followers.run(AioEntries(), until_idle=True)
            assert (report.processed, report.passed, report.batches) == (5, 1, 4)  # + an empty one
            seen = await store.blocking(lambda s: _in_follower_tx(s, AioEntries.table))
            assert seen == {1: 3, 2: 2}
            [status] = [s for s in await engine.followers() if s.name == "aio-entries"]
            assert (status.name, status.position, status.lag) == ("aio-entries", 6, 0)
            await engine.fire(AioEntered(ledger_id=2))
            await engine.commit()
            AioEntries.fail_at = 7
            try:
                with pytest.raises(FollowerFailed, match="read model down"):
                    await engine.followers.run(AioEntries(), until_idle=True)
            finally:
                AioEntries.fail_at = None
            assert await _position(engine) == 6
            report = await engine.followers.run(AioEntries(), until_idle=True)
            assert (report.processed, report.position) == (1, 7)
            await engine.followers.reset(AioEntries())
            assert await _position(engine) == 0
            assert await store.blocking(lambda s: _in_follower_tx(s, AioEntries.table)) == {}
            polls: list[int] = []

            def stop() -> bool:
                polls.append(1)
                return len(polls) > 5

            # Not until_idle: it polls until stop() says so.
            report = await engine.followers.run(AioEntries(), poll_interval=0, stop=stop)
            assert report.position == 7
            assert await store.blocking(lambda s: _in_follower_tx(s, AioEntries.table)) == {
                1: 3,
                2: 3,
            }
            verified = await engine.admin.verify()
            assert verified.ok and verified.head == 7, verified.to_text()

    run(body, any_url)


async def _position(engine: AsyncEngine) -> int:
    return next(s.position for s in await engine.followers() if s.name == "aio-entries")


def _in_follower_tx(store: Any, read: Callable[[FollowerTransaction], T]) -> T:
    with store.follow("aio-peek", 0) as batch:
        assert batch is not None
        return read(batch.tx)


def test_a_sqlite_request_is_one_hop_to_the_store_thread(tmp_path: Any) -> None:
    """A load (heads, plan, write-back) and a fire that loads each run on the store's
    thread in one hop, a fire of a state in memory in none; an async def hook brings the
    core back to the loop to be awaited."""
    hops: list[str] = []

    async def body(store: AsyncStore) -> None:
        assert isinstance(store, playthrough.aio.AsyncSQLiteStore)
        run_on_thread = store._run

        async def counted(fn: Callable[[], T]) -> T:
            hops.append("hop")
            return await run_on_thread(fn)

        async with store.engine() as engine:
            await engine.fire(AioDeposited(account_id=7, amount=5))
        store._run = counted  # type: ignore[method-assign]
        async with store.engine() as engine:
            assert (await engine.load(AioAccount, 7)).balance == 5
            assert hops == ["hop"]
            await engine.fire(AioDeposited(account_id=8, amount=1))  # loads account 8
            assert len(hops) == 2
            await engine.fire(AioDeposited(account_id=8, amount=2))  # in memory: no hop
            assert len(hops) == 2
            await engine.fire(AioPaidAsync(account_id=7))
            hops.clear()
            await engine.commit()  # the append, then the hook awaited, then its own load
        assert len(hops) >= 3 and Seen.calls[-1] == "async 0"

    Seen.calls.clear()
    run(body, f"sqlite:///{tmp_path / 's.db'}")


#: What a sync room has that the async one has not, and why (none today: export,
#: import_log and archive run the sync room's file work off the event loop).
_SYNC_ONLY: dict[str, dict[str, str]] = {}

_MOVED = "a deprecated flat name of the sync engine (now in its rooms) the async one never had"
_CORE = "the core's configuration or machinery, reached as engine.core.<name>"

#: What the sync Engine has that the AsyncEngine has not, and why.
_ENGINE_SYNC_ONLY = {
    **dict.fromkeys(
        (
            "archive",
            "causes",
            "completion",
            "drop_forgotten",
            "drop_snapshots",
            "effects",
            "event",
            "export",
            "fill_head_values",
            "history",
            "import_log",
            "info",
            "replay",
            "run_pending_handlers",
            "snapshot_sync",
        ),
        _MOVED,
    ),
    **dict.fromkeys(
        (
            "clock",
            "coordinator",
            "head_values",
            "hook_shells",
            "max_event_bytes",
            "max_states",
            "raise_handler_failures",
            "reconstitutor",
            "repository",
            "snapshot_error",
            "snapshots",
            "use_repository",
        ),
        _CORE,
    ),
    "open": "a sync store's opener; the async engine is `store.engine()` of `aio.connect(url)`",
}

#: What the AsyncEngine has that the sync Engine has not, and why.
_ENGINE_ASYNC_ONLY = {"core": "the sync Engine it drives (one core, two shells)"}


def _public(obj: object) -> set[str]:
    """The calls of a room (not its steps, which the shells drive, nor its fields)."""
    return {
        n
        for n in dir(obj)
        if not n.startswith("_") and not n.endswith("_steps") and callable(getattr(obj, n))
    }


def test_the_async_rooms_have_the_sync_rooms_names(tmp_path: Any) -> None:
    """Every call of a sync room is one of the async room of the same name (awaited), and
    the other way round, except those listed as one shell's only, with the reason; so is
    every public name of the engines."""

    async def body(store: AsyncStore) -> None:
        async with store.engine() as engine:
            with Engine.open(f"sqlite:///{tmp_path / 'a.db'}") as sync:
                for room in ("log", "states", "scheduler", "followers", "admin"):
                    ours, theirs = _public(getattr(engine, room)), _public(getattr(sync, room))
                    assert theirs - ours == set(_SYNC_ONLY.get(room, {})), room
                    assert ours - theirs == set(), room
                names = {n for n in dir(sync) if not n.startswith("_")}
                async_names = {n for n in dir(engine) if not n.startswith("_")}
                assert names - async_names == set(_ENGINE_SYNC_ONLY)
                assert async_names - names == set(_ENGINE_ASYNC_ONLY)

    run(body, f"sqlite:///{tmp_path / 'a.db'}")


def test_the_old_async_names_warn_and_answer_as_the_rooms_do(any_url: str) -> None:
    moved = "is deprecated \\(removed in 0.4.0\\): use engine"

    async def body(store: AsyncStore) -> None:
        async with store.engine() as engine:
            await engine.fire(AioDeposited(account_id=1, amount=5))
        async with store.engine() as engine:
            old: Any = engine  # the forwarders, as code not checked by mypy calls them
            with pytest.warns(DeprecationWarning, match=f"AsyncEngine.count {moved}.states.count$"):
                assert await old.count(AioAccount) == await engine.states.count(AioAccount) == 1
            with pytest.warns(DeprecationWarning, match=f"AsyncEngine.find {moved}.states.find$"):
                assert [a.balance for a in await old.find(AioAccount)] == [5]
            with pytest.warns(DeprecationWarning, match=f"AsyncEngine.events {moved}.log.events$"):
                assert [e.id async for e in old.events()] == [1]
            with pytest.warns(DeprecationWarning, match=f"{moved}.scheduler.run_due$"):
                assert await old.run_due() == []
            with pytest.warns(DeprecationWarning, match=f"{moved}.scheduler.schedule$"):
                sid = await old.schedule(AioDeposited(account_id=1, amount=1), after=timedelta(1))
            with pytest.warns(DeprecationWarning, match=f"{moved}.scheduler.scheduled$"):
                assert (await old.scheduled(sid)).status == "pending"
            with pytest.warns(DeprecationWarning, match=f"{moved}.scheduler.reschedule$"):
                await old.reschedule(sid, at=datetime(2100, 1, 1, tzinfo=UTC))
            with pytest.warns(DeprecationWarning, match=f"{moved}.scheduler.cancel$"):
                assert await old.cancel(sid) is True
            with pytest.warns(DeprecationWarning, match=f"{moved}.admin.snapshot$"):
                assert await old.snapshot([(AioAccount, 1)]) == 1
            with pytest.warns(DeprecationWarning, match=f"{moved}.admin.forget$"):
                assert await old.forget("nobody") is False
            with pytest.warns(DeprecationWarning, match=f"{moved}.admin.verify$"):
                assert (await old.verify(subprocess_replay=False)).ok
            with pytest.warns(DeprecationWarning, match=f"{moved}.followers.reset$"):
                with pytest.raises(NotFoundError):
                    await old.reset_follower("nobody")
            with pytest.warns(DeprecationWarning, match=f"{moved}.followers.run$"):
                assert (await old.run(AioEntries(), until_idle=True)).processed == 0

    run(body, any_url)


def test_normal_async_use_warns_nothing(tmp_path: Any) -> None:
    """The async engine's own paths use the rooms: a tour of them raises no warning."""

    async def body(store: AsyncStore) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            async with store.engine() as engine:
                await engine.fire(AioDeposited(account_id=1, amount=5))
                await engine.fire(AioPaidAsync(account_id=1))
            async with store.engine() as engine:
                await engine.states.find(AioAccount, balance__gt=0)
                [e async for e in engine.log.events()]
                await engine.admin.snapshot()
                await engine.admin.verify(subprocess_replay=False)
                await engine.scheduler.run_due()
                await engine.admin.run_pending_handlers()
                await engine.followers.run(AioEntries(), until_idle=True)
                await engine.followers()

    run(body, f"sqlite:///{tmp_path / 'w.db'}")
