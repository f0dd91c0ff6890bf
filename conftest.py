"""Session-wide test fixtures: a real PostgreSQL server for the tests that need one.

The server is started from the ``initdb`` and ``postgres`` binaries on the
machine, on a temporary data directory and a free loopback port, and stopped
when the session ends. PostgreSQL refuses to run as root, so under root the
server runs as the ``postgres`` system user (or ``nobody``). Set
``TESTOQA_TEST_POSTGRES_URL`` to an admin URL such as
``postgresql://user@127.0.0.1:5432/postgres`` to use a server of your own.
When ``CI=true`` a PostgreSQL test never skips: a missing server fails it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

# pytester runs inner pytest sessions for the plugin tests.
pytest_plugins = ["pytester"]

POSTGRES_START_TIMEOUT = 60.0


@dataclass(frozen=True)
class PostgresServer:
    """A running PostgreSQL server the tests may create databases on."""

    host: str
    port: int
    user: str

    def url(self, database: str, driver: str = "postgresql+asyncpg") -> str:
        return f"{driver}://{self.user}@{self.host}:{self.port}/{database}"


def _find_binary(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"), reverse=True)
    return str(candidates[0]) if candidates else None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _run_as() -> list[str]:
    """Return the command prefix that drops root privileges, if the session has them."""
    if os.geteuid() != 0:
        return []
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
        except KeyError:
            continue
        return ["runuser", "-u", name, "--"]
    raise RuntimeError("running as root and no 'postgres' or 'nobody' user to run PostgreSQL as")


def _chown_for(prefix: list[str], path: Path) -> None:
    if prefix:
        user = pwd.getpwnam(prefix[2])
        os.chown(path, user.pw_uid, user.pw_gid)


def _accepts_queries(port: int) -> bool:
    """Return whether the server runs a query; an open port alone may still be starting up."""
    import asyncpg

    async def probe() -> None:
        connection = await asyncpg.connect(
            host="127.0.0.1", port=port, user="testoqa", database="postgres", timeout=2
        )
        await connection.close()

    # The caller may be inside a running event loop (an async fixture), so the
    # probe runs on a thread with a loop of its own.
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as executor:
        try:
            executor.submit(asyncio.run, probe()).result()
        except (OSError, asyncpg.PostgresError, TimeoutError):
            return False
    return True


def _wait_until_accepting(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + POSTGRES_START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"PostgreSQL exited early:\n{log.read_text(errors='replace')}")
        if _accepts_queries(port):
            return
        time.sleep(0.1)
    raise RuntimeError(f"PostgreSQL did not accept connections within {POSTGRES_START_TIMEOUT} s")


def start_postgres(workdir: Path) -> tuple[PostgresServer, subprocess.Popen[bytes]]:
    """Start PostgreSQL on a new cluster in workdir; the caller terminates the process."""
    initdb, postgres = _find_binary("initdb"), _find_binary("postgres")
    if initdb is None or postgres is None:
        raise FileNotFoundError("PostgreSQL binaries 'initdb' and 'postgres' are not installed")
    prefix = _run_as()
    _chown_for(prefix, workdir)
    data, log = workdir / "data", workdir / "postgres.log"
    subprocess.run(
        [
            *prefix,
            initdb,
            "-D",
            str(data),
            "-U",
            "testoqa",
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-sync",
        ],
        check=True,
        capture_output=True,
    )
    port = _free_port()
    with log.open("wb") as log_file:
        process = subprocess.Popen(
            [
                *prefix,
                postgres,
                "-D",
                str(data),
                "-p",
                str(port),
                "-h",
                "127.0.0.1",
                "-k",
                str(workdir),
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
                "-c",
                "max_connections=200",
            ],
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    _wait_until_accepting(port, process, log)
    return PostgresServer("127.0.0.1", port, "testoqa"), process


def stop_postgres(workdir: Path, process: subprocess.Popen[bytes]) -> None:
    """Stop the server with a fast shutdown, which does not wait for clients to disconnect."""
    pg_ctl = _find_binary("pg_ctl")
    if pg_ctl is not None:
        subprocess.run(
            [*_run_as(), pg_ctl, "-D", str(workdir / "data"), "-m", "fast", "-w", "stop"],
            capture_output=True,
            timeout=60,
            check=False,
        )
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """Start a throwaway PostgreSQL server once per test session, or skip without one."""
    configured = os.environ.get("TESTOQA_TEST_POSTGRES_URL")
    if configured:
        from sqlalchemy.engine import make_url

        url = make_url(configured)
        yield PostgresServer(url.host or "127.0.0.1", url.port or 5432, url.username or "postgres")
        return
    workdir = Path(tempfile.mkdtemp(prefix="testoqa-pg-"))
    try:
        server, process = start_postgres(workdir)
    except (FileNotFoundError, RuntimeError, subprocess.CalledProcessError) as exc:
        shutil.rmtree(workdir, ignore_errors=True)
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL is required when CI=true but could not start: {exc}")
        pytest.skip(f"PostgreSQL is not available: {exc}")
    try:
        yield server
    finally:
        stop_postgres(workdir, process)
        shutil.rmtree(workdir, ignore_errors=True)
