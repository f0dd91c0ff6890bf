"""Operations: request ids, logs, health, metrics, server errors and the audit trail."""

from __future__ import annotations

import asyncio
import logging
import re
import uuid
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample
from sqlalchemy import text

from ingest_server.db.migrate import head_revision
from ingest_server.db.models import INSTANCE_PROJECT_ID
from ingest_server.logs import RateLimitedCounter, RequestFieldsFilter, auth_logger
from ingest_server.repositories import audit as audit_repo
from ingest_server.services.container import Services
from ingest_server.services.context import OPERATOR, RequestContext
from ingest_server.web.app import create_app
from ingest_server.web.keys import AUTH_FAILURES_KEY
from tests.conftest import Tenant

API = "/api/v1/projects"
STARTED_AT = "2026-01-01T00:00:00Z"
GENERATED_ID = re.compile(r"^[0-9a-f]{32}$")
BAD_REQUESTS = 50


def token_number(secret: str) -> int:
    """Return the token number of a full token ``tqa_<project>_<number>_<secret>``."""
    return int(secret.split("_")[2])


def wrong_secret(secret: str) -> str:
    """Return a well-formed token with the same ids and another secret part."""
    prefix, secret_part = secret[:-43], secret[-43:]
    return prefix + ("A" if secret_part[0] != "A" else "B") * 43


def capture_logs(caplog: pytest.LogCaptureFixture) -> None:
    """Capture the ``testoqa`` loggers with the request fields the server's handler adds.

    Call it inside the test body: pytest gives each test phase a new handler.
    """
    caplog.set_level(logging.INFO, logger="testoqa")
    caplog.handler.addFilter(RequestFieldsFilter())


def operator_on(tenant: Tenant, scope: Any, request_id: str) -> RequestContext:
    return RequestContext(
        request_id=request_id, principal=OPERATOR, project_key=tenant.key, project=scope
    )


async def metric_samples(client: Any) -> list[Sample]:
    response = await client.get("/metrics")
    assert response.status == 200
    return [
        sample
        for family in text_string_to_metric_families(await response.text())
        for sample in family.samples
    ]


def metric_value(samples: list[Sample], name: str, **labels: str) -> float | None:
    for sample in samples:
        if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
            return float(sample.value)
    return None


def execution(execution_id: str) -> dict[str, Any]:
    return {
        "id": execution_id,
        "case_key": "tests/test_metrics.py::test_count",
        "outcome": "passed",
        "phase": "call",
        "duration": 0.1,
        "started_at": STARTED_AT,
    }


async def create_run(client: Any, tenant: Tenant) -> str:
    body = {"client_run_id": f"obs-{uuid.uuid4().hex[:12]}", "started_at": STARTED_AT}
    response = await client.post(f"{API}/{tenant.key}/runs", json=body, headers=tenant.auth())
    assert response.status == 201
    run_id: str = (await response.json())["run_id"]
    return run_id


# --- request ids ------------------------------------------------------------------


@pytest.mark.parametrize("request_id", ["build-42:shard.1_a", "a" * 64, "X"])
async def test_request_id_echoed(client: Any, request_id: str) -> None:
    response = await client.get("/healthz", headers={"X-Request-ID": request_id})
    assert response.status == 200
    assert response.headers["X-Request-ID"] == request_id


@pytest.mark.parametrize(
    "request_id", ["a" * 65, "has space", "semi;colon", "slash/inside", "quote'd", ""]
)
async def test_request_id_replaced(client: Any, request_id: str) -> None:
    response = await client.get("/healthz", headers={"X-Request-ID": request_id})
    echoed = response.headers["X-Request-ID"]
    assert echoed != request_id
    assert GENERATED_ID.match(echoed), echoed


async def test_request_id_generated(client: Any) -> None:
    first = await client.get("/healthz")
    second = await client.get("/healthz")
    assert GENERATED_ID.match(first.headers["X-Request-ID"])
    assert first.headers["X-Request-ID"] != second.headers["X-Request-ID"]


