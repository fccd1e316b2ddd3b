"""The Starlette app: routes to ``_api`` (JSON under ``/api/``) and ``_pages`` (HTML).

Every handler is a plain function (Starlette runs it in its thread pool) that
opens one short engine on the shared store. A refusal is JSON ``{"error": ...}``
(API) or an HTML page (pages) with its 4xx status; anything unexpected is a 500
saying only the error's type, logged with its traceback on the server side,
never sent. Every text that leaves the app passes ``scrub``: the database
password never does.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from importlib import resources
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from .._engine import Engine
from .._stores import Store
from . import _pages
from ._api import REFUSALS, Api, ApiError

__all__ = ["create_app"]

_log = logging.getLogger("playthrough.inspect")


def _status_of(exc: Exception) -> int | None:
    if isinstance(exc, ApiError):
        return exc.status
    for kind, status in REFUSALS:
        if isinstance(exc, kind):
            return status
    return None


def create_app(
    store: Store,
    *,
    show_personal: bool = False,
    modules: tuple[str, ...] = (),
    title: str = "",
    secrets: tuple[str, ...] = (),
) -> Starlette:
    """The inspector over an open store (read-only; the caller closes the store).

    ``modules``: the --app modules (the coupling graph shows their classes);
    ``title``: the store as shown (a URL without its password); ``secrets``:
    texts never to send (the password), replaced by ``***``.
    """
    api = Api(lambda: Engine(store), show_personal=show_personal, modules=modules)
    hidden = tuple(s for s in secrets if s)

    def scrub(text: str) -> str:
        for secret in hidden:
            text = text.replace(secret, "***")
        return text

    def refused(exc: Exception, as_json: bool) -> Response:
        status = _status_of(exc)
        if status is None:
            _log.error("inspector: %s failed", type(exc).__name__, exc_info=exc)
            status, message = 500, f"internal error ({type(exc).__name__}); see the server's log"
        else:
            message = exc.message if isinstance(exc, ApiError) else str(exc)
        message = scrub(message)
        if as_json:
            return JSONResponse({"error": message, "status": status}, status_code=status)
        return HTMLResponse(scrub(_pages.error_page(title, status, message)), status_code=status)

    def json_route(fn: Callable[[Request], Any]) -> Callable[[Request], Response]:
        def endpoint(request: Request) -> Response:
            try:
                data = fn(request)
            except Exception as exc:  # noqa: BLE001 - every failure becomes a JSON answer
                return refused(exc, as_json=True)
            text = scrub(json.dumps(data, ensure_ascii=False))
            return Response(text, media_type="application/json")

        return endpoint

    def page_route(fn: Callable[[Request], str]) -> Callable[[Request], Response]:
        def endpoint(request: Request) -> Response:
            try:
                html = fn(request)
            except Exception as exc:  # noqa: BLE001 - every failure becomes an error page
                return refused(exc, as_json=False)
            return HTMLResponse(scrub(html))

        return endpoint

    def state_id(request: Request) -> str | None:
        """The id in the path; a singleton's is ``-`` (or none): its type decides."""
        ident: str | None = request.path_params.get("id")
        if ident in (None, "-") and _is_singleton(api.state_class(request.path_params["type"])):
            return None
        return ident

    def params(request: Request) -> dict[str, str]:
        return {k: v for k, v in request.query_params.items()}

    routes = [
        Route("/", lambda request: RedirectResponse("/log")),
        Route("/static/style.css", _stylesheet),
        # ------------------------------------------------------------ JSON API
        Route(
            "/api/events",
            json_route(lambda r: api.events(params(r), r.query_params.getlist("type"))),
        ),
        Route("/api/events/{position}", json_route(lambda r: api.event(r.path_params["position"]))),
        Route("/api/states/{type}", json_route(lambda r: api.state(r.path_params["type"], None))),
        Route(
            "/api/states/{type}/{id}",
            json_route(lambda r: api.state(r.path_params["type"], state_id(r))),
        ),
        Route(
            "/api/states/{type}/{id}/history",
            json_route(lambda r: api.history(r.path_params["type"], state_id(r))),
        ),
        Route(
            "/api/states/{type}/{id}/plan",
            json_route(
                lambda r: api.plan(r.path_params["type"], state_id(r), r.query_params.get("at"))
            ),
        ),
        Route("/api/followers", json_route(lambda r: api.followers())),
        Route("/api/schedule", json_route(lambda r: api.schedule())),
        Route("/api/graph", json_route(lambda r: api.graph())),
        Route("/api/{rest:path}", json_route(_no_such_resource)),
        # ------------------------------------------------------------ pages
        Route("/log", page_route(lambda r: _pages.log_page(api, title, r))),
        Route(
            "/events/{position}",
            page_route(lambda r: _pages.event_page(api, title, r.path_params["position"])),
        ),
        Route(
            "/states/{type}",
            page_route(lambda r: _pages.state_page(api, title, r.path_params["type"], None)),
        ),
        Route(
            "/states/{type}/{id}",
            page_route(lambda r: _pages.state_page(api, title, r.path_params["type"], state_id(r))),
        ),
        Route("/followers", page_route(lambda r: _pages.followers_page(api, title))),
        Route("/schedule", page_route(lambda r: _pages.schedule_page(api, title))),
        Route("/verify", page_route(lambda r: _pages.verify_page(api, title))),
        Route("/graph", page_route(lambda r: _pages.graph_page(api, title))),
    ]
    return Starlette(routes=routes)


def _is_singleton(cls: type) -> bool:
    from .._model import SingletonState

    return issubclass(cls, SingletonState)


def _no_such_resource(request: Request) -> Any:
    raise ApiError(404, f"no API resource {request.url.path!r}; see the inspector's README section")


def _stylesheet(request: Request) -> Response:
    css = resources.files("playthrough.inspect").joinpath("static/style.css").read_text()
    return Response(css, media_type="text/css")
