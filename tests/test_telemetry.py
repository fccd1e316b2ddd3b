"""OpenTelemetry spans and metrics, with the SDK's in-memory exporters."""

from __future__ import annotations

import functools
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import attrs
import pytest

from playthrough import Engine, Event, Projection, _telemetry, state_id
from playthrough.errors import ConcurrencyError, EventRejected, HandlerFailed
from playthrough.examples.bank import Account, Deposited, Transferred

sdk_trace = pytest.importorskip("opentelemetry.sdk.trace")
from opentelemetry import metrics, trace  # noqa: E402
from opentelemetry.sdk.metrics import MeterProvider  # noqa: E402
from opentelemetry.sdk.metrics.export import InMemoryMetricReader  # noqa: E402
from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (  # noqa: E402
    InMemorySpanExporter,
)

_SPANS = InMemorySpanExporter()
_METRICS = InMemoryMetricReader()


@pytest.fixture(scope="module", autouse=True)
def _providers() -> None:
    # Global providers can be set once per process; the module's proxies follow them.
    provider = sdk_trace.TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(_SPANS))
    trace.set_tracer_provider(provider)
    metrics.set_meter_provider(MeterProvider(metric_readers=[_METRICS]))


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    _SPANS.clear()
    yield _SPANS


def _metric_points() -> dict[str, list[Any]]:
    data = _METRICS.get_metrics_data()
    out: dict[str, list[Any]] = {}
    for resource in data.resource_metrics if data else []:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                out.setdefault(metric.name, []).extend(metric.data.data_points)
    return out


def test_commit_load_snapshot_replay_and_verify_make_spans(
    spans: InMemorySpanExporter,
) -> None:
    assert _telemetry.ENABLED
    with Engine.open("sqlite://", head_values=False) as engine:
        engine.fire(Deposited(account_id=1, amount=10))
        engine.fire(Transferred(source_id=1, target_id=2, amount=3))
        engine.commit()
        engine.refresh()
        engine.load(Account, 2)
        engine.admin.snapshot()
        engine.admin.verify()
        engine.admin.replay()
    by_name = {s.name: s for s in spans.get_finished_spans()}
    assert {
        "playthrough.commit",
        "playthrough.load",
        "playthrough.snapshot",
        "playthrough.verify",
        "playthrough.replay",
    } <= set(by_name)
    commit = by_name["playthrough.commit"].attributes
    assert commit is not None
    assert (
        commit["playthrough.event_count"],
        commit["playthrough.first_position"],
        commit["playthrough.last_position"],
    ) == (2, 1, 2)
    load = by_name["playthrough.load"].attributes
    # to the head: account 2's transfer pulls in account 1's deposit too
    assert load is not None and load["playthrough.events_played"] == 2
    assert load["playthrough.states"] == 3  # the transfer couples both accounts and the ledger
    span = by_name["playthrough.commit"]
    assert span.start_time is not None and span.end_time is not None
    assert span.end_time >= span.start_time
    verified = by_name["playthrough.verify"].attributes
    assert verified is not None
    assert (verified["playthrough.ok"], verified["playthrough.head"]) == (True, 2)


def test_metrics_count_commits_conflicts_plays_and_snapshot_rows(tmp_path: Any) -> None:
    before = _metric_points()

    def total(name: str, points: dict[str, list[Any]]) -> float:
        found: list[float] = [
            float(getattr(p, "value", None) or getattr(p, "sum", 0) or 0)
            for p in points.get(name, [])
        ]
        return sum(found)

    url = f"sqlite:///{tmp_path}/m.db"
    with Engine.open(url, head_values=False) as first, Engine.open(url) as second:
        first.fire(Deposited(account_id=1, amount=5))
        first.fire(Deposited(account_id=1, amount=5))
        first.commit()
        second.load(Account, 1)
        first.fire(Deposited(account_id=1, amount=1))
        first.commit()
        second.fire(Deposited(account_id=1, amount=2))
        with pytest.raises(ConcurrencyError):
            second.commit()
        first.admin.snapshot()
    after = _metric_points()
    for name, grew in [
        ("playthrough.events.committed", 3),
        ("playthrough.conflicts", 1),
        ("playthrough.snapshot.rows", 2),  # the account and the ledger
    ]:
        assert total(name, after) - total(name, before) == grew, name
    played = total("playthrough.load.events_played", after)
    assert played - total("playthrough.load.events_played", before) >= 2  # second's load
    assert after["playthrough.commit.duration"]


