"""The inspector in a real browser: Debian's Chromium, headless, driven by Playwright.

The test starts the real server (uvicorn, in a thread, on a free loopback
port), clicks from the log to an event, to its cause, to a state's history and
plan, and checks the plan's SVG was drawn. Screenshots go to
ci-out/screenshots/ (CI keeps them). No browser is downloaded: Playwright
drives /usr/bin/chromium; without it the test skips, except under CI=true,
where it fails.
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from playthrough import Engine
from playthrough._connect import connect
from playthrough.inspect import create_app

from .see_domain import Customer, story

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SHOTS = Path(__file__).resolve().parent.parent / "ci-out" / "screenshots"


def _chromium() -> str:
    if os.path.exists(CHROMIUM):
        return CHROMIUM
    problem = f"no Chromium at {CHROMIUM} (apt-get install chromium)"
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"CI=true and {problem}", pytrace=False)
    pytest.skip(problem)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[str]:
    import uvicorn

    url = f"sqlite:///{tmp_path / 'shop.db'}"
    with Engine.open(url, head_values=False) as engine:
        story(engine)
        engine.admin.snapshot([(Customer, 1)], at=5)
    store = connect(url, create=False)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = uvicorn.Config(
        create_app(store, modules=("tests.see_domain",), title=url),
        host="127.0.0.1",
        port=port,
        log_level="warning",
    )
    uv = uvicorn.Server(config)
    thread = threading.Thread(target=uv.run, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        uv.should_exit = True
        thread.join(timeout=30)
        store.close()


def test_clicking_from_the_log_to_a_cause_a_history_and_a_plan(server: str) -> None:
    executable = _chromium()
    from playwright.sync_api import expect, sync_playwright

    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            page.goto(f"{server}/")  # redirects to the log
            expect(page.locator("h1")).to_have_text("Log")
            expect(page.locator("table.events tbody tr")).to_have_count(7)
            page.screenshot(path=str(SHOTS / "log.png"), full_page=True)

            page.locator("table.events a.event-link", has_text="#7").first.click()
            expect(page.locator("h1")).to_have_text("Event #7 see.Followed")
            expect(page.locator("p.causes")).to_contain_text("#6 see.ShippedWithFollowUp")
            page.screenshot(path=str(SHOTS / "event.png"), full_page=True)

            page.locator("p.causes a.event-link", has_text="#6").click()
            expect(page.locator("h1")).to_have_text("Event #6 see.ShippedWithFollowUp")
            expect(page.locator("ul.effects")).to_contain_text("#7 see.Followed")

            page.goto(f"{server}/events/2")
            page.locator("a.state-link", has_text="see.Order(o2)").click()
            expect(page.locator("h1")).to_have_text("see.Order(o2)")
            timeline = page.locator("ol.timeline > li")
            expect(timeline).to_have_count(2)
            expect(timeline.nth(1)).to_contain_text("status")
            expect(timeline.nth(1)).to_contain_text('"shipped"')

            picture = page.locator("div.picture svg.plan")
            expect(picture).to_be_visible()
            expect(picture.locator("g.node")).to_have_count(4)
            expect(picture.locator("g.node.rewound")).to_have_count(1)
            expect(picture.locator("g.node.rewound")).to_contain_text("see.Customer(1)")
            expect(picture.locator("g.edge")).to_have_count(3)  # two-way edges drawn once
            box = picture.bounding_box()
            assert box is not None and box["width"] > 300 and box["height"] > 100
            page.locator("h2#plan").scroll_into_view_if_needed()
            page.screenshot(path=str(SHOTS / "state.png"), full_page=True)

            page.locator("svg.plan g.node.rewound").click()
            expect(page.locator("h1")).to_have_text("see.Customer(1)")
            expect(page.locator("table.facts")).to_contain_text("snapshot position")

            page.goto(f"{server}/graph")
            expect(page.locator("svg.graph g.node.hot")).to_contain_text("see.Order")
            page.screenshot(path=str(SHOTS / "graph.png"), full_page=True)
        finally:
            browser.close()
