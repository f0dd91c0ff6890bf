"""Measure execution ingest through the HTTP API against the database driver's ceiling.

For each database (SQLite, PostgreSQL) and each round, the script runs two
measurements on a fresh database:

* HTTP: the real server runs as a subprocess (``python -m ingest_server serve``)
  and several concurrent aiohttp clients, each reporting its own run, post
  batches of executions to ``POST /api/v1/projects/{key}/runs/{run}/executions``.
* driver ceiling: the same rows go straight into the ``executions`` table of an
  identical schema. SQLite uses ``sqlite3`` ``executemany`` in one transaction
  per batch with the server's pragmas, from one connection because SQLite
  takes one writer at a time. PostgreSQL uses asyncpg
  ``copy_records_to_table``, one batch per call, from as many connections as
  there are HTTP clients.

Both schemas come from the server's own ``migrate`` command, so columns,
indexes and foreign keys match. On PostgreSQL both paths run ``ANALYZE``
after their warm-up batches unless ``--no-analyze`` is given. For the HTTP
path the report also gives the server process's CPU time per batch, which
depends less on the machine's load than throughput does. Rounds are
interleaved and the report gives the median of the rounds, because a shared
machine is noisy. Everything listens on 127.0.0.1, and all subprocesses and
temporary files are removed on exit.

Run from the repository root with the server's dependencies installed::

    .venv/bin/python benchmarks/ingest.py --rounds 3 --batches 40
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import math
import os
import platform
import random
import re
import shlex
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from conftest import PostgresServer, start_postgres  # noqa: E402 - needs REPO_ROOT on sys.path

PROJECT_KEY = "BENCH"
HOST = "127.0.0.1"
TARGET_RATIO = 0.5
SERVER_START_TIMEOUT = 60.0
POSTGRES_CONNECT_TIMEOUT = 60.0
SERVER_STOP_TIMEOUT = 30.0
CLI_TIMEOUT = 120.0
REQUEST_TIMEOUT = 300.0
# The server accepts at most this many executions per request by default.
MAX_BATCH_SIZE = 1_000

# The simulated test suite: 200 modules of 25 tests, so 5,000 case keys.
SUITE_MODULES = 200
TESTS_PER_MODULE = 25
OUTCOME_WEIGHTS = {
    "passed": 84.0,
    "failed": 6.0,
    "error": 1.5,
    "skipped": 5.0,
    "xfailed": 2.5,
    "xpassed": 1.0,
}
EXECUTION_COLUMNS = (
    "project_id",
    "id",
    "run_id",
    "case_id",
    "attempt",
    "outcome",
    "phase",
    "duration",
    "started_at",
    "finished_at",
    "worker",
    "message",
    "traceback",
    "stdout",
    "stderr",
    "log",
    "reason",
    "parameters",
    "phases",
    "received_at",
)
# SQLAlchemy stores a SQLite DATETIME as this text, in UTC.
SQLITE_DATETIME_FORMAT = "%Y-%m-%d %H:%M:%S.%f"


class BenchmarkError(Exception):
    """A step of the benchmark failed; the message names the step and the cause."""


# --- workload -------------------------------------------------------------


@dataclass(frozen=True)
class Execution:
    """One generated execution, kept in Python types until a path encodes it."""

    id: uuid.UUID
    case_key: str
    attempt: int
    outcome: str
    phase: str
    duration: float
    started_at: dt.datetime
    worker: str
    message: str | None
    traceback: str | None
    stdout: str | None
    stderr: str | None
    log: str | None
    reason: str | None
    parameters: dict[str, str]
    phases: dict[str, dict[str, Any]]

    @property
    def finished_at(self) -> dt.datetime:
        return self.started_at + dt.timedelta(seconds=self.duration)

    def to_wire(self) -> dict[str, Any]:
        """Return the item as the v1 API takes it (``schemas.ExecutionIn``)."""
        item: dict[str, Any] = {
            "id": str(self.id),
            "case_key": self.case_key,
            "node_id": self.case_key,
            "attempt": self.attempt,
            "outcome": self.outcome,
            "phase": self.phase,
            "duration": self.duration,
            "started_at": self.started_at.isoformat(),
            "finished_at": self.finished_at.isoformat(),
            "worker": self.worker,
            "parameters": self.parameters,
            "phases": self.phases,
        }
        for name in ("message", "traceback", "stdout", "stderr", "log", "reason"):
            value = getattr(self, name)
            if value is not None:
                item[name] = value
        return item


@dataclass(frozen=True)
class Workload:
    """Batches per client, plus one warm-up batch per client that is not timed.

    Each client reports its own run and walks the suite in order, so within a
    run every case key appears once per attempt.
    """

    warmup: list[list[Execution]]
    batches: list[list[list[Execution]]]

    @property
    def clients(self) -> int:
        return len(self.batches)

    @property
    def timed_executions(self) -> int:
        return sum(len(batch) for client in self.batches for batch in client)

    def case_keys(self) -> list[str]:
        keys = {e.case_key for batch in self.warmup for e in batch}
        keys.update(e.case_key for client in self.batches for batch in client for e in batch)
        return sorted(keys)


def _suite_keys(rng: random.Random) -> list[tuple[str, dict[str, str]]]:
    """Return (case key, parameters) for every test of the simulated suite."""
    topics = ("checkout", "login", "search", "invoice", "export", "upload", "cache", "sync")
    backends = ("sqlite", "postgres", "memory")
    keys = []
    for module in range(SUITE_MODULES):
        for number in range(TESTS_PER_MODULE):
            name = f"test_{rng.choice(topics)}_{number:02d}"
            path = f"tests/test_mod_{module:03d}.py::{name}"
            if rng.random() < 0.6:
                parameters = {"backend": rng.choice(backends), "size": str(rng.randint(1, 500))}
                keys.append((f"{path}[{parameters['backend']}-{parameters['size']}]", parameters))
            else:
                keys.append((path, {}))
    return keys


def _traceback(rng: random.Random, case_key: str, message: str) -> str:
    """Return a pytest-style long traceback of a few frames for the failing test."""
    path, _, test = case_key.partition("::")
    test_name = test.split("[", 1)[0]
    lines = [
        f"{path.rsplit('/', 1)[-1]}:{rng.randint(10, 400)}: in {test_name}",
        f"    def {test_name}(client, settings):",
        "        response = client.post('/api/items', json=payload)",
        "        body = response.json()",
    ]
    for depth in range(rng.randint(2, 6)):
        module = rng.choice(("service", "repository", "handlers", "models", "validators"))
        error = rng.choice(("ValueError", "RuntimeError", "AssertionError"))
        lines += [
            "",
            f"src/app/{module}.py:{rng.randint(20, 900)}: in call_{depth}",
            f"    result = self._backend.run(request, attempt={depth})",
            "    if result.status != 'ok':",
            f"        raise {error}(result)",
        ]
    lines += ["", f">       assert body['total'] == {rng.randint(1, 99)}"]
    lines += [f"E       {line}" for line in message.splitlines()]
    lines += ["", f"{path}:{rng.randint(10, 400)}: AssertionError"]
    return "\n".join(lines)


def _captured_output(rng: random.Random, lines: int) -> str:
    return "\n".join(
        f"{rng.choice(('INFO', 'DEBUG', 'WARNING'))} step {index}: "
        f"processed {rng.randint(1, 10_000)} records in {rng.random():.3f} s"
        for index in range(lines)
    )


def _make_execution(
    rng: random.Random,
    case_key: str,
    parameters: dict[str, str],
    attempt: int,
    started_at: dt.datetime,
    worker: str,
) -> Execution:
    outcome = rng.choices(list(OUTCOME_WEIGHTS), weights=list(OUTCOME_WEIGHTS.values()))[0]
    duration = round(min(rng.lognormvariate(-3.5, 1.5), 120.0), 6)
    phase, message, traceback, reason = "call", None, None, None

    if outcome in ("failed", "error", "xfailed"):
        expected, actual = rng.randint(1, 99), rng.randint(100, 999)
        message = (
            f"AssertionError: assert {actual} == {expected}\n"
            f" +  where {actual} = <Response [200]>.json()['total']\n"
            f" +  and   {expected} = len(items)"
        )
        traceback = _traceback(rng, case_key, message)

    if outcome == "error":
        phase = rng.choice(("setup", "teardown"))
    if outcome == "skipped":
        phase, duration = "setup", 0.0
        reason = rng.choice(("requires network access", "not supported on this platform"))
    if outcome == "xfailed":
        reason = "known bug: totals round half up"

    captured = rng.random() < (0.5 if traceback else 0.1)
    return Execution(
        id=uuid.UUID(int=rng.getrandbits(128), version=4),
        case_key=case_key,
        attempt=attempt,
        outcome=outcome,
        phase=phase,
        duration=duration,
        started_at=started_at,
        worker=worker,
        message=message,
        traceback=traceback,
        stdout=_captured_output(rng, rng.randint(1, 30)) if captured else None,
        stderr=_captured_output(rng, 3) if rng.random() < 0.03 else None,
        log=_captured_output(rng, 10) if traceback and rng.random() < 0.3 else None,
        reason=reason,
        parameters=parameters,
        phases=_phases(outcome, phase, duration),
    )


def _phases(outcome: str, phase: str, duration: float) -> dict[str, dict[str, Any]]:
    """Return the per-phase results pytest reports for an outcome decided in phase."""
    if outcome in ("passed", "xpassed"):
        decided = "passed"
    elif outcome == "skipped":
        decided = "skipped"
    else:
        decided = "failed"
    if phase == "setup":
        return {"setup": {"outcome": decided, "duration": duration}}
    if phase == "teardown":
        return {
            "setup": {"outcome": "passed", "duration": 0.0004},
            "call": {"outcome": "passed", "duration": duration},
            "teardown": {"outcome": decided, "duration": 0.0002},
        }
    return {
        "setup": {"outcome": "passed", "duration": 0.0004},
        "call": {"outcome": decided, "duration": duration},
        "teardown": {"outcome": "passed", "duration": 0.0002},
    }


def make_workload(*, batches: int, batch_size: int, clients: int, seed: int) -> Workload:
    """Generate the batches; the same seed always gives the same ids and content."""
    rng = random.Random(seed)
    suite = _suite_keys(rng)
    start = dt.datetime(2026, 1, 5, 9, 0, tzinfo=dt.UTC)
    warmup = []
    per_client: list[list[list[Execution]]] = [[] for _ in range(clients)]
    for client in range(clients):
        # Warm-up keys live in their own module, so they create no case that
        # the timed batches use.
        warmup.append(
            [
                _make_execution(
                    rng, f"tests/test_warmup.py::test_{i}", {}, 1, start, f"gw{client}"
                )
                for i in range(batch_size)
            ]
        )
    for number in range(batches):
        client = number % clients
        position = len(per_client[client]) * batch_size
        batch = []
        for offset in range(position, position + batch_size):
            key, parameters = suite[offset % len(suite)]
            attempt = 1 + offset // len(suite)
            started_at = start + dt.timedelta(seconds=offset * 0.05)
            worker = f"gw{rng.randrange(4)}"
            batch.append(_make_execution(rng, key, parameters, attempt, started_at, worker))
        per_client[client].append(batch)
    return Workload(warmup=warmup, batches=per_client)


def encode_batch(batch: Sequence[Execution]) -> bytes:
    return json.dumps({"executions": [e.to_wire() for e in batch]}).encode()


# --- measurements ---------------------------------------------------------


@dataclass(frozen=True)
class Measurement:
    """One timed pass of all batches over one path."""

    database: str
    path: str
    executions: int
    seconds: float
    latencies: list[float]
    # CPU time the server process used while the timed batches ran, HTTP path only.
    server_cpu_seconds: float | None = None

    @property
    def executions_per_second(self) -> float:
        return self.executions / self.seconds

    @property
    def median_ms(self) -> float:
        return statistics.median(self.latencies) * 1000

    @property
    def p99_ms(self) -> float:
        return percentile(self.latencies, 0.99) * 1000

    @property
    def server_cpu_ms_per_batch(self) -> float | None:
        if self.server_cpu_seconds is None:
            return None
        return self.server_cpu_seconds * 1000 / len(self.latencies)


def percentile(values: Sequence[float], fraction: float) -> float:
    """Return the nearest-rank percentile; with fewer than 100 values p99 is the maximum."""
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


@dataclass
class Results:
    """Measurements of all rounds, keyed by (database, path)."""

    measurements: dict[tuple[str, str], list[Measurement]] = field(default_factory=dict)

    def add(self, measurement: Measurement) -> None:
        key = (measurement.database, measurement.path)
        self.measurements.setdefault(key, []).append(measurement)

    def median(self, database: str, path: str, metric: str) -> float | None:
        """Return the metric's median over the rounds, or None if no round measured it."""
        values = [getattr(m, metric) for m in self.measurements[(database, path)]]
        measured: list[float] = [value for value in values if value is not None]
        return statistics.median(measured) if measured else None