def test_without_the_package_nothing_is_imported() -> None:
    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'opentelemetry' or name.startswith('opentelemetry.'):\n"
        "            raise ImportError(name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "import playthrough\n"
        "from playthrough import _telemetry\n"
        "from playthrough.examples.bank import Deposited\n"
        "assert not _telemetry.ENABLED\n"
        "with playthrough.Engine.open('sqlite://') as e:\n"
        "    e.fire(Deposited(account_id=1, amount=1)); e.commit(); e.admin.snapshot()\n"
        "assert not any(m.startswith('opentelemetry') for m in sys.modules)\n"
        "print('ok')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.stdout == "ok\n", done.stderr


def test_a_refused_commit_is_an_error_span_naming_its_event_types(
    tmp_path: Any, spans: InMemorySpanExporter
) -> None:
    url = f"sqlite:///{tmp_path}/r.db"
    with Engine.open(url) as first, Engine.open(url) as second:
        first.fire(Deposited(account_id=1, amount=5))
        first.commit()
        second.load(Account, 1)
        first.fire(Deposited(account_id=1, amount=1))
        first.commit()
        second.fire(Deposited(account_id=1, amount=2))
        second.fire(Transferred(source_id=1, target_id=2, amount=1))
        with pytest.raises(ConcurrencyError):
            second.commit()
    commits = [s for s in spans.get_finished_spans() if s.name == "playthrough.commit"]
    ok, refused = commits[0], commits[-1]
    assert ok.attributes is not None and refused.attributes is not None
    assert ok.attributes["playthrough.event_types"] == ("bank.Deposited",)
    assert ok.attributes["playthrough.outcome"] == "committed"
    assert refused.status.status_code == trace.StatusCode.ERROR
    assert refused.attributes["playthrough.outcome"] == "conflict"
    assert refused.attributes["playthrough.event_types"] == ("bank.Deposited", "bank.Transferred")
    assert refused.attributes["playthrough.event_count"] == 2
    assert refused.attributes["error.type"] == "ConcurrencyError"
    assert refused.status.description  # the conflict, as the error says it


# ---------------------------------------------------------------- every span, both stores


@attrs.define
class TelemetryFailingHandler(Event, type_name="telemetry.FailingHandler"):
    account_id: int = state_id(Account)

    def apply(self, account: Account) -> None:
        account.balance += 0

    def handle(self, engine: Engine) -> None:
        raise RuntimeError("the handler's side effect failed")


@attrs.define
class TelemetryBoom(Event, type_name="telemetry.Boom"):
    account_id: int = state_id(Account)

    def apply(self, account: Account) -> None:
        raise RuntimeError("boom")


class TelemetryDeposits(Projection):
    name = "telemetry.deposits"

    def on_Deposited(self, event: Deposited, tx: Any) -> None:
        pass


def _names_and_systems(spans: InMemorySpanExporter) -> dict[str, set[Any]]:
    out: dict[str, set[Any]] = {}
    for s in spans.get_finished_spans():
        assert s.attributes is not None
        out.setdefault(s.name, set()).add(s.attributes.get("db.system"))
    return out


def test_every_span_carries_db_system_on_both_stores(
    any_url: str, spans: InMemorySpanExporter
) -> None:
    system = "sqlite" if any_url.startswith("sqlite") else "postgresql"
    with Engine.open(any_url, head_values=False) as engine:
        engine.fire(Deposited(account_id=1, amount=50))
        with pytest.raises(EventRejected):
            engine.fire(Deposited(account_id=1, amount=-1))  # refused by validate
        engine.fire(Transferred(source_id=1, target_id=2, amount=5))  # has a handle hook
        engine.commit()
        engine.scheduler.schedule(Deposited(account_id=2, amount=1), at=datetime.now(UTC))
        engine.commit()
        assert [r.status for r in engine.scheduler.run_due()] == ["fired"]
        engine.fire(TelemetryFailingHandler(account_id=1))
        engine.commit()  # its handler fails: pending
        with pytest.raises(HandlerFailed):
            engine.admin.run_pending_handlers()
        assert engine.states.count(Account, balance__gt=0) == 2
        assert len(list(engine.states.find(Account, balance__gt=0))) == 2
        engine.followers.run(TelemetryDeposits(), until_idle=True)
        engine.admin.snapshot()
        engine.load(Account, 1, at=1)
        engine.admin.forget("nobody")
        engine.admin.verify()
        engine.admin.replay()
    seen = _names_and_systems(spans)
    expected = {
        "fire",
        "commit",
        "handle",
        "scheduler.pass",
        "handlers.pending",
        "find",
        "count",
        "followers.batch",
        "snapshot",
        "load",
        "forget",
        "verify",
        "replay",
    }
    assert {f"playthrough.{n}" for n in expected} <= set(seen)
    for name, systems in seen.items():
        if name.startswith("playthrough."):
            assert systems == {system}, name
    finished = spans.get_finished_spans()
    fires = [s for s in finished if s.name == "playthrough.fire"]
    outcomes = {(s.attributes or {}).get("playthrough.outcome") for s in fires}
    assert outcomes == {"fired", "rejected"}
    rejected = next(s for s in fires if (s.attributes or {})["playthrough.outcome"] == "rejected")
    assert rejected.status.status_code == trace.StatusCode.ERROR
    assert (rejected.attributes or {})["error.type"] == "EventRejected"
    handles = {
        (s.attributes or {})["playthrough.outcome"]
        for s in finished
        if s.name == "playthrough.handle"
    }
    assert handles == {"handled", "failed"}
    # A pending-handlers pass is the parent of the handle spans it ran.
    pending = next(s for s in finished if s.name == "playthrough.handlers.pending")
    parent = pending.context.span_id
    children = {s.name for s in finished if s.parent and s.parent.span_id == parent}
    assert "playthrough.handle" in children
    scheduler = next(s for s in finished if s.name == "playthrough.scheduler.pass")
    assert (scheduler.attributes or {})["playthrough.fired"] == 1
    batch = next(s for s in finished if s.name == "playthrough.followers.batch")
    assert (batch.attributes or {})["playthrough.follower"] == "telemetry.deposits"


