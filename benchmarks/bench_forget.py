"""Forgetting 1% of the people in a 100,000-state store: what it costs, and what it costs others.

    .venv/bin/python benchmarks/bench_forget.py [--states N] [--loads K] [--backend sqlite|postgres]

Builds a store of N customers (default 100,000; one ``Registered`` event with
personal fields per customer, then one ``Ordered`` event for every tenth), with
their heads values. Then, interleaved in the same run, K cold loads (a fresh
engine per load, as a new request would) of unrelated customers, each against
the bare driver reading the same heads value and decoding its JSON; then
forgets 1% of the customers (timed, per forget); then K cold loads of other
unrelated customers the same way. Reports load time as ours/bare before and
after, the after/before ratio, and the events the loads played (the goal:
no more after than before, i.e. 0 extra).
"""

from __future__ import annotations

import argparse
import json
import random
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import attrs

from playthrough import Engine, Event, Personal, State, state_id

PG = "postgresql://root@127.0.0.1:5432/test"


@attrs.define
class Customer(State, type_name="bench.forget.Customer"):
    name: str = ""
    email: str = ""
    orders: int = 0


@attrs.define
class Registered(Event, type_name="bench.forget.Registered"):
    data_subject = "customer_id"
    customer_id: int = state_id(Customer)
    name: Personal[str] = ""
    email: Personal[str] = ""

    def apply(self, customer: Customer) -> None:
        customer.name = self.name
        customer.email = self.email


@attrs.define
class Ordered(Event, type_name="bench.forget.Ordered"):
    customer_id: int = state_id(Customer)

    def apply(self, customer: Customer) -> None:
        customer.orders += 1


def build(url: str, states: int) -> None:
    started = time.perf_counter()
    with Engine.open(url) as engine:
        for first in range(0, states, 2000):
            for c in range(first, min(first + 2000, states)):
                engine.fire(Registered(customer_id=c, name=f"name {c}", email=f"{c}@example.org"))
                if c % 10 == 0:
                    engine.fire(Ordered(customer_id=c))
            engine.commit()
    print(f"built {states} states in {time.perf_counter() - started:.1f} s", flush=True)


class Bare:
    """The bare driver: one SELECT of the state's heads value, json.loads."""

    def __init__(self, url: str, schema: str | None) -> None:
        self.schema = schema
        if schema is None:
            self.sqlite: Any = sqlite3.connect(url.removeprefix("sqlite:///"))
        else:
            import psycopg

            self.pg: Any = psycopg.connect(PG, autocommit=True)

    def load(self, c: int) -> dict[str, Any]:
        if self.schema is None:
            row = self.sqlite.execute(
                "SELECT value FROM pt_heads WHERE state_type = ? AND state_id = ?",
                ("bench.forget.Customer", str(c)),
            ).fetchone()
        else:
            row = self.pg.execute(
                f'SELECT value FROM "{self.schema}".pt_heads '
                "WHERE state_type = %s AND state_id = %s",
                ("bench.forget.Customer", str(c)),
            ).fetchone()
        value: dict[str, Any] = json.loads(row[0])
        return value


def cold_loads(url: str, bare: Bare, ids: list[int]) -> tuple[float, float, int]:
    """Median seconds of ours and bare per load (interleaved), and the events played."""
    ours, floor, played = [], [], 0
    for c in ids:
        t = time.perf_counter()
        with Engine.open(url) as engine:
            state = engine.load(Customer, c)
        ours.append(time.perf_counter() - t)
        t = time.perf_counter()
        value = bare.load(c)
        floor.append(time.perf_counter() - t)
        assert value["name"] == state.name == f"name {c}", (value, state)
        with Engine.open(url) as engine:
            played += engine.explain(Customer, c).events_played
    return statistics.median(ours), statistics.median(floor), played


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--states", type=int, default=100_000)
    parser.add_argument("--loads", type=int, default=300)
    parser.add_argument("--backend", choices=["sqlite", "postgres"], default="sqlite")
    args = parser.parse_args(argv)
    rng = random.Random(18)
    with tempfile.TemporaryDirectory() as tmp:
        schema = None
        if args.backend == "sqlite":
            url = f"sqlite:///{Path(tmp) / 'forget.db'}"
        else:
            schema = f"pt_bench_{uuid.uuid4().hex[:8]}"
            url = f"{PG}?schema={schema}"
        try:
            build(url, args.states)
            people = list(range(args.states))
            rng.shuffle(people)
            forgotten = people[: max(1, args.states // 100)]
            rest = people[len(forgotten) :]
            before_ids = rest[: args.loads]
            after_ids = rest[args.loads : 2 * args.loads]
            bare = Bare(url, schema)
            ours_b, bare_b, played_b = cold_loads(url, bare, before_ids)
            started = time.perf_counter()
            with Engine.open(url) as engine:
                for c in forgotten:
                    assert engine.admin.forget(c)
            spent = time.perf_counter() - started
            ours_a, bare_a, played_a = cold_loads(url, bare, after_ids)
            with Engine.open(url) as engine:
                assert engine.load(Customer, forgotten[0]).name == "[forgotten]"
        finally:
            if schema is not None:
                import psycopg

                with psycopg.connect(PG, autocommit=True) as conn:
                    conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    print(f"backend {args.backend}, {args.states} states, {len(forgotten)} forgotten")
    print(f"forget: {spent:.2f} s in all, {spent / len(forgotten) * 1000:.1f} ms each")
    print(
        "| cold load of an unrelated state | ours (ms) | bare (ms) "
        "| ours/bare (throughput) | events played |"
    )
    print("|---|---|---|---|---|")
    for label, o, b, p in [
        ("before forgetting 1%", ours_b, bare_b, played_b),
        ("after forgetting 1%", ours_a, bare_a, played_a),
    ]:
        print(f"| {label} | {o * 1000:.3f} | {b * 1000:.3f} | {b / o:.3f} | {p} |")
    print(f"after/before (ours): {ours_a / ours_b:.2f}; extra events played: {played_a - played_b}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
