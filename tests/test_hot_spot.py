"""A hot spot under ``engine.retry``'s defaults: 32 writers, one singleton, no failure.

Every order touches the shop's one ``HotSales`` singleton, so every commit conflicts
with every concurrent one. ``retry``'s default attempts and jittered exponential
backoff must carry all 300 orders through on PostgreSQL, and a conflict that a
retry resolved is logged at DEBUG, never WARNING.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter

import attrs
import pytest

import playthrough
from playthrough import Engine, Event, SingletonState, State, state_id

WRITERS = 32
ORDERS = 300
JOIN_TIMEOUT = 600.0  # a bound against a hang, not a performance threshold


@attrs.define
class HotOrder(State, type_name="t.hot.Order"):
    amount: int = 0


@attrs.define
class HotSales(SingletonState, type_name="t.hot.Sales"):
    orders: int = 0
    total: int = 0


@attrs.define
class HotPlaced(Event, type_name="t.hot.Placed"):
    order_id: int = state_id(HotOrder)
    amount: int = 0

    def apply(self, order: HotOrder, sales: HotSales) -> None:
        order.amount = self.amount
        sales.orders += 1
        sales.total += self.amount


@pytest.mark.postgres
def test_32_writers_on_one_hot_singleton_all_commit_with_the_default_retry(
    pg_url: str, pg_schema: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="playthrough")
    store = playthrough.connect(f"{pg_url}?schema={pg_schema}", max_size=WRITERS)
    failures: list[BaseException] = []
    attempts: Counter[int] = Counter()
    lock = threading.Lock()

    def writer(n: int) -> None:
        for order in range(n, ORDERS, WRITERS):
            tries = 0

            def place(engine: Engine, order: int = order) -> None:
                nonlocal tries
                tries += 1
                engine.fire(HotPlaced(order_id=order, amount=order + 1))

            try:
                with store.engine() as engine:
                    engine.retry(place)  # the defaults
            except BaseException as exc:  # noqa: BLE001 - counted, the test asserts none
                with lock:
                    failures.append(exc)
            with lock:
                attempts[tries] += 1

    try:
        threads = [threading.Thread(target=writer, args=(n,)) for n in range(WRITERS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(JOIN_TIMEOUT)
        assert not any(t.is_alive() for t in threads)
        gave_up = f"{len(failures)} order(s) given up; attempts: {sorted(attempts.items())}"
        assert failures == [], gave_up
        with store.engine() as engine:
            sales = engine.load(HotSales)
            assert (sales.orders, sales.total) == (ORDERS, ORDERS * (ORDERS + 1) // 2)
            assert engine.states.count(HotOrder) == ORDERS
    finally:
        store.close()
    assert sum(attempts.values()) == ORDERS
    assert max(attempts) > 1  # there was contention, and retry resolved it
    levels = Counter(r.levelno for r in caplog.records if "refused" in r.getMessage())
    assert levels[logging.DEBUG] == sum(n * (k - 1) for k, n in attempts.items())
    assert levels[logging.WARNING] == 0