def _points(name: str) -> list[Any]:
    return _metric_points().get(name, [])


def _sum_where(name: str, points: dict[str, list[Any]], **attributes: Any) -> float:
    return sum(
        float(p.value)
        for p in points.get(name, [])
        if all(dict(p.attributes).get(k) == v for k, v in attributes.items())
    )


def test_metrics_carry_event_type_state_type_and_outcome(tmp_path: Any) -> None:
    url = f"sqlite:///{tmp_path}/attrs.db"
    before = _metric_points()
    with Engine.open(url) as engine:
        engine.fire(Deposited(account_id=1, amount=5))
        engine.fire(Deposited(account_id=2, amount=5))
        engine.fire(Transferred(source_id=1, target_id=2, amount=1))
        with pytest.raises(EventRejected):
            engine.fire(Deposited(account_id=1, amount=0))
        engine.commit()
        engine.states.count(Account, balance__gt=0)
    after = _metric_points()

    def grew(name: str, **attributes: Any) -> float:
        return _sum_where(name, after, **attributes) - _sum_where(name, before, **attributes)

    assert grew("playthrough.events.committed", event_type="bank.Deposited") == 2
    assert grew("playthrough.events.committed", event_type="bank.Transferred") == 1
    assert grew("playthrough.commits", outcome="committed") == 1
    assert grew("playthrough.events.fired", event_type="bank.Deposited", outcome="fired") == 2
    assert grew("playthrough.events.fired", event_type="bank.Deposited", outcome="rejected") == 1
    assert grew("playthrough.handlers.run", event_type="bank.Transferred", outcome="handled") == 1
    assert grew("playthrough.queries", state_type="bank.Account", kind="count") == 1


def _gauge(name: str, store_url: str, **attributes: Any) -> list[float]:
    from playthrough._urls import shown_url

    wanted = {"playthrough.store": shown_url(store_url), **attributes}
    return [
        float(p.value)
        for p in _points(name)
        if all(dict(p.attributes).get(k) == v for k, v in wanted.items())
    ]


def test_gauges_report_follower_lag_scheduler_backlog_and_pending_handlers(
    any_url: str,
) -> None:
    system = "sqlite" if any_url.startswith("sqlite") else "postgresql"
    with Engine.open(any_url) as engine:
        engine.fire(Deposited(account_id=1, amount=5))
        engine.commit()
        engine.followers.run(TelemetryDeposits(), until_idle=True)  # at the head: lag 0
        engine.fire(Deposited(account_id=1, amount=5))
        engine.fire(Deposited(account_id=1, amount=5))
        engine.commit()  # two behind
        engine.scheduler.schedule(TelemetryBoom(account_id=1), at=datetime.now(UTC))
        engine.commit()
        assert [r.status for r in engine.scheduler.run_due()] == ["failed"]
        now = datetime.now(UTC)
        engine.scheduler.schedule(Deposited(account_id=1, amount=1), at=now - timedelta(seconds=1))
        engine.scheduler.schedule(Deposited(account_id=1, amount=1), at=now - timedelta(seconds=1))
        engine.scheduler.schedule(Deposited(account_id=1, amount=1), at=now + timedelta(days=1))
        engine.commit()  # the schedule moves the head by one: three behind
        engine.fire(TelemetryFailingHandler(account_id=1))
        engine.commit()  # four behind, and one pending handler
        url = engine.store.url
        lag = _gauge("playthrough.follower.lag", url, follower="telemetry.deposits")
        assert lag == [engine.head() - 1]
        assert _gauge("playthrough.scheduler.backlog", url, status="due") == [2]
        assert _gauge("playthrough.scheduler.backlog", url, status="failed") == [1]
        assert _gauge("playthrough.handlers.pending", url, **{"db.system": system}) == [1]
    # a closed store is no longer read
    assert _gauge("playthrough.handlers.pending", url) == []


