"""A writer for the crash tests: commits transfers and writes down what commit() said.

Run as ``python -m tests.crash_worker URL SIDE_FILE``. Every commit moves money
between five accounts in three transfers (so the total never changes). Before
each commit it writes ``try``, and after, one of ``ok ID FIRST LAST`` (commit()
returned), ``unknown ID`` (CommitOutcomeUnknown) or ``failed ID`` (a StoreError
that says nothing was written); each line is flushed and fsynced before the
next commit, so the side file is what an application would have acknowledged.
"""

from __future__ import annotations

import os
import random
import sys

import attrs

from playthrough import CommitOutcomeUnknown, Engine, Event, State, StoreError, state_id

ACCOUNTS = 5
OPENING = 1_000
PER_COMMIT = 3


@attrs.define
class Purse(State, type_name="t.crash.Purse"):
    balance: int = 0


@attrs.define
class Opened(Event, type_name="t.crash.Opened"):
    purse_id: int = state_id(Purse)

    def apply(self, purse: Purse) -> None:
        purse.balance += OPENING


@attrs.define
class Moved(Event, type_name="t.crash.Moved"):
    source_id: int = state_id(Purse)
    target_id: int = state_id(Purse)
    amount: int = 0

    def apply(self, source: Purse, target: Purse) -> None:
        source.balance -= self.amount
        target.balance += self.amount


def _note(side: int, line: str) -> None:
    os.write(side, (line + "\n").encode())
    os.fsync(side)


def main(url: str, side_path: str) -> None:
    side = os.open(side_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    rng = random.Random(os.getpid())
    with Engine.open(url) as engine:
        if engine.head() == 0:
            for n in range(ACCOUNTS):
                engine.fire(Opened(purse_id=n))
            engine.commit()
        while True:
            engine.refresh()  # another round's writer may have committed since
            try:
                for _ in range(PER_COMMIT):
                    a, b = rng.sample(range(ACCOUNTS), 2)
                    engine.fire(Moved(source_id=a, target_id=b, amount=rng.randint(1, 50)))
            except StoreError:
                continue  # a load failed (its connection was terminated): nothing to commit
            _note(side, "try")
            try:
                committed = engine.commit()
            except CommitOutcomeUnknown as exc:
                _note(side, f"unknown {exc.commit_id}")
                continue
            except StoreError:
                _note(side, f"failed {engine.last_commit_id}")
                continue
            _note(side, f"ok {engine.last_commit_id} {committed[0].id} {committed[-1].id}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