# --- subprocesses ---------------------------------------------------------


def run_cli(*args: str) -> str:
    """Run ``python -m ingest_server`` with args and return its standard output."""
    command = [sys.executable, "-m", "ingest_server", *args]
    try:
        completed = subprocess.run(
            command,
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=CLI_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise BenchmarkError(
            f"'testoqa-server {args[0]}' timed out after {CLI_TIMEOUT} s"
        ) from exc
    if completed.returncode != 0:
        raise BenchmarkError(
            f"'testoqa-server {args[0]}' failed with exit status {completed.returncode}: "
            f"{completed.stderr.strip() or completed.stdout.strip()}"
        )
    return completed.stdout


def create_project_and_token(database_url: str) -> str:
    """Create the benchmark project and a reporter token through the CLI; return the token."""
    run_cli(
        "create-project", PROJECT_KEY, "--name", "Ingest benchmark", "--database-url", database_url
    )
    output = run_cli(
        "create-token",
        PROJECT_KEY,
        "--name",
        "benchmark",
        "--role",
        "reporter",
        "--database-url",
        database_url,
    )
    return output.strip().splitlines()[-1]


def stop_process(process: subprocess.Popen[Any]) -> None:
    """Send SIGTERM, then SIGKILL if the process is still running after the timeout."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=SERVER_STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=SERVER_STOP_TIMEOUT)


@dataclass(frozen=True)
class RunningServer:
    url: str
    pid: int

    def cpu_seconds(self) -> float | None:
        """Return the user and system CPU time of all the server's threads, None off Linux."""
        try:
            stat = Path(f"/proc/{self.pid}/stat").read_text()
        except OSError:
            return None
        # Fields after the command name, which may contain spaces, start at field 3;
        # utime and stime are fields 14 and 15, in clock ticks.
        fields = stat.rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def running_server(database_url: str, workdir: Path, log_level: str) -> Iterator[RunningServer]:
    """Start ``ingest_server serve`` on a free loopback port; yield its URL and process id."""
    stdout_path, stderr_path = workdir / "server.out", workdir / "server.log"
    with stdout_path.open("w") as stdout, stderr_path.open("w") as stderr:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "ingest_server",
                "serve",
                "--host",
                HOST,
                "--port",
                "0",
                "--log-level",
                log_level,
                "--database-url",
                database_url,
            ],
            cwd=REPO_ROOT,
            stdout=stdout,
            stderr=stderr,
        )
    try:
        url = _wait_for_banner(process, stdout_path, stderr_path)
        yield RunningServer(url, process.pid)
    except Exception:
        # The work directory is removed on exit, so show the log's end now.
        print(f"end of the server log:\n{stderr_path.read_text()[-3000:]}", file=sys.stderr)
        raise
    finally:
        stop_process(process)


