"""The read side against the bare driver doing the same reads and writes.

Usage::

    .venv/bin/python benchmarks/compare_read_side.py --backend sqlite|postgres|all
        [--states 100000] [--events 20000] [--reps 3] [--url postgresql://...]

Phases, each interleaved with its bare floor in the same process (``harness``):

1. ``count`` with a filter (``balance__gt``, about half of the states) over
   N stored states, against ``SELECT count(*)`` over the same JSON
   (``json_extract`` / ``value::jsonb``);
2. ``find`` with a filter selecting about 1% of them (owner and balance),
   decoded into states in a fresh engine, against selecting the same rows and
   ``json.loads`` of each value;
3. a follower (``engine.followers.run``) projecting the events of a log of its own
   (``--events``) into a table in the same database, against a bare loop that
   pages through the events, decodes them and does the same upserts and
   position update in one transaction per page.

The stored values are fresh (the commits wrote them), as in steady state; the
first ``count`` after opening pays no refresh.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs

from harness import Timer, Timing, markdown_table, measure
from playthrough import Engine, Event, FollowerTransaction, Projection, State, state_id

BATCH = 500  # follower batch size, ours and bare


@attrs.define
class Holder(State, type_name="bench.Holder"):
    owner: str = ""
    balance: int = 0


@attrs.define
class Credited(Event, type_name="bench.Credited"):
    holder_id: int = state_id(Holder)
    owner: str = ""
    amount: int = 0

    def apply(self, holder: Holder) -> None:
        holder.owner = self.owner
        holder.balance += self.amount


OWNERS = [f"owner{n}" for n in range(100)]


def _fill(engine: Engine, states: int) -> None:
    for start in range(0, states, 1000):
        for i in range(start, min(states, start + 1000)):
            engine.fire(Credited(holder_id=i, owner=OWNERS[i % 100], amount=i % 1000))
        engine.commit()
        engine.repository.clear()


class Sums(Projection):
    name = "sums"
    batch_size = BATCH

    def setup(self, tx: FollowerTransaction) -> None:
        tx.execute("CREATE TABLE IF NOT EXISTS bench_sums (owner TEXT PRIMARY KEY, total BIGINT)")

    def reset(self, tx: FollowerTransaction) -> None:
        tx.execute("DELETE FROM bench_sums")

    def on_Credited(self, event: Credited, tx: FollowerTransaction) -> None:
        tx.execute(
            "INSERT INTO bench_sums VALUES (?, ?) ON CONFLICT (owner) "
            "DO UPDATE SET total = bench_sums.total + excluded.total",
            (event.owner, event.amount),
        )


class Side:
    """One backend: how to open an engine and run the bare statements on the same database."""

    name: str
    param: str
    count_sql: str
    find_sql: str

    def engine(self) -> Engine:
        raise NotImplementedError

    def rows(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        raise NotImplementedError

    def follow_bare(self) -> int:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


class SQLiteSide(Side):
    name = "sqlite"
    param = "?"

    def __init__(self) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="pt-read-")
        self.path = str(Path(self._tmp.name) / "read.db")
        self.url = f"sqlite:///{self.path}"
        self.count_sql = (
            "SELECT count(*) FROM pt_heads WHERE state_type = 'bench.Holder' "
            "AND json_extract(value, '$.balance') > ?"
        )
        self.find_sql = (
            "SELECT state_id, value FROM pt_heads WHERE state_type = 'bench.Holder' "
            "AND json_extract(value, '$.owner') = ? AND json_extract(value, '$.balance') > ?"
        )
        self._conn = sqlite3.connect(self.path, isolation_level=None)

    def engine(self) -> Engine:
        return Engine.open(self.url)

    def rows(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        self._conn.execute("BEGIN")
        try:
            return self._conn.execute(sql, params).fetchall()
        finally:
            self._conn.execute("COMMIT")

    def follow_bare(self) -> int:
        conn = self._conn
        conn.execute("CREATE TABLE IF NOT EXISTS bare_sums (owner TEXT PRIMARY KEY, total BIGINT)")
        conn.execute("CREATE TABLE IF NOT EXISTS bare_pos (name TEXT PRIMARY KEY, position BIGINT)")
        conn.execute("DELETE FROM bare_sums")
        conn.execute("INSERT OR REPLACE INTO bare_pos VALUES ('sums', 0)")
        done = 0
        while True:
            conn.execute("BEGIN IMMEDIATE")
            (position,) = conn.execute(
                "SELECT position FROM bare_pos WHERE name = 'sums'"
            ).fetchone()
            rows = conn.execute(
                "SELECT position, type, data FROM pt_events WHERE position > ? "
                "ORDER BY position LIMIT ?",
                (position, BATCH),
            ).fetchall()
            for p, t, data in rows:
                if t == "bench.Credited":
                    d = json.loads(data)
                    conn.execute(
                        "INSERT INTO bare_sums VALUES (?, ?) ON CONFLICT (owner) "
                        "DO UPDATE SET total = bare_sums.total + excluded.total",
                        (d["owner"], d["amount"]),
                    )
                    done += 1
                position = p
            conn.execute("UPDATE bare_pos SET position = ? WHERE name = 'sums'", (position,))
            conn.execute("COMMIT")
            if len(rows) < BATCH:
                return done

    def close(self) -> None:
        self._conn.close()
        self._tmp.cleanup()


class PostgresSide(Side):
    name = "postgres"
    param = "%s"

    def __init__(self, url: str) -> None:
        import uuid

        import psycopg

        self.schema = f"pt_read_bench_{uuid.uuid4().hex[:8]}"
        self.url = url
        self._conn = psycopg.connect(url, autocommit=True)
        self._conn.execute(f'CREATE SCHEMA "{self.schema}"')
        self._conn.execute(f'SET search_path TO "{self.schema}"')
        self.count_sql = (
            "SELECT count(*) FROM pt_heads WHERE state_type = 'bench.Holder' "
            "AND (value::jsonb ->> 'balance')::numeric > %s"
        )
        self.find_sql = (
            "SELECT state_id, value FROM pt_heads WHERE state_type = 'bench.Holder' "
            "AND value::jsonb ->> 'owner' = %s AND (value::jsonb ->> 'balance')::numeric > %s"
        )

    def engine(self) -> Engine:
        return Engine.open(self.url, schema=self.schema)

    def rows(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._conn.transaction():
            return self._conn.execute(sql, params).fetchall()

    def follow_bare(self) -> int:
        conn = self._conn
        conn.execute("CREATE TABLE IF NOT EXISTS bare_sums (owner TEXT PRIMARY KEY, total BIGINT)")
        conn.execute("CREATE TABLE IF NOT EXISTS bare_pos (name TEXT PRIMARY KEY, position BIGINT)")
        conn.execute("DELETE FROM bare_sums")
        conn.execute(
            "INSERT INTO bare_pos VALUES ('sums', 0) ON CONFLICT (name) DO UPDATE SET position = 0"
        )
        done = 0
        while True:
            with conn.transaction():
                row = conn.execute(
                    "SELECT position FROM bare_pos WHERE name = 'sums' FOR UPDATE"
                ).fetchone()
                assert row is not None
                position = row[0]
                rows = conn.execute(
                    "SELECT position, type, data FROM pt_events WHERE position > %s "
                    "ORDER BY position LIMIT %s",
                    (position, BATCH),
                ).fetchall()
                for p, t, data in rows:
                    if t == "bench.Credited":
                        d = json.loads(data)
                        conn.execute(
                            "INSERT INTO bare_sums VALUES (%s, %s) ON CONFLICT (owner) "
                            "DO UPDATE SET total = bare_sums.total + excluded.total",
                            (d["owner"], d["amount"]),
                        )
                        done += 1
                    position = p
                conn.execute("UPDATE bare_pos SET position = %s WHERE name = 'sums'", (position,))
            if len(rows) < BATCH:
                return done

    def close(self) -> None:
        self._conn.execute(f'DROP SCHEMA "{self.schema}" CASCADE')
        self._conn.close()


def run(side: Side, follow_side: Side, states: int, events: int, reps: int) -> str:
    with side.engine() as engine:
        _fill(engine, states)
    with follow_side.engine() as engine:  # the follower's log: its own store
        _fill(engine, events)
    total_events = events
    with side.engine() as engine:
        expected = engine.states.count(Holder, balance__gt=499)  # any stale value is refreshed here
    results = []

    def timed(fn: Callable[[], int]) -> Callable[[], Timing]:
        def go() -> Timing:
            timer = Timer()
            return timer.done(fn())

        return go

    reader = side.engine()  # one engine for the reads, as a long-lived process would

    def ours_count() -> int:
        assert reader.states.count(Holder, balance__gt=499) == expected
        return states

    def bare_count() -> int:
        assert side.rows(side.count_sql, (499,))[0][0] == expected
        return states

    results.append(
        measure(
            f"count(balance__gt) over {states:,} states",
            "states/s",
            timed(ours_count),
            timed(bare_count),
            reps,
        )
    )

    def ours_find() -> int:
        reader.repository.clear()  # every found state decoded, none from the identity map
        found = list(reader.states.find(Holder, owner="owner7", balance__gt=100))
        assert found
        return states

    def bare_find() -> int:
        rows = side.rows(side.find_sql, ("owner7", 100))
        decoded = [(i, json.loads(v)) for i, v in rows]
        assert decoded
        return states

    results.append(
        measure(
            f"find(owner=, balance__gt=), ~1% of {states:,}",
            "states scanned/s",
            timed(ours_find),
            timed(bare_find),
            reps,
        )
    )

    follower = follow_side.engine()

    def ours_follow() -> int:
        follower.followers.reset(Sums())
        report = follower.followers.run(Sums(), until_idle=True)
        assert report.position == total_events
        return report.processed

    results.append(
        measure(
            f"follower into a table, {total_events:,} events",
            "events/s",
            timed(ours_follow),
            timed(side.follow_bare),
            reps,
        )
    )
    reader.close()
    follower.close()
    return markdown_table(results, goal=None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["sqlite", "postgres", "all"], default="all")
    parser.add_argument("--states", type=int, default=100_000)
    parser.add_argument(
        "--events", type=int, default=20_000, help="events in the follower's log (own store)"
    )
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--url", default="postgresql://root@127.0.0.1:5432/test")
    args = parser.parse_args()
    backends: list[Callable[[], Side]] = []
    if args.backend in ("sqlite", "all"):
        backends.append(SQLiteSide)
    if args.backend in ("postgres", "all"):
        backends.append(lambda: PostgresSide(args.url))
    for make in backends:
        side, follow_side = make(), make()
        try:
            print(f"\n### {side.name}: {args.states:,} states; follower: {args.events:,} events\n")
            print(run(side, follow_side, args.states, args.events, args.reps))
            sys.stdout.flush()
        finally:
            side.close()
            follow_side.close()


if __name__ == "__main__":
    main()
