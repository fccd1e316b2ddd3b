"""A local, read-only inspector: the log, events, states, plans, followers, schedule.

``playthrough serve URL --app MODULE`` (or :func:`serve`) starts it; it needs
the ``inspect`` extra (``pip install 'playthrough[inspect]'``: Starlette and
uvicorn). Pages are rendered on the server, pictures are inline SVG drawn in
Python, and the one stylesheet ships in this package: no JavaScript, no CDN,
no network. JSON under ``/api/``:

- ``GET /api/events?after=&limit=&type=&state=TYPE:ID&correlation=``
- ``GET /api/events/{position}`` (with ``causes``, root first, and ``effects``, a tree)
- ``GET /api/states/{type}/{id}`` (value, info, completion; a singleton's id is ``-``)
- ``GET /api/states/{type}/{id}/history``
- ``GET /api/states/{type}/{id}/plan`` (``nodes``, ``edges``, ``rewound``; ``?at=P``)
- ``GET /api/followers``, ``GET /api/schedule``, ``GET /api/graph``

Refusals are ``{"error": message, "status": code}`` with a 4xx status: 400 for
a bad parameter or id, 404 for an unknown type, position or state, 409 for a
read the store cannot answer (an archived range without the archive files).

It writes nothing: the store is opened with ``create=False`` and states are
read as of the head without writing heads values back. It has no
authentication: it binds to loopback by default, and a non-loopback host is
warned about. Personal fields read ``[personal]`` unless ``show_personal``, and
``[forgotten]`` after ``engine.admin.forget`` whatever the setting. The database
password never appears in a page or a response.
"""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, unquote, urlsplit

if TYPE_CHECKING:
    from starlette.applications import Starlette

    from .._connect import Connection
    from .._stores import Store

__all__ = ["create_app", "is_loopback", "serve", "url_secrets"]

_MISSING = "the inspector needs Starlette and uvicorn: pip install 'playthrough[inspect]'"


def create_app(
    store: Store | Connection,
    *,
    show_personal: bool = False,
    modules: tuple[str, ...] = (),
    title: str = "",
    secrets: tuple[str, ...] = (),
) -> Starlette:
    """The inspector's ASGI app over an open store (see the module doc)."""
    try:
        from ._app import create_app as make
    except ImportError as exc:  # pragma: no cover - the extra is in dev
        raise ImportError(_MISSING) from exc
    from .._stores import Store

    if not isinstance(store, Store):  # a Connection (playthrough.connect): its store
        store = store.store
    return make(store, show_personal=show_personal, modules=modules, title=title, secrets=secrets)


def url_secrets(url: str) -> tuple[str, ...]:
    """The password a store URL carries (user info or ``password=``), to keep out of answers."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return ()
    found = []
    userinfo, at, _ = parts.netloc.rpartition("@")
    if at and ":" in userinfo:
        found.append(userinfo.partition(":")[2])
        found.append(unquote(userinfo.partition(":")[2]))
    for name, value in parse_qsl(parts.query):
        if name == "password":
            found.append(value)
    return tuple(dict.fromkeys(s for s in found if s))


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def serve(
    url: str,
    *,
    host: str = "127.0.0.1",
    port: int = 8765,
    show_personal: bool = False,
    modules: tuple[str, ...] = (),
) -> None:
    """Open the store read-only and serve the inspector until interrupted."""
    try:
        import uvicorn
    except ImportError as exc:
        raise ImportError(_MISSING) from exc
    from .._connect import connect
    from .._stores import parse_store_url

    store = connect(url, create=False)
    try:
        app = create_app(
            store,
            show_personal=show_personal,
            modules=modules,
            title=parse_store_url(url).redacted(),
            secrets=url_secrets(url),
        )
        uvicorn.run(app, host=host, port=port, log_level="warning")
    finally:
        store.close()
