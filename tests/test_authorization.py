"""Authorization: every role against every action, through the services and over HTTP.

The expected table is written out here rather than read from
``services.authz``, so a change of the server's table must change this
file too.
"""

from __future__ import annotations

import itertools
import re
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from ingest_server import schemas
from ingest_server.repositories import executions as execution_repo
from ingest_server.services.authz import Action, Role, actions_for
from ingest_server.services.container import Services
from ingest_server.services.context import OPERATOR, Principal, RequestContext
from ingest_server.services.errors import InvalidInput, NotFound, PermissionDenied
from tests.conftest import Tenant

API = "/api/v1/projects"
STARTED_AT = "2026-01-01T00:00:00Z"
PATH_PARAM = re.compile(r"{(\w+)}")
PASSWORD = "correct horse battery"

EXPECTED: dict[tuple[Role, Action], bool] = {
    (Role.VIEWER, Action.READ_RESULTS): True,
    (Role.VIEWER, Action.REPORT_RESULTS): False,
    (Role.VIEWER, Action.MANAGE_TOKENS): False,
    (Role.VIEWER, Action.MANAGE_MEMBERS): False,
    (Role.VIEWER, Action.READ_AUDIT): False,
    (Role.REPORTER, Action.READ_RESULTS): True,
    (Role.REPORTER, Action.REPORT_RESULTS): True,
    (Role.REPORTER, Action.MANAGE_TOKENS): False,
    (Role.REPORTER, Action.MANAGE_MEMBERS): False,
    (Role.REPORTER, Action.READ_AUDIT): False,
    (Role.MAINTAINER, Action.READ_RESULTS): True,
    (Role.MAINTAINER, Action.REPORT_RESULTS): True,
    (Role.MAINTAINER, Action.MANAGE_TOKENS): True,
    (Role.MAINTAINER, Action.MANAGE_MEMBERS): False,
    (Role.MAINTAINER, Action.READ_AUDIT): False,
    (Role.ADMIN, Action.READ_RESULTS): True,
    (Role.ADMIN, Action.REPORT_RESULTS): True,
    (Role.ADMIN, Action.MANAGE_TOKENS): True,
    (Role.ADMIN, Action.MANAGE_MEMBERS): True,
    (Role.ADMIN, Action.READ_AUDIT): True,
}

# The action each API operation needs. A new operation fails
# test_route_actions_match until it is added here.
ROUTE_ACTIONS: dict[str, Action] = {
    "create_run": Action.REPORT_RESULTS,
    "list_runs": Action.READ_RESULTS,
    "get_run": Action.READ_RESULTS,
    "upsert_cases": Action.REPORT_RESULTS,
    "post_executions": Action.REPORT_RESULTS,
    "list_executions": Action.READ_RESULTS,
    "finish_run": Action.REPORT_RESULTS,
    "case_history": Action.READ_RESULTS,
    "run_report": Action.READ_RESULTS,
    "case_report": Action.READ_RESULTS,
    "compare_runs": Action.READ_RESULTS,
    "get_gate": Action.READ_RESULTS,
    "put_gate": Action.MANAGE_TOKENS,
    "run_gate": Action.READ_RESULTS,
    "flaky_tests": Action.READ_RESULTS,
    "slow_tests": Action.READ_RESULTS,
    "trends": Action.READ_RESULTS,
}
# Routes outside any project: their services check the caller themselves.
SIGNED_IN_ROUTES = (
    "list_projects",
    "list_personal_tokens",
    "create_personal_token",
    "revoke_personal_token",
)

TOKEN_ROLES = (Role.REPORTER, Role.VIEWER)


def operator_context() -> RequestContext:
    return RequestContext(request_id="test-operator", principal=OPERATOR)


def user_principal(user_id: int) -> Principal:
    return Principal(kind="user", id=f"user:{user_id}", user_id=user_id)


async def user_context(services: Services, user_id: int, key: str) -> RequestContext:
    """Build the context the web layer would build for this user on project key."""
    principal = user_principal(user_id)
    scope = await services.auth.resolve_scope(principal, key)
    return RequestContext(
        request_id="test-user", principal=principal, project_key=key, project=scope
    )


async def token_context(services: Services, secret: str, key: str) -> RequestContext:
    principal = await services.auth.authenticate_token(secret)
    scope = await services.auth.resolve_scope(principal, key)
    return RequestContext(
        request_id="test-token", principal=principal, project_key=key, project=scope
    )


