"""Tenant isolation: a principal of project A can neither read nor write project B.

The walks iterate the served OpenAPI document, so a new route is walked
without editing this file. ``test_walk_covers_every_project_route`` fails
when the app serves a project route that the document leaves out, because
the walks would miss it.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from typing import Any

import pytest

from ingest_server.repositories import cases as case_repo
from ingest_server.repositories import executions as execution_repo
from ingest_server.repositories import runs as run_repo
from ingest_server.services.container import Services
from tests.conftest import Tenant

API = "/api/v1/projects"
STARTED_AT = "2026-01-01T00:00:00Z"
FINISHED_AT = "2026-01-01T00:05:00Z"
PATH_PARAM = re.compile(r"{(\w+)}")
CASE_KEYS = ("tests/test_shop.py::test_checkout", "tests/test_shop.py::test_refund")


@dataclass(frozen=True)
class SeededRun:
    """Ids of one run of project B, with its cases and executions."""

    run_id: str
    case_ids: tuple[str, ...]
    execution_ids: tuple[str, ...]


def execution(case_key: str, outcome: str, execution_id: str | None = None) -> dict[str, Any]:
    return {
        "id": execution_id or str(uuid.uuid4()),
        "case_key": case_key,
        "outcome": outcome,
        "phase": "call",
        "duration": 0.25,
        "started_at": STARTED_AT,
        "message": "assert 1 == 2" if outcome == "failed" else None,
    }


# A valid body per request schema, so each write looks like a real one. A
# schema missing here is sent as {}, which must still get a 404 response.
SAMPLE_BODIES: dict[str, Any] = {
    "RunCreate": {"client_run_id": "intruder-session", "started_at": STARTED_AT},
    "CasesUpsert": {"cases": [{"key": "tests/test_intruder.py::test_write"}]},
    "ExecutionBatch": {"executions": [execution(CASE_KEYS[0], "passed")]},
    "RunFinish": {"status": "interrupted", "finished_at": FINISHED_AT},
}


async def seed_run(client: Any, services: Services, tenant: Tenant) -> SeededRun:
    """Create a run with two cases and three executions through the API."""
    headers = tenant.auth("reporter")
    body = {
        "client_run_id": "seed-session",
        "name": "nightly",
        "started_at": STARTED_AT,
        "ci": {"branch": "main", "commit": "abc123"},
    }
    response = await client.post(f"{API}/{tenant.key}/runs", json=body, headers=headers)
    assert response.status == 201
    run_id = (await response.json())["run_id"]
    run_path = f"{API}/{tenant.key}/runs/{run_id}"

    cases = {"cases": [{"key": key, "markers": ["smoke"]} for key in CASE_KEYS]}
    response = await client.put(f"{run_path}/cases", json=cases, headers=headers)
    assert response.status == 200

    executions = [
        execution(CASE_KEYS[0], "passed"),
        execution(CASE_KEYS[1], "failed"),
        execution(CASE_KEYS[1], "passed") | {"attempt": 2},
    ]
    response = await client.post(
        f"{run_path}/executions", json={"executions": executions}, headers=headers
    )
    assert response.status == 200
    assert (await response.json())["accepted"] == 3

    # The case ids come from the database because only the executions list
    # shows them, and the walks must not depend on that one route working.
    async with services.database.read() as session:
        rows = await execution_repo.list_executions(
            session, tenant.project_id, uuid.UUID(run_id), limit=100
        )
    case_ids = tuple(dict.fromkeys(str(row.case_id) for row in rows))
    assert len(case_ids) == len(CASE_KEYS)
    return SeededRun(run_id, case_ids, tuple(e["id"] for e in executions))


def columns(row: Any) -> dict[str, Any]:
    return {column.key: getattr(row, column.key) for column in row.__mapper__.column_attrs}


async def stored_rows(services: Services, tenant: Tenant, seeded: SeededRun) -> dict[str, Any]:
    """Read the seeded run, its cases and its executions straight from the database."""
    run_id = uuid.UUID(seeded.run_id)
    async with services.database.read() as session:
        run = await run_repo.get_run(session, tenant.project_id, run_id)
        cases = [
            await case_repo.get_case(session, tenant.project_id, uuid.UUID(case_id))
            for case_id in seeded.case_ids
        ]
        executions = await execution_repo.list_executions(
            session, tenant.project_id, run_id, limit=100
        )
    return {
        "run": columns(run),
        "cases": [columns(case) for case in cases],
        "executions": sorted((columns(row) for row in executions), key=lambda r: r["id"]),
    }


def snapshot_paths(tenant: Tenant, seeded: SeededRun) -> dict[str, str]:
    run_path = f"{API}/{tenant.key}/runs/{seeded.run_id}"
    paths = {
        "run": run_path,
        "runs": f"{API}/{tenant.key}/runs",
        "executions": f"{run_path}/executions",
    }
    for case_id in seeded.case_ids:
        paths[f"history {case_id}"] = f"{API}/{tenant.key}/cases/{case_id}/history"
    return paths


async def snapshot(client: Any, tenant: Tenant, seeded: SeededRun) -> dict[str, Any]:
    """Read everything the API shows of the seeded run, as the tenant's own viewer.

    Each entry is (status, body) with the request id dropped from error
    bodies. A read that fails both times then compares equal, and
    test_snapshot_reads_succeed reports the failure instead.
    """
    headers = tenant.auth("viewer")
    state = {}
    for name, path in snapshot_paths(tenant, seeded).items():
        response = await client.get(path, headers=headers)
        body = await response.json()
        if "error" in body:
            body = without_request_id(body)
        state[name] = (response.status, body)
    return state


async def served_operations(client: Any) -> list[tuple[str, str, dict[str, Any]]]:
    """Return (method, path template, operation) for every project operation of the document.

    Routes outside a project, such as the caller's project list, have no
    project to hide.
    """
    response = await client.get("/api/v1/openapi.json")
    assert response.status == 200
    document = await response.json()
    operations = []
    for path, item in document["paths"].items():
        if "{key}" not in path:
            continue
        for method, operation in item.items():
            operations.append((method.upper(), path, operation))
    return operations


def fill_path(template: str, values: dict[str, str]) -> str:
    unknown = set(PATH_PARAM.findall(template)) - set(values)
    assert not unknown, f"no value for path parameters {sorted(unknown)} of {template}"
    return PATH_PARAM.sub(lambda match: values[match[1]], template)


def sample_body(operation: dict[str, Any]) -> Any:
    if "requestBody" not in operation:
        return None
    ref = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    return SAMPLE_BODIES.get(ref.rsplit("/", 1)[1], {})


async def call(
    client: Any, method: str, path: str, operation: dict[str, Any], headers: dict[str, str]
) -> tuple[int, dict[str, Any]]:
    body = sample_body(operation)
    kwargs: dict[str, Any] = {"headers": headers}
    if body is not None:
        kwargs["json"] = body
    response = await client.request(method, path, **kwargs)
    return response.status, await response.json()


def without_request_id(body: dict[str, Any]) -> dict[str, Any]:
    """Drop the error's request id, which differs per request, also where the message quotes it."""
    error = dict(body["error"])
    request_id = error.pop("request_id")
    error["message"] = error["message"].replace(request_id, "<request id>")
    return {**body, "error": error}


