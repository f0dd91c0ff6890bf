"""Middlewares: the request boundary (id, errors, logs, metrics) and the RequestContext."""

from __future__ import annotations

import re
import time
import uuid

from aiohttp import web
from aiohttp.typedefs import Handler

from ingest_server.logs import access_logger, request_fields, server_logger
from ingest_server.services.auth import parse_bearer
from ingest_server.services.context import ANONYMOUS, Principal, RequestContext
from ingest_server.services.errors import ServiceError, Unauthenticated
from ingest_server.web.errors import error_response, from_http_exception, status_for
from ingest_server.web.keys import (
    AUTH_FAILURES_KEY,
    LOG_FIELDS_KEY,
    METRICS_KEY,
    SERVICES_KEY,
    get_request_id,
    set_context,
    set_request_id,
)

REQUEST_ID_HEADER = "X-Request-ID"
REQUEST_ID_PATTERN = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


def request_id_for(request: web.Request) -> str:
    """Return the client's X-Request-ID when well-formed, else a new id."""
    supplied = request.headers.get(REQUEST_ID_HEADER, "")
    if REQUEST_ID_PATTERN.match(supplied):
        return supplied
    return uuid.uuid4().hex


def route_label(request: web.Request) -> str:
    """Return the matched route's path template, so metrics stay low in cardinality."""
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "unmatched"


@web.middleware
async def boundary_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Give the request an id, turn every failure into the error envelope, log and count it."""
    request_id = request_id_for(request)
    set_request_id(request, request_id)
    token = request_fields.set((("request_id", request_id),))
    started = time.perf_counter()
    try:
        response = await _answer(request, handler, request_id)
    finally:
        request_fields.reset(token)
    response.headers[REQUEST_ID_HEADER] = request_id
    _observe(request, response, time.perf_counter() - started, request_id)
    return response


async def _answer(request: web.Request, handler: Handler, request_id: str) -> web.StreamResponse:
    try:
        return await handler(request)
    except ServiceError as exc:
        return error_response(status_for(exc), exc.code, exc.message, request_id, exc.details)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return from_http_exception(exc, request_id)
    except Exception:
        server_logger.exception(
            "unexpected error while handling %s %s", request.method, request.path
        )
        return error_response(
            500,
            "internal_error",
            f"internal server error; quote request id {request_id}",
            request_id,
        )


def _observe(
    request: web.Request, response: web.StreamResponse, elapsed: float, request_id: str
) -> None:
    metrics = request.app[METRICS_KEY]
    route = route_label(request)
    metrics.requests.labels(request.method, route, str(response.status)).inc()
    metrics.latency.labels(request.method, route).observe(elapsed)
    ctx_fields = request.get(LOG_FIELDS_KEY, {})
    access_logger.info(
        '"%s %s" %d %.1fms',
        request.method,
        request.rel_url.path,
        response.status,
        elapsed * 1000,
        extra={
            "request_id": request_id,
            "project_id": ctx_fields.get("project_id", "-"),
            "principal": ctx_fields.get("principal", "-"),
        },
    )


@web.middleware
async def context_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Resolve who is calling and on which project before any handler runs."""
    services = request.app[SERVICES_KEY]
    project_key = request.match_info.get("key")
    principal = ANONYMOUS
    if project_key is not None:
        principal = await _authenticate(request)
    scope = None
    if project_key is not None:
        scope = await services.auth.resolve_scope(principal, project_key)
    ctx = RequestContext(
        request_id=get_request_id(request),
        principal=principal,
        project_key=project_key,
        project=scope,
        base_url=services.settings.public_url or f"{request.scheme}://{request.host}",
    )
    fields = ctx.log_fields()
    request[LOG_FIELDS_KEY] = fields
    request_fields.set(tuple(fields.items()))
    set_context(request, ctx)
    return await handler(request)


async def _authenticate(request: web.Request) -> Principal:
    services = request.app[SERVICES_KEY]
    try:
        token = parse_bearer(request.headers.get("Authorization"))
        return await services.auth.authenticate_token(token)
    except Unauthenticated as exc:
        request.app[METRICS_KEY].auth_failures.inc()
        request.app[AUTH_FAILURES_KEY].record(
            "authentication failed for %s %s from %s: %s",
            request.method,
            request.rel_url.path,
            request.remote,
            exc.message,
        )
        raise
