"""Live run updates: the event stream of a run page, and the run event bus under it.

Stream tests call the real app through ``client`` on SQLite (memory bus)
and PostgreSQL (LISTEN/NOTIFY bus). The bus tests on PostgreSQL use a real
server and cut the listening connection from outside.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable
from html.parser import HTMLParser
from types import SimpleNamespace
from typing import Any

import aiohttp
import aiohttp_jinja2
import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from conftest import PostgresServer
from ingest_server.config import Settings
from ingest_server.db.engine import Database
from ingest_server.db.notify import CHANNEL, RECONNECTED, PostgresBus, RunEvent
from ingest_server.services.container import Services
from ingest_server.web.templating import setup_templates
from tests.conftest import Tenant, _clone_postgres, sign_in
from tests.live_events import StreamClosed, next_event, read_until_closed
from tests.test_api_executions import at, execution, post_executions, project_url, start_run

Client = TestClient[Any, Any]

OUTCOMES = ("passed", "failed", "error", "skipped", "xfailed", "xpassed")
WAIT_TIMEOUT = 15.0


@pytest.fixture
def settings(database_url: str) -> Settings:
    # A short interval and ping keep the tests fast. The defaults are 0.5 s and 15 s.
    return Settings(database_url=database_url, live_interval=0.05, live_ping_interval=0.2)


def events_url(tenant: Tenant, run_id: str) -> str:
    return f"/projects/{tenant.key}/runs/{run_id}/events"


def counts(**nonzero: int) -> dict[str, int]:
    return {outcome: nonzero.get(outcome, 0) for outcome in OUTCOMES}


async def finish(client: Client, tenant: Tenant, run_id: str) -> None:
    response = await client.post(
        f"{project_url(tenant)}/runs/{run_id}/finish",
        json={"status": "finished", "finished_at": at(60)},
        headers=tenant.auth(),
    )
    assert response.status == 200, await response.text()


async def wait_until(condition: Callable[[], bool]) -> None:
    """Wait for a condition of server state that has no event of its own to await."""
    deadline = time.monotonic() + WAIT_TIMEOUT
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


class _ErrorMessage(HTMLParser):
    """Collect the text of the error page's ``<p class="error-message">``."""

    def __init__(self) -> None:
        super().__init__()
        self.inside = False
        self.text = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "p" and ("class", "error-message") in attrs:
            self.inside = True

    def handle_endtag(self, tag: str) -> None:
        if tag == "p":
            self.inside = False

    def handle_data(self, data: str) -> None:
        if self.inside:
            self.text += data


def error_message(html: str) -> str:
    parser = _ErrorMessage()
    parser.feed(html)
    return parser.text


class Stream:
    """Open event streams of a test, closed when it ends."""

    def __init__(self, client: Client) -> None:
        self._client = client
        self._responses: list[aiohttp.ClientResponse] = []

    async def open(
        self, tenant: Tenant, run_id: str, headers: dict[str, str] | None = None
    ) -> aiohttp.ClientResponse:
        response = await self._client.get(
            events_url(tenant, run_id),
            headers=tenant.auth("viewer") if headers is None else headers,
        )
        self._responses.append(response)
        return response

    def close_all(self) -> None:
        for response in self._responses:
            response.close()


@pytest.fixture
async def streams(client: Client) -> AsyncIterator[Stream]:
    opened = Stream(client)
    yield opened
    opened.close_all()


# --- the stream ------------------------------------------------------------------


async def test_stream_starts_with_current_progress(
    client: Client, tenant_a: Tenant, streams: Stream
) -> None:
    run_id = await start_run(client, tenant_a, collected_count=3)
    response = await streams.open(tenant_a, run_id)
    assert response.status == 200
    assert response.content_type == "text/event-stream"
    event = await next_event(response)
    assert event.name == "progress"
    assert event.data == {
        "run_id": run_id,
        "status": "running",
        "counts": counts(),
        "done": 0,
        "collected": 3,
    }


async def test_batch_sends_new_counts(client: Client, tenant_a: Tenant, streams: Stream) -> None:
    run_id = await start_run(client, tenant_a, collected_count=4)
    response = await streams.open(tenant_a, run_id)
    await next_event(response)
    batch = [
        execution("t::a", "passed"),
        execution("t::b", "passed"),
        execution("t::c", "failed"),
    ]
    await post_executions(client, tenant_a, run_id, batch)
    event = await next_event(response)
    assert event.name == "progress"
    assert event.data["counts"] == counts(passed=2, failed=1)
    assert event.data["done"] == 3
    assert event.data["collected"] == 4