async def add_user(services: Services, tenant: Tenant, email: str, role: Role) -> int:
    """Create a user and make it a member of the tenant's project with role."""
    operator = operator_context()
    user_id = await services.admin.create_user(operator, email, PASSWORD)
    scope = await services.auth.resolve_scope(OPERATOR, tenant.key)
    project_ctx = RequestContext(
        request_id="test-operator", principal=OPERATOR, project_key=tenant.key, project=scope
    )
    await services.admin.set_member(project_ctx, email, role.value)
    return user_id


def service_calls(services: Services) -> dict[Action, Callable[[RequestContext], Awaitable[Any]]]:
    """Return one real service call per action that a service performs.

    The member call changes a bystander's role, so it never alters the caller.
    NOTE: no service reads the audit trail yet, so READ_AUDIT is checked through
    RequestContext.require alone.
    """
    run = schemas.RunCreate.model_validate(
        {"client_run_id": f"authz-{uuid.uuid4().hex[:12]}", "started_at": STARTED_AT}
    )
    return {
        Action.READ_RESULTS: lambda ctx: services.runs.list(
            ctx, branch=None, status=None, limit=10, cursor=None
        ),
        Action.REPORT_RESULTS: lambda ctx: services.runs.create_or_join(ctx, run),
        Action.MANAGE_TOKENS: lambda ctx: services.admin.list_tokens(ctx),
        Action.MANAGE_MEMBERS: lambda ctx: services.admin.set_member(
            ctx, "bystander@example.com", "viewer"
        ),
    }


# --- the table ----------------------------------------------------------------


def test_table_covers_every_pair() -> None:
    assert set(EXPECTED) == set(itertools.product(Role, Action))


@pytest.mark.parametrize(("role", "action"), list(EXPECTED))
def test_authz_table(role: Role, action: Action) -> None:
    assert (action in actions_for(role)) is EXPECTED[role, action]


def test_token_roles_never_administer() -> None:
    for role in TOKEN_ROLES:
        assert not EXPECTED[role, Action.MANAGE_TOKENS]
        assert not EXPECTED[role, Action.MANAGE_MEMBERS]


# --- through the services -----------------------------------------------------


@pytest.fixture
async def bystander(services: Services, tenant_a: Tenant) -> int:
    """A viewer of project A whose role the MANAGE_MEMBERS check changes."""
    return await add_user(services, tenant_a, "bystander@example.com", Role.VIEWER)


@pytest.mark.parametrize("role", list(Role))
async def test_member_role_in_services(
    services: Services, tenant_a: Tenant, bystander: int, role: Role
) -> None:
    user_id = await add_user(services, tenant_a, f"{role.value}@example.com", role)
    ctx = await user_context(services, user_id, tenant_a.key)
    calls = service_calls(services)

    assert ctx.project is not None
    assert ctx.project.role == role
    for action in Action:
        allowed = EXPECTED[role, action]
        if allowed:
            assert ctx.require(action).id == tenant_a.project_id, action
        else:
            with pytest.raises(PermissionDenied):
                ctx.require(action)
        if action not in calls:
            continue
        if allowed:
            await calls[action](ctx)
        else:
            with pytest.raises(PermissionDenied, match=action.value):
                await calls[action](ctx)


@pytest.mark.parametrize("role", TOKEN_ROLES)
async def test_token_role_in_services(
    services: Services, tenant_a: Tenant, bystander: int, role: Role
) -> None:
    ctx = await token_context(services, tenant_a.tokens[role.value], tenant_a.key)
    calls = service_calls(services)

    assert ctx.project is not None
    assert ctx.project.role == role
    for action in Action:
        allowed = EXPECTED[role, action]
        if allowed:
            assert ctx.require(action).id == tenant_a.project_id, action
        else:
            with pytest.raises(PermissionDenied):
                ctx.require(action)
        if action not in calls:
            continue
        if allowed:
            await calls[action](ctx)
        else:
            with pytest.raises(PermissionDenied, match=action.value):
                await calls[action](ctx)


async def test_non_member_gets_not_found(services: Services, tenant_a: Tenant) -> None:
    operator = operator_context()
    user_id = await services.admin.create_user(operator, "stranger@example.com", PASSWORD)
    ctx = await user_context(services, user_id, tenant_a.key)
    calls = service_calls(services)

    assert ctx.project is None
    for action in Action:
        with pytest.raises(NotFound):
            ctx.require(action)
    for call in calls.values():
        with pytest.raises(NotFound):
            await call(ctx)


