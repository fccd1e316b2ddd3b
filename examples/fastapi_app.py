"""playthrough in a FastAPI app, with the sync engine in FastAPI's thread pool.

Run it (``pip install 'playthrough[web]'``)::

    PLAYTHROUGH_URL=sqlite:///bank.db uvicorn examples.fastapi_app:app

- The store is opened once, in the app's lifespan (``playthrough.connect``), and
  closed at shutdown; it is shared by every request.
- A dependency gives each request its own engine (``engine_per_request``); it
  discards what the request left uncommitted and closes the engine.
- Endpoints are plain ``def`` functions: FastAPI runs them in its thread pool,
  so the sync engine's blocking I/O never blocks the event loop. Each one that
  writes commits through ``engine.retry`` (a conflict re-runs the work on fresh
  states) before it answers, so the answer says what is stored.
- Errors map to status codes in one place (``add_error_handlers``): a refused
  event (``EventRejected``, and ``StateCompleted``, its subclass) is 422, a
  conflict ``retry`` could not resolve is 409, an unknown id (``load_or_fail``)
  is 404. A ``handle`` hook that fails after a commit does not turn the answer
  into a 500: the commit stands, the failure is logged and stays pending for
  ``playthrough handlers``.
- States are returned as JSON with ``playthrough.asdict``.

The same routes, as ``async def`` endpoints on the async engine
(``playthrough.aio``), are served under ``/async`` (``async_routes``): the
lifespan opens an async store on the same URL beside the sync one, a
dependency yields an ``AsyncEngine`` per request, and the endpoints await it,
so no request holds a thread while it waits for the database. The domain, the
``fired`` hook and the error handlers are shared.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

import attrs
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

import playthrough
import playthrough.aio
from playthrough import Engine, Event, SingletonState, State, state_id
from playthrough.aio import AsyncEngine
from playthrough.errors import ConcurrencyError, EventRejected, NotFoundError

# ---------------------------------------------------------------------- the domain


@attrs.define
class Account(State, type_name="web.Account"):
    balance: int = 0
    closed: bool = False
    points: int = 0
    complete_when = "closed"


@attrs.define
class Sales(SingletonState, type_name="web.Sales"):
    """Touched by every order: the hot spot ``engine.retry`` carries writers through."""

    orders: int = 0
    total: int = 0


@attrs.define
class Deposited(Event, type_name="web.Deposited"):
    account_id: int = state_id(Account)
    amount: int = 0

    def validate(self, account: Account) -> None:
        if self.amount <= 0:
            raise EventRejected(f"a deposit must be positive, not {self.amount}")

    def apply(self, account: Account) -> None:
        account.balance += self.amount


@attrs.define
class PointsEarned(Event, type_name="web.PointsEarned"):
    account_id: int = state_id(Account)
    points: int = 0

    def apply(self, account: Account) -> None:
        account.points += self.points


@attrs.define
class Purchased(Event, type_name="web.Purchased"):
    account_id: int = state_id(Account)
    amount: int = 0

    def validate(self, account: Account) -> None:
        if account.balance < self.amount:
            raise EventRejected(f"insufficient funds: {account.balance} < {self.amount}")

    def apply(self, account: Account, sales: Sales) -> None:
        account.balance -= self.amount
        sales.orders += 1
        sales.total += self.amount

    def fired(self, engine: Engine) -> None:
        # Joins the purchase's commit: points are never missing for a stored purchase.
        engine.fire(PointsEarned(account_id=self.account_id, points=self.amount // 10))


@attrs.define
class Closed(Event, type_name="web.Closed"):
    account_id: int = state_id(Account)

    def apply(self, account: Account) -> None:
        account.closed = True


# ---------------------------------------------------------------------- the web layer


class Amount(BaseModel):
    amount: int


def engine_per_request(request: Request) -> Iterator[Engine]:
    """One engine per request, over the store the lifespan opened."""
    store = request.app.state.store
    engine = store.engine()
    try:
        yield engine
    finally:
        engine.discard()  # whatever an endpoint left uncommitted (it raised)
        engine.close()


EngineDep = Annotated[Engine, Depends(engine_per_request)]

sync_routes = APIRouter()


@sync_routes.get("/accounts/{account_id}")
def get_account(account_id: int, engine: EngineDep) -> dict[str, Any]:
    return playthrough.asdict(engine.load_or_fail(Account, account_id))


@sync_routes.post("/accounts/{account_id}/deposits")
def deposit(account_id: int, body: Amount, engine: EngineDep) -> dict[str, Any]:
    engine.retry(lambda e: e.fire(Deposited(account_id=account_id, amount=body.amount)))
    return playthrough.asdict(engine.load(Account, account_id))


@sync_routes.post("/accounts/{account_id}/purchases")
def purchase(account_id: int, body: Amount, engine: EngineDep) -> dict[str, Any]:
    def work(e: Engine) -> None:
        e.load_or_fail(Account, account_id)
        e.fire(Purchased(account_id=account_id, amount=body.amount))

    engine.retry(work)
    return playthrough.asdict(engine.load(Account, account_id))


@sync_routes.post("/accounts/{account_id}/close")
def close_account(account_id: int, engine: EngineDep) -> dict[str, Any]:
    def work(e: Engine) -> None:
        e.load_or_fail(Account, account_id)
        e.fire(Closed(account_id=account_id))

    engine.retry(work)
    return playthrough.asdict(engine.load(Account, account_id))


@sync_routes.get("/sales")
def get_sales(engine: EngineDep) -> dict[str, Any]:
    return playthrough.asdict(engine.load(Sales))


async def async_engine_per_request(request: Request) -> AsyncIterator[AsyncEngine]:
    """One async engine per request, over the async store the lifespan opened."""
    engine = request.app.state.async_store.engine()
    try:
        yield engine
    finally:
        engine.discard()
        engine.close()


AsyncEngineDep = Annotated[AsyncEngine, Depends(async_engine_per_request)]

async_routes = APIRouter(prefix="/async")


@async_routes.get("/accounts/{account_id}")
async def get_account_async(account_id: int, engine: AsyncEngineDep) -> dict[str, Any]:
    return playthrough.asdict(await engine.load_or_fail(Account, account_id))


@async_routes.post("/accounts/{account_id}/deposits")
async def deposit_async(account_id: int, body: Amount, engine: AsyncEngineDep) -> dict[str, Any]:
    async def work(e: AsyncEngine) -> None:
        await e.fire(Deposited(account_id=account_id, amount=body.amount))

    await engine.retry(work)
    return playthrough.asdict(await engine.load(Account, account_id))


@async_routes.post("/accounts/{account_id}/purchases")
async def purchase_async(account_id: int, body: Amount, engine: AsyncEngineDep) -> dict[str, Any]:
    async def work(e: AsyncEngine) -> None:
        await e.load_or_fail(Account, account_id)
        await e.fire(Purchased(account_id=account_id, amount=body.amount))

    await engine.retry(work)
    return playthrough.asdict(await engine.load(Account, account_id))


@async_routes.post("/accounts/{account_id}/close")
async def close_account_async(account_id: int, engine: AsyncEngineDep) -> dict[str, Any]:
    async def work(e: AsyncEngine) -> None:
        await e.load_or_fail(Account, account_id)
        await e.fire(Closed(account_id=account_id))

    await engine.retry(work)
    return playthrough.asdict(await engine.load(Account, account_id))


@async_routes.get("/sales")
async def get_sales_async(engine: AsyncEngineDep) -> dict[str, Any]:
    return playthrough.asdict(await engine.load(Sales))


def add_error_handlers(app: FastAPI) -> None:
    """The library's errors as HTTP answers (the same for sync and async routes)."""

    def answer(status: int) -> Any:
        async def handler(request: Request, exc: Exception) -> JSONResponse:
            return JSONResponse({"error": type(exc).__name__, "detail": str(exc)}, status)

        return handler

    app.add_exception_handler(EventRejected, answer(422))  # StateCompleted too
    app.add_exception_handler(ConcurrencyError, answer(409))  # after retry's attempts
    app.add_exception_handler(NotFoundError, answer(404))


def create_app(url: str | None = None, **options: Any) -> FastAPI:
    """The app over the store at ``url`` (``None``: ``PLAYTHROUGH_URL``, read at startup).

    ``options`` go to ``playthrough.connect`` (on PostgreSQL, size the pool to the
    thread pool: ``max_size=40``, FastAPI's default).
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.store = playthrough.connect(url, **options)
        try:
            app.state.async_store = await playthrough.aio.connect(url, **options)
        except BaseException:
            app.state.store.close()
            raise
        try:
            yield
        finally:
            await app.state.async_store.close()
            app.state.store.close()

    app = FastAPI(title="playthrough bank", lifespan=lifespan)
    add_error_handlers(app)
    app.include_router(sync_routes)
    app.include_router(async_routes)
    return app


app = create_app()
