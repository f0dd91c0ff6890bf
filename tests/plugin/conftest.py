"""Fixtures for plugin tests: a real ingest server on a free loopback port, in a thread.

The server runs its own event loop on a background thread, so inner pytest
sessions started by pytester (in-process or as subprocesses) can report to
it while the test reads the results back over HTTP.
"""

from __future__ import annotations

import asyncio
import json
import threading
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from ingest_server.config import Settings
from ingest_server.db.engine import Database
from ingest_server.db.migrate import upgrade
from ingest_server.services.container import Services
from ingest_server.services.context import OPERATOR, RequestContext
from ingest_server.web.app import create_app

PROJECT = "PLUG"


@dataclass
class LiveServer:
    """A running ingest server with one project and a reporter token."""

    url: str
    project: str
    token: str
    services: Services
    loop: asyncio.AbstractEventLoop

    def get(self, path: str) -> Any:
        """GET an API path of the project and return the decoded JSON."""
        request = urllib.request.Request(
            f"{self.url}/api/v1/projects/{self.project}{path}",
            headers={"Authorization": f"Bearer {self.token}"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())

    def runs(self) -> list[dict[str, Any]]:
        return list(self.get("/runs?limit=500")["items"])

    def only_run(self) -> dict[str, Any]:
        """Return the detail of the one run stored; fail if there is not exactly one."""
        runs = self.runs()
        assert len(runs) == 1, f"expected one run, found {len(runs)}"
        return dict(self.get(f"/runs/{runs[0]['id']}"))

    def executions(self, run_id: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        cursor = ""
        while True:
            page = self.get(f"/runs/{run_id}/executions?limit=500{cursor}")
            items += page["items"]
            if not page["next_cursor"]:
                return items
            cursor = f"&cursor={page['next_cursor']}"

    def call(self, coroutine: Any) -> Any:
        """Run a coroutine on the server's loop, such as a service call, and return its result."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout=30)

    def env(self) -> dict[str, str]:
        """Environment variables that point an inner pytest session at this server."""
        return {"TESTOQA_URL": self.url, "TESTOQA_TOKEN": self.token}


async def _prepare(database_url: str) -> tuple[Services, str]:
    database = Database(database_url)
    await upgrade(database)
    services = Services(Settings(database_url=database_url), database)
    operator = RequestContext(request_id="test", principal=OPERATOR)
    await services.admin.create_project(operator, PROJECT, "Plugin tests")
    scope = await services.auth.resolve_scope(OPERATOR, PROJECT)
    ctx = RequestContext(request_id="test", principal=OPERATOR, project_key=PROJECT, project=scope)
    issued = await services.admin.create_token(ctx, "plugin tests", "reporter")
    return services, issued.secret


@pytest.fixture
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """Start a fresh server on SQLite at 127.0.0.1 and a free port; stop it afterwards."""
    database_url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('server') / 'testoqa.db'}"
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="live-server", daemon=True)
    thread.start()

    async def start() -> tuple[web.AppRunner, Services, str, int]:
        services, token = await _prepare(database_url)
        runner = web.AppRunner(create_app(services), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        return runner, services, token, port

    runner, services, token, port = asyncio.run_coroutine_threadsafe(start(), loop).result(30)
    try:
        yield LiveServer(f"http://127.0.0.1:{port}", PROJECT, token, services, loop)
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


@pytest.fixture
def spool_dir(tmp_path: Path) -> Path:
    return tmp_path / "spool"
