"""Reconstitution benchmarks: load cost against log length, mixed snapshots, full replay.

Usage::

    .venv/bin/python benchmarks/bench_reconstitution.py [--quick]

a. Aligned snapshots. Logs of 10k, 100k and 1M events (quick: 10k and 100k) over
   the same accounts, committed 1000 events at a time, with an aligned snapshot
   set (``engine.admin.snapshot()``) every tenth of the log and one at the end of the
   body; then the same tail of 1000 events, 20 of which touch the target account
   (half of those couple it with the Hub singleton). Loading the target in a
   fresh engine should cost the same on every log: the report gives the median
   load time per log, the ratio largest/smallest (goal <= 1.5) and what
   ``engine.explain`` says the plan plays.
a2. The same with accounts growing with the log (one per EVENTS_PER_ACCOUNT
   events; logs of 10k and 1M events, quick: 10k and 100k), so the heads and
   snapshots tables grow with the log too (run last).
b. Mixed snapshots. On copies of the smallest log, snapshots are placed at
   different positions per state (``engine.admin.snapshot(refs, at=p)``); the target
   is loaded in a fresh engine and checked against its known value, and the
   events played are compared with the events after the oldest snapshot the
   plan starts from.
c. Full replay. ``engine.admin.replay(progress=...)`` on the 100k and 1M logs (quick:
   10k and 100k), each in a subprocess: events per second, and the process's
   resident memory before, during (at each progress call) and at its peak
   (VmHWM; ``ru_maxrss`` would include the parent's peak), and the Python heap
   under tracemalloc, to show memory does not grow with the log.

The logs are built through the engine with ``?synchronous=normal`` and reopened
with the default durable settings for everything timed. Temporary files live in
one temporary directory, removed at the end.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from domain import (
    Account,
    Deposited,
    Hub,
    HubCredited,
    file_url,
    random_event,
    remove_db,
)
from harness import Timer
from playthrough import Engine, Event, Plan, StateKey
from playthrough.errors import PlaythroughError

ACCOUNTS = 2_000
TARGET = 0
COMMIT = 1_000
TAIL = 1_000  # events after the last aligned snapshot, the same on every log
TAIL_TARGET_EVERY = 50  # one tail event in 50 touches the target: 20 in all
SNAPSHOT_SETS = 10  # aligned sets in the body of every log
SEED = 20_240_601
EVENTS_PER_ACCOUNT = 20  # series a2: accounts grow with the log


@dataclass
class Log:
    events: int
    path: Path
    accounts: int = ACCOUNTS
    build_seconds: float = 0.0
    last_snapshot: int = 0
    expected: dict[str, Any] = field(default_factory=dict)
    load_ms: list[float] = field(default_factory=list)
    plan: Plan | None = None


# --------------------------------------------------------------------------- building


def tail_events(accounts: int) -> list[Event]:
    """The tail: the same on every log of as many accounts (same seed), with the target
    touched at the same places (TAIL // TAIL_TARGET_EVERY events)."""
    rng = random.Random(SEED + 1)
    out: list[Event] = []
    for i in range(TAIL):
        if i % TAIL_TARGET_EVERY == TAIL_TARGET_EVERY // 2:
            touches = i // TAIL_TARGET_EVERY
            cls = HubCredited if touches % 2 else Deposited
            out.append(cls(account_id=TARGET, amount=1 + touches))
        else:
            out.append(random_event(rng, accounts, avoid=TARGET))
    return out


def snapshot_of(state: Account | Hub) -> dict[str, int]:
    if isinstance(state, Hub):
        return {"credits": state.credits, "total": state.total}
    return {"balance": state.balance, "movements": state.movements}


def build(log: Log) -> None:
    """Body of random events with aligned snapshot sets, then the fixed tail."""
    remove_db(log.path)
    body = log.events - TAIL
    every = max(COMMIT, body // SNAPSHOT_SETS // COMMIT * COMMIT)
    rng = random.Random(SEED)
    start = time.perf_counter()
    with Engine.open(file_url(log.path, synchronous="normal")) as engine:
        fired = 0
        while fired < body:
            for _ in range(min(COMMIT, body - fired)):
                engine.fire(random_event(rng, log.accounts))
            engine.commit()
            fired = engine.head()
            if fired % every == 0 or fired == body:
                log.last_snapshot = engine.admin.snapshot()
        for event in tail_events(log.accounts):
            engine.fire(event)
        engine.commit()
        assert engine.head() == log.events, (engine.head(), log.events)
        log.expected = {
            "target": snapshot_of(engine.load(Account, TARGET)),
            "hub": snapshot_of(engine.load(Hub)),
        }
    log.build_seconds = time.perf_counter() - start


def check(engine: Engine, log: Log, what: str) -> bool:
    """Load the target and the hub and compare with their known values; print any BUG."""
    try:
        got = {
            "target": snapshot_of(engine.load(Account, TARGET)),
            "hub": snapshot_of(engine.load(Hub)),
        }
    except PlaythroughError as exc:
        print(f"   BUG ({what}): loading failed: {type(exc).__name__}: {exc}")
        return False
    if got != log.expected:
        print(f"   BUG ({what}): loaded {got}, expected {log.expected}")
        return False
    return True


# --------------------------------------------------------------------------- a. aligned


def time_load(path: Path) -> float:
    engine = Engine.open(file_url(path))
    try:
        timer = Timer()
        engine.load(Account, TARGET)
        return timer.done(1).wall * 1_000
    finally:
        engine.close()


def aligned(logs: list[Log], repeats: int, title: str) -> None:
    for log in logs:
        with Engine.open(file_url(log.path)) as engine:
            log.plan = engine.explain(Account, TARGET)
            check(engine, log, "aligned snapshots")
    for rep in range(repeats):  # interleaved, so drift hits every log alike
        for log in logs if rep % 2 == 0 else reversed(logs):
            log.load_ms.append(time_load(log.path))
    print(f"{title}: load Account(0) in a fresh engine, default durable settings")
    print(
        f"   {len(logs[0].load_ms)} loads per log, interleaved; tail of {TAIL} events after the "
        f"last aligned set, {TAIL // TAIL_TARGET_EVERY} of them on the target"
    )
    print(
        f"   {'log events':>10} {'accounts':>8} {'build s':>8} {'db MB':>7} {'last set':>9} "
        f"{'median ms':>10} "
        f"{'min ms':>7} {'max ms':>7} {'played':>7} {'states':>7} {'rounds':>6}"
    )
    for log in logs:
        assert log.plan is not None
        size = sum(p.stat().st_size for p in log.path.parent.glob(log.path.name + "*"))
        print(
            f"   {log.events:>10,} {log.accounts:>8,} {log.build_seconds:>8.1f} {size / 1e6:>7.1f} "
            f"{log.last_snapshot:>9,} {statistics.median(log.load_ms):>10.2f} "
            f"{min(log.load_ms):>7.2f} {max(log.load_ms):>7.2f} {log.plan.events_played:>7} "
            f"{len(log.plan.states):>7} {log.plan.rounds:>6}"
        )
    small, large = logs[0], logs[-1]
    ratio = statistics.median(large.load_ms) / statistics.median(small.load_ms)
    verdict = "ok" if ratio <= 1.5 else "OVER"
    print(
        f"   ratio {large.events:,}/{small.events:,} of median load times: {ratio:.2f} "
        f"(goal <= 1.5: {verdict})"
    )
    print()


# --------------------------------------------------------------------------- b. mixed


Ref = tuple[type[Account] | type[Hub], int | None]


@dataclass(frozen=True)
class Scenario:
    name: str
    # groups of states to snapshot together, each at (head + a non-positive offset)
    placements: tuple[tuple[tuple[Ref, ...], int], ...] = ()
    drop_all: bool = False  # drop every snapshot first


def scenarios(rng: random.Random, accounts: int) -> list[Scenario]:
    others = rng.sample(range(1, accounts), 200)
    scattered: tuple[tuple[tuple[Ref, ...], int], ...] = tuple(
        (((Account, a),), -rng.randrange(0, TAIL)) for a in [TARGET, *others[:100]]
    )
    scattered += ((((Hub, None),), -rng.randrange(0, TAIL)),)
    return [
        Scenario("aligned sets only (as built)"),
        Scenario("target ahead of the hub", ((((Account, TARGET),), -100), (((Hub, None),), -700))),
        Scenario("hub ahead of the target", ((((Account, TARGET),), -700), (((Hub, None),), -10))),
        Scenario(
            "target+hub at the head, 200 others in the tail",
            (
                (((Account, TARGET), (Hub, None)), 0),
                (tuple((Account, a) for a in others[:100]), -500),
                (tuple((Account, a) for a in others[100:]), -900),
            ),
        ),
        Scenario("target, hub, 100 accounts at random tail positions", scattered),
        Scenario("no snapshots at all (drop_snapshots)", drop_all=True),
    ]


def first_touches(path: Path, keys: Sequence[StateKey]) -> dict[StateKey, int]:
    """Position of the first event touching each key (read with bare sqlite3)."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        out: dict[StateKey, int] = {}
        for key in keys:
            row = conn.execute(
                "SELECT MIN(position) FROM pt_links WHERE state_type = ? AND state_id = ?",
                (key.type, key.id),
            ).fetchone()
            if row and row[0] is not None:
                out[key] = int(row[0])
        return out
    finally:
        conn.close()


def oldest_start(path: Path, plan: Plan) -> int:
    """The oldest position the plan starts a state from; a blank start counts as a
    snapshot taken just before the state's first event."""
    blank = [sp.key for sp in plan.states.values() if sp.snapshot is None]
    first = first_touches(path, blank)
    return min(
        sp.start if sp.snapshot is not None else first.get(sp.key, plan.at + 1) - 1
        for sp in plan.states.values()
    )


def mixed(source: Log, work: Path, repeats: int) -> None:
    print(f"b. mixed snapshots on copies of the {source.events:,}-event log")
    print(
        "   played = events the plan plays; bound = events after the oldest snapshot the plan "
        "starts from (a blank start counts as just before the state's first event)"
    )
    print(
        f"   {'scenario':<52} {'played':>6} {'bound':>6} {'states':>6} {'rewound':>7} "
        f"{'median ms':>9}  played<=bound, value"
    )
    rng = random.Random(SEED + 2)
    copy = work / "mixed.db"
    for sc in scenarios(rng, source.accounts):
        remove_db(copy)
        shutil.copyfile(source.path, copy)
        with Engine.open(file_url(copy)) as engine:
            head = engine.head()
            if sc.drop_all:
                engine.admin.drop_snapshots()
            for refs, offset in sc.placements:
                engine.admin.snapshot(list(refs), at=head + offset)
        with Engine.open(file_url(copy)) as engine:
            try:
                plan = engine.explain(Account, TARGET)
            except PlaythroughError as exc:
                print(f"   {sc.name:<52} BUG: explain failed: {type(exc).__name__}: {exc}")
                remove_db(copy)
                continue
            good = check(engine, source, sc.name)
        bound = head - oldest_start(copy, plan)
        times = [time_load(copy) for _ in range(repeats)]
        within = "yes" if plan.events_played <= bound else "NO (bug)"
        print(
            f"   {sc.name:<52} {plan.events_played:>6} {bound:>6} {len(plan.states):>6} "
            f"{len(plan.rewound):>7} {statistics.median(times):>9.2f}  {within}, "
            f"{'as known' if good else 'WRONG'}"
        )
        remove_db(copy)
    print()


# --------------------------------------------------------------------------- c. replay


def rss_kb() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() // 1024


def peak_rss_kb() -> int:
    """This process's peak resident memory (VmHWM).

    Not ``ru_maxrss``: Linux carries the parent's peak across fork and exec into
    the child's ``ru_maxrss``, so a child of a big parent would report the parent.
    """
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def replay_child(path: str, trace: bool) -> None:
    """Runs in a subprocess: replay the log at ``path``, print one JSON line.

    With ``trace``, tracemalloc follows the Python heap (slower: its timing is not reported).
    """
    if trace:
        tracemalloc.start()
    engine = Engine.open(file_url(Path(path)))
    samples: list[tuple[int, int]] = []
    base = tracemalloc.get_traced_memory()[0] // 1024 if trace else rss_kb()

    def progress(position: int, total: int) -> None:
        heap = tracemalloc.get_traced_memory()[0] // 1024 if trace else rss_kb()
        samples.append((position, heap))

    start = time.perf_counter()
    report: Any = engine.admin.replay(progress=progress)
    seconds = time.perf_counter() - start
    engine.close()
    played = report if isinstance(report, int) else report.played
    peak = tracemalloc.get_traced_memory()[1] // 1024 if trace else peak_rss_kb()
    out = {"played": played, "seconds": seconds, "base": base, "peak": peak, "samples": samples}
    for name in ("snapshot_sets", "peak_states"):
        out[name] = getattr(report, name, None)
    print(json.dumps(out))


def run_child(path: Path, trace: bool) -> dict[str, Any]:
    command = [sys.executable, __file__, "--replay-child", str(path)]
    done = subprocess.run(
        [*command, "--trace"] if trace else command,
        capture_output=True,
        text=True,
        timeout=900,
    )
    if done.returncode != 0:
        raise SystemExit(f"replay subprocess failed:\n{done.stderr}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _at(samples: list[list[int]], events: int, fraction: float) -> float:
    """The memory sample (KiB) at the first progress call past ``fraction`` of the log, in MiB."""
    want = fraction * events
    return next((kb for p, kb in samples if p >= want), samples[-1][1]) / 1024


def replay(logs: list[Log]) -> None:
    print(
        "c. full replay (engine.admin.replay), one subprocess per log and measure, durable settings"
    )
    print("   RSS: resident memory of the process (VmRSS at progress calls; peak = VmHWM);")
    print("   heap: Python heap under tracemalloc (a second run; its timing is not used); MiB")
    print(
        f"   {'log events':>10} {'played':>9} {'seconds':>8} {'events/s':>9} {'sets':>5} "
        f"{'states':>6} {'measure':>7} {'before':>7} {'at 25%':>7} {'at 50%':>7} "
        f"{'at 75%':>7} {'at end':>7} {'peak':>7}"
    )
    for log in logs:
        rss = run_child(log.path, trace=False)
        heap = run_child(log.path, trace=True)
        for name, r in (("RSS", rss), ("heap", heap)):
            samples: list[list[int]] = r["samples"]
            first = (
                f"{log.events:>10,} {r['played']:>9,} {r['seconds']:>8.1f} "
                f"{r['played'] / r['seconds']:>9,.0f} {r['snapshot_sets'] or 0:>5} "
                f"{r['peak_states'] or 0:>6}"
                if name == "RSS"
                else " " * 59
            )
            before = r["base"] / 1024
            points = " ".join(f"{_at(samples, log.events, f):>7.1f}" for f in (0.25, 0.5, 0.75, 1))
            print(f"   {first} {name:>7} {before:>7.1f} {points} {r['peak'] / 1024:>7.1f}")
        with Engine.open(file_url(log.path)) as engine:
            if check(engine, log, "after a full replay"):
                print(f"   {'':>10} (after the replay, the target and the hub load as known)")


# --------------------------------------------------------------------------- driver


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="10k and 100k logs, fewer repeats")
    parser.add_argument("--replay-child", metavar="DB", help=argparse.SUPPRESS)
    parser.add_argument("--trace", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.replay_child:
        replay_child(args.replay_child, args.trace)
        return 0
    sizes = [10_000, 100_000] if args.quick else [10_000, 100_000, 1_000_000]
    repeats = 7 if args.quick else 15
    with tempfile.TemporaryDirectory(prefix="pt-reconst-") as tmp_name:
        tmp = Path(tmp_name)
        logs = [Log(n, tmp / f"log{n}.db") for n in sizes]
        for log in logs:
            build(log)
            print(f"built {log.events:,} events in {log.build_seconds:.1f}s", flush=True)
        print()
        aligned(
            [logs[0], logs[-1]] if args.quick else logs,
            repeats,
            f"a. aligned snapshots, the same {ACCOUNTS:,} accounts on every log",
        )
        mixed(logs[0], tmp, max(3, repeats // 3))
        replay(logs if args.quick else logs[1:])
        print()
        for log in logs:
            remove_db(log.path)
        # The same, with the number of accounts growing with the log: the store's
        # heads and snapshots tables grow too, which the first series holds constant.
        scaled = [
            Log(n, tmp / f"scaled{n}.db", accounts=max(1_000, n // EVENTS_PER_ACCOUNT))
            for n in ([10_000, 100_000] if args.quick else [10_000, 1_000_000])
        ]
        for log in scaled:
            build(log)
            print(
                f"built {log.events:,} events over {log.accounts:,} accounts in "
                f"{log.build_seconds:.1f}s",
                flush=True,
            )
        print()
        aligned(
            scaled,
            repeats,
            f"a2. aligned snapshots, one account per {EVENTS_PER_ACCOUNT} events",
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
