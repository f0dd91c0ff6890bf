"""Known runs for report tests, reported through the real v1 API.

``Reporter`` creates runs, collected cases and executions the way the
plugin does, so the summaries and reports under test are built by the same
code paths as in production.
"""

from __future__ import annotations

import datetime as dt
import itertools
import uuid
from dataclasses import dataclass, field
from typing import Any

from aiohttp.test_utils import TestClient

from tests.conftest import Tenant

Client = TestClient[Any, Any]

START = dt.datetime(2026, 3, 1, 9, 0, tzinfo=dt.UTC)
_session_numbers = itertools.count(1)


def at(seconds: float) -> str:
    """Return the ISO 8601 time that is ``seconds`` after START."""
    return (START + dt.timedelta(seconds=seconds)).isoformat()


def attempt(
    case_key: str,
    outcome: str = "passed",
    *,
    number: int = 1,
    started: float = 0.0,
    duration: float = 0.25,
    **fields: Any,
) -> dict[str, Any]:
    """Return one execution item as the plugin sends it."""
    return {
        "id": str(uuid.uuid4()),
        "case_key": case_key,
        "attempt": number,
        "outcome": outcome,
        "phase": "call",
        "duration": duration,
        "started_at": at(started),
        **fields,
    }


def failure(
    case_key: str, message: str, *, outcome: str = "failed", **fields: Any
) -> dict[str, Any]:
    """Return a failed attempt with a message and a pytest-like traceback."""
    traceback = f"def test():\n>       raise\nE       {message}\n\ntests/x.py:3: {message}"
    return attempt(case_key, outcome, message=message, traceback=traceback, **fields)


@dataclass
class Reporter:
    """Reports runs into one project through the API, with the project's reporter token."""

    client: Client
    tenant: Tenant
    run_ids: list[str] = field(default_factory=list)

    @property
    def base(self) -> str:
        return f"/api/v1/projects/{self.tenant.key}"

    async def start(self, *, started: float = 0.0, **fields: Any) -> str:
        body = {"client_run_id": f"session-{next(_session_numbers)}", "started_at": at(started)}
        response = await self.client.post(
            f"{self.base}/runs", json={**body, **fields}, headers=self.tenant.auth()
        )
        assert response.status in (200, 201), await response.text()
        run_id = str((await response.json())["run_id"])
        self.run_ids.append(run_id)
        return run_id

    async def collect(self, run_id: str, keys: list[str]) -> None:
        body = {"cases": [{"key": key, "name": key.rsplit("::", 1)[-1]} for key in keys]}
        response = await self.client.put(
            f"{self.base}/runs/{run_id}/cases", json=body, headers=self.tenant.auth()
        )
        assert response.status == 200, await response.text()

    async def send(self, run_id: str, items: list[dict[str, Any]]) -> dict[str, Any]:
        response = await self.client.post(
            f"{self.base}/runs/{run_id}/executions",
            json={"executions": items},
            headers=self.tenant.auth(),
        )
        assert response.status == 200, await response.text()
        result: dict[str, Any] = await response.json()
        return result

    async def finish(
        self, run_id: str, *, status: str = "finished", finished: float = 600.0
    ) -> dict[str, Any]:
        body = {"status": status, "finished_at": at(finished)}
        response = await self.client.post(
            f"{self.base}/runs/{run_id}/finish", json=body, headers=self.tenant.auth()
        )
        assert response.status == 200, await response.text()
        result: dict[str, Any] = await response.json()
        return result

    async def run(
        self,
        items: list[dict[str, Any]],
        *,
        started: float = 0.0,
        branch: str | None = "main",
        collected: list[str] | None = None,
        settle: str | None = "finished",
        **fields: Any,
    ) -> str:
        """Report a whole run: start, collect, send and, unless settle is None, finish."""
        ci = {"branch": branch, "commit": fields.pop("commit", "abc1234def")}
        if "build_url" in fields:
            ci["build_url"] = fields.pop("build_url")
        run_id = await self.start(started=started, ci=ci, **fields)
        if collected:
            await self.collect(run_id, collected)
        if items:
            await self.send(run_id, items)
        if settle is not None:
            await self.finish(run_id, status=settle, finished=started + 60)
        return run_id

    async def get_json(self, path: str, role: str = "viewer", **query: str) -> Any:
        response = await self.client.get(
            f"{self.base}{path}", params=query, headers=self.tenant.auth(role)
        )
        assert response.status == 200, await response.text()
        return await response.json()
