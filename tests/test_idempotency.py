"""Idempotent uploads: a repeated execution id never becomes a second row.

Clients retry batches after timeouts and may send one batch twice at once.
The listed executions must then be the same as after a single upload.
Every test runs on SQLite and PostgreSQL.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import random
import uuid
from typing import Any

from aiohttp.test_utils import TestClient

from ingest_server.schemas import ExecutionIn, RunCreate
from ingest_server.services.container import Services
from ingest_server.services.context import OPERATOR, RequestContext
from tests.conftest import Tenant

Client = TestClient[Any, Any]

START = dt.datetime(2026, 3, 1, 9, 0, tzinfo=dt.UTC)


def at(seconds: float) -> str:
    """Return the ISO 8601 time that is ``seconds`` after START."""
    return (START + dt.timedelta(seconds=seconds)).isoformat()


def runs_url(tenant: Tenant) -> str:
    return f"/api/v1/projects/{tenant.key}/runs"


async def start_run(client: Client, tenant: Tenant, client_run_id: str = "session-1") -> str:
    body = {"client_run_id": client_run_id, "started_at": at(0)}
    response = await client.post(runs_url(tenant), json=body, headers=tenant.auth())
    assert response.status == 201, await response.text()
    return str((await response.json())["run_id"])


def make_batch(size: int, outcome: str = "passed") -> list[dict[str, Any]]:
    return [
        {
            "id": str(uuid.uuid4()),
            "case_key": f"tests/test_batch.py::test_{n}",
            "outcome": outcome,
            "phase": "call",
            "duration": 0.1,
            "started_at": at(n),
            "stdout": f"output of test {n}\n",
        }
        for n in range(size)
    ]


async def send_batch(
    client: Client, tenant: Tenant, run_id: str, items: list[dict[str, Any]]
) -> dict[str, Any]:
    response = await client.post(
        f"{runs_url(tenant)}/{run_id}/executions",
        json={"executions": items},
        headers=tenant.auth(),
    )
    assert response.status == 200, await response.text()
    result: dict[str, Any] = await response.json()
    return result


async def list_executions(client: Client, tenant: Tenant, run_id: str) -> list[dict[str, Any]]:
    """Return every execution of the run, following next_cursor."""
    items: list[dict[str, Any]] = []
    params = {"limit": "500"}
    while True:
        response = await client.get(
            f"{runs_url(tenant)}/{run_id}/executions", params=params, headers=tenant.auth()
        )
        assert response.status == 200, await response.text()
        page = await response.json()
        items.extend(page["items"])
        if page["next_cursor"] is None:
            return items
        params = {"limit": "500", "cursor": page["next_cursor"]}


async def get_run(client: Client, tenant: Tenant, run_id: str) -> dict[str, Any]:
    response = await client.get(f"{runs_url(tenant)}/{run_id}", headers=tenant.auth())
    assert response.status == 200, await response.text()
    result: dict[str, Any] = await response.json()
    return result


async def test_same_batch_twice(client: Client, tenant_a: Tenant) -> None:
    run_id = await start_run(client, tenant_a)
    batch = make_batch(20)
    first = await send_batch(client, tenant_a, run_id, batch)
    assert first["accepted"] == 20
    after_first = await list_executions(client, tenant_a, run_id)
    run_after_first = await get_run(client, tenant_a, run_id)

    second = await send_batch(client, tenant_a, run_id, batch)

    assert second["accepted"] == 0
    assert second["duplicate"] == 20
    assert second["rejected"] == 0
    assert await list_executions(client, tenant_a, run_id) == after_first
    run = await get_run(client, tenant_a, run_id)
    assert run["attempts"] == run_after_first["attempts"]
    assert run["totals"] == run_after_first["totals"]


async def test_repeat_keeps_first_content(client: Client, tenant_a: Tenant) -> None:
    run_id = await start_run(client, tenant_a)
    batch = make_batch(3)
    await send_batch(client, tenant_a, run_id, batch)
    before = await list_executions(client, tenant_a, run_id)
    changed = [{**item, "outcome": "failed", "stdout": "changed\n"} for item in batch]

    result = await send_batch(client, tenant_a, run_id, changed)

    assert result["accepted"] == 0
    assert result["duplicate"] == 3
    assert await list_executions(client, tenant_a, run_id) == before
    assert (await get_run(client, tenant_a, run_id))["totals"]["failed"] == 0


async def test_overlapping_batch(client: Client, tenant_a: Tenant) -> None:
    run_id = await start_run(client, tenant_a)
    batch = make_batch(10)
    await send_batch(client, tenant_a, run_id, batch[:6])

    result = await send_batch(client, tenant_a, run_id, batch[3:])

    assert result["accepted"] == 4
    assert result["duplicate"] == 3
    listed = await list_executions(client, tenant_a, run_id)
    assert sorted(item["id"] for item in listed) == sorted(item["id"] for item in batch)


async def test_concurrent_identical_batches(client: Client, tenant_a: Tenant) -> None:
    run_id = await start_run(client, tenant_a)
    batch = make_batch(50)
    copies = 4

    results = await asyncio.gather(
        *(send_batch(client, tenant_a, run_id, batch) for _ in range(copies))
    )

    assert sum(result["accepted"] for result in results) == len(batch)
    assert sum(result["duplicate"] for result in results) == len(batch) * (copies - 1)
    listed = await list_executions(client, tenant_a, run_id)
    assert len(listed) == len(batch)
    assert sorted(item["id"] for item in listed) == sorted(item["id"] for item in batch)
    run = await get_run(client, tenant_a, run_id)
    assert run["attempts"] == len(batch)
    assert run["tests"] == len(batch)


async def test_concurrent_reordered_batches(client: Client, tenant_a: Tenant) -> None:
    # Overlapping batches in opposite orders must not deadlock on PostgreSQL.
    run_id = await start_run(client, tenant_a)
    batch = make_batch(60)
    orders = [batch, batch[::-1], batch[30:] + batch[:30]]

    results = await asyncio.gather(*(send_batch(client, tenant_a, run_id, b) for b in orders))

    assert sum(result["accepted"] for result in results) == len(batch)
    listed = await list_executions(client, tenant_a, run_id)
    assert sorted(item["id"] for item in listed) == sorted(item["id"] for item in batch)


async def test_repeat_within_batch(client: Client, tenant_a: Tenant) -> None:
    run_id = await start_run(client, tenant_a)
    [item, other] = make_batch(2)
    repeated = {**item, "outcome": "failed"}

    result = await send_batch(client, tenant_a, run_id, [item, other, repeated, item])

    assert result["accepted"] == 2
    assert result["duplicate"] == 2
    assert result["rejected"] == 0
    listed = await list_executions(client, tenant_a, run_id)
    assert sorted(row["id"] for row in listed) == sorted([item["id"], other["id"]])
    stored = next(row for row in listed if row["id"] == item["id"])
    assert stored["outcome"] == "passed"


async def test_same_id_other_project(client: Client, tenant_a: Tenant, tenant_b: Tenant) -> None:
    # Execution ids are unique per project, so the same id in another project is new.
    run_a = await start_run(client, tenant_a)
    run_b = await start_run(client, tenant_b)
    batch = make_batch(3)
    await send_batch(client, tenant_a, run_a, batch)

    result = await send_batch(client, tenant_b, run_b, batch)

    assert result["accepted"] == 3
    assert result["duplicate"] == 0
    assert len(await list_executions(client, tenant_a, run_a)) == 3
    assert len(await list_executions(client, tenant_b, run_b)) == 3


async def test_concurrent_batches_new_cases(services: Services, tenant_a: Tenant) -> None:
    # Batches that create overlapping sets of new cases at once once
    # deadlocked on PostgreSQL; every batch must be stored in full.
    scope = await services.auth.resolve_scope(OPERATOR, tenant_a.key)
    ctx = RequestContext(
        request_id="test", principal=OPERATOR, project_key=tenant_a.key, project=scope
    )
    run = await services.runs.create_or_join(
        ctx, RunCreate(client_run_id="race", started_at=START)
    )
    keys = random.Random(7)

    def batch() -> list[ExecutionIn]:
        return [
            ExecutionIn(
                id=uuid.uuid4(),
                case_key=f"tests/test_race.py::test_{keys.randrange(1500)}",
                outcome="passed",
                phase="call",
                duration=0.1,
                started_at=START,
            )
            for _ in range(300)
        ]

    async def client() -> list[int]:
        accepted = []
        for _ in range(5):
            result = await services.ingest.ingest(ctx, run.run_id, list(batch()))
            accepted.append(result.accepted)
        return accepted

    results = await asyncio.gather(*(client() for _ in range(4)))

    assert results == [[300] * 5] * 4
    detail = await services.runs.get(ctx, run.run_id)
    assert detail.attempts == 6000
