"""The ``testoqa-server`` command, run for real in subprocesses on temporary databases."""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import asyncpg
import pytest

from conftest import PostgresServer
from ingest_server.config import Settings
from ingest_server.db.migrate import head_revision, upgrade
from ingest_server.repositories import projects as project_repo
from ingest_server.services.auth import TOKEN_PATTERN
from ingest_server.services.container import Services
from ingest_server.services.context import OPERATOR, Principal, RequestContext

ROOT = Path(__file__).resolve().parent.parent
COMMANDS = (
    "serve",
    "migrate",
    "create-project",
    "create-user",
    "add-member",
    "create-token",
    "revoke-token",
    "list-tokens",
)
CLI_TIMEOUT = 60
SERVE_TIMEOUT = 60
STOP_TIMEOUT = 30
HTTP_TIMEOUT = 10
LISTENING = re.compile(r"listening on (http://127\.0\.0\.1:(\d+)) ")
PASSWORD = "correct horse battery"


def cli_env(database_url: str | None = None) -> dict[str, str]:
    """Return the environment of a CLI run: no TESTOQA_* settings of the caller leak in."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("TESTOQA_")}
    env["PYTHONUNBUFFERED"] = "1"
    if database_url is not None:
        env["TESTOQA_DATABASE_URL"] = database_url
    return env


def run_cli(
    cwd: Path, *args: str, stdin: str | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m ingest_server`` to completion, killing a hung command at the timeout."""
    return subprocess.run(
        [sys.executable, "-m", "ingest_server", *args],
        cwd=cwd,
        env=env or cli_env(),
        input=stdin,
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT,
        check=False,
    )


def sqlite_url(path: Path) -> str:
    return f"sqlite+aiosqlite:///{path}"


def http_get(
    base_url: str, path: str, token: str | None = None, request_id: str | None = None
) -> int:
    """GET path on a server these tests started on 127.0.0.1 and return the status."""
    match = LISTENING.match(f"listening on {base_url} ")
    assert match is not None, (
        f"not contacting {base_url}: only servers the tests start on 127.0.0.1"
    )
    connection = http.client.HTTPConnection("127.0.0.1", int(match[2]), timeout=HTTP_TIMEOUT)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    if request_id is not None:
        headers["X-Request-ID"] = request_id
    try:
        connection.request("GET", path, headers=headers)
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()


@dataclass
class Server:
    process: subprocess.Popen[str]
    url: str
    stderr_path: Path

    def stop(self) -> int:
        """Send SIGTERM and return the exit code."""
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=STOP_TIMEOUT)


def _forward_lines(stream: IO[str], lines: queue.Queue[str | None]) -> None:
    for line in stream:
        lines.put(line)
    lines.put(None)


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    """Start ``serve --port 0`` and wait for its banner. Teardown kills servers still running."""
    processes: list[subprocess.Popen[str]] = []
    readers: list[threading.Thread] = []

    def start(database_url: str, *extra: str) -> Server:
        stderr_path = tmp_path / f"serve-{len(processes)}.log"
        with stderr_path.open("w") as stderr:
            process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "ingest_server",
                    "serve",
                    "--port",
                    "0",
                    "--database-url",
                    database_url,
                    *extra,
                ],
                cwd=tmp_path,
                env=cli_env(),
                stdout=subprocess.PIPE,
                stderr=stderr,
                text=True,
            )
        processes.append(process)
        assert process.stdout is not None
        lines: queue.Queue[str | None] = queue.Queue()
        reader = threading.Thread(target=_forward_lines, args=(process.stdout, lines), daemon=True)
        reader.start()
        readers.append(reader)
        while True:
            try:
                line = lines.get(timeout=SERVE_TIMEOUT)
            except queue.Empty:
                pytest.fail(f"serve printed no URL within {SERVE_TIMEOUT} s")
            if line is None:
                process.wait(timeout=STOP_TIMEOUT)
                pytest.fail(
                    f"serve exited with {process.returncode} before listening:\n"
                    f"{stderr_path.read_text()}"
                )
            match = LISTENING.search(line)
            if match:
                return Server(process, match[1], stderr_path)

    yield start
    for process in processes:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=STOP_TIMEOUT)
    for reader in readers:
        reader.join(timeout=STOP_TIMEOUT)
    for process in processes:
        if process.stdout is not None:
            process.stdout.close()


async def _create_web_project(database_url: str) -> None:
    services = Services(Settings(database_url=database_url))
    try:
        await upgrade(services.database)
        operator = RequestContext(request_id="test-setup", principal=OPERATOR)
        await services.admin.create_project(operator, "WEB", "Web shop")
    finally:
        await services.close()