def _wait_for_banner(process: subprocess.Popen[Any], stdout: Path, stderr: Path) -> str:
    deadline = time.monotonic() + SERVER_START_TIMEOUT
    while time.monotonic() < deadline:
        found = re.search(r"listening on (http://\S+)", stdout.read_text())
        if found:
            return found.group(1)
        if process.poll() is not None:
            raise BenchmarkError(
                f"the server exited with status {process.returncode} before listening:\n"
                f"{stderr.read_text()[-2000:]}"
            )
        time.sleep(0.05)
    raise BenchmarkError(f"the server did not print its URL within {SERVER_START_TIMEOUT} s")


# --- HTTP path ------------------------------------------------------------


async def _post_json(http: aiohttp.ClientSession, url: str, body: bytes) -> dict[str, Any]:
    async with http.post(url, data=body, headers={"Content-Type": "application/json"}) as reply:
        text = await reply.text()
        if reply.status not in (200, 201):
            raise BenchmarkError(f"POST {url} returned {reply.status}: {text[:1000]}")
        result: dict[str, Any] = json.loads(text)
        return result


async def _post_batch(http: aiohttp.ClientSession, url: str, body: bytes, size: int) -> None:
    result = await _post_json(http, url, body)
    if result["accepted"] != size:
        raise BenchmarkError(f"the server accepted {result['accepted']} of {size}: {result}")


