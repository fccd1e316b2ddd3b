"""The inspector's JSON API on both stores: every resource, every refusal, no leaks."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from starlette.testclient import TestClient

from playthrough import Engine, Projection
from playthrough._connect import connect
from playthrough._stores import parse_store_url
from playthrough.inspect import create_app, is_loopback, url_secrets

from .see_domain import Audited, Customer, Shipped, story

MODULES = ("tests.see_domain",)


class Orders(Projection):
    name = "see.orders"

    def on_ShippedWithFollowUp(self, event: Any, tx: Any) -> None:
        pass


def _prepare(url: str) -> None:
    with Engine.open(url, head_values=False) as engine:
        story(engine)  # 7 events, 7 caused by 6
        engine.admin.snapshot([(Customer, 1)], at=5)  # a plan of an order rewinds the customer
        engine.followers.run(Orders(), until_idle=True)
        engine.fire(Shipped(order_id="13"))
        engine.commit()  # 8: the follower lags by one
        engine.scheduler.schedule(Audited(order_id="o2"), at=datetime(2020, 1, 1, tzinfo=UTC))
        engine.scheduler.run_due()  # fails: its hook raises
        engine.scheduler.schedule(Audited(order_id="o10"), after=timedelta(days=30))


@pytest.fixture
def client(any_url: str) -> Iterator[TestClient]:
    _prepare(any_url)
    store = connect(any_url, create=False)
    try:
        yield TestClient(create_app(store, modules=MODULES))
    finally:
        store.close()


def get(client: TestClient, path: str, status: int = 200) -> Any:
    response = client.get(path)
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    return response.json()


def test_events_page_filters_and_pages(client: TestClient) -> None:
    first = get(client, "/api/events?limit=3")
    assert [e["position"] for e in first["events"]] == [1, 2, 3]
    assert first["head"] == 8 and first["next_after"] == 3
    assert first["events"][1]["metadata"] == {"user": "bo"}
    rest = get(client, "/api/events?after=3&limit=10")
    assert [e["position"] for e in rest["events"]] == [4, 5, 6, 7, 8]
    assert rest["next_after"] is None
    placed = get(client, "/api/events?type=see.Placed&type=see.Shipped")
    assert [e["position"] for e in placed["events"]] == [2, 3, 4, 5, 8]
    # a string id that looks like an int needs no prefix: order ids are declared str
    assert [e["position"] for e in get(client, "/api/events?state=see.Order:13")["events"]] == [
        5,
        8,
    ]
    shop = get(client, "/api/events?state=see.Shop:")["events"]
    assert [e["position"] for e in shop] == [2, 3, 5]
    correlation = get(client, "/api/events/6")["correlation"]
    chained = get(client, f"/api/events?correlation={correlation}")["events"]
    assert [e["position"] for e in chained] == [6, 7]


def test_an_event_with_its_causes_and_effects(client: TestClient) -> None:
    root = get(client, "/api/events/6")
    assert root["type"] == "see.ShippedWithFollowUp" and root["data"] == {"order_id": "o10"}
    assert root["causes"] == []
    [effect] = root["effects"]
    assert (effect["position"], effect["type"], effect["effects"]) == (7, "see.Followed", [])
    caused = get(client, "/api/events/7")
    assert [c["position"] for c in caused["causes"]] == [6] and caused["caused_by"] == 6


def test_a_state_its_history_and_its_plan(client: TestClient) -> None:
    order = get(client, "/api/states/see.Order/o10")
    assert order["label"] == "see.Order(o10)" and order["id"] == "o10"
    assert order["value"] == {"customer": 1, "total": 12, "status": "followed up"}
    assert order["info"]["events"] == 3 and order["info"]["last_position"] == 7
    assert get(client, "/api/states/see.Shop/-")["value"] == {"orders": 3}
    assert get(client, "/api/states/see.Shop")["label"] == "see.Shop"
    history = get(client, "/api/states/see.Order/o10/history")
    assert [e["position"] for e in history["events"]] == [3, 6, 7]
    assert history["events"][2]["changes"] == [
        {"field": "status", "before": "shipped", "after": "followed up"}
    ]
    assert history["events"][2]["caused_by"] == 6
    plan = get(client, "/api/states/see.Order/o2/plan")
    labels = {n["id"]: n["label"] for n in plan["nodes"]}
    assert [labels[n] for n in plan["rewound"]] == ["see.Customer(1)"]
    assert {"from": "n0", "to": "n1"}.items() <= plan["edges"][0].items()
    assert plan["edges"][0]["label"] == "#2 see.Placed"
    early = get(client, "/api/states/see.Order/o2/plan?at=3")
    assert early["at"] == 3


def test_followers_schedule_and_graph(client: TestClient) -> None:
    [follower] = get(client, "/api/followers")["followers"]
    assert (follower["name"], follower["position"], follower["lag"]) == ("see.orders", 7, 1)
    schedule = get(client, "/api/schedule")
    assert [r["type"] for r in schedule["pending"]] == ["see.Audited"]
    [failed] = schedule["failed"]
    assert failed["status"] == "failed" and "the auditor is out" in failed["error"]
    graph = get(client, "/api/graph")
    assert graph["hot"] == ["see.Order"]
    assert {"event": "see.Placed", "state": "see.Customer", "coupled": True} in graph["edges"]


def test_personal_fields_are_masked_and_forgotten_ones_say_so(any_url: str) -> None:
    _prepare(any_url)
    store = connect(any_url, create=False)
    try:
        masked = TestClient(create_app(store, modules=MODULES))
        shown = TestClient(create_app(store, modules=MODULES, show_personal=True))
        assert get(masked, "/api/events/1")["data"]["name"] == "[personal]"
        assert get(masked, "/api/states/see.Customer/1")["value"]["name"] == "[personal]"
        history = get(masked, "/api/states/see.Customer/1/history")
        assert history["events"][0]["data"]["name"] == "[personal]"
        assert history["events"][0]["changes"][0] == {
            "field": "name",
            "before": "",
            "after": "[personal]",
        }
        assert "Ada" not in masked.get("/states/see.Customer/1").text
        assert "Ada" not in masked.get("/log").text + masked.get("/events/1").text
        assert get(shown, "/api/events/1")["data"]["name"] == "Ada"
        assert get(shown, "/api/states/see.Customer/1")["value"]["name"] == "Ada"
        with Engine.open(any_url) as engine:
            assert engine.admin.forget(1)
        for client in (masked, shown):
            assert get(client, "/api/events/1")["data"]["name"] == "[forgotten]"
            assert get(client, "/api/states/see.Customer/1")["value"]["name"] == "[forgotten]"
            changes = get(client, "/api/states/see.Customer/1/history")["events"][0]["changes"]
            assert changes[0]["after"] == "[forgotten]"
    finally:
        store.close()


BAD = [
    ("/api/events?after=x", 400, "after must be an integer, not 'x'"),
    ("/api/events?after=-1", 400, "after must be between 0"),
    ("/api/events?limit=0", 400, "limit must be between 1 and 1000, not 0"),
    ("/api/events?limit=1001", 400, "limit must be between 1 and 1000"),
    ("/api/events?type=Nope", 400, "no event type 'Nope'"),
    ("/api/events?state=see.Order", 400, "state must be TYPE:ID"),
    ("/api/events?state=nope.T:1", 404, "no state type 'nope.T'"),
    ("/api/events?state=see.Customer:ada", 400, "see.Customer ids are ints, and 'ada' is not one"),
    ("/api/events?colour=red", 400, "unknown parameter(s) ['colour']"),
    ("/api/events/x", 400, "an event position is an integer, not 'x'"),
    ("/api/events/0", 404, "no event at position 0 (the log holds 1..8)"),
    ("/api/events/99", 404, "no event at position 99 (the log holds 1..8)"),
    ("/api/states/nope.T/1", 404, "no state type 'nope.T'"),
    ("/api/states/see.Customer/ada", 400, "see.Customer ids are ints"),
    ("/api/states/see.Customer/77", 404, "no event ever touched"),
    ("/api/states/see.Customer", 400, "see.Customer needs an id"),
    ("/api/states/see.Shop/1", 400, "see.Shop is a singleton"),
    ("/api/states/nope.T/1/history", 404, "no state type 'nope.T'"),
    ("/api/states/see.Customer/x/history", 400, "see.Customer ids are ints"),
    ("/api/states/see.Customer/77/history", 404, "no event ever touched"),
    ("/api/states/see.Customer/1/plan?at=x", 400, "at must be an integer"),
    ("/api/states/see.Customer/1/plan?at=99", 400, "at must be between 0 and 8, not 99"),
    ("/api/states/nope.T/1/plan", 404, "no state type 'nope.T'"),
    ("/api/states/see.Customer/x/plan", 400, "see.Customer ids are ints"),
    ("/api/nothing/here", 404, "no API resource '/api/nothing/here'"),
]


@pytest.mark.parametrize(("path", "status", "message"), BAD, ids=[b[0] for b in BAD])
def test_bad_input_is_a_json_error_with_a_4xx_status(
    client: TestClient, path: str, status: int, message: str
) -> None:
    body = get(client, path, status)
    assert message in body["error"] and body["status"] == status
    assert "Traceback" not in body["error"]


def test_pages_refuse_bad_input_with_an_error_page(client: TestClient) -> None:
    for path, status in (("/events/99", 404), ("/states/nope.T/1", 404), ("/log?after=x", 400)):
        response = client.get(path)
        assert response.status_code == status
        assert "Traceback" not in response.text and "<p class='error'>" in response.text


def test_no_page_or_response_contains_the_database_password(pg_url: str, pg_schema: str) -> None:
    parts = parse_store_url(f"{pg_url}?schema={pg_schema}")
    assert parts.redacted()  # the server trusts loopback: any password connects
    secret = "s3cret-Pa55"
    url = pg_url.replace("://root@", f"://root:{secret}@") + f"?schema={pg_schema}"
    assert secret in url
    _prepare(url)
    store = connect(url, create=False)
    try:
        title = parse_store_url(url).redacted()
        app = create_app(store, modules=MODULES, title=title, secrets=url_secrets(url))
        client = TestClient(app)
        paths = [
            "/log",
            "/events/6",
            "/events/7",
            "/states/see.Order/o2",
            "/states/see.Customer/1",
            "/states/see.Shop/-",
            "/followers",
            "/schedule",
            "/graph",
            "/verify",
            "/events/99",
            "/api/events",
            "/api/events/7",
            "/api/states/see.Order/o2",
            "/api/states/see.Order/o2/history",
            "/api/states/see.Order/o2/plan",
            "/api/followers",
            "/api/schedule",
            "/api/graph",
            *[b[0] for b in BAD],
        ]
        for path in paths:
            response = client.get(path)
            assert response.status_code < 500, (path, response.text)
            assert secret not in response.text, path
        assert title in client.get("/log").text  # the store is named, without its password
    finally:
        store.close()


def test_secrets_are_found_in_every_place_a_url_puts_them() -> None:
    assert url_secrets("postgresql://u:p%40ss@h/db") == ("p%40ss", "p@ss")
    assert url_secrets("postgresql://u@h/db?password=xyz&schema=a") == ("xyz",)
    assert url_secrets("sqlite:///x.db") == ()
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.2")