@pytest.fixture
def database(tmp_path: Path) -> str:
    """Return the URL of a new SQLite database that has the project WEB.

    The database is set up in this process because that is faster than a CLI
    run. test_create_project_prints_next_step covers the command itself.
    """
    url = sqlite_url(tmp_path / "cli.db")
    asyncio.run(_create_web_project(url))
    return url


def create_token(tmp_path: Path, database_url: str, role: str = "reporter") -> tuple[str, str]:
    """Create a token of project WEB and return (token id, secret)."""
    result = run_cli(
        tmp_path,
        "create-token",
        "WEB",
        "--name",
        "GitHub CI",
        "--role",
        role,
        "--database-url",
        database_url,
    )
    assert result.returncode == 0, result.stderr
    first, secret = result.stdout.splitlines()[:2]
    match = re.match(r"Created token (WEB-\d+) ", first)
    assert match is not None, result.stdout
    return match[1], secret


# --- help -------------------------------------------------------------------------


def test_help_lists_commands(tmp_path: Path) -> None:
    result = run_cli(tmp_path, "--help")
    assert result.returncode == 0, result.stderr
    for command in COMMANDS:
        assert re.search(rf"^\s+{command}\b", result.stdout, re.MULTILINE), command


@pytest.mark.parametrize("command", COMMANDS)
def test_command_help(tmp_path: Path, command: str) -> None:
    result = run_cli(tmp_path, command, "--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"usage: testoqa-server {command}")


def test_version(tmp_path: Path) -> None:
    result = run_cli(tmp_path, "--version")
    assert result.returncode == 0
    assert re.fullmatch(r"testoqa-server \d+\.\d+\.\d+\S*\n", result.stdout), result.stdout


def test_no_command_is_usage_error(tmp_path: Path) -> None:
    result = run_cli(tmp_path)
    assert result.returncode == 2
    assert "COMMAND" in result.stderr


# --- administration ----------------------------------------------------------------


def test_create_project_prints_next_step(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path / "new.db")
    result = run_cli(tmp_path, "create-project", "SHOP", "--name", "Shop", "--database-url", url)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Created project SHOP.")
    assert "create-token SHOP" in result.stdout


def test_duplicate_project_fails(tmp_path: Path, database: str) -> None:
    result = run_cli(
        tmp_path, "create-project", "WEB", "--name", "Again", "--database-url", database
    )
    assert result.returncode == 1
    assert "'WEB' already exists" in result.stderr


def test_create_token_prints_secret(tmp_path: Path, database: str) -> None:
    result = run_cli(
        tmp_path,
        "create-token",
        "WEB",
        "--name",
        "GitHub CI",
        "--role",
        "reporter",
        "--database-url",
        database,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "Created token WEB-1 (reporter). Its secret is shown only this once:"
    assert TOKEN_PATTERN.match(lines[1]), lines[1]


def test_list_and_revoke_tokens(tmp_path: Path, database: str) -> None:
    token_id, _ = create_token(tmp_path, database)

    listed = run_cli(tmp_path, "list-tokens", "WEB", "--database-url", database)
    assert listed.returncode == 0, listed.stderr
    header, row = listed.stdout.splitlines()
    assert header.split() == ["TOKEN_ID", "ROLE", "CREATED", "REVOKED", "NAME"]
    assert row.split()[:2] == [token_id, "reporter"]
    assert row.split()[3] == "-"
    assert row.endswith("GitHub CI")

    revoked = run_cli(tmp_path, "revoke-token", token_id, "--database-url", database)
    assert revoked.returncode == 0, revoked.stderr
    assert revoked.stdout == f"Revoked token {token_id}.\n"

    listed = run_cli(tmp_path, "list-tokens", "WEB", "--database-url", database)
    assert listed.returncode == 0, listed.stderr
    row = listed.stdout.splitlines()[1]
    assert row.split()[3] != "-"


def test_list_tokens_empty(tmp_path: Path, database: str) -> None:
    result = run_cli(tmp_path, "list-tokens", "WEB", "--database-url", database)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "Project WEB has no tokens.\n"


async def _role_of(database_url: str, email: str, project_key: str) -> str | None:
    services = Services(Settings(database_url=database_url))
    try:
        async with services.database.read() as session:
            user = await project_repo.get_user_by_email(session, email)
        assert user is not None, f"user {email} was not created"
        principal = Principal(kind="user", id=f"user:{user.id}", user_id=user.id)
        scope = await services.auth.resolve_scope(principal, project_key)
    finally:
        await services.close()
    return scope.role.value if scope is not None and scope.role is not None else None


def test_create_user_and_add_member(tmp_path: Path, database: str) -> None:
    created = run_cli(
        tmp_path,
        "create-user",
        "Lead@Example.com",
        "--password-stdin",
        "--database-url",
        database,
        stdin=f"{PASSWORD}\n",
    )
    assert created.returncode == 0, created.stderr
    assert created.stdout == "Created user lead@example.com.\n"
    assert PASSWORD not in created.stdout + created.stderr

    added = run_cli(
        tmp_path,
        "add-member",
        "lead@example.com",
        "WEB",
        "--role",
        "maintainer",
        "--database-url",
        database,
    )
    assert added.returncode == 0, added.stderr
    assert added.stdout == "lead@example.com is now maintainer on WEB.\n"
    assert asyncio.run(_role_of(database, "lead@example.com", "WEB")) == "maintainer"


def test_token_works_until_revoked(
    tmp_path: Path, database: str, start_server: Callable[..., Server]
) -> None:
    token_id, secret = create_token(tmp_path, database)
    server = start_server(database)
    runs = "/api/v1/projects/WEB/runs"

    assert http_get(server.url, runs, secret) == 200
    assert http_get(server.url, runs, "tqa_1_1_" + "x" * 43) == 401

    revoked = run_cli(tmp_path, "revoke-token", token_id, "--database-url", database)
    assert revoked.returncode == 0, revoked.stderr
    assert http_get(server.url, runs, secret) == 401
    assert server.stop() == 0


# --- bad input ----------------------------------------------------------------------

BAD_INPUT = [
    pytest.param(
        ["create-project", "bad key", "--name", "X"], None, 1, "'bad key'", id="key-space"
    ),
    pytest.param(["create-project", "web", "--name", "X"], None, 1, "'web'", id="key-lowercase"),
    pytest.param(
        ["create-token", "WEB", "--name", "CI", "--role", "admin"],
        None,
        2,
        "'admin'",
        id="token-role",
    ),
    pytest.param(
        ["add-member", "a@example.com", "WEB", "--role", "boss"], None, 2, "'boss'", id="role"
    ),
    pytest.param(["revoke-token", "nonsense"], None, 1, "'nonsense'", id="token-id"),
    pytest.param(["revoke-token", "WEB-99"], None, 1, "'WEB-99'", id="token-missing"),
    pytest.param(
        ["create-token", "NOPE", "--name", "CI", "--role", "viewer"],
        None,
        1,
        "'NOPE'",
        id="project-missing",
    ),
    pytest.param(["serve", "--port", "70000"], None, 2, "70000", id="port-high"),
    pytest.param(["serve", "--port", "-1"], None, 2, "-1", id="port-negative"),
    pytest.param(["serve", "--port", "eighty"], None, 2, "'eighty'", id="port-text"),
    pytest.param(
        ["create-user", "a@example.com", "--password-stdin"],
        "short\n",
        1,
        "invalid password",
        id="password-short",
    ),
    pytest.param(
        ["create-user", "a@example.com", "--password-stdin"],
        "\n",
        1,
        "no password",
        id="password-empty",
    ),
    pytest.param(
        ["create-user", "not-an-email", "--password-stdin"],
        f"{PASSWORD}\n",
        1,
        "'not-an-email'",
        id="email",
    ),
    pytest.param(
        ["add-member", "ghost@example.com", "WEB", "--role", "viewer"],
        None,
        1,
        "'ghost@example.com'",
        id="user-missing",
    ),
]


@pytest.mark.parametrize(("args", "stdin", "exit_code", "named"), BAD_INPUT)
def test_bad_input_named(
    tmp_path: Path,
    database: str,
    args: list[str],
    stdin: str | None,
    exit_code: int,
    named: str,
) -> None:
    result = run_cli(tmp_path, *args, "--database-url", database, stdin=stdin)
    assert result.returncode == exit_code, result.stderr
    assert named in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


@pytest.mark.parametrize(
    ("url", "named"),
    [
        ("mysql://user@localhost/testoqa", "'mysql'"),
        ("postgresql://user@localhost/testoqa", "'postgresql'"),
        ("not a url", "'not a url'"),
    ],
)
def test_unsupported_database_url(tmp_path: Path, url: str, named: str) -> None:
    result = run_cli(tmp_path, "migrate", "--database-url", url)
    assert result.returncode == 2
    assert named in result.stderr
    assert "Traceback" not in result.stderr


def test_unsupported_url_from_env(tmp_path: Path) -> None:
    result = run_cli(tmp_path, "migrate", env=cli_env("mysql://user@localhost/testoqa"))
    assert result.returncode == 2
    assert "'mysql'" in result.stderr


def test_short_password_not_echoed(tmp_path: Path, database: str) -> None:
    result = run_cli(
        tmp_path,
        "create-user",
        "a@example.com",
        "--password-stdin",
        "--database-url",
        database,
        stdin="hunter2\n",
    )
    assert result.returncode == 1
    assert "hunter2" not in result.stderr


# --- environment --------------------------------------------------------------------


def test_env_database_url_honoured(tmp_path: Path) -> None:
    path = tmp_path / "from-env.db"
    env = cli_env(sqlite_url(path))

    created = run_cli(tmp_path, "create-project", "ENV", "--name", "From env", env=env)
    assert created.returncode == 0, created.stderr
    assert path.exists()
    assert not (tmp_path / "testoqa.db").exists()

    listed = run_cli(tmp_path, "list-tokens", "ENV", "--database-url", sqlite_url(path))
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout == "Project ENV has no tokens.\n"


def test_flag_overrides_env(tmp_path: Path) -> None:
    env_path, flag_path = tmp_path / "env.db", tmp_path / "flag.db"
    env = cli_env(sqlite_url(env_path))

    result = run_cli(
        tmp_path,
        "create-project",
        "FLAG",
        "--name",
        "Flag",
        "--database-url",
        sqlite_url(flag_path),
        env=env,
    )
    assert result.returncode == 0, result.stderr
    assert flag_path.exists()
    assert not env_path.exists()


# --- serve and migrate ------------------------------------------------------------------


def test_serve_migrates_empty_sqlite(tmp_path: Path, start_server: Callable[..., Server]) -> None:
    path = tmp_path / "empty.db"
    path.touch()

    server = start_server(sqlite_url(path))

    assert http_get(server.url, "/healthz") == 200
    assert http_get(server.url, "/readyz") == 200
    assert server.stop() == 0
    log = server.stderr_path.read_text()
    assert "Traceback" not in log
    assert "stopping" in log


def test_serve_json_logs(
    tmp_path: Path, database: str, start_server: Callable[..., Server]
) -> None:
    """Each stderr line is one JSON object, and API lines carry the request fields."""
    _, secret = create_token(tmp_path, database)
    server = start_server(database, "--log-format", "json")

    status = http_get(server.url, "/api/v1/projects/WEB/runs", secret, "trace-json-1")
    assert status == 200
    assert server.stop() == 0

    log = server.stderr_path.read_text()
    lines = [json.loads(line) for line in log.splitlines()]
    access = [
        line
        for line in lines
        if line["logger"] == "testoqa.access" and line["request_id"] == "trace-json-1"
    ]
    assert len(access) == 1
    _, project_id, number, _ = secret.split("_", 3)
    assert access[0]["project_id"] == project_id
    assert access[0]["principal"] == f"token:{project_id}-{number}"
    assert secret not in log
    assert secret[-43:] not in log


def test_serve_port_in_use(tmp_path: Path, database: str) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_cli(tmp_path, "serve", "--port", str(port), "--database-url", database)
    assert result.returncode == 1
    assert f"127.0.0.1:{port}" in result.stderr


@pytest.fixture
def empty_postgres(postgres_server: PostgresServer) -> Iterator[str]:
    """Create a PostgreSQL database with no tables, return its URL and drop it afterwards."""
    name = f"testoqa_cli_{uuid.uuid4().hex[:10]}"

    async def execute(statement: str) -> None:
        admin = await asyncpg.connect(postgres_server.url("postgres", driver="postgresql"))
        try:
            await admin.execute(statement)
        finally:
            await admin.close()

    asyncio.run(execute(f"CREATE DATABASE {name}"))
    yield postgres_server.url(name)
    asyncio.run(execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))


@pytest.mark.postgres
def test_serve_postgres_needs_migrate(
    tmp_path: Path, empty_postgres: str, start_server: Callable[..., Server]
) -> None:
    unmigrated = run_cli(tmp_path, "serve", "--port", "0", "--database-url", empty_postgres)
    assert unmigrated.returncode == 1
    assert "testoqa-server migrate" in unmigrated.stderr
    assert unmigrated.stdout == ""

    migrated = run_cli(tmp_path, "migrate", "--database-url", empty_postgres)
    assert migrated.returncode == 0, migrated.stderr
    assert migrated.stdout == f"Upgraded the schema from empty to {head_revision()}.\n"

    again = run_cli(tmp_path, "migrate", "--database-url", empty_postgres)
    assert again.returncode == 0, again.stderr
    assert again.stdout == f"The schema is already current at revision {head_revision()}.\n"

    server = start_server(empty_postgres)
    assert http_get(server.url, "/readyz") == 200
    assert server.stop() == 0