async def measure_http(
    database: str,
    server: RunningServer,
    token: str,
    workload: Workload,
    bodies: list[list[bytes]],
    after_warmup: Callable[[], Awaitable[None]] | None = None,
) -> Measurement:
    """Create one run per client, post the warm-up batches, then time the batches."""
    project_url = f"{server.url}/api/v1/projects/{PROJECT_KEY}"
    headers = {"Authorization": f"Bearer {token}"}
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT)
    connector = aiohttp.TCPConnector(limit=workload.clients)
    async with aiohttp.ClientSession(
        headers=headers, timeout=timeout, connector=connector
    ) as http:
        run_urls = []
        for client in range(workload.clients):
            run = {
                "client_run_id": f"bench-{uuid.uuid4().hex}",
                "name": f"benchmark client {client}",
                "started_at": dt.datetime.now(dt.UTC).isoformat(),
                "ci": {"provider": "benchmark", "branch": "main", "commit": "0" * 40},
            }
            created = await _post_json(http, f"{project_url}/runs", json.dumps(run).encode())
            run_urls.append(f"{project_url}/runs/{created['run_id']}/executions")
        await asyncio.gather(
            *(
                _post_batch(http, run_urls[client], encode_batch(batch), len(batch))
                for client, batch in enumerate(workload.warmup)
            )
        )
        if after_warmup is not None:
            await after_warmup()

        latencies: list[float] = []

        async def send_batches(client: int) -> None:
            for body, batch in zip(bodies[client], workload.batches[client], strict=True):
                batch_started = time.perf_counter()
                await _post_batch(http, run_urls[client], body, len(batch))
                latencies.append(time.perf_counter() - batch_started)

        cpu_at_start = server.cpu_seconds()
        started = time.perf_counter()
        await asyncio.gather(*(send_batches(client) for client in range(workload.clients)))
        elapsed = time.perf_counter() - started
        cpu_at_end = server.cpu_seconds()
    cpu = None if cpu_at_start is None or cpu_at_end is None else cpu_at_end - cpu_at_start
    return Measurement(database, "HTTP", workload.timed_executions, elapsed, latencies, cpu)


# --- driver ceiling: shared set-up ----------------------------------------


@dataclass(frozen=True)
class CeilingIds:
    """Run and case ids that the driver path creates itself, untimed."""

    project_id: int
    run_ids: list[uuid.UUID]
    case_ids: dict[str, uuid.UUID]

    @classmethod
    def for_workload(cls, workload: Workload, project_id: int) -> CeilingIds:
        return cls(
            project_id=project_id,
            run_ids=[uuid.uuid4() for _ in range(workload.clients)],
            case_ids={key: uuid.uuid4() for key in workload.case_keys()},
        )


