"""Form bodies and path numbers that are not what a browser sends get a 4xx, never a 500."""

from __future__ import annotations

from typing import Any

import pytest

from ingest_server.services.container import Services
from tests.conftest import Tenant, input_values, sign_in

FORM = "application/x-www-form-urlencoded"
# "²" passes str.isdigit() but int() refuses it; 4400 digits exceed int()'s limit.
ODD_NUMBERS = ["%C2%B2", "1" * 4400, "-1", "0"]


async def test_login_with_raw_bytes(client: Any) -> None:
    page = await client.get("/login")
    [token] = input_values(await page.text(), "csrf_token")
    body = f"csrf_token={token}&email=a@example.com&password=".encode() + b"\xff\xfe"

    response = await client.post(
        "/login", data=body, headers={"Content-Type": FORM}, allow_redirects=False
    )

    assert response.status == 400
    assert "form body cannot be read" in await response.text()


async def test_signed_in_form_with_raw_bytes(
    client: Any, services: Services, tenant_a: Tenant
) -> None:
    member = await sign_in(client, services, tenant_a, role="admin")
    body = f"csrf_token={member.csrf_token}&name=".encode() + b"\xff\xfe"

    response = await client.post(
        "/account/tokens", data=body, headers={"Content-Type": FORM}, allow_redirects=False
    )

    assert response.status == 400


@pytest.mark.parametrize("number", ODD_NUMBERS)
async def test_odd_token_number_not_found(
    client: Any, services: Services, tenant_a: Tenant, number: str
) -> None:
    member = await sign_in(client, services, tenant_a, role="admin")

    page = await client.post(
        f"/account/tokens/{number}/revoke", data=member.form(), allow_redirects=False
    )
    api = await client.delete(f"/api/v1/account/tokens/{number}", headers=member.csrf_header)

    assert page.status == 404
    assert api.status == 404


@pytest.mark.parametrize("value", ["²", "1" * 5000, "-3", "2.5"])
async def test_odd_gate_maximum_rejected(
    client: Any, services: Services, tenant_a: Tenant, value: str
) -> None:
    member = await sign_in(client, services, tenant_a, role="admin")

    response = await client.post(
        f"/projects/{tenant_a.key}/gate",
        data=member.form(max_failed=value),
        allow_redirects=False,
    )

    assert response.status == 422
    assert "maximum of failed tests" in await response.text()
