"""What telemetry costs a commit: one-event commits with telemetry off, API only, SDK on.

Usage::

    .venv/bin/python benchmarks/bench_telemetry.py [--commits N] [--reps R]

Interleaved (see harness.py), in-memory SQLite so the commit's own work, not
the disk, is what is measured. "off" is how the engine runs without the
``otel`` extra (``_telemetry.ENABLED`` false: every call returns at once);
"api" has opentelemetry-api installed but no SDK configured (the no-op
providers); "sdk" adds a TracerProvider and a MeterProvider with in-memory
exporters. Ratios are against "off".
"""

from __future__ import annotations

import argparse

from domain import Deposited
from harness import Timer, Timing, markdown_table, measure
from playthrough import Engine, _telemetry


def commits(n: int) -> Timing:
    with Engine.open("sqlite://") as engine:
        timer = Timer()
        for i in range(n):
            engine.fire(Deposited(account_id=i % 100, amount=1))
            engine.commit()
        return timer.done(n)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commits", type=int, default=3000)
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args()
    enabled = _telemetry.ENABLED

    def off() -> Timing:
        _telemetry.ENABLED = False
        try:
            return commits(args.commits)
        finally:
            _telemetry.ENABLED = enabled

    def on() -> Timing:
        return commits(args.commits)

    results = [measure("commit, otel API without SDK", "commits/s", on, off, args.reps)]
    from opentelemetry import metrics, trace
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(InMemorySpanExporter()))
    trace.set_tracer_provider(provider)
    metrics.set_meter_provider(MeterProvider(metric_readers=[InMemoryMetricReader()]))
    results.append(measure("commit, otel SDK in memory", "commits/s", on, off, args.reps))
    print(f"{args.commits} one-event commits, in-memory SQLite; bare = telemetry off\n")
    print(markdown_table(results, goal=None))


if __name__ == "__main__":
    main()