async def test_error_body_has_request_id(client: Any, tenant_a: Tenant) -> None:
    response = await client.get(
        f"{API}/NOPE/runs", headers={**tenant_a.auth(), "X-Request-ID": "trace-404"}
    )
    body = await response.json()
    assert response.status == 404
    assert body["error"]["request_id"] == "trace-404"
    assert response.headers["X-Request-ID"] == "trace-404"


# --- logs -------------------------------------------------------------------------


async def test_logs_carry_request_fields(
    client: Any, tenant_a: Tenant, caplog: pytest.LogCaptureFixture
) -> None:
    capture_logs(caplog)
    body = {"client_run_id": "logged-session", "started_at": STARTED_AT}
    headers = {**tenant_a.auth("reporter"), "X-Request-ID": "trace-log-1"}
    response = await client.post(f"{API}/{tenant_a.key}/runs", json=body, headers=headers)
    assert response.status == 201

    principal = f"token:{tenant_a.project_id}-{token_number(tenant_a.tokens['reporter'])}"
    access = [r for r in caplog.records if r.name == "testoqa.access"]
    ingest = [r for r in caplog.records if r.name == "testoqa.ingest"]
    assert len(access) == 1
    assert access[0].request_id == "trace-log-1"  # type: ignore[attr-defined]
    assert access[0].project_id == str(tenant_a.project_id)  # type: ignore[attr-defined]
    assert access[0].principal == principal  # type: ignore[attr-defined]
    assert f"/api/v1/projects/{tenant_a.key}/runs" in access[0].getMessage()
    assert len(ingest) == 1
    assert ingest[0].request_id == "trace-log-1"  # type: ignore[attr-defined]
    assert ingest[0].project_id == str(tenant_a.project_id)  # type: ignore[attr-defined]
    assert ingest[0].principal == principal  # type: ignore[attr-defined]


async def test_logs_lack_token_secret(
    client: Any,
    tenant_a: Tenant,
    caplog: pytest.LogCaptureFixture,
) -> None:
    capture_logs(caplog)
    secret = tenant_a.tokens["reporter"]
    forged = wrong_secret(secret)
    path = f"{API}/{tenant_a.key}/runs"

    assert (await client.get(path, headers={"Authorization": f"Bearer {forged}"})).status == 401
    assert (await client.get(path, headers={"Authorization": f"Bearer {secret}"})).status == 200
    body = {"client_run_id": "secret-session", "started_at": STARTED_AT}
    response = await client.post(path, json=body, headers={"Authorization": f"Bearer {secret}"})
    assert response.status == 201

    assert any(r.name == "testoqa.auth" for r in caplog.records), (
        "the failed request was not logged"
    )
    for value in (secret, secret[-43:], forged, forged[-43:]):
        assert value not in caplog.text
        for record in caplog.records:
            assert value not in record.getMessage()
            assert all(value not in str(attribute) for attribute in vars(record).values())


async def test_auth_failures_rate_limited(
    client: Any, tenant_a: Tenant, caplog: pytest.LogCaptureFixture
) -> None:
    capture_logs(caplog)
    headers = {"Authorization": "Bearer not-a-testoqa-token"}
    for _ in range(BAD_REQUESTS):
        response = await client.get(f"{API}/{tenant_a.key}/runs", headers=headers)
        assert response.status == 401

    auth_lines = [r for r in caplog.records if r.name == "testoqa.auth"]
    assert len(auth_lines) == 1
    assert "authentication failed" in auth_lines[0].getMessage()
    samples = await metric_samples(client)
    assert metric_value(samples, "testoqa_auth_failures_total") == BAD_REQUESTS


