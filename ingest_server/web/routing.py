"""The route declaration shared by every API module: one Route feeds aiohttp and OpenAPI."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aiohttp import web
from pydantic import BaseModel

from ingest_server.services.authz import Action
from ingest_server.services.context import RequestContext
from ingest_server.web.keys import get_context

ApiHandler = Callable[[web.Request, RequestContext], Awaitable[web.StreamResponse]]

PROJECT = "/api/v1/projects/{key}"


@dataclass(frozen=True)
class QueryParam:
    name: str
    schema: dict[str, object]
    description: str


@dataclass(frozen=True)
class Route:
    """One API route: what it takes, what it returns and which action it needs."""

    method: str
    path: str
    handler: ApiHandler
    name: str
    summary: str
    # None for a route outside any project, such as the caller's project
    # list. The service of such a route checks the principal itself.
    action: Action | None
    response: type[BaseModel]
    request: type[BaseModel] | None = None
    status: int = 200
    query: tuple[QueryParam, ...] = ()
    extra_statuses: tuple[int, ...] = field(default=())
    # True when the route also returns text/csv for ?format=csv.
    csv: bool = False


LIMIT = QueryParam(
    "limit", {"type": "integer", "minimum": 1, "maximum": 500, "default": 50}, "Items per page."
)
CURSOR = QueryParam("cursor", {"type": "string"}, "The next_cursor of the previous page.")


def bind(route: Route) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def handle(request: web.Request) -> web.StreamResponse:
        ctx = get_context(request)
        # Authorize before the body is read, so a project the caller may not
        # see is a 404 whatever the body contains. The service checks again.
        if route.action is not None:
            ctx.require(route.action)
        return await route.handler(request, ctx)

    handle.__name__ = route.name
    return handle