async def test_rerun_counts_final_attempt(
    client: Client, tenant_a: Tenant, streams: Stream
) -> None:
    run_id = await start_run(client, tenant_a)
    response = await streams.open(tenant_a, run_id)
    await next_event(response)
    batch = [
        execution("t::flaky", "failed", attempt=1),
        execution("t::flaky", "passed", attempt=2, started=1),
    ]
    await post_executions(client, tenant_a, run_id, batch)
    event = await next_event(response)
    assert event.data["counts"] == counts(passed=1)
    assert event.data["done"] == 1


async def test_collected_cases_stand_in_for_count(
    client: Client, tenant_a: Tenant, streams: Stream
) -> None:
    run_id = await start_run(client, tenant_a)
    response = await streams.open(tenant_a, run_id)
    first = await next_event(response)
    assert first.data["collected"] is None
    cases = [{"key": f"t::case_{number}", "node_id": f"t::case_{number}"} for number in range(5)]
    reply = await client.put(
        f"{project_url(tenant_a)}/runs/{run_id}/cases",
        json={"cases": cases},
        headers=tenant_a.auth(),
    )
    assert reply.status == 200, await reply.text()
    event = await next_event(response)
    assert event.data["collected"] == 5


async def test_finish_sends_final_event_and_closes(
    client: Client, tenant_a: Tenant, streams: Stream
) -> None:
    run_id = await start_run(client, tenant_a, collected_count=1)
    response = await streams.open(tenant_a, run_id)
    await next_event(response)
    await post_executions(client, tenant_a, run_id, [execution("t::a", "error")])
    await next_event(response)
    await finish(client, tenant_a, run_id)
    remaining = await read_until_closed(response)
    assert [event.name for event in remaining] == ["finished"]
    assert remaining[0].data["status"] == "finished"
    assert remaining[0].data["counts"] == counts(error=1)


async def test_settled_run_sends_one_event(
    client: Client, tenant_a: Tenant, streams: Stream
) -> None:
    run_id = await start_run(client, tenant_a)
    await post_executions(client, tenant_a, run_id, [execution("t::a", "skipped")])
    await finish(client, tenant_a, run_id)
    response = await streams.open(tenant_a, run_id)
    events = await read_until_closed(response)
    assert [event.name for event in events] == ["finished"]
    assert events[0].data["counts"] == counts(skipped=1)


async def test_signed_in_member_watches(
    client: Client, services: Services, tenant_a: Tenant, streams: Stream
) -> None:
    await sign_in(client, services, tenant_a, role="viewer")
    run_id = await start_run(client, tenant_a)
    response = await streams.open(tenant_a, run_id, headers={})
    assert response.status == 200
    event = await next_event(response)
    assert event.data["run_id"] == run_id


async def test_burst_folds_into_one_event(
    client: Client, services: Services, tenant_a: Tenant, streams: Stream
) -> None:
    # Long enough for five batches to land while the feed pauses after an update.
    services.live.interval = 2.0
    run_id = await start_run(client, tenant_a)
    response = await streams.open(tenant_a, run_id)
    await next_event(response)
    await post_executions(client, tenant_a, run_id, [execution("t::first")])
    first = await next_event(response)
    assert first.data["done"] == 1
    for number in range(5):
        await post_executions(client, tenant_a, run_id, [execution(f"t::burst_{number}")])
    folded = await next_event(response)
    assert folded.data["done"] == 6


async def test_streams_of_one_run_share_a_feed(
    client: Client, services: Services, tenant_a: Tenant, streams: Stream
) -> None:
    run_id = await start_run(client, tenant_a)
    first = await streams.open(tenant_a, run_id)
    second = await streams.open(tenant_a, run_id)
    await next_event(first)
    await next_event(second)
    assert services.bus.subscriber_count == 1
    await post_executions(client, tenant_a, run_id, [execution("t::a", "xfailed")])
    for response in (first, second):
        event = await next_event(response)
        assert event.data["counts"] == counts(xfailed=1)