def _row_values(e: Execution, ids: CeilingIds, client: int) -> tuple[Any, ...]:
    """Return the execution's columns, less received_at, in EXECUTION_COLUMNS order."""
    return (
        ids.project_id,
        e.id,
        ids.run_ids[client],
        ids.case_ids[e.case_key],
        e.attempt,
        e.outcome,
        e.phase,
        e.duration,
        e.started_at,
        e.finished_at,
        e.worker,
        e.message,
        e.traceback,
        e.stdout,
        e.stderr,
        e.log,
        e.reason,
        json.dumps(e.parameters),
        json.dumps(e.phases),
    )


# --- driver ceiling: SQLite -----------------------------------------------


def _sqlite_value(value: Any) -> Any:
    """Encode a value as SQLAlchemy stores it on SQLite: UUID as hex, UTC text datetimes."""
    if isinstance(value, uuid.UUID):
        return value.hex
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).strftime(SQLITE_DATETIME_FORMAT)
    return value


def _sqlite_rows(
    batch: Sequence[Execution], ids: CeilingIds, client: int
) -> list[tuple[Any, ...]]:
    return [tuple(_sqlite_value(v) for v in _row_values(e, ids, client)) for e in batch]


def _open_sqlite(path: Path) -> sqlite3.Connection:
    """Open a connection with the server's pragmas (see ingest_server/db/engine.py)."""
    connection = sqlite3.connect(path, isolation_level=None)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA foreign_keys=ON")
    connection.execute("PRAGMA synchronous=FULL")
    connection.execute("PRAGMA busy_timeout=10000")
    return connection


def _sqlite_create_parents(connection: sqlite3.Connection, ids: CeilingIds) -> None:
    now = dt.datetime.now(dt.UTC).strftime(SQLITE_DATETIME_FORMAT)
    connection.execute("BEGIN IMMEDIATE")
    connection.executemany(
        "INSERT INTO test_runs (project_id, id, status, started_at, environment, created_at) "
        "VALUES (?, ?, 'running', ?, '{}', ?)",
        [(ids.project_id, run_id.hex, now, now) for run_id in ids.run_ids],
    )
    connection.executemany(
        "INSERT INTO test_cases (project_id, id, key, node_id, markers, first_seen_at, "
        "last_seen_at) VALUES (?, ?, ?, ?, '[]', ?, ?)",
        [
            (ids.project_id, case_id.hex, key, key, now, now)
            for key, case_id in ids.case_ids.items()
        ],
    )
    connection.execute("COMMIT")


def measure_sqlite_ceiling(path: Path, workload: Workload, ids: CeilingIds) -> Measurement:
    """Insert the warm-up batches, then time every batch in its own transaction."""
    insert = (
        f"INSERT INTO executions ({', '.join(EXECUTION_COLUMNS)}) "
        f"VALUES ({', '.join('?' * len(EXECUTION_COLUMNS))})"
    )
    warmup = [_sqlite_rows(batch, ids, client) for client, batch in enumerate(workload.warmup)]
    # One writer at a time, taking the clients' batches in turn as the HTTP
    # clients would send them.
    timed = []
    for number in range(max(len(batches) for batches in workload.batches)):
        for client, batches in enumerate(workload.batches):
            if number < len(batches):
                timed.append(_sqlite_rows(batches[number], ids, client))
    connection = _open_sqlite(path)
    try:
        _sqlite_create_parents(connection, ids)

        def write(rows: list[tuple[Any, ...]]) -> None:
            received_at = dt.datetime.now(dt.UTC).strftime(SQLITE_DATETIME_FORMAT)
            connection.execute("BEGIN IMMEDIATE")
            connection.executemany(insert, [(*row, received_at) for row in rows])
            connection.execute("COMMIT")

        for rows in warmup:
            write(rows)
        latencies = []
        started = time.perf_counter()
        for rows in timed:
            batch_started = time.perf_counter()
            write(rows)
            latencies.append(time.perf_counter() - batch_started)
        elapsed = time.perf_counter() - started
    finally:
        connection.close()
    return Measurement("sqlite", "driver ceiling", workload.timed_executions, elapsed, latencies)


# --- driver ceiling: PostgreSQL -------------------------------------------


async def connect(server: PostgresServer, database: str) -> asyncpg.Connection:
    """Connect, retrying while PostgreSQL still starts up after accepting TCP connections."""
    deadline = time.monotonic() + POSTGRES_CONNECT_TIMEOUT
    while True:
        try:
            return await asyncpg.connect(
                host=server.host, port=server.port, user=server.user, database=database
            )
        except asyncpg.CannotConnectNowError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)


async def analyze(server: PostgresServer, database: str) -> None:
    """Collect planner statistics, as autovacuum does on a database in use.

    A table that was never analyzed gives the planner no row counts. On
    PostgreSQL 15 (checked with EXPLAIN), the foreign-key check of executions
    against test_cases then scans the index on (project_id, key) for the whole
    project instead of using the primary key.
    """
    connection = await connect(server, database)
    try:
        await connection.execute("ANALYZE")
    finally:
        await connection.close()


