"""Typed keys of application and request state."""

from __future__ import annotations

from typing import cast

from aiohttp import web

from ingest_server.logs import RateLimitedCounter
from ingest_server.services.container import Services
from ingest_server.services.context import RequestContext
from ingest_server.web.metrics import Metrics

SERVICES_KEY = web.AppKey("services", Services)
METRICS_KEY = web.AppKey("metrics", Metrics)
AUTH_FAILURES_KEY = web.AppKey("auth_failures", RateLimitedCounter)

_CONTEXT = "testoqa_context"
_REQUEST_ID = "testoqa_request_id"


def set_context(request: web.Request, ctx: RequestContext) -> None:
    request[_CONTEXT] = ctx


def get_context(request: web.Request) -> RequestContext:
    return cast(RequestContext, request[_CONTEXT])


def set_request_id(request: web.Request, request_id: str) -> None:
    request[_REQUEST_ID] = request_id


def get_request_id(request: web.Request) -> str:
    return cast(str, request.get(_REQUEST_ID, "-"))