def test_gauges_read_the_async_stores_too(any_url: str) -> None:
    """An async store (PostgreSQL: the gauges read through one sync connection of their
    own, opened at the first collection) reports like a sync one, and not once closed."""
    import asyncio

    from playthrough import aio

    with Engine.open(any_url) as engine:
        engine.fire(Deposited(account_id=1, amount=5))
        engine.commit()
        engine.followers.run(TelemetryDeposits(), until_idle=True)  # at the head: lag 0
        url = engine.store.url

    async def main() -> tuple[list[float], list[float]]:
        store = await aio.connect(any_url)
        try:
            async with store.engine() as engine:
                await engine.fire(Deposited(account_id=1, amount=5))
                await engine.fire(Deposited(account_id=1, amount=5))
            read = functools.partial(
                _gauge, "playthrough.follower.lag", url, follower="telemetry.deposits"
            )
            lag = await asyncio.to_thread(read)
        finally:
            await store.close()
        return lag, await asyncio.to_thread(read)

    lag, after = asyncio.run(main())
    assert lag == [2]
    assert after == []


def test_the_async_engine_emits_the_same_spans(tmp_path: Any, spans: InMemorySpanExporter) -> None:
    import asyncio

    from playthrough import aio

    url = f"sqlite:///{tmp_path}/aio.db"
    with Engine.open(url) as sync:
        sync.scheduler.schedule(Deposited(account_id=2, amount=1), at=datetime.now(UTC))
        sync.commit()

    async def main() -> None:
        async with await aio.connect(url) as store:
            async with store.engine() as engine:
                await engine.fire(Deposited(account_id=1, amount=5))
                with pytest.raises(EventRejected):
                    await engine.fire(Deposited(account_id=1, amount=-5))
                await engine.fire(Transferred(source_id=1, target_id=2, amount=1))
            async with store.engine() as engine:
                assert await engine.states.count(Account, balance__gt=0) == 2
                await engine.load(Account, 1, at=2)
                assert [r.status for r in await engine.scheduler.run_due()] == ["fired"]
                await engine.admin.forget("nobody")
                await engine.followers.run(TelemetryDeposits(), until_idle=True)

    asyncio.run(main())
    seen = _names_and_systems(spans)
    names = ("fire", "commit", "handle", "count", "load", "scheduler.pass", "forget")
    for name in (*names, "followers.batch"):
        assert seen.get(f"playthrough.{name}") == {"sqlite"}, name


def test_no_span_is_made_until_the_application_sets_a_provider() -> None:
    """Without a provider a span would be a non-recording one: none is built (a fire stays
    cheap); once one is set, later spans are recorded."""
    code = (
        "from opentelemetry import trace\n"
        "from opentelemetry.sdk.trace import TracerProvider\n"
        "from opentelemetry.sdk.trace.export import SimpleSpanProcessor\n"
        "from opentelemetry.sdk.trace.export.in_memory_span_exporter import "
        "InMemorySpanExporter\n"
        "from playthrough import Engine, _telemetry\n"
        "from playthrough.examples.bank import Deposited\n"
        "with Engine.open('sqlite://') as e:\n"
        "    e.fire(Deposited(account_id=1, amount=1)); e.commit()\n"
        "assert not _telemetry._tracing()\n"
        "spans = InMemorySpanExporter()\n"
        "provider = TracerProvider()\n"
        "provider.add_span_processor(SimpleSpanProcessor(spans))\n"
        "trace.set_tracer_provider(provider)\n"
        "with Engine.open('sqlite://') as e:\n"
        "    e.fire(Deposited(account_id=1, amount=1)); e.commit()\n"
        "print(sorted({s.name for s in spans.get_finished_spans()}))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.stdout == "['playthrough.commit', 'playthrough.fire']\n", done.stderr
