"""Rejected requests: every bad request gets the error envelope and changes nothing.

The server in this module runs with small limits (MAX_BODY_BYTES, MAX_BATCH_ITEMS),
so the tests can cross them with small requests. Every test runs on SQLite and
PostgreSQL.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from ingest_server.config import Settings
from ingest_server.services.container import Services
from ingest_server.services.context import OPERATOR, RequestContext
from tests.conftest import Tenant

Client = TestClient[Any, Any]

MAX_BODY_BYTES = 64 * 1024
MAX_BATCH_ITEMS = 5
# An id that no run or case of any project has.
MISSING_ID = "0b5e3c1e-5d8c-4a4e-9a57-7d1f0f6c2b11"


@pytest.fixture
def settings(database_url: str) -> Settings:
    """Return settings with small body and batch limits, in place of tests/conftest.py's."""
    return Settings(
        database_url=database_url,
        max_body_bytes=MAX_BODY_BYTES,
        max_batch_items=MAX_BATCH_ITEMS,
    )


# --- request bodies that are valid unless a row changes them --------------------

RUN = {"client_run_id": "bad-input-session", "started_at": "2026-03-01T09:00:00Z"}
FINISH = {"status": "finished", "finished_at": "2026-03-01T10:00:00Z"}
CASES = {"cases": [{"key": "tests/test_new.py::test_new"}]}


def execution(number: int, **fields: Any) -> dict[str, Any]:
    return {
        "id": str(uuid.UUID(int=number + 1)),
        "case_key": f"tests/test_new.py::test_{number}",
        "outcome": "passed",
        "phase": "call",
        "duration": 0.1,
        "started_at": "2026-03-01T09:00:00Z",
        **fields,
    }


def batch(size: int = 1, **fields: Any) -> dict[str, Any]:
    return {"executions": [execution(number, **fields) for number in range(size)]}


def cursor_of(value: Any) -> str:
    """Encode value as the server encodes its cursors, whether or not it is a position."""
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")


