"""Sign-in, sessions and sign-out through the real app, on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

from ingest_server.services.container import Services
from tests.conftest import Tenant, sign_in


async def test_sign_in_opens_session(
    client: Any, services: Services, tenant_a: Tenant, backend: str
) -> None:
    member = await sign_in(client, services, tenant_a, role="viewer")
    response = await client.get("/account")
    assert response.status == 200
    assert member.email in await response.text()
