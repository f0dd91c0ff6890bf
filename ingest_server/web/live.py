"""Live run updates streamed to browsers as Server-Sent Events.

``GET /projects/{key}/runs/{run}/events`` sends a ``progress`` event with the
run's current progress on connect and after each change (at most one per
live interval), then one ``finished`` event once the run has settled
(status finished or interrupted), and closes the stream. Each event's data
is a JSON object: ``run_id``, ``status``, ``counts`` (tests by final
outcome), ``done`` (tests with a final outcome) and ``collected`` (null when
unknown). A comment line keeps an idle stream open.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator

from aiohttp import web
from aiohttp_sse import EventSourceResponse, sse_response

from ingest_server.services.context import RequestContext
from ingest_server.services.live import LiveService, Progress, TooManyStreams
from ingest_server.web.api import path_uuid
from ingest_server.web.errors import RequestError
from ingest_server.web.keys import SERVICES_KEY, get_context
from ingest_server.web.requests import check_query

EVENTS_PATH = "/projects/{key}/runs/{run}/events"
# Milliseconds a browser waits before it reconnects a dropped stream.
RECONNECT_DELAY_MS = 5_000


def add_routes(app: web.Application) -> None:
    """Register this module's routes."""
    # HEAD is left out: an event stream has no headers-only form.
    app.router.add_get(EVENTS_PATH, run_events, name="run_events", allow_head=False)
    app.on_shutdown.append(_end_streams)


async def run_events(request: web.Request) -> web.StreamResponse:
    """Stream one run's progress until the run settles or the browser disconnects."""
    ctx = get_context(request)
    check_query(request, ())
    run_id = path_uuid(request, "run")
    services = request.app[SERVICES_KEY]
    async with contextlib.AsyncExitStack() as stack:
        readings = await _watch(stack, services.live, ctx, run_id)
        # The first reading comes before the response starts, so a failure
        # is still an HTTP error rather than an empty stream.
        first = await anext(readings, None)
        if first is None:
            raise RequestError(
                503,
                "live_unavailable",
                "live progress of this run is unavailable right now: reload the page later",
            )
        async with sse_response(
            request, ping_interval=services.settings.live_ping_interval
        ) as stream:
            await _send(stream, first, retry=RECONNECT_DELAY_MS)
            if not first.settled:
                await _forward_until_closed(stream, readings)
        return stream


async def _watch(
    stack: contextlib.AsyncExitStack, live: LiveService, ctx: RequestContext, run_id: uuid.UUID
) -> AsyncIterator[Progress]:
    try:
        return await stack.enter_async_context(live.watch(ctx, run_id))
    except TooManyStreams as exc:
        raise RequestError(503, exc.code, exc.message) from exc


async def _send(stream: EventSourceResponse, progress: Progress, retry: int | None = None) -> None:
    event = "finished" if progress.settled else "progress"
    await stream.send(json.dumps(progress.as_dict()), event=event, retry=retry)


async def _send_all(stream: EventSourceResponse, readings: AsyncIterator[Progress]) -> None:
    async for progress in readings:
        await _send(stream, progress)


async def _forward_until_closed(
    stream: EventSourceResponse, readings: AsyncIterator[Progress]
) -> None:
    """Send readings until they end or the browser disconnects, whichever is first.

    A disconnect shows when a keep-alive comment fails, so a stream of a
    quiet run is released within one ping interval of the browser leaving.
    """
    sending = asyncio.create_task(_send_all(stream, readings))
    closed = asyncio.create_task(stream.wait())
    try:
        await asyncio.wait((sending, closed), return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (sending, closed):
            task.cancel()
        results = await asyncio.gather(sending, closed, return_exceptions=True)
    error = results[0]
    # A browser that left mid-send is the normal end of a stream, not a failure.
    if isinstance(error, Exception) and not isinstance(error, ConnectionError | TimeoutError):
        raise error


async def _end_streams(app: web.Application) -> None:
    # Open streams would hold the server's shutdown until its timeout.
    app[SERVICES_KEY].live.end_streams()
