"""OpenTelemetry spans and metrics, with the SDK's in-memory exporters."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from playthrough import Engine, _telemetry
from playthrough.errors import ConcurrencyError
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
        engine.snapshot()
        engine.verify()
        engine.replay()
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
        first.snapshot()
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
        "    e.fire(Deposited(account_id=1, amount=1)); e.commit(); e.snapshot()\n"
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
