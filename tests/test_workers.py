"""Several server processes: ``serve --workers N`` and live updates across processes.

Every test starts real ``testoqa-server serve`` processes on 127.0.0.1 with
port 0, on a PostgreSQL database of its own unless it checks that SQLite is
rejected.
"""

from __future__ import annotations

import asyncio
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import aiohttp
import pytest

from conftest import PostgresServer
from ingest_server.config import Settings
from ingest_server.services.container import Services
from tests.conftest import Tenant, _clone_postgres, make_tenant
from tests.live_events import next_event, read_until_closed
from tests.test_api_executions import at, execution
from tests.test_cli import cli_env, run_cli, sqlite_url

START_TIMEOUT = 60.0
STOP_TIMEOUT = 90.0
LISTENING = re.compile(r"listening on (http://127\.0\.0\.1:(\d+)) ")


@dataclass
class ServerProcess:
    """A ``testoqa-server serve`` process and the URL it printed."""

    process: subprocess.Popen[str]
    url: str
    log: Path

    def stop(self) -> int:
        """Send SIGTERM and return the exit status."""
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=STOP_TIMEOUT)


def _forward_lines(stream: IO[str], lines: queue.Queue[str | None]) -> None:
    for line in stream:
        lines.put(line)
    lines.put(None)


@dataclass
class Servers:
    """Starts servers for one test; stops the ones still running when it ends."""

    workdir: Path
    started: list[ServerProcess] = field(default_factory=list)

    def start(self, database_url: str, *extra: str) -> ServerProcess:
        log = self.workdir / f"serve-{len(self.started)}.log"
        with log.open("w") as stderr:
            process = subprocess.Popen(
                [
                    *(sys.executable, "-m", "ingest_server", "serve", "--port", "0"),
                    *("--database-url", database_url, *extra),
                ],
                cwd=self.workdir,
                env=cli_env(),
                stdout=subprocess.PIPE,
                stderr=stderr,
                text=True,
            )
        assert process.stdout is not None
        lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=_forward_lines, args=(process.stdout, lines), daemon=True).start()
        while True:
            line = lines.get(timeout=START_TIMEOUT)
            if line is None:
                process.wait(timeout=STOP_TIMEOUT)
                pytest.fail(f"serve exited with {process.returncode}:\n{log.read_text()}")
            match = LISTENING.search(line)
            if match:
                server = ServerProcess(process, match[1], log)
                self.started.append(server)
                return server

    def stop_all(self) -> None:
        for server in self.started:
            if server.process.poll() is None:
                server.process.kill()
                server.process.wait(timeout=STOP_TIMEOUT)
            if server.process.stdout is not None:
                server.process.stdout.close()


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[Servers]:
    started = Servers(tmp_path)
    yield started
    started.stop_all()


@pytest.fixture
async def postgres_url(postgres_server: PostgresServer, postgres_template: str) -> str:
    return await _clone_postgres(postgres_server, postgres_template)


@pytest.fixture
async def tenant(postgres_url: str) -> AsyncIterator[Tenant]:
    services = Services(Settings(database_url=postgres_url))
    try:
        yield await make_tenant(services, "LIVE")
    finally:
        await services.close()


def child_pids(parent: int) -> list[int]:
    """Return the pids of the processes whose parent is parent, from /proc."""
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # the process ended while the directory was listed
        if int(fields[1]) == parent:
            children.append(int(stat.parent.name))
    return sorted(children)


