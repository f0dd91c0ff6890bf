"""A first end-to-end pass through the v1 API on both databases."""

from __future__ import annotations

from typing import Any

from tests.conftest import Tenant


async def test_run_roundtrip(client: Any, tenant_a: Tenant) -> None:
    body = {"client_run_id": "s1", "started_at": "2026-01-01T00:00:00Z"}
    response = await client.post(
        f"/api/v1/projects/{tenant_a.key}/runs", json=body, headers=tenant_a.auth()
    )
    assert response.status == 201
    run = await response.json()
    assert run["created"] is True