async def test_auth_failure_count_logged(
    services: Services,
    tenant_a: Tenant,
    aiohttp_client: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """After the window, the next failure logs how many were folded into the count."""
    capture_logs(caplog)
    app = create_app(services)
    app[AUTH_FAILURES_KEY] = RateLimitedCounter(auth_logger, window_seconds=1.0)
    client = await aiohttp_client(app)
    headers = {"Authorization": "Bearer not-a-testoqa-token"}
    path = f"{API}/{tenant_a.key}/runs"

    for _ in range(20):
        assert (await client.get(path, headers=headers)).status == 401
    await asyncio.sleep(1.2)
    assert (await client.get(path, headers=headers)).status == 401

    messages = [r.getMessage() for r in caplog.records if r.name == "testoqa.auth"]
    assert len(messages) == 3
    assert messages[0].startswith("authentication failed")
    assert messages[1].startswith("19 more authentication failures")
    assert messages[2].startswith("authentication failed")


# --- health and readiness -----------------------------------------------------------


async def test_healthz_ok(client: Any) -> None:
    response = await client.get("/healthz")
    assert response.status == 200
    assert (await response.json())["status"] == "ok"


async def test_readyz_ok_when_migrated(client: Any) -> None:
    response = await client.get("/readyz")
    body = await response.json()
    assert response.status == 200
    assert body["status"] == "ok"
    assert body["schema"] == head_revision()


async def test_readyz_outdated_revision(client: Any, services: Services) -> None:
    async with services.database.write() as session:
        await session.execute(text("UPDATE alembic_version SET version_num = '0000_older'"))

    response = await client.get("/readyz")
    body = await response.json()
    assert response.status == 503
    assert body["schema"] == "outdated"
    assert body["current"] == ["0000_older"]
    assert body["expected"] == head_revision()


async def test_readyz_missing_revision(client: Any, services: Services) -> None:
    async with services.database.write() as session:
        await session.execute(text("DELETE FROM alembic_version"))

    response = await client.get("/readyz")
    body = await response.json()
    assert response.status == 503
    assert body["schema"] == "outdated"
    assert body["current"] == []


# --- metrics ----------------------------------------------------------------------


async def test_metrics_route_is_template(client: Any, tenant_a: Tenant) -> None:
    run_id = str(uuid.uuid4())
    response = await client.get(f"{API}/{tenant_a.key}/runs/{run_id}", headers=tenant_a.auth())
    assert response.status == 404
    response = await client.get("/no/such/path")
    assert response.status == 404

    samples = await metric_samples(client)
    requests = [s for s in samples if s.name == "testoqa_http_requests_total"]
    routes = {s.labels["route"] for s in requests}
    count = metric_value(
        samples,
        "testoqa_http_requests_total",
        method="GET",
        route="/api/v1/projects/{key}/runs/{run}",
        status="404",
    )
    assert count == 1
    assert all(run_id not in route for route in routes), routes
    assert all(tenant_a.key not in route for route in routes), routes
    assert "/no/such/path" not in routes


async def test_metrics_content_type(client: Any) -> None:
    response = await client.get("/metrics")
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/plain")


async def test_metrics_count_executions(client: Any, tenant_a: Tenant) -> None:
    run_id = await create_run(client, tenant_a)
    batch = {"executions": [execution(str(uuid.uuid4())) for _ in range(3)]}
    path = f"{API}/{tenant_a.key}/runs/{run_id}/executions"
    for _ in range(2):
        response = await client.post(path, json=batch, headers=tenant_a.auth())
        assert response.status == 200

    samples = await metric_samples(client)
    name = "testoqa_executions_total"
    assert metric_value(samples, name, result="accepted") == 3
    assert metric_value(samples, name, result="duplicate") == 3
    assert metric_value(samples, name, result="rejected") == 0
    assert metric_value(samples, "testoqa_execution_batch_size_count") == 2
    assert metric_value(samples, "testoqa_execution_batch_size_sum") == 6
    assert metric_value(samples, "testoqa_execution_batch_size_bucket", le="1.0") == 0
    assert metric_value(samples, "testoqa_execution_batch_size_bucket", le="10.0") == 2


async def test_metrics_pool_connections(client: Any, tenant_a: Tenant) -> None:
    response = await client.get(f"{API}/{tenant_a.key}/runs", headers=tenant_a.auth())
    assert response.status == 200

    samples = await metric_samples(client)
    in_use = metric_value(samples, "testoqa_db_pool_connections", state="in_use")
    idle = metric_value(samples, "testoqa_db_pool_connections", state="idle")
    assert in_use == 0
    assert idle is not None
    assert idle >= 1


# --- unexpected errors --------------------------------------------------------------


async def test_unexpected_error_is_500(
    client: Any,
    services: Services,
    tenant_a: Tenant,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    capture_logs(caplog)

    # The one mock: a fault the real server cannot be driven into on purpose.
    async def fail(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("disk on fire at /var/lib/secret-path")

    monkeypatch.setattr(services.runs, "list", fail)
    headers = {**tenant_a.auth(), "X-Request-ID": "trace-500"}

    response = await client.get(f"{API}/{tenant_a.key}/runs", headers=headers)
    raw = await response.text()
    body = await response.json()

    assert response.status == 500
    assert body["error"]["code"] == "internal_error"
    assert body["error"]["request_id"] == "trace-500"
    assert "trace-500" in body["error"]["message"]
    assert "disk on fire" not in raw
    assert "secret-path" not in raw
    assert "RuntimeError" not in raw
    assert "Traceback" not in raw
    errors = [
        r for r in caplog.records if r.name == "testoqa.server" and r.levelno == logging.ERROR
    ]
    assert len(errors) == 1
    assert errors[0].exc_info is not None
    assert isinstance(errors[0].exc_info[1], RuntimeError)
    assert errors[0].request_id == "trace-500"  # type: ignore[attr-defined]
    assert "Traceback" in caplog.text
    assert "disk on fire" in caplog.text


# --- audit trail --------------------------------------------------------------------


async def audit_events(services: Services, project_id: int, action: str) -> list[Any]:
    """Return the project's audit events of one action, newest first."""
    async with services.database.read() as session:
        events = await audit_repo.list_events(session, project_id)
    return [event for event in events if event.action == action]


async def test_audit_project_create(services: Services, tenant_a: Tenant) -> None:
    created = await audit_events(services, tenant_a.project_id, "project.create")
    assert len(created) == 1
    assert created[0].target == tenant_a.key
    assert created[0].actor == OPERATOR.id
    assert created[0].details == {"name": f"Project {tenant_a.key}"}


async def test_audit_token_create(services: Services, tenant_a: Tenant) -> None:
    events = await audit_events(services, tenant_a.project_id, "token.create")
    created = {event.target: event for event in events}
    assert set(created) == {f"{tenant_a.key}-1", f"{tenant_a.key}-2"}
    assert {event.details["role"] for event in events} == {"reporter", "viewer"}
    for secret in tenant_a.tokens.values():
        for event in events:
            assert secret[-43:] not in repr(vars(event))


async def test_audit_token_revoke(services: Services, tenant_a: Tenant) -> None:
    scope = await services.auth.resolve_scope(OPERATOR, tenant_a.key)
    ctx = operator_on(tenant_a, scope, "trace-revoke")
    number = token_number(tenant_a.tokens["viewer"])

    token_id = await services.admin.revoke_token(ctx, number)
    # A second revocation changes nothing, so it writes no second event.
    await services.admin.revoke_token(ctx, number)

    revoked = await audit_events(services, tenant_a.project_id, "token.revoke")
    assert len(revoked) == 1
    assert revoked[0].target == token_id
    assert revoked[0].request_id == "trace-revoke"
    assert revoked[0].actor == OPERATOR.id


async def test_audit_membership_changes(services: Services, tenant_a: Tenant) -> None:
    operator = RequestContext(request_id="trace-user", principal=OPERATOR)
    await services.admin.create_user(operator, "Lead@Example.com", "correct horse battery")
    scope = await services.auth.resolve_scope(OPERATOR, tenant_a.key)
    ctx = operator_on(tenant_a, scope, "trace-member")

    await services.admin.set_member(ctx, "lead@example.com", "viewer")
    await services.admin.set_member(ctx, "lead@example.com", "maintainer")

    users = await audit_events(services, INSTANCE_PROJECT_ID, "user.create")
    assert [event.target for event in users] == ["lead@example.com"]
    assert users[0].request_id == "trace-user"
    changes = await audit_events(services, tenant_a.project_id, "membership.set")
    by_role = {event.details["role"]: event for event in changes}
    assert len(changes) == 2
    assert by_role["viewer"].details["previous_role"] is None
    assert by_role["maintainer"].details["previous_role"] == "viewer"
    assert {event.target for event in changes} == {"lead@example.com"}
    assert {event.request_id for event in changes} == {"trace-member"}