@pytest.fixture
async def seeded_b(
    client: Any, services: Services, tenant_a: Tenant, tenant_b: Tenant
) -> SeededRun:
    # tenant_a is requested so that both projects exist before B is seeded.
    return await seed_run(client, services, tenant_b)


async def test_snapshot_reads_succeed(client: Any, tenant_b: Tenant, seeded_b: SeededRun) -> None:
    """B's own viewer reads every part of the seeded run, so the comparisons mean something."""
    state = await snapshot(client, tenant_b, seeded_b)
    failed = {name: status for name, (status, _) in state.items() if status != 200}
    assert failed == {}


@pytest.mark.parametrize("role", ["reporter", "viewer"])
async def test_every_route_hides_b(
    client: Any,
    services: Services,
    tenant_a: Tenant,
    tenant_b: Tenant,
    seeded_b: SeededRun,
    role: str,
) -> None:
    before = await snapshot(client, tenant_b, seeded_b)
    rows_before = await stored_rows(services, tenant_b, seeded_b)
    values = {"key": tenant_b.key, "run": seeded_b.run_id, "case": seeded_b.case_ids[0]}

    walked = []
    for method, template, operation in await served_operations(client):
        path = fill_path(template, values)
        status, body = await call(client, method, path, operation, tenant_a.auth(role))
        assert status == 404, f"{method} {path} with A's {role} token: {status} {body}"
        assert body["error"]["code"] == "not_found", f"{method} {path}: {body}"
        walked.append((method, template))

    assert walked, "the OpenAPI document lists no operations"
    after = await snapshot(client, tenant_b, seeded_b)
    assert after["run"] == before["run"]
    assert after["runs"] == before["runs"]
    assert after["executions"] == before["executions"]
    for case_id in seeded_b.case_ids:
        assert after[f"history {case_id}"] == before[f"history {case_id}"]
    rows_after = await stored_rows(services, tenant_b, seeded_b)
    assert rows_after["run"] == rows_before["run"]
    assert rows_after["cases"] == rows_before["cases"]
    assert rows_after["executions"] == rows_before["executions"]


async def test_bad_request_still_404(
    client: Any, tenant_a: Tenant, tenant_b: Tenant, seeded_b: SeededRun
) -> None:
    """A malformed body or query on B is a 404 too, never a 4xx that shows B exists."""
    values = {"key": tenant_b.key, "run": seeded_b.run_id, "case": seeded_b.case_ids[0]}
    headers = {**tenant_a.auth("reporter"), "Content-Type": "application/json"}

    for method, template, _ in await served_operations(client):
        path = fill_path(template, values)
        response = await client.request(
            method, path, params={"no_such_param": "1"}, data=b"{not json", headers=headers
        )
        body = await response.json()
        assert response.status == 404, f"{method} {path}: {response.status} {body}"
        assert body["error"]["code"] == "not_found", f"{method} {path}: {body}"