def command_line(pid: int) -> list[str]:
    return (Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0"))[:-1]


def is_running(pid: int) -> bool:
    """Return whether pid exists and is not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def wait_for_exit(pids: list[int]) -> list[int]:
    """Wait up to STOP_TIMEOUT for pids to end; return the ones still running."""
    deadline = time.monotonic() + STOP_TIMEOUT
    while any(is_running(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    return [pid for pid in pids if is_running(pid)]


# --- serve --workers -------------------------------------------------------------------


@pytest.mark.postgres
async def test_workers_share_one_port(servers: Servers, postgres_url: str) -> None:
    server = await asyncio.to_thread(servers.start, postgres_url, "--workers", "2")
    workers = child_pids(server.process.pid)
    assert len(workers) == 2
    for pid in workers:
        assert command_line(pid)[1:3] == ["-m", "ingest_server.workers"]
    # A new connection per request lets the kernel pick a worker each time.
    for _ in range(10):
        async with aiohttp.ClientSession() as session, session.get(f"{server.url}/healthz") as r:
            assert r.status == 200
    assert await asyncio.to_thread(server.stop) == 0
    assert await asyncio.to_thread(wait_for_exit, workers) == []


@pytest.mark.postgres
async def test_worker_exit_stops_server(servers: Servers, postgres_url: str) -> None:
    server = await asyncio.to_thread(servers.start, postgres_url, "--workers", "2")
    first, second = child_pids(server.process.pid)
    os.kill(first, signal.SIGKILL)
    status = await asyncio.to_thread(server.process.wait, STOP_TIMEOUT)
    assert status == 1
    assert await asyncio.to_thread(wait_for_exit, [second]) == []
    assert f"(pid {first}) exited with status -9" in server.log.read_text()


@pytest.mark.postgres
async def test_workers_end_with_killed_parent(servers: Servers, postgres_url: str) -> None:
    server = await asyncio.to_thread(servers.start, postgres_url, "--workers", "2")
    workers = child_pids(server.process.pid)
    server.process.kill()
    await asyncio.to_thread(server.process.wait, STOP_TIMEOUT)
    assert await asyncio.to_thread(wait_for_exit, workers) == []


def test_workers_reject_sqlite(tmp_path: Path) -> None:
    database = sqlite_url(tmp_path / "one.db")
    result = run_cli(tmp_path, "serve", "--workers", "2", "--database-url", database)
    assert result.returncode == 1
    assert "--workers 2 needs a PostgreSQL database" in result.stderr
    assert "use --workers 1" in result.stderr


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("0", "invalid worker count 0: use a value from 1 to 64"),
        ("65", "invalid worker count 65: use a value from 1 to 64"),
        ("two", "invalid worker count 'two': expected an integer"),
    ],
)
def test_workers_invalid_count(tmp_path: Path, value: str, message: str) -> None:
    result = run_cli(tmp_path, "serve", "--workers", value)
    assert result.returncode == 2
    assert message in result.stderr


# --- live updates across processes -----------------------------------------------------


async def _post(
    session: aiohttp.ClientSession, url: str, body: dict[str, Any], token: str
) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {token}"}
    async with session.post(url, json=body, headers=headers) as response:
        assert response.status in (200, 201), await response.text()
        result: dict[str, Any] = await response.json()
        return result


@pytest.mark.postgres
async def test_live_update_crosses_processes(
    servers: Servers, postgres_url: str, tenant: Tenant
) -> None:
    watched = await asyncio.to_thread(servers.start, postgres_url)
    reporting = await asyncio.to_thread(servers.start, postgres_url)
    reporter = tenant.tokens["reporter"]
    runs = f"{reporting.url}/api/v1/projects/{tenant.key}/runs"
    async with aiohttp.ClientSession() as session:
        body = {"client_run_id": "cross-1", "started_at": at(0), "collected_count": 2}
        run_id = (await _post(session, runs, body, reporter))["run_id"]
        events = f"{watched.url}/projects/{tenant.key}/runs/{run_id}/events"
        async with session.get(events, headers=tenant.auth("viewer")) as stream:
            assert stream.status == 200
            first = await next_event(stream)
            assert first.data["done"] == 0

            batch = {"executions": [execution("t::a", "passed"), execution("t::b", "failed")]}
            await _post(session, f"{runs}/{run_id}/executions", batch, reporter)
            update = await next_event(stream)
            assert update.data["counts"]["passed"] == 1
            assert update.data["counts"]["failed"] == 1
            assert update.data["done"] == 2

            finish = {"status": "finished", "finished_at": at(30)}
            await _post(session, f"{runs}/{run_id}/finish", finish, reporter)
            remaining = await read_until_closed(stream)
    assert [event.name for event in remaining] == ["finished"]
    assert remaining[0].data["status"] == "finished"
