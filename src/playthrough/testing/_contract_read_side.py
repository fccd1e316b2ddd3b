"""The store contract's cases for the read side, in order.

ReadSideContract: events by filter, states by value, followers.
"""

from __future__ import annotations

from .._model import StateKey
from .._stores import (
    Condition,
    EventQuery,
    FollowerRow,
    Order,
    SnapshotRecord,
)
from ._contract_base import A1, A2, FIRED_AT, ContractBase, ev


class ReadSideContract(ContractBase):
    """The cases of the read side; a store with the read side passes them."""

    def test_find_events_filters_and_metadata(self) -> None:
        store = self.store
        store.append(
            [
                ev((A1, 0), data='{"n":1}')._replace(metadata='{"user":"ada"}', correlation="c1"),
                ev((A2, 0), caused_by=1)._replace(correlation="c1"),
                ev((A1, 0), (A2, 0))._replace(type="Other", correlation="c2"),
            ],
            {A1: None, A2: None},
        )
        with store.reader() as r:
            first = r.find_events(EventQuery(), 10)
            assert [tuple(e) for e in first] == [
                (1, "Thing", '{"n":1}', None, FIRED_AT, 1, '{"user":"ada"}', "c1"),
                (2, "Thing", "{}", 1, FIRED_AT, 1, None, "c1"),
                (3, "Other", "{}", None, FIRED_AT, 1, None, "c2"),
            ]

            def positions(query: EventQuery, limit: int = 10) -> list[int]:
                return [e.position for e in r.find_events(query, limit)]

            assert positions(EventQuery(after=1)) == [2, 3]
            assert positions(EventQuery(upto=2)) == [1, 2]
            assert positions(EventQuery(), limit=1) == [1]
            assert positions(EventQuery(types=("Other",))) == [3]
            assert positions(EventQuery(types=())) == []
            assert positions(EventQuery(key=A1)) == [1, 3]
            assert positions(EventQuery(key=A2, after=2)) == [3]
            assert positions(EventQuery(caused_by=1)) == [2]
            assert positions(EventQuery(correlation="c1")) == [1, 2]
            assert positions(EventQuery(key=A1, types=("Thing",), correlation="c1")) == [1]

    def test_state_info(self) -> None:
        store = self.store
        store.append([ev((A1, 0)), ev((A2, 0)), ev((A1, 0))], {A1: None, A2: None})
        store.write_snapshots([SnapshotRecord(A1, 1, 1, "{}")], keep=3)
        with store.reader() as r:
            info = r.state_info(A1)
            assert info is not None
            assert (info.created_position, info.last_position, info.events) == (1, 3, 2)
            assert (info.created_at, info.last_at) == (FIRED_AT, FIRED_AT)
            assert (info.snapshot_position, info.value_position) == (1, None)
            assert r.state_info(StateKey("Acct", "9")) is None

    def test_state_values_are_written_only_where_the_head_holds(self) -> None:
        store = self.store
        store.append([ev((A1, 0)), ev((A2, 0))], {A1: None, A2: None})
        with store.reader() as r:
            assert r.stale_states("Acct", 10) == [(A1, 1), (A2, 2)]
            assert r.stale_states("Acct", 1) == [(A1, 1)]
        # A2's value claims position 1, but its last event is 2: not written.
        assert (
            store.write_values(
                [SnapshotRecord(A1, 1, 1, '{"b":5}'), SnapshotRecord(A2, 1, 1, '{"b":7}')]
            )
            == 1
        )
        with store.reader() as r:
            assert r.stale_states("Acct", 10) == [(A2, 2)]
        assert store.write_values([SnapshotRecord(A2, 2, 2, '{"b":7}')]) == 1
        store.append([ev((A1, 0))], {A1: 1})  # A1's value is stale again
        with store.reader() as r:
            assert r.stale_states("Acct", 10) == [(A1, 3)]
            assert r.query_states("Acct", [], [], None) == [
                ("1", '{"b":5}', 1),
                ("2", '{"b":7}', 2),
            ]
            assert r.state_info(A1) is not None

    def test_json_filters(self) -> None:
        store = self.store
        keys = [StateKey("Acct", str(n)) for n in range(1, 6)]
        store.append([ev((k, 0)) for k in keys], dict.fromkeys(keys))
        values = [
            '{"b":150,"o":"ada","t":["vip","x"],"a":{"c":"Oslo"},"f":{"x":1},"n":null,"on":true}',
            '{"b":50,"o":"bob","t":[],"a":{"c":"Rome"},"f":{},"n":"z","on":false}',
            '{"b":101.5,"o":"ada","t":["x"],"a":{"c":""},"f":{"x":2},"n":null,"on":true}',
            '{"b":-5,"o":"Åsa","t":["vip"],"a":{},"f":{"x":1,"y":2},"n":null,"on":false}',
            '{"b":"150","o":"cy","t":"vip","a":null,"f":{},"n":null,"on":1}',
        ]
        store.write_values(
            [
                SnapshotRecord(k, n, n, v)
                for n, (k, v) in enumerate(zip(keys, values, strict=True), 1)
            ]
        )

        def ids(
            *conditions: Condition, order: tuple[Order, ...] = (), limit: int | None = None
        ) -> list[str]:
            with store.reader() as r:
                found = [i for i, _, _ in r.query_states("Acct", conditions, order, limit)]
                assert r.count_states("Acct", conditions) == len(
                    [i for i, _, _ in r.query_states("Acct", conditions, (), None)]
                )
            return found

        c = Condition
        assert ids() == ["1", "2", "3", "4", "5"]
        assert ids(c(("b",), "eq", 150)) == ["1"]  # not the string "150"
        assert ids(c(("b",), "eq", "150")) == ["5"]
        assert ids(c(("b",), "gt", 100)) == ["1", "3"]
        assert ids(c(("b",), "gte", 101.5), c(("b",), "lte", 101.5)) == ["3"]
        assert ids(c(("b",), "lt", 0)) == ["4"]
        assert ids(c(("b",), "ne", 150)) == ["2", "3", "4", "5"]
        assert ids(c(("o",), "in", ["bob", "cy"])) == ["2", "5"]
        assert ids(c(("o",), "in", [])) == []
        assert ids(c(("o",), "gt", "b")) == ["2", "4", "5"]  # by code point: "Å" > "c"
        assert ids(c(("t",), "contains", ["vip"])) == ["1", "4"]  # not the string "vip"
        assert ids(c(("t",), "contains", ["vip", "x"])) == ["1"]
        assert ids(c(("t",), "contains", [])) == ["1", "2", "3", "4"]
        assert ids(c(("f",), "contains", {"x": 1})) == ["1", "4"]
        assert ids(c(("a", "c"), "eq", "Oslo")) == ["1"]
        assert ids(c(("a", "c"), "isnull", True)) == ["4", "5"]
        assert ids(c(("n",), "isnull", False)) == ["2"]
        assert ids(c(("n",), "eq", None)) == ["1", "3", "4", "5"]
        assert ids(c(("on",), "eq", True)) == ["1", "3"]  # not the number 1
        assert ids(c(("on",), "eq", 1)) == ["5"]
        assert ids(c(("t",), "eq", ["x"])) == ["3"]
        assert ids(c(("a",), "eq", {"c": "Rome"})) == ["2"]
        assert ids(c(("missing",), "eq", 1)) == []
        # Mixed kinds order as SQLite orders JSON values: null, numbers, then text.
        assert ids(order=(Order(("b",), True),)) == ["5", "1", "3", "2", "4"]
        assert ids(order=(Order(("n",)), Order(("b",)))) == ["4", "3", "1", "5", "2"]
        numeric = [c(("b",), "gt", -100)]
        assert ids(*numeric, order=(Order(("b",), True),)) == ["1", "3", "2", "4"]
        assert ids(*numeric, order=(Order(("b",)),), limit=2) == ["4", "2"]
        assert ids(order=(Order(("o",)), Order(("b",), True))) == ["1", "3", "2", "5", "4"]

    def test_follow_commits_position_and_writes_together(self) -> None:
        store = self.store
        store.append([ev((A1, 0)), ev((A2, 0)), ev((A1, 0))], {A1: None, A2: None})
        with store.follow("f", 2) as batch:
            assert batch is not None
            assert (batch.start, [e.position for e in batch.events]) == (0, [1, 2])
            batch.tx.execute("CREATE TABLE IF NOT EXISTS contract_rm (n BIGINT PRIMARY KEY)")
            for e in batch.events:
                batch.tx.execute("INSERT INTO contract_rm VALUES (?)", (e.position,))
            batch.advance(2)
        with store.reader() as r:
            [row] = r.followers()
            assert (row.name, row.position) == ("f", 2)
            assert isinstance(row, FollowerRow)

        class Boom(Exception):
            pass

        try:
            with store.follow("f", 10) as batch:
                assert batch is not None
                assert (batch.start, [e.position for e in batch.events]) == (2, [3])
                batch.tx.execute("INSERT INTO contract_rm VALUES (?)", (3,))
                batch.advance(3)
                raise Boom
        except Boom:
            pass
        with store.follow("f", 10) as batch:  # nothing of the failed batch was kept
            assert batch is not None
            assert (batch.start, [e.position for e in batch.events]) == (2, [3])
            assert batch.tx.execute("SELECT n FROM contract_rm ORDER BY n") == [(1,), (2,)]
            batch.advance(3)
        with store.follow("other", 0) as batch:
            assert batch is not None and batch.start == 0 and batch.events == []
        with store.reader() as r:
            assert [(f.name, f.position) for f in r.followers()] == [("f", 3), ("other", 0)]