# Two executions whose captured output makes the body larger than MAX_BODY_BYTES,
# while everything else about the batch is valid.
OVERSIZED_BATCH = json.dumps(batch(2, stdout="x" * (MAX_BODY_BYTES // 2 + 1))).encode()
assert len(OVERSIZED_BATCH) > MAX_BODY_BYTES


@dataclass(frozen=True)
class BadRequest:
    """One bad request and the error response the server must send.

    ``path`` is relative to /api/v1/projects/ and, like ``mentions``, may contain
    the placeholders of World.placeholders().
    """

    method: str
    path: str
    status: int
    code: str
    # Text the error message must contain: the offending field or value.
    mentions: str
    body: Any = None
    # Bytes sent as they are, in place of body.
    raw: bytes | None = None
    content_type: str = "application/json"
    # A token role of the project, "revoked", "none", or "header:" and a literal value.
    auth: str = "reporter"
    query: dict[str, str] | None = None
    # Send the body in chunks, without a Content-Length.
    chunked: bool = False
    # The field that error.details must name, when the error is about one field.
    field: str | None = None


def invalid(path: str, body: Any, mentions: str, field: str | None = None) -> BadRequest:
    """Return a request whose JSON body fails validation (422)."""
    method = "PUT" if path.endswith("/cases") else "POST"
    return BadRequest(method, path, 422, "validation_error", mentions, body=body, field=field)


def bad_query(path: str, query: dict[str, str], mentions: str, field: str) -> BadRequest:
    return BadRequest("GET", path, 422, "validation_error", mentions, query=query, field=field)


BAD_REQUESTS = [
    # Malformed JSON.
    pytest.param(
        BadRequest(
            "POST", "{project}/runs", 400, "invalid_json", "JSON", raw=b'{"client_run_id": '
        ),
        id="truncated-json",
    ),
    pytest.param(
        BadRequest("POST", "{project}/runs", 400, "invalid_json", "JSON", raw=b""),
        id="empty-body",
    ),
    pytest.param(
        BadRequest("POST", "{project}/runs", 400, "invalid_json", "JSON", raw=b"\xff\xfe{}"),
        id="invalid-utf8",
    ),
    pytest.param(
        BadRequest(
            "POST",
            "{project}/runs/{run}/executions",
            400,
            "invalid_json",
            "JSON",
            raw=b'{"executions": [{"id": }]}',
        ),
        id="batch-invalid-json",
    ),
    # Wrong types and values.
    pytest.param(
        invalid("{project}/runs", {**RUN, "client_run_id": 42}, "client_run_id", "client_run_id"),
        id="client-run-id-number",
    ),
    pytest.param(
        invalid(
            "{project}/runs",
            {**RUN, "client_run_id": "session one"},
            "client_run_id",
            "client_run_id",
        ),
        id="client-run-id-pattern",
    ),
    pytest.param(
        invalid("{project}/runs", {**RUN, "started_at": "yesterday"}, "started_at", "started_at"),
        id="started-at-text",
    ),
    pytest.param(
        invalid(
            "{project}/runs",
            {**RUN, "started_at": "2026-03-01T09:00:00"},
            "started_at",
            "started_at",
        ),
        id="started-at-naive",
    ),
    pytest.param(
        # The instant is valid, but in UTC it falls after the year 9999.
        invalid(
            "{project}/runs",
            {**RUN, "started_at": "9999-12-31T23:00:00-05:00"},
            "started_at",
            "started_at",
        ),
        id="started-at-out-of-range",
    ),
    pytest.param(
        invalid("{project}/runs", {"client_run_id": "s1"}, "started_at", "started_at"),
        id="started-at-missing",
    ),
    pytest.param(
        invalid(
            "{project}/runs",
            {**RUN, "collected_count": "many"},
            "collected_count",
            "collected_count",
        ),
        id="collected-count-text",
    ),
    pytest.param(invalid("{project}/runs", {**RUN, "ci": "main"}, "ci", "ci"), id="ci-text"),
    pytest.param(invalid("{project}/runs", [RUN], "body"), id="body-array"),
    pytest.param(
        invalid("{project}/runs/{run}/cases", {"cases": "t::a"}, "cases", "cases"),
        id="cases-text",
    ),
    pytest.param(
        invalid("{project}/runs/{run}/cases", {"cases": []}, "cases", "cases"),
        id="cases-empty",
    ),
    pytest.param(
        invalid(
            "{project}/runs/{run}/executions",
            {"executions": {"id": MISSING_ID}},
            "executions",
            "executions",
        ),
        id="executions-object",
    ),
    pytest.param(
        invalid("{project}/runs/{run}/executions", {"executions": []}, "executions", "executions"),
        id="executions-empty",
    ),
    pytest.param(
        invalid("{project}/runs/{run}/finish", {**FINISH, "status": "done"}, "status", "status"),
        id="finish-status",
    ),
    pytest.param(
        invalid(
            "{project}/runs/{run}/finish",
            {**FINISH, "finished_at": "2026-03-01T10:00:00"},
            "finished_at",
            "finished_at",
        ),
        id="finish-naive-time",
    ),
    # Unknown fields.
    pytest.param(
        invalid("{project}/runs", {**RUN, "colour": "red"}, "colour", "colour"),
        id="run-unknown-field",
    ),
    pytest.param(
        invalid(
            "{project}/runs",
            {**RUN, "ci": {"branch": "main", "colour": "red"}},
            "ci.colour",
            "ci.colour",
        ),
        id="ci-unknown-field",
    ),
    pytest.param(
        invalid(
            "{project}/runs/{run}/cases",
            {"cases": [{"key": "t::a", "owner": "me"}]},
            "cases.0.owner",
            "cases.0.owner",
        ),
        id="case-unknown-field",
    ),
    pytest.param(
        invalid("{project}/runs/{run}/executions", {**batch(), "colour": 1}, "colour", "colour"),
        id="batch-unknown-field",
    ),
    pytest.param(
        invalid("{project}/runs/{run}/finish", {**FINISH, "reason": "done"}, "reason", "reason"),
        id="finish-unknown-field",
    ),
    # Strings over their maximum length.
    pytest.param(
        invalid("{project}/runs", {**RUN, "name": "n" * 201}, "name", "name"),
        id="name-too-long",
    ),
    pytest.param(
        invalid("{project}/runs", {**RUN, "run_key": "k" * 201}, "run_key", "run_key"),
        id="run-key-too-long",
    ),
    pytest.param(
        invalid(
            "{project}/runs", {**RUN, "client_run_id": "r" * 101}, "client_run_id", "client_run_id"
        ),
        id="client-run-id-too-long",
    ),
    pytest.param(
        invalid("{project}/runs", {**RUN, "ci": {"commit": "c" * 65}}, "ci.commit", "ci.commit"),
        id="commit-too-long",
    ),
    pytest.param(
        invalid(
            "{project}/runs/{run}/cases",
            {"cases": [{"key": "k" * 501}]},
            "cases.0.key",
            "cases.0.key",
        ),
        id="case-key-too-long",
    ),
    # Sizes.
    pytest.param(
        BadRequest(
            "POST",
            "{project}/runs/{run}/executions",
            413,
            "payload_too_large",
            str(MAX_BODY_BYTES),
            raw=OVERSIZED_BATCH,
        ),
        id="body-too-large",
    ),
    pytest.param(
        BadRequest(
            "POST",
            "{project}/runs/{run}/executions",
            413,
            "payload_too_large",
            str(MAX_BODY_BYTES),
            raw=OVERSIZED_BATCH,
            chunked=True,
        ),
        id="chunked-body-too-large",
    ),
    pytest.param(
        BadRequest(
            "POST",
            "{project}/runs/{run}/executions",
            413,
            "batch_too_large",
            f"limit of {MAX_BATCH_ITEMS}",
            body=batch(MAX_BATCH_ITEMS + 1),
            field="executions",
        ),
        id="batch-too-large",
    ),
    # Content types.
    pytest.param(
        BadRequest(
            "POST",
            "{project}/runs",
            415,
            "unsupported_media_type",
            "text/plain",
            raw=json.dumps(RUN).encode(),
            content_type="text/plain",
        ),
        id="text-plain",
    ),
    pytest.param(
        BadRequest(
            "POST",
            "{project}/runs/{run}/executions",
            415,
            "unsupported_media_type",
            "application/x-www-form-urlencoded",
            raw=b"executions=1",
            content_type="application/x-www-form-urlencoded",
        ),
        id="form-encoded",
    ),
    # Credentials.
    pytest.param(
        BadRequest(
            "POST",
            "{project}/runs",
            401,
            "unauthenticated",
            "Authorization",
            body=RUN,
            auth="none",
        ),
        id="missing-token",
    ),
    pytest.param(
        BadRequest("GET", "{project}/runs", 401, "unauthenticated", "Authorization", auth="none"),
        id="missing-token-read",
    ),
    pytest.param(
        BadRequest(
            "POST",
            "{project}/runs",
            401,
            "unauthenticated",
            "Bearer",
            body=RUN,
            auth="header:Basic dXNlcjpzZWNyZXQ=",
        ),
        id="basic-auth",
    ),
    pytest.param(
        BadRequest(
            "POST",
            "{project}/runs",
            401,
            "unauthenticated",
            "invalid token",
            body=RUN,
            auth="header:Bearer not-a-token",
        ),
        id="malformed-token",
    ),
    pytest.param(
        BadRequest(
            "POST",
            "{project}/runs",
            401,
            "unauthenticated",
            "unknown",
            body=RUN,
            auth="header:Bearer tqa_1_99_" + "A" * 43,
        ),
        id="unknown-token",
    ),
    pytest.param(
        BadRequest(
            "POST", "{project}/runs", 401, "unauthenticated", "revoked", body=RUN, auth="revoked"
        ),
        id="revoked-token",
    ),
    # Permissions: a viewer token may read but not report.
    pytest.param(
        BadRequest(
            "POST", "{project}/runs", 403, "permission_denied", "viewer", body=RUN, auth="viewer"
        ),
        id="viewer-creates-run",
    ),
    pytest.param(
        BadRequest(
            "POST",
            "{project}/runs/{run}/executions",
            403,
            "permission_denied",
            "viewer",
            body=batch(),
            auth="viewer",
        ),
        id="viewer-posts-executions",
    ),
    pytest.param(
        BadRequest(
            "PUT",
            "{project}/runs/{run}/cases",
            403,
            "permission_denied",
            "viewer",
            body=CASES,
            auth="viewer",
        ),
        id="viewer-puts-cases",
    ),
    pytest.param(
        BadRequest(
            "POST",
            "{project}/runs/{run}/finish",
            403,
            "permission_denied",
            "viewer",
            body=FINISH,
            auth="viewer",
        ),
        id="viewer-finishes-run",
    ),
    # Projects the token does not belong to.
    pytest.param(
        BadRequest("POST", "NOPE/runs", 404, "not_found", "'NOPE'", body=RUN),
        id="unknown-project",
    ),
    pytest.param(
        BadRequest("POST", "{other_project}/runs", 404, "not_found", "{other_project}", body=RUN),
        id="other-project-write",
    ),
    pytest.param(
        BadRequest("GET", "{other_project}/runs/{other_run}", 404, "not_found", "{other_project}"),
        id="other-project-read",
    ),
    # Runs and cases that do not exist in the project.
    pytest.param(
        BadRequest(
            "POST",
            "{project}/runs/{missing}/executions",
            404,
            "not_found",
            "{missing}",
            body=batch(),
        ),
        id="unknown-run-executions",
    ),
    pytest.param(
        BadRequest(
            "PUT", "{project}/runs/{missing}/cases", 404, "not_found", "{missing}", body=CASES
        ),
        id="unknown-run-cases",
    ),
    pytest.param(
        BadRequest(
            "POST", "{project}/runs/{missing}/finish", 404, "not_found", "{missing}", body=FINISH
        ),
        id="unknown-run-finish",
    ),
    pytest.param(
        BadRequest("GET", "{project}/runs/{missing}", 404, "not_found", "{missing}"),
        id="unknown-run-read",
    ),
    pytest.param(
        BadRequest(
            "POST",
            "{project}/runs/not-a-uuid/executions",
            404,
            "not_found",
            "not-a-uuid",
            body=batch(),
        ),
        id="non-uuid-run",
    ),
    pytest.param(
        BadRequest("GET", "{project}/runs/not-a-uuid", 404, "not_found", "not-a-uuid"),
        id="non-uuid-run-read",
    ),
    pytest.param(
        BadRequest(
            "POST",
            "{project}/runs/{other_run}/executions",
            404,
            "not_found",
            "{other_run}",
            body=batch(),
        ),
        id="other-project-run-write",
    ),
    pytest.param(
        BadRequest(
            "GET", "{project}/runs/{other_run}/executions", 404, "not_found", "{other_run}"
        ),
        id="other-project-run-read",
    ),
    pytest.param(
        BadRequest("GET", "{project}/cases/{missing}/history", 404, "not_found", "{missing}"),
        id="unknown-case",
    ),
    pytest.param(
        BadRequest("GET", "{project}/cases/not-a-uuid/history", 404, "not_found", "not-a-uuid"),
        id="non-uuid-case",
    ),
    # Query parameters.
    pytest.param(
        bad_query("{project}/runs", {"colour": "red"}, "colour", "colour"),
        id="unknown-query-list",
    ),
    pytest.param(
        BadRequest(
            "POST",
            "{project}/runs",
            422,
            "validation_error",
            "dry_run",
            body=RUN,
            query={"dry_run": "1"},
            field="dry_run",
        ),
        id="unknown-query-create",
    ),
    pytest.param(
        BadRequest(
            "POST",
            "{project}/runs/{run}/executions",
            422,
            "validation_error",
            "force",
            body=batch(),
            query={"force": "1"},
            field="force",
        ),
        id="unknown-query-batch",
    ),
    pytest.param(bad_query("{project}/runs", {"limit": "0"}, "limit", "limit"), id="limit-zero"),
    pytest.param(
        bad_query("{project}/runs", {"limit": "501"}, "limit", "limit"), id="limit-over-max"
    ),
    pytest.param(bad_query("{project}/runs", {"limit": "ten"}, "ten", "limit"), id="limit-text"),
    pytest.param(
        bad_query("{project}/runs/{run}/executions", {"limit": "-1"}, "limit", "limit"),
        id="limit-negative",
    ),
    pytest.param(
        bad_query("{project}/runs", {"cursor": "garbage"}, "garbage", "cursor"),
        id="cursor-garbage",
    ),
    pytest.param(
        bad_query(
            "{project}/runs/{run}/executions", {"cursor": cursor_of(["x"])}, "cursor", "cursor"
        ),
        id="cursor-not-position",
    ),
    pytest.param(
        bad_query(
            "{project}/runs",
            {"cursor": cursor_of(["2026-03-01T09:00:00", MISSING_ID])},
            "cursor",
            "cursor",
        ),
        id="cursor-naive-time",
    ),
    pytest.param(
        bad_query("{project}/runs", {"status": "done"}, "'done'", "status"), id="status-filter"
    ),
    pytest.param(
        bad_query(
            "{project}/runs/{run}/executions", {"outcome": "exploded"}, "'exploded'", "outcome"
        ),
        id="outcome-filter",
    ),
    pytest.param(
        bad_query("{project}/runs", {"branch": "b" * 251}, "branch", "branch"),
        id="branch-too-long",
    ),
    # Routes.
    pytest.param(
        BadRequest("DELETE", "{project}/runs", 405, "method_not_allowed", "POST"),
        id="wrong-method",
    ),
    pytest.param(
        BadRequest("GET", "{project}/nothing", 404, "not_found", "no such route"),
        id="unknown-route",
    ),
]


# --- the world each bad request is sent into ------------------------------------


@dataclass(frozen=True)
class World:
    """Two projects with one run each, and a revoked token of the first project."""

    tenant: Tenant
    other: Tenant
    run_id: str
    other_run_id: str
    revoked_token: str

    def placeholders(self) -> dict[str, str]:
        return {
            "project": self.tenant.key,
            "other_project": self.other.key,
            "run": self.run_id,
            "other_run": self.other_run_id,
            "missing": MISSING_ID,
        }

    def fill(self, template: str) -> str:
        return template.format(**self.placeholders())


async def seed_run(client: Client, tenant: Tenant) -> str:
    """Create a run with one collected case and one execution; return its id."""
    base = f"/api/v1/projects/{tenant.key}/runs"
    seed = {"client_run_id": "seed-session", "started_at": "2026-03-01T08:00:00Z"}
    response = await client.post(base, json=seed, headers=tenant.auth())
    assert response.status == 201, await response.text()
    run_id = str((await response.json())["run_id"])
    cases = {"cases": [{"key": "tests/test_seed.py::test_seed"}]}
    response = await client.put(f"{base}/{run_id}/cases", json=cases, headers=tenant.auth())
    assert response.status == 200, await response.text()
    executions = {"executions": [execution(1000, case_key="tests/test_seed.py::test_seed")]}
    response = await client.post(
        f"{base}/{run_id}/executions", json=executions, headers=tenant.auth()
    )
    assert response.status == 200, await response.text()
    return run_id


async def revoked_token(services: Services, tenant: Tenant) -> str:
    scope = await services.auth.resolve_scope(OPERATOR, tenant.key)
    ctx = RequestContext(
        request_id="test", principal=OPERATOR, project_key=tenant.key, project=scope
    )
    issued = await services.admin.create_token(ctx, "revoked token", "reporter")
    number = int(issued.token_id.rsplit("-", 1)[1])
    await services.admin.revoke_token(ctx, number)
    return issued.secret


@pytest.fixture
async def world(client: Client, services: Services, tenant_a: Tenant, tenant_b: Tenant) -> World:
    return World(
        tenant=tenant_a,
        other=tenant_b,
        run_id=await seed_run(client, tenant_a),
        other_run_id=await seed_run(client, tenant_b),
        revoked_token=await revoked_token(services, tenant_a),
    )


async def snapshot(client: Client, world: World) -> dict[str, Any]:
    """Return what both projects store, as the API shows it.

    The run list covers the runs and their status, and the execution list each
    stored execution. Each run's detail covers its sessions and its collected
    cases (planned).
    """
    state: dict[str, Any] = {}
    for tenant, run_id in ((world.tenant, world.run_id), (world.other, world.other_run_id)):
        base = f"/api/v1/projects/{tenant.key}/runs"
        runs = await client.get(base, params={"limit": "500"}, headers=tenant.auth())
        assert runs.status == 200, await runs.text()
        executions = await client.get(
            f"{base}/{run_id}/executions", params={"limit": "500"}, headers=tenant.auth()
        )
        assert executions.status == 200, await executions.text()
        detail = await client.get(f"{base}/{run_id}", headers=tenant.auth())
        assert detail.status == 200, await detail.text()
        state[tenant.key] = {
            "runs": await runs.json(),
            "executions": await executions.json(),
            "detail": await detail.json(),
        }
    return state


def headers_for(request: BadRequest, world: World) -> dict[str, str]:
    headers = {"Content-Type": request.content_type}
    if request.auth == "none":
        return headers
    if request.auth == "revoked":
        return {**headers, "Authorization": f"Bearer {world.revoked_token}"}
    if request.auth.startswith("header:"):
        return {**headers, "Authorization": request.auth.removeprefix("header:")}
    return {**headers, **world.tenant.auth(request.auth)}


async def in_chunks(data: bytes) -> AsyncIterator[bytes]:
    for start in range(0, len(data), 8192):
        yield data[start : start + 8192]


async def send(client: Client, world: World, request: BadRequest) -> Any:
    data: Any = request.raw
    if data is None and request.body is not None:
        data = json.dumps(request.body).encode()
    if request.chunked and data is not None:
        data = in_chunks(data)
    return await client.request(
        request.method,
        "/api/v1/projects/" + world.fill(request.path),
        params=request.query,
        data=data,
        headers=headers_for(request, world),
    )


@pytest.mark.parametrize("request_case", BAD_REQUESTS)
async def test_bad_request_rejected(
    client: Client, world: World, request_case: BadRequest
) -> None:
    before = await snapshot(client, world)

    response = await send(client, world, request_case)

    body = await response.json()
    assert response.status == request_case.status, body
    assert set(body) == {"error"}
    error = body["error"]
    assert set(error) == {"code", "message", "request_id", "details"}
    assert error["code"] == request_case.code
    assert world.fill(request_case.mentions) in error["message"]
    assert response.headers["X-Request-ID"] == error["request_id"]
    assert all(set(detail) == {"field", "message"} for detail in error["details"])
    if request_case.field is not None:
        assert request_case.field in [detail["field"] for detail in error["details"]]
    assert await snapshot(client, world) == before


# --- the request id and the limits' edges ---------------------------------------


async def test_request_id_echoed(client: Client, world: World) -> None:
    response = await client.get(
        f"/api/v1/projects/{world.tenant.key}/runs",
        params={"limit": "0"},
        headers={**world.tenant.auth(), "X-Request-ID": "ci-job-42.retry:1"},
    )

    error = (await response.json())["error"]
    assert error["request_id"] == "ci-job-42.retry:1"
    assert response.headers["X-Request-ID"] == "ci-job-42.retry:1"


async def test_request_id_malformed_replaced(client: Client, world: World) -> None:
    response = await client.get(
        f"/api/v1/projects/{world.tenant.key}/runs",
        params={"limit": "0"},
        headers={**world.tenant.auth(), "X-Request-ID": "two words\tand a tab"},
    )

    error = (await response.json())["error"]
    assert error["request_id"] != "two words\tand a tab"
    assert error["request_id"]
    assert response.headers["X-Request-ID"] == error["request_id"]


async def test_json_charset_accepted(client: Client, world: World) -> None:
    response = await client.post(
        f"/api/v1/projects/{world.tenant.key}/runs",
        data=json.dumps(RUN).encode(),
        headers={**world.tenant.auth(), "Content-Type": "application/json; charset=utf-8"},
    )

    assert response.status == 201, await response.text()


async def test_batch_at_limit_accepted(client: Client, world: World) -> None:
    response = await client.post(
        f"/api/v1/projects/{world.tenant.key}/runs/{world.run_id}/executions",
        json=batch(MAX_BATCH_ITEMS),
        headers=world.tenant.auth(),
    )

    assert response.status == 200, await response.text()
    assert (await response.json())["accepted"] == MAX_BATCH_ITEMS


async def test_body_under_limit_accepted(client: Client, world: World) -> None:
    body = json.dumps(batch(1, stdout="x" * (MAX_BODY_BYTES // 2))).encode()
    assert len(body) <= MAX_BODY_BYTES

    response = await client.post(
        f"/api/v1/projects/{world.tenant.key}/runs/{world.run_id}/executions",
        data=body,
        headers={**world.tenant.auth(), "Content-Type": "application/json"},
    )

    assert response.status == 200, await response.text()
    assert (await response.json())["accepted"] == 1
