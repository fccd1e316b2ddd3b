"""A contending writer for the fairness test: N hot-spot transfers, each via engine.retry.

``python -m tests.retry_worker URL N`` prints ``done ATTEMPTS`` (attempts used in total).
"""

from __future__ import annotations

import sys

from playthrough import Engine

from .crash_worker import Moved


def main(url: str, commits: int) -> None:
    attempts = 0
    with Engine.open(url) as engine:

        def transfer(e: Engine) -> None:
            nonlocal attempts
            attempts += 1
            e.fire(Moved(source_id=0, target_id=1, amount=1))  # every writer: the same two

        for _ in range(commits):
            engine.retry(transfer, attempts=200, backoff=0.002, max_backoff=0.05)
    print(f"done {attempts}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