async def test_disconnect_releases_stream(
    client: Client, services: Services, tenant_a: Tenant, streams: Stream
) -> None:
    run_id = await start_run(client, tenant_a)
    response = await streams.open(tenant_a, run_id)
    await next_event(response)
    assert services.live.streams == 1
    response.close()
    # The server notices at its next keep-alive ping (0.2 s in these tests).
    await wait_until(lambda: services.live.streams == 0)
    assert services.bus.subscriber_count == 0


async def test_shutdown_ends_streams(
    client: Client, services: Services, tenant_a: Tenant, streams: Stream
) -> None:
    run_id = await start_run(client, tenant_a)
    response = await streams.open(tenant_a, run_id)
    await next_event(response)
    services.live.end_streams()
    with pytest.raises(StreamClosed):
        await next_event(response)


# --- limits and bad input ----------------------------------------------------------


async def test_stream_limit_answers_503(
    client: Client, services: Services, tenant_a: Tenant, streams: Stream
) -> None:
    services.live.max_streams = 1
    run_id = await start_run(client, tenant_a)
    first = await streams.open(tenant_a, run_id)
    await next_event(first)
    refused = await streams.open(tenant_a, run_id)
    assert refused.status == 503
    message = error_message(await refused.text())
    assert "serves at most 1 at once" in message


@pytest.mark.parametrize("run_id", ["not-a-uuid", str(uuid.uuid4())])
async def test_unknown_run_is_404(
    client: Client, tenant_a: Tenant, streams: Stream, run_id: str
) -> None:
    response = await streams.open(tenant_a, run_id)
    assert response.status == 404


async def test_unknown_query_parameter_is_422(
    client: Client, tenant_a: Tenant, streams: Stream
) -> None:
    run_id = await start_run(client, tenant_a)
    response = await client.get(
        events_url(tenant_a, run_id) + "?since=3", headers=tenant_a.auth("viewer")
    )
    assert response.status == 422
    assert "'since'" in error_message(await response.text())


async def test_other_project_is_404(
    client: Client, tenant_a: Tenant, tenant_b: Tenant, streams: Stream
) -> None:
    run_b = await start_run(client, tenant_b)
    # Project B's URL with project A's token.
    response = await streams.open(tenant_b, run_b, headers=tenant_a.auth("viewer"))
    assert response.status == 404


async def test_other_project_run_is_404(
    client: Client, tenant_a: Tenant, tenant_b: Tenant, streams: Stream
) -> None:
    run_b = await start_run(client, tenant_b)
    # Project A's URL and token with a run of project B.
    response = await streams.open(tenant_a, run_b)
    assert response.status == 404


# --- the PostgreSQL bus ------------------------------------------------------------


async def _listening_backends(admin: Any, database: str) -> list[int]:
    rows = await admin.fetch(
        "SELECT pid FROM pg_stat_activity WHERE datname = $1 AND query LIKE $2",
        database,
        f"LISTEN %{CHANNEL}%",
    )
    return [row["pid"] for row in rows]


@pytest.fixture
async def postgres_database(
    postgres_server: PostgresServer, postgres_template: str
) -> AsyncIterator[Database]:
    database = Database(await _clone_postgres(postgres_server, postgres_template))
    yield database
    await database.dispose()


@pytest.mark.postgres
async def test_bus_delivers_own_notify(postgres_database: Database) -> None:
    bus = PostgresBus(postgres_database)
    await bus.start()
    try:
        run_id = uuid.uuid4()
        with bus.subscribe(7, run_id) as subscription, bus.subscribe(8, run_id) as other:
            await bus.publish(7, run_id, "executions")
            async with asyncio.timeout(WAIT_TIMEOUT):
                kinds = await subscription.wait()
            assert kinds == {"executions"}
            # Project 8's subscriber wakes for its own event only.
            await bus.publish(8, run_id, "cases")
            async with asyncio.timeout(WAIT_TIMEOUT):
                other_kinds = await other.wait()
            assert other_kinds == {"cases"}
    finally:
        await bus.close()


