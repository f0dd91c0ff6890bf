"""The aiohttp application factory."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from ingest_server.logs import RateLimitedCounter, auth_logger, server_logger
from ingest_server.services.container import Services
from ingest_server.web import live, pages_auth, pages_runs, pages_trends
from ingest_server.web.keys import AUTH_FAILURES_KEY, METRICS_KEY, SERVICES_KEY
from ingest_server.web.metrics import Metrics
from ingest_server.web.middlewares import boundary_middleware, context_middleware
from ingest_server.web.routes import add_api_routes
from ingest_server.web.system import add_system_routes
from ingest_server.web.templating import setup_templates


def create_app(services: Services) -> web.Application:
    """Build the application around services; closing the app closes the database."""
    app = web.Application(
        middlewares=[boundary_middleware, context_middleware],
        client_max_size=services.settings.max_body_bytes,
    )
    app[SERVICES_KEY] = services
    app[METRICS_KEY] = Metrics(services.pool_status)
    app[AUTH_FAILURES_KEY] = RateLimitedCounter(auth_logger)
    add_api_routes(app)
    add_system_routes(app)
    setup_templates(app)
    pages_auth.add_routes(app)
    pages_runs.add_routes(app)
    pages_trends.add_routes(app)
    live.add_routes(app)
    app.cleanup_ctx.append(_database_lifecycle)
    app.cleanup_ctx.append(_live_lifecycle)
    return app


async def _database_lifecycle(app: web.Application) -> AsyncIterator[None]:
    server_logger.info("serving with database %s", app[SERVICES_KEY].database.dialect)
    yield
    await app[SERVICES_KEY].close()
    server_logger.info("database connections closed")


async def _live_lifecycle(app: web.Application) -> AsyncIterator[None]:
    # Listening for run events starts before the first request, so a live
    # page never misses the events of a change made after it connected.
    live_service = app[SERVICES_KEY].live
    await live_service.start()
    yield
    await live_service.close()