async def _postgres_create_parents(connection: asyncpg.Connection, ids: CeilingIds) -> None:
    now = dt.datetime.now(dt.UTC)
    async with connection.transaction():
        await connection.executemany(
            "INSERT INTO test_runs (project_id, id, status, started_at, environment, created_at)"
            " VALUES ($1, $2, 'running', $3, '{}', $3)",
            [(ids.project_id, run_id, now) for run_id in ids.run_ids],
        )
        await connection.executemany(
            "INSERT INTO test_cases (project_id, id, key, node_id, markers, first_seen_at, "
            "last_seen_at) VALUES ($1, $2, $3, $4, '[]', $5, $5)",
            [(ids.project_id, case_id, key, key, now) for key, case_id in ids.case_ids.items()],
        )


async def measure_postgres_ceiling(
    server: PostgresServer, database: str, workload: Workload, ids: CeilingIds, *, analyze: bool
) -> Measurement:
    """Copy each batch with copy_records_to_table, one connection per HTTP client."""
    rows = [
        [[_row_values(e, ids, client) for e in batch] for batch in batches]
        for client, batches in enumerate(workload.batches)
    ]
    warmup = [
        [_row_values(e, ids, client) for e in batch]
        for client, batch in enumerate(workload.warmup)
    ]
    connections = [await connect(server, database) for _ in range(workload.clients)]
    try:
        await _postgres_create_parents(connections[0], ids)
        latencies: list[float] = []

        async def copy(connection: asyncpg.Connection, batch: list[tuple[Any, ...]]) -> None:
            received_at = dt.datetime.now(dt.UTC)
            await connection.copy_records_to_table(
                "executions",
                records=[(*row, received_at) for row in batch],
                columns=EXECUTION_COLUMNS,
            )

        async def copy_batches(client: int) -> None:
            for batch in rows[client]:
                batch_started = time.perf_counter()
                await copy(connections[client], batch)
                latencies.append(time.perf_counter() - batch_started)

        await asyncio.gather(*(copy(connections[c], b) for c, b in enumerate(warmup)))
        if analyze:
            await connections[0].execute("ANALYZE")
        started = time.perf_counter()
        await asyncio.gather(*(copy_batches(client) for client in range(workload.clients)))
        elapsed = time.perf_counter() - started
    finally:
        for connection in connections:
            await connection.close()
    return Measurement(
        "postgresql", "driver ceiling", workload.timed_executions, elapsed, latencies
    )


# --- databases ------------------------------------------------------------


@dataclass
class SqliteBench:
    """A migrated SQLite file with the project and token, copied for each measurement."""

    workdir: Path
    template: Path
    token: str
    measurements: int = 0

    @classmethod
    def prepare(cls, workdir: Path) -> SqliteBench:
        template = workdir / "template.db"
        url = f"sqlite+aiosqlite:///{template}"
        run_cli("migrate", "--database-url", url)
        token = create_project_and_token(url)
        return cls(workdir, template, token)

    def fresh_copy(self) -> Path:
        self.measurements += 1
        path = self.workdir / f"measurement-{self.measurements}.db"
        shutil.copyfile(self.template, path)
        return path

    @staticmethod
    def remove(path: Path) -> None:
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)


@dataclass
class PostgresBench:
    """A PostgreSQL server with a migrated template database, cloned for each measurement."""

    server: PostgresServer
    token: str
    version: str
    measurements: int = 0
    template: str = "bench_template"

    @classmethod
    async def prepare(cls, server: PostgresServer) -> PostgresBench:
        admin = await cls._admin(server)
        try:
            await admin.execute(f"CREATE DATABASE {cls.template}")
            version = await admin.fetchval("SHOW server_version")
        finally:
            await admin.close()
        url = server.url(cls.template)
        run_cli("migrate", "--database-url", url)
        token = create_project_and_token(url)
        return cls(server, token, str(version))

    @staticmethod
    async def _admin(server: PostgresServer) -> asyncpg.Connection:
        return await connect(server, "postgres")

    async def fresh_database(self) -> str:
        self.measurements += 1
        name = f"bench_{self.measurements}"
        admin = await self._admin(self.server)
        try:
            await admin.execute(f"CREATE DATABASE {name} TEMPLATE {self.template}")
        finally:
            await admin.close()
        return name

    async def drop(self, name: str) -> None:
        admin = await self._admin(self.server)
        try:
            await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        finally:
            await admin.close()


def project_id_in_sqlite(path: Path) -> int:
    with contextlib.closing(sqlite3.connect(path)) as connection:
        row = connection.execute(
            "SELECT id FROM projects WHERE key = ?", (PROJECT_KEY,)
        ).fetchone()
    return int(row[0])


async def project_id_in_postgres(server: PostgresServer, database: str) -> int:
    connection = await connect(server, database)
    try:
        return int(
            await connection.fetchval("SELECT id FROM projects WHERE key = $1", PROJECT_KEY)
        )
    finally:
        await connection.close()


# --- rounds ---------------------------------------------------------------


@dataclass(frozen=True)
class Options:
    batches: int
    batch_size: int
    clients: int
    rounds: int
    databases: list[str]
    seed: int
    server_log_level: str
    analyze: bool


