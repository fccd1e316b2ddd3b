"""examples/fastapi_app.py under uvicorn on a real loopback port, driven by httpx.AsyncClient.

Every request and the server itself are bounded by timeouts; the server binds
port 0 on 127.0.0.1 (the kernel picks a free one) and is stopped at the end.
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
httpx = pytest.importorskip("httpx")

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "fastapi_app.py"
TIMEOUT = 60.0  # seconds: a bound against a hang, not a performance threshold
ORDERS = 64
CONCURRENT = 16

# The server runs in a process of its own (as in production), so the example's
# classes never join this process's registry. It serves on a socket this test
# bound to port 0 on 127.0.0.1 (the kernel picks a free port) and passed down.
SERVE = """
import importlib.util, socket, sys
import uvicorn
url, fd, max_size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
spec = importlib.util.spec_from_file_location("fastapi_app", sys.argv[4])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
options = {"max_size": max_size} if max_size else {}
app = module.create_app(url, **options)
server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
server.run(sockets=[socket.socket(fileno=fd)])
"""


@pytest.fixture
def server(any_url: str) -> Iterator[str]:
    """The example app served on a free loopback port; yields its base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    port = sock.getsockname()[1]
    max_size = "8" if any_url.startswith("postgresql") else "0"
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVE, any_url, str(sock.fileno()), max_size, str(EXAMPLE)],
        pass_fds=[sock.fileno()],
    )
    sock.close()  # the server holds its own copy
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + TIMEOUT
        while True:  # the socket accepts at once; the lifespan must have opened the store
            assert proc.poll() is None, "the server exited while starting"
            try:
                if httpx.get(f"{base}/sales", timeout=TIMEOUT).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.05)
        yield base
    finally:
        proc.terminate()
        proc.wait(TIMEOUT)


@pytest.mark.parametrize("prefix", ["", "/async"], ids=["sync", "async"])
def test_the_example_answers_with_json_states_and_maps_errors_to_statuses(
    server: str, prefix: str
) -> None:
    """The sync routes (thread pool) and the async ones (playthrough.aio) answer alike."""

    async def drive() -> dict[str, Any]:
        async with httpx.AsyncClient(base_url=server + prefix, timeout=TIMEOUT) as client:
            out: dict[str, Any] = {}
            out["missing"] = await client.get("/accounts/1")
            out["deposit"] = await client.post("/accounts/1/deposits", json={"amount": 1000})
            out["bad deposit"] = await client.post("/accounts/1/deposits", json={"amount": -5})
            out["broke"] = await client.post("/accounts/1/purchases", json={"amount": 5000})
            out["purchase unknown"] = await client.post("/accounts/2/purchases", json={"amount": 1})
            buys = [
                client.post("/accounts/1/purchases", json={"amount": 10}) for _ in range(ORDERS)
            ]
            out["buys"] = []
            for start in range(0, ORDERS, CONCURRENT):
                out["buys"] += await asyncio.gather(*buys[start : start + CONCURRENT])
            out["account"] = await client.get("/accounts/1")
            out["sales"] = await client.get("/sales")
            out["close"] = await client.post("/accounts/1/close")
            out["after close"] = await client.post("/accounts/1/deposits", json={"amount": 1})
            return out

    out = asyncio.run(asyncio.wait_for(drive(), TIMEOUT))
    assert out["missing"].status_code == 404
    assert out["missing"].json()["error"] == "NotFoundError"
    assert out["deposit"].status_code == 200
    assert out["deposit"].json() == {"id": 1, "balance": 1000, "closed": False, "points": 0}
    assert out["bad deposit"].status_code == 422
    assert "must be positive" in out["bad deposit"].json()["detail"]
    assert out["broke"].status_code == 422
    assert out["broke"].json()["error"] == "EventRejected"
    assert out["purchase unknown"].status_code == 404
    assert [r.status_code for r in out["buys"]] == [200] * ORDERS  # no 409 on the hot spot
    assert out["account"].json() == {
        "id": 1,
        "balance": 1000 - 10 * ORDERS,
        "closed": False,
        "points": ORDERS,  # each purchase's points rode in its commit (a fired hook)
    }
    assert out["sales"].json() == {"id": None, "orders": ORDERS, "total": 10 * ORDERS}
    assert out["close"].status_code == 200 and out["close"].json()["closed"] is True
    assert out["after close"].status_code == 422
    assert out["after close"].json()["error"] == "StateCompleted"
