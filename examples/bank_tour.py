"""A walk through the bank example: fire, commit, reject, chain, conflict, travel in time."""

from __future__ import annotations

import tempfile
from pathlib import Path

from playthrough import Engine
from playthrough.errors import ConcurrencyError, EventRejected
from playthrough.examples.bank import Account, Deposited, Ledger, Transferred, story


def main() -> None:
    url = f"sqlite:///{Path(tempfile.mkdtemp()) / 'bank.db'}"
    with Engine.open(url) as engine:
        for event in story(engine):
            cause = f" (caused by #{event.caused_by})" if event.caused_by else ""
            print(f"committed #{event.id}: {event!r}{cause}")
        try:
            engine.fire(Transferred(source_id=2, target_id=1, amount=1_000_000))
        except EventRejected as exc:
            print(f"rejected, nothing changed: {exc}")

    # Two engines (think: two processes) change account 1 concurrently.
    with Engine.open(url) as a, Engine.open(url) as b:
        a.fire(Deposited(account_id=1, amount=10))
        b.fire(Deposited(account_id=1, amount=20))
        a.commit()
        try:
            b.commit()
        except ConcurrencyError as exc:
            print(f"second writer refused, nothing written: {exc}")
        b.refresh()  # reload from the store and try again
        b.fire(Deposited(account_id=1, amount=20))
        b.commit()

    with Engine.open(url) as engine:
        print("account 1 now:", engine.load(Account, 1))
        print("ledger now:   ", engine.load(Ledger))
        print("account 1 as of event 4:", engine.load(Account, 1, at=4))


if __name__ == "__main__":
    main()