async def sqlite_round(
    bench: SqliteBench, workload: Workload, bodies: list[list[bytes]], options: Options, path: str
) -> Measurement:
    database = bench.fresh_copy()
    try:
        if path == "HTTP":
            url = f"sqlite+aiosqlite:///{database}"
            with running_server(url, bench.workdir, options.server_log_level) as server:
                return await measure_http("sqlite", server, bench.token, workload, bodies)
        ids = CeilingIds.for_workload(workload, project_id_in_sqlite(database))
        return await asyncio.to_thread(measure_sqlite_ceiling, database, workload, ids)
    finally:
        bench.remove(database)


async def postgres_round(
    bench: PostgresBench,
    workdir: Path,
    workload: Workload,
    bodies: list[list[bytes]],
    options: Options,
    path: str,
) -> Measurement:
    database = await bench.fresh_database()
    try:
        if path == "HTTP":
            url = bench.server.url(database)
            after_warmup = None
            if options.analyze:

                async def after_warmup() -> None:
                    await analyze(bench.server, database)

            with running_server(url, workdir, options.server_log_level) as server:
                return await measure_http(
                    "postgresql", server, bench.token, workload, bodies, after_warmup
                )
        ids = CeilingIds.for_workload(
            workload, await project_id_in_postgres(bench.server, database)
        )
        return await measure_postgres_ceiling(
            bench.server, database, workload, ids, analyze=options.analyze
        )
    finally:
        await bench.drop(database)


def describe(measurement: Measurement, round_number: int, rounds: int) -> str:
    line = (
        f"round {round_number}/{rounds}  {measurement.database:<10} {measurement.path:<14} "
        f"{measurement.executions:,} executions in {measurement.seconds:.2f} s: "
        f"{measurement.executions_per_second:,.0f}/s, "
        f"batch median {measurement.median_ms:.1f} ms, p99 {measurement.p99_ms:.1f} ms"
    )
    cpu = measurement.server_cpu_ms_per_batch
    return line if cpu is None else f"{line}, server CPU {cpu:.1f} ms per batch"


async def run_benchmark(
    options: Options, stack: contextlib.ExitStack
) -> tuple[Results, dict[str, str]]:
    """Prepare the databases, then run the interleaved rounds; return results and versions."""
    workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="testoqa-bench-")))
    print(f"generating {options.batches} batches of {options.batch_size} executions", flush=True)
    workload = make_workload(
        batches=options.batches,
        batch_size=options.batch_size,
        clients=options.clients,
        seed=options.seed,
    )
    bodies = [[encode_batch(batch) for batch in batches] for batches in workload.batches]
    size = sum(len(body) for batches in bodies for body in batches)
    print(f"request bodies: {size / 1e6:.1f} MB in total", flush=True)

    versions = {}
    sqlite_bench = postgres_bench = None
    if "sqlite" in options.databases:
        versions["sqlite"] = sqlite3.sqlite_version
        sqlite_bench = SqliteBench.prepare(workdir)
    if "postgresql" in options.databases:
        postgres_bench = await start_postgres_bench(stack)
        versions["postgresql"] = postgres_bench.version

    results = Results()
    for round_number in range(1, options.rounds + 1):
        # Alternate which path goes first, so a drift of the machine's speed
        # during a round does not always favour the same path.
        paths = ["HTTP", "driver ceiling"]
        if round_number % 2 == 0:
            paths.reverse()
        for path in paths:
            if sqlite_bench is not None:
                measurement = await sqlite_round(sqlite_bench, workload, bodies, options, path)
                results.add(measurement)
                print(describe(measurement, round_number, options.rounds), flush=True)
            if postgres_bench is not None:
                measurement = await postgres_round(
                    postgres_bench, workdir, workload, bodies, options, path
                )
                results.add(measurement)
                print(describe(measurement, round_number, options.rounds), flush=True)
    return results, versions


async def start_postgres_bench(stack: contextlib.ExitStack) -> PostgresBench:
    """Start a throwaway PostgreSQL server that the stack stops and removes on exit."""
    # start_postgres hands this directory to an unprivileged user under root,
    # so it cannot live inside the root-only benchmark directory.
    workdir = Path(tempfile.mkdtemp(prefix="testoqa-bench-pg-"))
    stack.callback(shutil.rmtree, workdir, ignore_errors=True)
    try:
        server, process = start_postgres(workdir)
    except FileNotFoundError as exc:
        raise BenchmarkError(f"{exc}: install PostgreSQL or pass --databases sqlite") from exc
    stack.callback(stop_process, process)
    print(f"PostgreSQL listening on {server.host}:{server.port}", flush=True)
    return await PostgresBench.prepare(server)


# --- report ---------------------------------------------------------------


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def format_load(load: tuple[float, float, float]) -> str:
    return ", ".join(f"{value:.1f}" for value in load)


