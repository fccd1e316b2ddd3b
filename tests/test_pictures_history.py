"""Pictures of plans and of the coupling graph, a state's history, readable ids."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from hypothesis import given, settings

from playthrough import FORGOTTEN, Engine, Event
from playthrough._coupling import coupling_graph
from playthrough._history import changes
from playthrough._ids import label, natural_key, parse_state_id
from playthrough._model import StateKey, key_of
from playthrough._reconstitution import StateReconstitutor
from playthrough._serialization import converter, encode_state
from playthrough._stores import SQLiteStore
from playthrough.errors import ArchivedRangeError

from .domain import Node
from .see_domain import Customer, Order, Shop, story
from .strategies import operations
from .test_reconstitution_properties import expected, ref_class, run_history

REFS: list[int | None] = [1, 2, 3, 4, None]


def _rewinding(url: str) -> Engine:
    """The story with heads values off and Customer(1) snapshotted late: a load of an
    order rewinds the customer (its snapshot at 5 is past what the order's events need)."""
    engine = Engine.open(url, head_values=False)
    story(engine)
    engine.admin.snapshot([(Customer, 1)], at=5)
    return engine


def test_plan_pictures_highlight_rewinds_and_label_edges_with_events(any_url: str) -> None:
    with _rewinding(any_url) as engine:
        plan = engine.explain(Order, "o2")
        names = {e.id or 0: type(e)._pt_type_name for e in engine.log.events()}
    data = plan.to_dict(names)
    labels = [n["label"] for n in data["nodes"]]
    # the target first, then natural order: o10 after 13 and o2 (never "s:o10")
    assert labels == ["see.Order(o2)", "see.Customer(1)", "see.Order(13)", "see.Order(o10)"]
    rewound = [n["label"] for n in data["nodes"] if n["id"] in data["rewound"]]
    assert rewound == ["see.Customer(1)"]
    customer = data["nodes"][1]
    assert customer["origin"] == "REWOUND from snapshot at 5 to blank"
    edges = {(e["from"], e["to"]): e for e in data["edges"]}
    assert edges[("n0", "n1")]["label"] == "#2 see.Placed"
    assert edges[("n1", "n3")]["positions"] == [3] and edges[("n1", "n3")]["event_type"] == (
        "see.Placed"
    )
    mermaid = plan.to_mermaid(names)
    assert mermaid.startswith("flowchart LR\n")
    assert 'n0["see.Order(o2)<br/>blank, plays 2"]' in mermaid
    assert 'n0 -->|"#2 see.Placed"| n1' in mermaid
    assert "class n1 rewound" in mermaid and "class n0 target" in mermaid
    assert "s:" not in mermaid and "StateKey" not in mermaid
    dot = plan.to_dot(names)
    assert dot.startswith('digraph "plan at 7" {')
    assert 'n1 [label="see.Customer(1)\\nREWOUND from snapshot at 5 to blank", style=' in dot
    assert 'n0 -> n1 [label="#2 see.Placed"];' in dot
    assert "see.Order('o2')" not in plan.explain() and "see.Order(o2)" in plan.explain()
    # without names the edges carry positions only
    assert 'n0 -->|"#2"| n1' in plan.to_mermaid()


def test_natural_order_and_readable_labels() -> None:
    keys = [key_of(Order, i) for i in ("o10", "o2", "13", "o1")] + [key_of(Customer, 10)]
    keys.append(key_of(Customer, 9))
    assert [label(k) for k in sorted(keys, key=natural_key)] == [
        "see.Customer(9)",
        "see.Customer(10)",
        "see.Order(13)",
        "see.Order(o1)",
        "see.Order(o2)",
        "see.Order(o10)",
    ]
    assert label(key_of(Shop, None)) == "see.Shop"
    assert label(StateKey("x.T", "u:" + str(uuid.UUID(int=1)))) == f"x.T({uuid.UUID(int=1)})"


def test_the_declared_id_type_decides_how_an_id_is_read() -> None:
    assert parse_state_id(Order, "13") == "13"  # order ids are str: no s: prefix needed
    assert parse_state_id(Order, "s:13") == "13"  # the old prefix still works
    assert parse_state_id(Customer, "13") == 13
    with pytest.raises(ValueError, match=r"see\.Customer ids are ints, and 'ada' is not one"):
        parse_state_id(Customer, "ada")
    assert parse_state_id(Shop, None) is None
    with pytest.raises(ValueError, match=r"see\.Shop is a singleton"):
        parse_state_id(Shop, "1")
    with pytest.raises(ValueError, match=r"see\.Order needs an id"):
        parse_state_id(Order, "")


def test_the_coupling_graph_marks_coupled_hooks_and_hot_spots() -> None:
    graph = coupling_graph(modules=["tests.see_domain"])
    data = graph.to_dict()
    placed = next(e for e in data["events"] if e["type"] == "see.Placed")
    assert placed["states"] == ["see.Order", "see.Customer", "see.Shop"]
    assert placed["coupled"] == ["see.Order", "see.Customer"] and placed["coupled_hooks"] == [
        "apply"
    ]
    assert data["hot"] == ["see.Order"]  # touched by 5 of the 6 event types
    by_state = {s["type"]: s for s in data["states"]}
    assert by_state["see.Shop"]["singleton"] and not by_state["see.Shop"]["hot"]
    assert {"event": "see.Placed", "state": "see.Shop", "coupled": False} in data["edges"]
    assert "e3 ==> s0" in graph.to_mermaid() and "class s0 hot" in graph.to_mermaid()
    assert 'e3 -> s0 [penwidth=3, label="coupled"];' in graph.to_dot()
    json.dumps(data)  # JSON-able


def test_history_lists_every_event_with_its_changes_from_one_plan(
    any_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    plans = []
    original = StateReconstitutor.plan_steps  # every plan, whichever engine drives it

    def counting(self: StateReconstitutor, *args: object, **kwargs: object) -> object:
        plans.append(args[0])
        return original(self, *args, **kwargs)  # type: ignore[arg-type]

    with _rewinding(any_url) as engine:
        monkeypatch.setattr(StateReconstitutor, "plan_steps", counting)
        history = engine.log.history(Order, "o10")
        assert len(plans) == 1  # one plan for the whole history, not one load per event
        monkeypatch.undo()
        assert [(e.position, e.type) for e in history] == [
            (3, "see.Placed"),
            (6, "see.ShippedWithFollowUp"),
            (7, "see.Followed"),
        ]
        placed, shipped, followed = history.entries
        assert [(c.field, c.before, c.after) for c in placed.changes] == [
            ("customer", 0, 1),
            ("total", 0, 12),
        ]
        assert [(c.field, c.before, c.after) for c in followed.changes] == [
            ("status", "shipped", "followed up")
        ]
        assert followed.caused_by == 6 and shipped.caused_by is None
        assert history.value == {"customer": 1, "total": 12, "status": "followed up"}
        customer = engine.log.history(Customer, 1)
        assert [e.position for e in customer] == [1, 2, 3, 5]
        assert customer.entries[1].metadata == {"user": "bo"}
        # each "after" is exactly what a load at that position gives
        for entry in customer:
            loaded = engine.load(Customer, 1, at=entry.position)
            assert {c.field: c.after for c in entry.changes}.items() <= converter.unstructure(
                loaded
            ).items()
        at4 = engine.log.history(Customer, 1, at=4)
        assert [e.position for e in at4] == [1, 2, 3] and at4.value["spent"] == 42
        text = str(customer)
        assert text.startswith("history of see.Customer(1): 4 event(s) up to 7")
        assert "spent: 30 -> 42" in text and '{"user":"bo"}' in text
        assert json.loads(json.dumps(customer.to_dict()))["events"][0]["data"]["name"] == "Ada"
        with pytest.raises(ValueError, match="outside the log"):
            engine.log.history(Customer, 1, at=99)
        assert len(engine.log.history(Order, "nobody")) == 0


def test_history_reads_forgotten_personal_data_as_forgotten(any_url: str) -> None:
    with _rewinding(any_url) as engine:
        assert engine.admin.forget(1)
        history = engine.log.history(Customer, 1)
    joined = history.entries[0]
    assert joined.event.name == FORGOTTEN  # type: ignore[attr-defined]
    assert [(c.field, c.after) for c in joined.changes] == [("name", FORGOTTEN)]
    assert history.value["name"] == FORGOTTEN and history.value["spent"] == 47


def test_history_after_an_archive_with_and_without_the_archive_file(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'shop.db'}"
    with Engine.open(url) as engine:
        story(engine)
        engine.admin.archive(before=4, to=tmp_path / "old.jsonl.gz")  # positions 1..3 leave
        cut_only = engine.log.history(Customer, 1)
        assert cut_only.since == 3 and [e.position for e in cut_only] == [5]
        assert cut_only.start["spent"] == 42  # the base snapshot at the cut
        with pytest.raises(ArchivedRangeError, match=r"positions 1\.\.3 were archived"):
            engine.log.history(Customer, 1, at=2)
    with Engine.open(url, archive=tmp_path / "old.jsonl.gz") as engine:
        full = engine.log.history(Customer, 1)
        assert full.since == 0 and [e.position for e in full] == [1, 2, 3, 5]
        assert [c.after for c in full.entries[2].changes] == [2, 42]
        early = engine.log.history(Customer, 1, at=2)
        assert [e.position for e in early] == [1, 2] and early.value["spent"] == 30


def test_changes_compare_nested_values_by_path_and_types() -> None:
    before = {"a": 1, "b": {"city": "Oslo", "zip": None}, "c": [1]}
    after = {"a": 1.0, "b": {"city": "Bergen", "zip": None}, "c": [1, 2]}
    assert [(c.field, c.before, c.after) for c in changes(before, after)] == [
        ("a", 1, 1.0),
        ("b.city", "Oslo", "Bergen"),
        ("c", [1], [1, 2]),
    ]


@settings(max_examples=40, deadline=None)
@given(ops=operations())
def test_every_history_step_equals_the_reference_playthrough(ops: list[tuple[object, ...]]) -> None:
    """Any snapshot placement: each event's "after" is the full replay's value at it."""
    store = SQLiteStore(":memory:")
    committed: list[Event] = []
    run_history(Engine(store, head_values=False), ops, committed)
    engine = Engine(store)
    for ref in REFS:
        cls, sid = ref_class(ref)
        history = engine.log.history(cls, sid)
        key = key_of(cls, sid)
        with store.reader() as reader:
            touching = sorted(
                link[0] for link in reader.links({key: (0, reader.head())}) if link[1] == key
            )
        assert [e.position for e in history] == touching
        previous = json.loads(encode_state(cls()))
        for entry in history:
            after = json.loads(expected(committed, ref, upto=entry.position)[0])
            assert entry.value == after
            assert {c.field: (c.before, c.after) for c in entry.changes} == {
                name: (previous[name], after[name])
                for name in after
                if previous[name] != after[name]
            }
            previous = after
        assert history.value == json.loads(expected(committed, ref)[0])
    store.close()


def test_node_ids_are_ints() -> None:
    assert parse_state_id(Node, "7") == 7
