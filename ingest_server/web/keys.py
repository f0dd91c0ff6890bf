"""Typed keys of application and request state."""

from __future__ import annotations

from aiohttp import web

from ingest_server.logs import RateLimitedCounter
from ingest_server.services.container import Services
from ingest_server.services.context import RequestContext
from ingest_server.web.metrics import Metrics

SERVICES_KEY = web.AppKey("services", Services)
METRICS_KEY = web.AppKey("metrics", Metrics)
AUTH_FAILURES_KEY = web.AppKey("auth_failures", RateLimitedCounter)

_CONTEXT = web.RequestKey("testoqa_context", RequestContext)
_REQUEST_ID = web.RequestKey("testoqa_request_id", str)
LOG_FIELDS_KEY = web.RequestKey("testoqa_log_fields", dict[str, str])


def set_context(request: web.Request, ctx: RequestContext) -> None:
    request[_CONTEXT] = ctx


def get_context(request: web.Request) -> RequestContext:
    return request[_CONTEXT]


def set_request_id(request: web.Request, request_id: str) -> None:
    request[_REQUEST_ID] = request_id


def get_request_id(request: web.Request) -> str:
    request_id: str = request.get(_REQUEST_ID, "-")
    return request_id