@pytest.mark.postgres
async def test_bus_listens_again_after_drop(
    postgres_server: PostgresServer, postgres_database: Database
) -> None:
    bus = PostgresBus(postgres_database, first_delay=0.05)
    await bus.start()
    database_name = postgres_database.engine.url.database
    admin = await asyncpg.connect(postgres_server.url("postgres", driver="postgresql"))
    try:
        run_id = uuid.uuid4()
        with bus.subscribe(1, run_id) as subscription:
            [pid] = await _listening_backends(admin, database_name)
            assert await admin.fetchval("SELECT pg_terminate_backend($1)", pid)
            async with asyncio.timeout(WAIT_TIMEOUT):
                await bus.wait_for_connection(2)
                woken = await subscription.wait()
            assert woken == {RECONNECTED}
            await bus.publish(1, run_id, "finished")
            async with asyncio.timeout(WAIT_TIMEOUT):
                kinds = await subscription.wait()
            assert kinds == {"finished"}
    finally:
        await admin.close()
        await bus.close()


@pytest.mark.parametrize(
    "payload",
    ["", "1:2", "x:5b3e6f1e-7a55-4c1e-9d0c-5f1a2b3c4d5e:executions", "1:not-a-uuid:finished"],
)
def test_event_parse_rejects_malformed(payload: str) -> None:
    assert RunEvent.parse(payload) is None


def test_event_payload_round_trips() -> None:
    event = RunEvent(12, uuid.uuid4(), "cases")
    assert RunEvent.parse(event.payload()) == event


# --- the page partial ------------------------------------------------------------------


class _Elements(HTMLParser):
    """Collect each element's attributes and text, by tag, in document order."""

    def __init__(self) -> None:
        super().__init__()
        self.elements: list[tuple[str, dict[str, str | None], list[str]]] = []
        self._open: list[list[str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        text: list[str] = []
        self.elements.append((tag, dict(attrs), text))
        if tag not in ("script", "link", "meta", "input", "br"):
            self._open.append(text)

    def handle_endtag(self, tag: str) -> None:
        if self._open and tag not in ("script",):
            self._open.pop()

    def handle_data(self, data: str) -> None:
        for text in self._open:
            text.append(data)


def _render_partial(**context: Any) -> list[tuple[str, dict[str, str | None], list[str]]]:
    app = web.Application()
    setup_templates(app)
    html = aiohttp_jinja2.get_env(app).get_template("live/progress.html").render(**context)
    parser = _Elements()
    parser.feed(html)
    return parser.elements


def _by_attribute(
    elements: list[tuple[str, dict[str, str | None], list[str]]], name: str
) -> dict[str, str]:
    return {
        str(attrs[name]): "".join(text).strip()
        for _, attrs, text in elements
        if attrs.get(name) is not None
    }


def test_partial_shows_counts_at_render() -> None:
    run_id = uuid.uuid4()
    elements = _render_partial(
        run=SimpleNamespace(id=run_id, status="running", collected_count=10),
        totals={"passed": 4, "failed": 1},
        project_key="ALPHA",
    )
    [section] = [attrs for tag, attrs, _ in elements if attrs.get("id") == "live-progress"]
    assert section["data-events-url"] == f"/projects/ALPHA/runs/{run_id}/events"
    assert _by_attribute(elements, "data-count") == {
        "passed": "4",
        "failed": "1",
        "error": "0",
        "skipped": "0",
        "xfailed": "0",
        "xpassed": "0",
    }
    fields = _by_attribute(elements, "data-field")
    assert fields["done"] == "5"
    assert fields["collected"] == "10"
    assert fields["status"] == "running"
    assert "reload" in fields["hint"]
    [progress] = [attrs for tag, attrs, _ in elements if tag == "progress"]
    assert progress["value"] == "5"
    assert progress["max"] == "10"
    scripts = [str(attrs["src"]) for tag, attrs, _ in elements if tag == "script"]
    assert [src.split("?")[0] for src in scripts] == ["/static/live.js"]


def test_partial_unknown_collected_is_indeterminate() -> None:
    elements = _render_partial(
        run=SimpleNamespace(id=uuid.uuid4(), status="running", collected_count=None),
        totals={},
        project_key="ALPHA",
    )
    [progress] = [attrs for tag, attrs, _ in elements if tag == "progress"]
    assert "value" not in progress
    assert _by_attribute(elements, "data-field")["done"] == "0"


async def test_script_is_served(client: Client) -> None:
    response = await client.get("/static/live.js")
    assert response.status == 200
    assert response.content_type in ("application/javascript", "text/javascript")
    assert "EventSource" in await response.text()