async def test_metrics_lack_tenant_data(
    client: Any, tenant_a: Tenant, tenant_b: Tenant, seeded_b: SeededRun
) -> None:
    response = await client.get(f"{API}/{tenant_b.key}/runs/{seeded_b.run_id}")
    assert response.status == 401

    response = await client.get("/metrics")
    text = await response.text()
    assert response.status == 200
    assert tenant_b.key not in text
    assert seeded_b.run_id not in text


async def test_b_ids_under_a_key(
    client: Any, services: Services, tenant_a: Tenant, tenant_b: Tenant, seeded_b: SeededRun
) -> None:
    """A's reporter, on its own project, names B's run and case ids: none of them resolve."""
    before = await snapshot(client, tenant_b, seeded_b)
    rows_before = await stored_rows(services, tenant_b, seeded_b)
    values = {"key": tenant_a.key, "run": seeded_b.run_id, "case": seeded_b.case_ids[0]}

    walked = 0
    for method, template, operation in await served_operations(client):
        if not {"run", "case"} & set(PATH_PARAM.findall(template)):
            continue
        path = fill_path(template, values)
        status, body = await call(client, method, path, operation, tenant_a.auth("reporter"))
        assert status == 404, f"{method} {path}: {status} {body}"
        assert body["error"]["code"] == "not_found", f"{method} {path}: {body}"
        walked += 1

    assert walked > 0, "no operation names a run or a case"
    assert await snapshot(client, tenant_b, seeded_b) == before
    assert await stored_rows(services, tenant_b, seeded_b) == rows_before


async def test_run_list_excludes_b(
    client: Any, services: Services, tenant_a: Tenant, seeded_b: SeededRun
) -> None:
    await seed_run(client, services, tenant_a)

    response = await client.get(f"{API}/{tenant_a.key}/runs", headers=tenant_a.auth("viewer"))
    assert response.status == 200
    run_ids = [run["id"] for run in (await response.json())["items"]]
    assert len(run_ids) == 1
    assert seeded_b.run_id not in run_ids


async def test_missing_project_like_hidden(
    client: Any, tenant_a: Tenant, tenant_b: Tenant, seeded_b: SeededRun
) -> None:
    """A missing project and B get the same response, so a caller cannot learn that B exists.

    The message echoes the key the caller sent, so the key is replaced by a
    placeholder before the bodies are compared.
    """
    missing_key = "NOPE"
    for method, template, operation in await served_operations(client):
        bodies = {}
        for key in (tenant_b.key, missing_key):
            values = {"key": key, "run": seeded_b.run_id, "case": seeded_b.case_ids[0]}
            path = fill_path(template, values)
            status, body = await call(client, method, path, operation, tenant_a.auth())
            assert status == 404, f"{method} {path}: {status} {body}"
            text = repr(without_request_id(body))
            bodies[key] = text.replace(repr(key), "'<key>'")
        assert bodies[missing_key] == bodies[tenant_b.key], f"{method} {template}"


async def test_walk_covers_every_project_route(client: Any) -> None:
    """Every project API route the app serves is in the document, so the walks above reach it.

    The pages are walked by tests/test_page_isolation.py.
    """
    documented = {(method, path) for method, path, _ in await served_operations(client)}
    served = {
        (route.method, route.resource.canonical)
        for route in client.app.router.routes()
        if route.resource is not None
        and "{key}" in route.resource.canonical
        and route.resource.canonical.startswith("/api/")
        and route.method != "HEAD"
    }
    assert served, "the app serves no route with a {key} parameter"
    assert served - documented == set()


async def test_reused_ids_stay_per_project(
    client: Any, services: Services, tenant_a: Tenant, tenant_b: Tenant, seeded_b: SeededRun
) -> None:
    """A reuses B's client run id and execution ids: A gets rows of its own, B is untouched."""
    before = await snapshot(client, tenant_b, seeded_b)
    rows_before = await stored_rows(services, tenant_b, seeded_b)
    headers = tenant_a.auth("reporter")

    body = {"client_run_id": "seed-session", "started_at": STARTED_AT}
    response = await client.post(f"{API}/{tenant_a.key}/runs", json=body, headers=headers)
    assert response.status == 201
    created = await response.json()
    assert created["created"] is True
    assert created["run_id"] != seeded_b.run_id

    reused = [
        execution(CASE_KEYS[0], "error", execution_id) for execution_id in seeded_b.execution_ids
    ]
    response = await client.post(
        f"{API}/{tenant_a.key}/runs/{created['run_id']}/executions",
        json={"executions": reused},
        headers=headers,
    )
    assert response.status == 200
    result = await response.json()
    assert result["accepted"] == len(reused)
    assert result["duplicate"] == 0
    assert await snapshot(client, tenant_b, seeded_b) == before
    assert await stored_rows(services, tenant_b, seeded_b) == rows_before
