"""System routes: liveness, readiness, metrics and the OpenAPI document."""

from __future__ import annotations

import json

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ingest_server.logs import database_logger
from ingest_server.web.keys import METRICS_KEY, SERVICES_KEY
from ingest_server.web.openapi import build_openapi

OPENAPI_KEY = web.AppKey("openapi_body", bytes)


async def healthz(request: web.Request) -> web.Response:
    """Return 200 while the process serves requests."""
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """Return 200 when the database is reachable and its schema is current, else 503."""
    try:
        state = await request.app[SERVICES_KEY].schema_state()
    except Exception as exc:  # any driver error means "not ready", with the reason shown
        database_logger.warning("readiness check failed: %s", exc)
        return web.json_response(
            {"status": "unavailable", "database": "unreachable", "error": type(exc).__name__},
            status=503,
        )
    if not state.is_current:
        return web.json_response(
            {
                "status": "unavailable",
                "database": "reachable",
                "schema": "outdated",
                "current": list(state.current),
                "expected": state.head,
            },
            status=503,
        )
    return web.json_response({"status": "ok", "database": "reachable", "schema": state.head})


async def metrics(request: web.Request) -> web.Response:
    registry = request.app[METRICS_KEY].registry
    response = web.Response(body=generate_latest(registry))
    response.headers["Content-Type"] = CONTENT_TYPE_LATEST
    return response


async def openapi(request: web.Request) -> web.Response:
    return web.Response(body=request.app[OPENAPI_KEY], content_type="application/json")


def add_system_routes(app: web.Application) -> None:
    app[OPENAPI_KEY] = json.dumps(build_openapi(), indent=2).encode()
    app.router.add_get("/healthz", healthz, name="healthz")
    app.router.add_get("/readyz", readyz, name="readyz")
    app.router.add_get("/metrics", metrics, name="metrics")
    app.router.add_get("/api/v1/openapi.json", openapi, name="openapi")
