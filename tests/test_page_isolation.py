"""Tenant isolation of the pages: a member of project A gets 404 for every page of project B.

The page routes are read from the app's router, so pages added later are
checked without editing this file. Every path parameter is filled with a
real id of project B, so a 404 can only come from the project check.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import pytest

from ingest_server.services.container import Services
from ingest_server.web.routes import API_ROUTES
from tests.conftest import Member, Tenant, create_member, sign_in

PATH_PARAM = re.compile(r"{(\w+)}")
PROJECT_PAGES = "/projects/{key}"
STARTED_AT = "2026-01-01T00:00:00Z"
CASE_KEY = "tests/test_shop.py::test_checkout"


@dataclass(frozen=True)
class ProjectIds:
    """Real ids of project B to fill path parameters with."""

    values: dict[str, str]

    def fill(self, template: str) -> str:
        return PATH_PARAM.sub(lambda match: self.values.get(match[1], "1"), template)


def page_routes(client: Any, methods: tuple[str, ...]) -> list[str]:
    """Return the path templates of the project pages served with one of methods."""
    return sorted(
        {
            route.resource.canonical
            for route in client.server.app.router.routes()
            if route.method in methods
            and route.resource is not None
            and route.resource.canonical.startswith(PROJECT_PAGES)
        }
    )


async def seed_project_b(client: Any, services: Services, tenant: Tenant) -> ProjectIds:
    """Create a run of project B with one execution through the API; return its ids."""
    headers = tenant.auth("reporter")
    api = f"/api/v1/projects/{tenant.key}"
    body = {"client_run_id": "bravo-session", "started_at": STARTED_AT}
    response = await client.post(f"{api}/runs", json=body, headers=headers)
    assert response.status == 201
    run_id = (await response.json())["run_id"]

    execution = {
        "id": str(uuid.uuid4()),
        "case_key": CASE_KEY,
        "outcome": "failed",
        "phase": "call",
        "duration": 0.5,
        "started_at": STARTED_AT,
        "message": "assert 1 == 2",
    }
    response = await client.post(
        f"{api}/runs/{run_id}/executions", json={"executions": [execution]}, headers=headers
    )
    assert response.status == 200
    response = await client.get(f"{api}/runs/{run_id}/executions", headers=headers)
    [stored] = (await response.json())["items"]

    user_id, _ = await create_member(services, tenant, "admin")
    return ProjectIds(
        {
            "key": tenant.key,
            "run": run_id,
            "case": stored["case_id"],
            "number": "1",
            "user_id": str(user_id),
        }
    )


@pytest.fixture
async def bravo(client: Any, services: Services, tenant_b: Tenant) -> ProjectIds:
    return await seed_project_b(client, services, tenant_b)


@pytest.fixture
async def alpha_member(client: Any, services: Services, tenant_a: Tenant) -> Member:
    # An admin of A: the strongest role there must still see nothing of B.
    return await sign_in(client, services, tenant_a, role="admin")


async def test_project_pages_enumerated(client: Any) -> None:
    assert f"{PROJECT_PAGES}/settings" in page_routes(client, ("GET",))


async def test_member_of_a_gets_404(client: Any, bravo: ProjectIds, alpha_member: Member) -> None:
    for template in page_routes(client, ("GET",)):
        path = bravo.fill(template)
        response = await client.get(path, allow_redirects=False)
        assert response.status == 404, f"GET {path}: {response.status}"
        assert response.content_type == "text/html", path
        response.close()


async def test_member_of_a_cannot_post(
    client: Any, bravo: ProjectIds, alpha_member: Member
) -> None:
    for template in page_routes(client, ("POST", "PUT", "PATCH", "DELETE")):
        path = bravo.fill(template)
        form = alpha_member.form(name="intruder", role="admin", email=alpha_member.email)
        response = await client.post(path, data=form, allow_redirects=False)
        assert response.status == 404, f"POST {path}: {response.status}"


async def test_signed_out_sent_to_sign_in(client: Any, bravo: ProjectIds) -> None:
    for template in page_routes(client, ("GET",)):
        path = bravo.fill(template)
        response = await client.get(path, allow_redirects=False)
        assert response.status == 303, f"GET {path}: {response.status}"
        assert response.headers["Location"] == f"/login?next={quote(path, safe='/')}", path


async def test_member_of_b_not_refused(
    client: Any, services: Services, tenant_b: Tenant, bravo: ProjectIds
) -> None:
    """The same walk as a member of B finds every page, so the 404s above are real."""
    await sign_in(client, services, tenant_b, role="admin")
    for template in page_routes(client, ("GET",)):
        path = bravo.fill(template)
        response = await client.get(path, allow_redirects=False)
        assert response.status != 404, f"GET {path}: {response.status}"
        location = response.headers.get("Location", "")
        assert not location.startswith("/login"), f"GET {path}: {location}"
        response.close()


async def test_json_routes_with_session_cookie(
    client: Any, bravo: ProjectIds, alpha_member: Member
) -> None:
    project_routes = [route for route in API_ROUTES if "{key}" in route.path]
    assert project_routes
    for route in project_routes:
        path = bravo.fill(route.path)
        response = await client.request(
            route.method, path, json={}, headers=alpha_member.csrf_header
        )
        body = await response.json()
        assert response.status == 404, f"{route.method} {path}: {body}"
        assert body["error"]["code"] == "not_found", f"{route.method} {path}"