async def test_admin_of_a_not_b(services: Services, tenant_a: Tenant, tenant_b: Tenant) -> None:
    user_id = await add_user(services, tenant_a, "admin@example.com", Role.ADMIN)
    ctx = await user_context(services, user_id, tenant_b.key)

    assert ctx.project is None
    with pytest.raises(NotFound):
        await services.admin.list_tokens(ctx)
    with pytest.raises(NotFound):
        await services.admin.create_token(ctx, "sneaky", "reporter")
    with pytest.raises(NotFound):
        await services.admin.set_member(ctx, "admin@example.com", "admin")


async def test_maintainer_manages_tokens(services: Services, tenant_a: Tenant) -> None:
    user_id = await add_user(services, tenant_a, "maintainer@example.com", Role.MAINTAINER)
    ctx = await user_context(services, user_id, tenant_a.key)

    issued = await services.admin.create_token(ctx, "maintainer CI", "reporter")
    assert issued.token_id.startswith(f"{tenant_a.key}-")
    principal = await services.auth.authenticate_token(issued.secret)
    assert principal.token_project_id == tenant_a.project_id

    listed = {token.token_id: token for token in await services.admin.list_tokens(ctx)}
    assert issued.token_id in listed
    assert listed[issued.token_id].revoked_at is None

    number = int(issued.token_id.rsplit("-", 1)[1])
    assert await services.admin.revoke_token(ctx, number) == issued.token_id
    listed = {token.token_id: token for token in await services.admin.list_tokens(ctx)}
    assert listed[issued.token_id].revoked_at is not None

    with pytest.raises(PermissionDenied):
        await services.admin.set_member(ctx, "maintainer@example.com", "admin")


async def test_admin_manages_members(services: Services, tenant_a: Tenant) -> None:
    admin_id = await add_user(services, tenant_a, "admin@example.com", Role.ADMIN)
    maintainer_id = await add_user(services, tenant_a, "maintainer@example.com", Role.MAINTAINER)
    admin = await user_context(services, admin_id, tenant_a.key)

    issued = await services.admin.create_token(admin, "admin CI", "viewer")
    assert issued.token_id in [token.token_id for token in await services.admin.list_tokens(admin)]
    number = int(issued.token_id.rsplit("-", 1)[1])
    assert await services.admin.revoke_token(admin, number) == issued.token_id

    assert (
        await services.admin.set_member(admin, "maintainer@example.com", "viewer") == Role.VIEWER
    )
    demoted = await user_context(services, maintainer_id, tenant_a.key)
    assert demoted.project is not None
    assert demoted.project.role == Role.VIEWER
    with pytest.raises(PermissionDenied):
        await services.admin.list_tokens(demoted)


async def test_lower_roles_cannot_manage_tokens(services: Services, tenant_a: Tenant) -> None:
    for role in (Role.VIEWER, Role.REPORTER):
        user_id = await add_user(services, tenant_a, f"{role.value}@example.com", role)
        ctx = await user_context(services, user_id, tenant_a.key)
        with pytest.raises(PermissionDenied):
            await services.admin.create_token(ctx, "not allowed", "reporter")
        with pytest.raises(PermissionDenied):
            await services.admin.revoke_token(ctx, 1)
        with pytest.raises(PermissionDenied):
            await services.admin.list_tokens(ctx)
        with pytest.raises(PermissionDenied):
            await services.admin.set_member(ctx, f"{role.value}@example.com", "admin")


async def test_tokens_get_token_roles_only(services: Services, tenant_a: Tenant) -> None:
    user_id = await add_user(services, tenant_a, "admin@example.com", Role.ADMIN)
    ctx = await user_context(services, user_id, tenant_a.key)
    for role in (Role.MAINTAINER, Role.ADMIN):
        with pytest.raises(InvalidInput, match=role.value):
            await services.admin.create_token(ctx, "too strong", role.value)


async def test_users_cannot_create_projects(services: Services, tenant_a: Tenant) -> None:
    user_id = await add_user(services, tenant_a, "admin@example.com", Role.ADMIN)
    ctx = await user_context(services, user_id, tenant_a.key)
    with pytest.raises(NotFound):
        await services.admin.create_project(ctx, "NEWPROJ", "New project")
    with pytest.raises(NotFound):
        await services.admin.create_user(ctx, "someone@example.com", PASSWORD)


# --- over HTTP ----------------------------------------------------------------


async def served_operations(client: Any) -> list[tuple[str, str, dict[str, Any]]]:
    response = await client.get("/api/v1/openapi.json")
    assert response.status == 200
    document = await response.json()
    return [
        (method.upper(), path, operation)
        for path, item in document["paths"].items()
        for method, operation in item.items()
    ]


