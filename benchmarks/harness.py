"""The shared benchmark harness: timing, interleaved repetitions, medians, ratio tables.

Every comparison runs "ours" (the engine) and "bare" (the driver doing the
same work by hand) in the same process, interleaved: ours then bare, then bare
then ours, and so on, so slow drifts of a noisy machine hit both alike. The
figure is the ratio of the median throughputs, ours/bare.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Timing:
    """Operations done, wall-clock seconds and this process's CPU seconds."""

    ops: int
    wall: float
    cpu: float

    @property
    def rate(self) -> float:
        return self.ops / self.wall


class Timer:
    """Started on creation; ``done(ops)`` gives the Timing since then."""

    def __init__(self) -> None:
        self.wall = time.perf_counter()
        self.cpu = time.process_time()

    def done(self, ops: int) -> Timing:
        return Timing(ops, time.perf_counter() - self.wall, time.process_time() - self.cpu)


Runner = Callable[[], Timing]


@dataclass
class Result:
    """One phase: the timings of each side, one per repetition, in run order."""

    name: str
    unit: str
    ours: list[Timing] = field(default_factory=list)
    bare: list[Timing] = field(default_factory=list)

    @staticmethod
    def rate(timings: Sequence[Timing], cpu: bool = False) -> float:
        """Median throughput (ops per wall second, or per CPU second)."""
        return statistics.median(t.ops / (t.cpu if cpu else t.wall) for t in timings)

    def ratio(self, cpu: bool = False) -> float:
        return self.rate(self.ours, cpu) / self.rate(self.bare, cpu)

    def pairs(self) -> list[float]:
        """ours/bare per repetition (wall clock), paired in run order."""
        return [o.rate / b.rate for o, b in zip(self.ours, self.bare, strict=True)]


def measure(name: str, unit: str, ours: Runner, bare: Runner, reps: int) -> Result:
    """Run ``ours`` and ``bare`` ``reps`` times each, alternating which goes first."""
    result = Result(name, unit)
    for rep in range(reps):
        order: list[tuple[Runner, list[Timing]]] = [(ours, result.ours), (bare, result.bare)]
        if rep % 2:
            order.reverse()
        for run, into in order:
            into.append(run())
    return result


def _ratio(value: float) -> str:
    """Two decimals, three below 0.1 (so a small ratio does not print as 0.00)."""
    return f"{value:.3f}" if value < 0.1 else f"{value:.2f}"


def markdown_table(results: Sequence[Result], *, goal: float | None = 0.5) -> str:
    """The results as a Markdown table: medians, ratio (wall and CPU), per-repetition ratios."""
    lines = [
        "| phase | unit | ours | bare | ours/bare | CPU ours/bare | per repetition |",
        "|---|---|---:|---:|---:|---:|---|",
    ]
    for r in results:
        ratio = r.ratio()
        flag = " (under goal)" if goal is not None and ratio < goal else ""
        per_rep = ", ".join(_ratio(p) for p in r.pairs())
        lines.append(
            f"| {r.name} | {r.unit} | {r.rate(r.ours):,.0f} | {r.rate(r.bare):,.0f} | "
            f"{_ratio(ratio)}{flag} | {_ratio(r.ratio(cpu=True))} | {per_rep} |"
        )
    return "\n".join(lines)