def report(
    results: Results,
    options: Options,
    versions: dict[str, str],
    load_at_start: tuple[float, float, float],
) -> str:
    """Return the Markdown report: command, machine, table of medians and the target check."""
    lines = [
        f"Command: `{shlex.join(sys.orig_argv)}`",
        "",
        f"Machine: {os.cpu_count()} CPUs (nproc {len(os.sched_getaffinity(0))}), {cpu_model()}, "
        f"{platform.system()} {platform.release()}, Python {platform.python_version()}, "
        + ", ".join(f"{name} {version}" for name, version in versions.items())
        + f". Load average (1, 5, 15 min): {format_load(load_at_start)} at the start, "
        f"{format_load(os.getloadavg())} at the end.",
        "",
        f"Workload: {options.clients} concurrent clients, {options.batches} batches of "
        f"{options.batch_size} executions per measurement after one warm-up batch per client, "
        f"medians of {options.rounds} rounds. PostgreSQL: "
        + ("ANALYZE after the warm-up." if options.analyze else "no ANALYZE (--no-analyze)."),
        "",
        "| database | path | executions/s | batch median (ms) | batch p99 (ms) "
        "| HTTP/ceiling | server CPU per batch (ms) |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    verdicts = []
    for database in options.databases:
        http = results.median(database, "HTTP", "executions_per_second")
        ceiling = results.median(database, "driver ceiling", "executions_per_second")
        # Every round measures throughput, so neither median is None.
        assert http is not None
        assert ceiling is not None
        ratio = http / ceiling
        for path in ("HTTP", "driver ceiling"):
            cpu = results.median(database, path, "server_cpu_ms_per_batch")
            cells = [
                database,
                path,
                f"{results.median(database, path, 'executions_per_second'):,.0f}",
                f"{results.median(database, path, 'median_ms'):.1f}",
                f"{results.median(database, path, 'p99_ms'):.1f}",
                f"{ratio:.2f}" if path == "HTTP" else "",
                f"{cpu:.1f}" if cpu is not None else "",
            ]
            lines.append("| " + " | ".join(cells) + " |")
        verdict = "met" if ratio >= TARGET_RATIO else "not met"
        verdicts.append(f"{database} {verdict} ({ratio:.2f})")
    lines += ["", f"Target HTTP/ceiling >= {TARGET_RATIO}: " + ", ".join(verdicts) + "."]
    return "\n".join(lines)


# --- command line ---------------------------------------------------------


def _bounded_int(minimum: int, maximum: int) -> Any:
    def parse(value: str) -> int:
        try:
            number = int(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"invalid integer {value!r}") from None
        if not minimum <= number <= maximum:
            raise argparse.ArgumentTypeError(
                f"invalid value {number}: use a value from {minimum} to {maximum}"
            )
        return number

    return parse


def parse_options(argv: Sequence[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(
        description="Measure execution ingest over HTTP against the database driver's ceiling."
    )
    parser.add_argument(
        "--batches",
        type=_bounded_int(1, 10_000),
        default=40,
        help="timed batches per database, path and round (default: %(default)s)",
    )
    parser.add_argument(
        "--batch-size",
        type=_bounded_int(1, MAX_BATCH_SIZE),
        default=500,
        help="executions per batch, at most the server's default limit (default: %(default)s)",
    )
    parser.add_argument(
        "--clients",
        type=_bounded_int(1, 64),
        default=4,
        help="concurrent HTTP clients and PostgreSQL ceiling connections (default: %(default)s)",
    )
    parser.add_argument(
        "--rounds",
        type=_bounded_int(1, 100),
        default=3,
        help="interleaved repetitions; the report gives their medians (default: %(default)s)",
    )
    parser.add_argument(
        "--databases",
        nargs="+",
        choices=["sqlite", "postgresql"],
        default=["sqlite", "postgresql"],
        help="databases to measure (default: both)",
    )
    parser.add_argument(
        "--seed", type=int, default=1, help="seed of the generated workload (default: 1)"
    )
    parser.add_argument(
        "--server-log-level",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        default="INFO",
        help="the server's --log-level; INFO writes an access and an ingest line per batch "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--no-analyze",
        dest="analyze",
        action="store_false",
        help="skip ANALYZE on PostgreSQL after the warm-up batches, so the timed batches "
        "run on tables the planner has no statistics for, as on a new database",
    )

    args = parser.parse_args(argv)
    if args.batches < args.clients:
        parser.error(
            f"--batches {args.batches} is fewer than --clients {args.clients}: "
            "give each client at least one batch"
        )
    return Options(
        batches=args.batches,
        batch_size=args.batch_size,
        clients=args.clients,
        rounds=args.rounds,
        databases=list(dict.fromkeys(args.databases)),
        seed=args.seed,
        server_log_level=args.server_log_level,
        analyze=args.analyze,
    )


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_options(argv)
    load_at_start = os.getloadavg()
    with contextlib.ExitStack() as stack:
        try:
            results, versions = asyncio.run(run_benchmark(options, stack))
        except BenchmarkError as exc:
            print(f"benchmark failed: {exc}", file=sys.stderr)
            return 1
    print()
    print(report(results, options, versions, load_at_start))
    return 0


if __name__ == "__main__":
    sys.exit(main())