def request_body(operation_id: str) -> Any:
    """Return a valid body for the operation, or None when it takes none."""
    bodies: dict[str, Any] = {
        "create_run": {"client_run_id": f"http-{uuid.uuid4().hex[:12]}", "started_at": STARTED_AT},
        "upsert_cases": {"cases": [{"key": "tests/test_http.py::test_case"}]},
        "post_executions": {
            "executions": [
                {
                    "id": str(uuid.uuid4()),
                    "case_key": "tests/test_http.py::test_case",
                    "outcome": "passed",
                    "phase": "call",
                    "duration": 0.1,
                    "started_at": STARTED_AT,
                }
            ]
        },
        "finish_run": {"status": "finished", "finished_at": "2026-01-01T00:01:00Z"},
    }
    return bodies.get(operation_id)


@pytest.fixture
async def run_of_a(client: Any, services: Services, tenant_a: Tenant) -> dict[str, str]:
    """Path values of a run of project A with one case and one execution."""
    headers = tenant_a.auth("reporter")
    response = await client.post(
        f"{API}/{tenant_a.key}/runs", json=request_body("create_run"), headers=headers
    )
    assert response.status == 201
    run_id = (await response.json())["run_id"]
    response = await client.post(
        f"{API}/{tenant_a.key}/runs/{run_id}/executions",
        json=request_body("post_executions"),
        headers=headers,
    )
    assert response.status == 200
    async with services.database.read() as session:
        rows = await execution_repo.list_executions(
            session, tenant_a.project_id, uuid.UUID(run_id), limit=10
        )
    return {
        "key": tenant_a.key,
        "run": run_id,
        "case": str(rows[0].case_id),
        "number": "1",
    }


async def test_route_actions_match(client: Any) -> None:
    documented = {
        operation["operationId"]: operation["x-testoqa-action"]
        for _, _, operation in await served_operations(client)
    }
    expected = {name: action.value for name, action in ROUTE_ACTIONS.items()}
    expected.update({name: "signed_in" for name in SIGNED_IN_ROUTES})
    assert documented == expected


@pytest.mark.parametrize(
    ("role", "operation_id"), list(itertools.product(TOKEN_ROLES, ROUTE_ACTIONS))
)
async def test_token_role_over_http(
    client: Any, tenant_a: Tenant, run_of_a: dict[str, str], role: Role, operation_id: str
) -> None:
    operations = {op["operationId"]: (m, t, op) for m, t, op in await served_operations(client)}
    method, template, operation = operations[operation_id]
    path = PATH_PARAM.sub(lambda match: run_of_a[match[1]], template)
    body = request_body(operation_id)
    kwargs: dict[str, Any] = {"headers": tenant_a.auth(role.value)}
    if body is not None:
        kwargs["json"] = body
    if operation_id == "compare_runs":
        # The run is still running, so there is no finished run to default to.
        kwargs["params"] = {"base": run_of_a["run"], "head": run_of_a["run"]}

    response = await client.request(method, path, **kwargs)
    payload = await response.json()

    if EXPECTED[role, ROUTE_ACTIONS[operation_id]]:
        success = {int(status) for status in operation["responses"] if status.startswith("2")}
        assert response.status in success, payload
    else:
        assert response.status == 403, payload
        assert payload["error"]["code"] == "permission_denied"


async def test_no_token_gets_401(client: Any, tenant_a: Tenant, run_of_a: dict[str, str]) -> None:
    for method, template, operation in await served_operations(client):
        path = PATH_PARAM.sub(lambda match: run_of_a[match[1]], template)
        body = request_body(operation["operationId"])
        response = await client.request(method, path, json=body)
        payload = await response.json()
        assert response.status == 401, f"{method} {template}: {payload}"
        assert payload["error"]["code"] == "unauthenticated", f"{method} {template}"


async def test_revoked_token_gets_401(
    client: Any, services: Services, tenant_a: Tenant, run_of_a: dict[str, str]
) -> None:
    scope = await services.auth.resolve_scope(OPERATOR, tenant_a.key)
    ctx = RequestContext(
        request_id="test-operator", principal=OPERATOR, project_key=tenant_a.key, project=scope
    )
    issued = await services.admin.create_token(ctx, "short-lived", "reporter")
    headers = {"Authorization": f"Bearer {issued.secret}"}
    path = f"{API}/{tenant_a.key}/runs"

    response = await client.get(path, headers=headers)
    assert response.status == 200

    await services.admin.revoke_token(ctx, int(issued.token_id.rsplit("-", 1)[1]))
    response = await client.get(path, headers=headers)
    assert response.status == 401
