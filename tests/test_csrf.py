"""CSRF protection: every state-changing request of a session needs the session's token.

The routes are read from the app's router, so a form or route added later
is covered without editing this file.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

import pytest

from ingest_server.services.container import Services
from ingest_server.services.sessions import Attempt
from ingest_server.web.middlewares import LOGIN_CSRF_COOKIE
from tests.conftest import SIGN_IN_PASSWORD, Member, Tenant, create_member, sign_in

STATE_CHANGING = ("POST", "PUT", "PATCH", "DELETE")
PATH_PARAM = re.compile(r"{(\w+)}")
STARTED_AT = "2026-01-01T00:00:00Z"


def state_changing_routes(client: Any) -> list[tuple[str, str]]:
    """Return (method, path template) of every state-changing route but the sign-in form."""
    routes = {
        (route.method, route.resource.canonical)
        for route in client.server.app.router.routes()
        if route.method in STATE_CHANGING and route.resource is not None
    }
    routes.discard(("POST", "/login"))
    # Signing out ends the session the other requests use, so it goes last.
    return sorted(routes, key=lambda route: (route[1] == "/logout", route))


def fill(template: str, tenant: Tenant, member: Member) -> str:
    values = {"key": tenant.key, "number": "1", "user_id": str(member.user_id)}
    return PATH_PARAM.sub(lambda match: values.get(match[1], str(uuid.uuid4())), template)


async def send(
    client: Any, method: str, path: str, token: str | None, *, header: bool = False
) -> Any:
    """Send a state-changing request the way its caller would.

    Pages get a form with the token in a field, or in the header when
    header is set; JSON routes always get the token in the header.
    """
    if path.startswith("/api/"):
        headers = {"X-CSRF-Token": token} if token is not None else {}
        return await client.request(method, path, json={}, headers=headers, allow_redirects=False)
    headers = {"X-CSRF-Token": token} if header and token is not None else {}
    form = {} if header or token is None else {"csrf_token": token}
    return await client.request(method, path, data=form, headers=headers, allow_redirects=False)


async def assert_rejected(response: Any, method: str, path: str) -> None:
    assert response.status == 403, f"{method} {path}: {response.status}"
    if path.startswith("/api/"):
        body = await response.json()
        assert body["error"]["code"] == "csrf_failed", f"{method} {path}: {body}"
    else:
        assert response.content_type == "text/html", f"{method} {path}"
        assert "CSRF token" in await response.text(), f"{method} {path}"


@pytest.fixture
async def admin(client: Any, services: Services, tenant_a: Tenant) -> Member:
    return await sign_in(client, services, tenant_a, role="admin")


async def test_routes_enumerated(client: Any, admin: Member) -> None:
    routes = state_changing_routes(client)
    assert ("POST", "/logout") in routes
    assert ("POST", "/account/tokens") in routes
    assert ("POST", "/projects/{key}/settings/members") in routes


async def test_missing_token_rejected(client: Any, tenant_a: Tenant, admin: Member) -> None:
    for method, template in state_changing_routes(client):
        path = fill(template, tenant_a, admin)
        await assert_rejected(await send(client, method, path, None), method, path)


@pytest.mark.parametrize("header", [False, True], ids=["form", "header"])
async def test_wrong_token_rejected(
    client: Any, tenant_a: Tenant, admin: Member, header: bool
) -> None:
    wrong = admin.csrf_token[:-4] + "AAAA"
    for method, template in state_changing_routes(client):
        path = fill(template, tenant_a, admin)
        response = await send(client, method, path, wrong, header=header)
        await assert_rejected(response, method, path)


async def test_token_of_other_session_rejected(
    client: Any, services: Services, admin: Member
) -> None:
    # Another browser of the same user has a session, and a token, of its own.
    attempt = Attempt(address="127.0.0.1", user_agent=None, request_id="test")
    other = await services.sessions.sign_in(admin.email, SIGN_IN_PASSWORD, attempt)
    assert other.csrf_token != admin.csrf_token

    form = {"csrf_token": other.csrf_token, "name": "ci"}
    response = await client.post("/account/tokens", data=form)

    await assert_rejected(response, "POST", "/account/tokens")


@pytest.mark.parametrize("header", [False, True], ids=["form", "header"])
async def test_right_token_accepted(
    client: Any, tenant_a: Tenant, admin: Member, header: bool
) -> None:
    for method, template in state_changing_routes(client):
        if template == "/logout":
            continue
        path = fill(template, tenant_a, admin)
        response = await send(client, method, path, admin.csrf_token, header=header)
        # An admin may do everything, so a 403 here could only be the CSRF check.
        assert response.status != 403, f"{method} {path}: {await response.text()}"


async def test_token_creates_and_signs_out(client: Any, admin: Member) -> None:
    response = await client.post("/account/tokens", data=admin.form(name="dashboard"))
    assert response.status == 201

    response = await client.post("/logout", data=admin.form(), allow_redirects=False)
    assert response.status == 303
    assert response.headers["Location"] == "/login"


async def test_bearer_request_needs_no_token(client: Any, tenant_a: Tenant, admin: Member) -> None:
    # The browser's session cookie rides along, but the Bearer token decides.
    body = {"client_run_id": "csrf-free", "started_at": STARTED_AT}
    response = await client.post(
        f"/api/v1/projects/{tenant_a.key}/runs", json=body, headers=tenant_a.auth("reporter")
    )
    assert response.status == 201


async def test_sign_in_form_needs_cookie_pair(
    client: Any, services: Services, tenant_a: Tenant
) -> None:
    _, email = await create_member(services, tenant_a, "viewer")
    form = {"email": email, "password": SIGN_IN_PASSWORD, "csrf_token": "guessed"}

    response = await client.post("/login", data=form, allow_redirects=False)
    assert response.status == 403
    assert "CSRF token" in await response.text()

    client.session.cookie_jar.update_cookies({LOGIN_CSRF_COOKIE: "another"})
    response = await client.post("/login", data=form, allow_redirects=False)
    assert response.status == 403

    client.session.cookie_jar.update_cookies({LOGIN_CSRF_COOKIE: "guessed"})
    response = await client.post("/login", data=form, allow_redirects=False)
    assert response.status == 303
