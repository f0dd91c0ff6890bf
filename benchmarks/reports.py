"""Measure the latency of every report page and JSON report on a project with a long history.

For each database (SQLite, PostgreSQL) the script:

1. generates a project history of ``--executions`` executions, one million
   by default (``benchmarks/datagen.py`` describes its shape). The database
   is migrated by the server's own ``migrate`` command, and the server's
   CLI creates the project, a viewer API token and a viewer user;
2. builds the run summaries with the server's own summary code
   (``SummaryService.summarize``), as the server does when a run settles;
3. starts the real server (``python -m ingest_server serve``) on a free
   loopback port, signs in as the viewer, requests every report once or
   more to warm up, and then times every report ``--rounds`` times. The
   rounds are interleaved (each round requests every report once), and
   the table gives the median and the 90th percentile per report.

Report routes that the server does not have yet are listed as "missing",
so the script runs while the reports are being built. The generated data
stays in ``--data-dir``: ``--reuse`` measures it again without generating
it anew, as long as it was made by the same generator with the same
``--executions``. The script always runs ``migrate`` on reused data, so new
indexes are measured. PostgreSQL runs on a throwaway cluster started the
way the test suite starts one, with ``VACUUM ANALYZE`` after loading, as
autovacuum would do on a live server. SQLite gets no ``ANALYZE``, because the
server never runs one.

Run from the repository root with the server's dependencies installed::

    .venv/bin/python benchmarks/reports.py --backend both --rounds 15
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import datetime as dt
import hashlib
import json
import os
import platform
import random
import secrets
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
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import aiohttp

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

import datagen  # noqa: E402
from ingest import (  # noqa: E402
    BenchmarkError,
    RunningServer,
    connect,
    cpu_model,
    format_load,
    percentile,
    running_server,
    stop_process,
)

import conftest  # noqa: E402
from ingest_server.config import Settings  # noqa: E402
from ingest_server.services.container import Services  # noqa: E402
from ingest_server.web.app import create_app  # noqa: E402

PROJECT_KEY = "SHOP"
VIEWER_EMAIL = "lead@example.com"
TARGET_MS = 300.0
CLI_TIMEOUT = 300.0
REQUEST_TIMEOUT = 120.0
DEFAULT_DATA_DIR = Path(tempfile.gettempdir()) / "testoqa-report-benchmark"
POSTGRES_DATABASE = "reports"
# Files whose code decides what the summaries hold; summaries built by other
# versions of them are rebuilt before measuring reused data.
SUMMARY_SOURCES = (
    "ingest_server/repositories/results.py",
    "ingest_server/services/summaries.py",
    "ingest_server/fingerprint.py",
)
RUNS_FILTER_BRANCH = "develop"
RUNS_QUERY = "checkout"


# --- what to request ------------------------------------------------------


@dataclass(frozen=True)
class Targets:
    """Ids the report requests point at, picked when the history is generated."""

    finished_run: str
    running_run: str
    compare_base: str
    compare_head: str
    flaky_case: str

    @classmethod
    def pick(cls, load: datagen.LoadResult, cases: Sequence[datagen.CaseProfile]) -> Targets:
        """Pick the newest finished run on main, the running run, and a flaky case.

        The compared runs are that finished run and the finished main run ten
        main runs before it, so tests were added, removed, fixed and broken
        between them. The flaky case is the one with the highest failure
        rate per attempt among those collected since the first run.
        """
        main_runs = [
            run
            for run in load.runs
            if run.run["branch"] == "main" and run.run["status"] == "finished"
        ]
        running = [run for run in load.runs if not run.settled]
        flaky = max(
            (case for case in cases if case.kind == "flaky" and case.first_run == 0),
            key=lambda case: case.flake_rate,
        )
        if not main_runs or not running:
            raise BenchmarkError("the generated history has no finished main run or running run")
        base = main_runs[max(0, len(main_runs) - 11)]
        return cls(
            finished_run=str(main_runs[-1].id),
            running_run=str(running[-1].id),
            compare_base=str(base.id),
            compare_head=str(main_runs[-1].id),
            flaky_case=str(flaky.id),
        )


@dataclass(frozen=True)
class Endpoint:
    """One timed request: the report, what is requested, and the route that serves it."""

    report: str
    label: str
    route: str
    path: str
    # "page" requests go with the signed-in session, the others with the API token.
    kind: str


def endpoints(targets: Targets) -> list[Endpoint]:
    """Return every page and JSON report of the URL contract, with concrete ids."""
    key = PROJECT_KEY
    page = f"/projects/{key}"
    api = f"/api/v1/projects/{key}"
    run, running = targets.finished_run, targets.running_run
    case = targets.flaky_case
    compare = f"base={targets.compare_base}&head={targets.compare_head}"
    branch, query = f"branch={RUNS_FILTER_BRANCH}", f"q={RUNS_QUERY}"
    return [
        Endpoint("projects", "page", "/projects", "/projects", "page"),
        Endpoint("projects", "JSON", "/api/v1/projects", "/api/v1/projects", "json"),
        Endpoint("runs", "page", "/projects/{key}/runs", f"{page}/runs", "page"),
        Endpoint(
            "runs", f"page, {branch}", "/projects/{key}/runs", f"{page}/runs?{branch}", "page"
        ),
        Endpoint("runs", f"page, {query}", "/projects/{key}/runs", f"{page}/runs?{query}", "page"),
        Endpoint("runs", "JSON", "/api/v1/projects/{key}/runs", f"{api}/runs", "json"),
        Endpoint(
            "runs",
            f"JSON, {branch}",
            "/api/v1/projects/{key}/runs",
            f"{api}/runs?{branch}",
            "json",
        ),
        Endpoint(
            "runs", f"JSON, {query}", "/api/v1/projects/{key}/runs", f"{api}/runs?{query}", "json"
        ),
        Endpoint("runs", "CSV", "/api/v1/projects/{key}/runs", f"{api}/runs?format=csv", "csv"),
        Endpoint(
            "run", "page, finished", "/projects/{key}/runs/{run}", f"{page}/runs/{run}", "page"
        ),
        Endpoint(
            "run", "page, running", "/projects/{key}/runs/{run}", f"{page}/runs/{running}", "page"
        ),
        Endpoint(
            "run",
            "JSON report, finished",
            "/api/v1/projects/{key}/runs/{run}/report",
            f"{api}/runs/{run}/report",
            "json",
        ),
        Endpoint(
            "run",
            "JSON report, running",
            "/api/v1/projects/{key}/runs/{run}/report",
            f"{api}/runs/{running}/report",
            "json",
        ),
        Endpoint(
            "run", "JSON detail", "/api/v1/projects/{key}/runs/{run}", f"{api}/runs/{run}", "json"
        ),
        Endpoint("case", "page", "/projects/{key}/cases/{case}", f"{page}/cases/{case}", "page"),
        Endpoint(
            "case",
            "JSON report",
            "/api/v1/projects/{key}/cases/{case}/report",
            f"{api}/cases/{case}/report",
            "json",
        ),
        Endpoint(
            "case",
            "JSON history",
            "/api/v1/projects/{key}/cases/{case}/history",
            f"{api}/cases/{case}/history",
            "json",
        ),
        Endpoint("flaky", "page", "/projects/{key}/flaky", f"{page}/flaky", "page"),
        Endpoint("flaky", "JSON", "/api/v1/projects/{key}/flaky", f"{api}/flaky", "json"),
        Endpoint("flaky", "CSV", "/api/v1/projects/{key}/flaky", f"{api}/flaky?format=csv", "csv"),
        Endpoint("slow", "page", "/projects/{key}/slow", f"{page}/slow", "page"),
        Endpoint("slow", "JSON", "/api/v1/projects/{key}/slow", f"{api}/slow", "json"),
        Endpoint("slow", "CSV", "/api/v1/projects/{key}/slow", f"{api}/slow?format=csv", "csv"),
        Endpoint("trends", "page", "/projects/{key}/trends", f"{page}/trends", "page"),
        Endpoint(
            "trends",
            "page, branch=main",
            "/projects/{key}/trends",
            f"{page}/trends?branch=main",
            "page",
        ),
        Endpoint("trends", "JSON", "/api/v1/projects/{key}/trends", f"{api}/trends", "json"),
        Endpoint(
            "trends", "CSV", "/api/v1/projects/{key}/trends", f"{api}/trends?format=csv", "csv"
        ),
        Endpoint(
            "compare", "page", "/projects/{key}/compare", f"{page}/compare?{compare}", "page"
        ),
        Endpoint(
            "compare", "JSON", "/api/v1/projects/{key}/compare", f"{api}/compare?{compare}", "json"
        ),
        Endpoint("gate", "page", "/projects/{key}/gate", f"{page}/gate", "page"),
        Endpoint(
            "gate",
            "JSON verdict",
            "/api/v1/projects/{key}/runs/{run}/gate",
            f"{api}/runs/{run}/gate",
            "json",
        ),
    ]


def _route_shape(path: str) -> str:
    """Return path with every {variable} emptied, so route names do not matter."""
    shape, depth = [], 0
    for char in path:
        if char == "{":
            depth += 1
            shape.append("{")
        elif char == "}":
            depth -= 1
            shape.append("}")
        elif depth == 0:
            shape.append(char)
    return "".join(shape)


def served_routes() -> set[str]:
    """Return the shapes of the GET routes the server's application has."""
    services = Services(Settings(database_url="sqlite+aiosqlite://"))
    app = create_app(services)
    shapes = set()
    for route in app.router.routes():
        if route.method == "GET" and route.resource is not None:
            shapes.add(_route_shape(route.resource.canonical))
    # The engine never connected, so there is nothing to dispose of.
    return shapes


# --- the database ---------------------------------------------------------


@dataclass
class Prepared:
    """A database ready to measure, and what the benchmark needs to reach it."""

    backend: str
    database_url: str
    token: str
    password: str
    targets: Targets
    stats: dict[str, Any]
    version: str
    # PostgreSQL's postmaster.pid, to measure the database's CPU time; None on SQLite.
    postmaster_pid_file: Path | None = None


def run_cli(*args: str, stdin: str | None = None) -> str:
    """Run ``python -m ingest_server`` with args and return its standard output."""
    command = [sys.executable, "-m", "ingest_server", *args]
    try:
        completed = subprocess.run(
            command,
            cwd=REPO_ROOT,
            input=stdin,
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


def create_accounts(database_url: str) -> tuple[str, str]:
    """Create the project, a viewer token and a viewer user; return the token and password."""
    url = ("--database-url", database_url)
    run_cli("create-project", PROJECT_KEY, "--name", "Shop", *url)
    output = run_cli(
        "create-token", PROJECT_KEY, "--name", "report benchmark", "--role", "viewer", *url
    )
    token = output.strip().splitlines()[-1]
    password = secrets.token_urlsafe(16)
    run_cli("create-user", VIEWER_EMAIL, "--password-stdin", *url, stdin=f"{password}\n")
    run_cli("add-member", VIEWER_EMAIL, PROJECT_KEY, "--role", "viewer", *url)
    return token, password


def summary_sources_digest() -> str:
    digest = hashlib.sha256()
    for name in SUMMARY_SOURCES:
        path = REPO_ROOT / name
        digest.update(path.read_bytes() if path.exists() else b"missing")
    return digest.hexdigest()[:16]


async def build_summaries(database_url: str, project_id: int, run_ids: Sequence[str]) -> float:
    """Summarize every settled run with the server's code; return the seconds it took."""
    services = Services(Settings(database_url=database_url))
    started = time.perf_counter()
    try:
        for number, run_id in enumerate(run_ids, 1):
            await services.summaries.summarize(project_id, uuid.UUID(run_id))
            if number % 100 == 0:
                progress(f"  summarized {number:,} of {len(run_ids):,} runs")
    finally:
        await services.close()
    return time.perf_counter() - started


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Manifest:
    """The description of a data directory's content, stored next to it for --reuse to check."""

    path: Path

    def read(self) -> dict[str, Any] | None:
        try:
            content: dict[str, Any] = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return None
        return content

    def write(self, content: dict[str, Any]) -> None:
        self.path.write_text(json.dumps(content, indent=2))


def reusable(manifest: dict[str, Any] | None, shape: datagen.Shape) -> bool:
    return manifest is not None and manifest.get("shape") == shape.manifest()


async def refresh_summaries(
    content: dict[str, Any], database_url: str, manifest: Manifest
) -> None:
    """Rebuild the summaries of reused data if the summary code changed since they were built."""
    digest = summary_sources_digest()
    if content["summaries_digest"] == digest:
        return
    progress("the summary code changed since the data was generated: rebuilding summaries")
    seconds = await build_summaries(database_url, content["project_id"], content["settled_runs"])
    content["summaries_digest"] = digest
    content["stats"]["summary_seconds"] = round(seconds, 1)
    manifest.write(content)


def _history_stats(load: datagen.LoadResult, cases: int, seconds: float) -> dict[str, Any]:
    statuses: dict[str, int] = {}
    for run in load.runs:
        statuses[run.run["status"]] = statuses.get(run.run["status"], 0) + 1
    return {
        "executions": load.executions,
        "runs": len(load.runs),
        "run_statuses": statuses,
        "run_cases": load.run_cases,
        "cases": cases,
        "load_seconds": round(seconds, 1),
    }


def _history_cases(shape: datagen.Shape) -> list[datagen.CaseProfile]:
    """Return the generated cases, as datagen makes them before the runs."""
    return datagen.make_cases(random.Random(shape.seed), runs_estimate=shape.executions // 2000)


async def prepare_sqlite(data_dir: Path, shape: datagen.Shape, reuse: bool) -> Prepared:
    workdir = data_dir / "sqlite"
    path = workdir / "reports.db"
    url = f"sqlite+aiosqlite:///{path}"
    manifest = Manifest(workdir / "manifest.json")
    content = manifest.read()
    if reuse and reusable(content, shape) and path.exists():
        assert content is not None
        progress(f"sqlite: reusing {path}")
        run_cli("migrate", "--database-url", url)
        await refresh_summaries(content, url, manifest)
    else:
        shutil.rmtree(workdir, ignore_errors=True)
        workdir.mkdir(parents=True)
        content = await _generate_sqlite(path, url, shape)
        manifest.write(content)
    content["stats"]["database_bytes"] = path.stat().st_size
    return _prepared("sqlite", url, content, sqlite3.sqlite_version)


async def _generate_sqlite(path: Path, url: str, shape: datagen.Shape) -> dict[str, Any]:
    progress(f"sqlite: generating {shape.executions:,} executions into {path}")
    run_cli("migrate", "--database-url", url)
    token, password = create_accounts(url)
    with contextlib.closing(sqlite3.connect(path)) as connection:
        project_id = int(
            connection.execute("SELECT id FROM projects WHERE key = ?", (PROJECT_KEY,)).fetchone()[
                0
            ]
        )
    started = time.perf_counter()
    load = await asyncio.to_thread(datagen.load_sqlite, path, project_id, shape)
    return await _finish_generation(url, shape, load, project_id, token, password, started)


async def _finish_generation(
    url: str,
    shape: datagen.Shape,
    load: datagen.LoadResult,
    project_id: int,
    token: str,
    password: str,
    started: float,
) -> dict[str, Any]:
    """Build the summaries and return the manifest of freshly generated data."""
    cases = _history_cases(shape)
    stats = _history_stats(load, len(cases), time.perf_counter() - started)
    progress(
        f"  loaded {stats['executions']:,} executions of {stats['runs']} runs "
        f"in {stats['load_seconds']} s; building summaries"
    )
    settled = [str(run_id) for run_id in load.settled_run_ids]
    stats["summary_seconds"] = round(await build_summaries(url, project_id, settled), 1)
    progress(f"  summarized {len(settled)} runs in {stats['summary_seconds']} s")
    return {
        "shape": shape.manifest(),
        "project_id": project_id,
        "token": token,
        "password": password,
        "targets": dataclasses.asdict(Targets.pick(load, cases)),
        "settled_runs": settled,
        "summaries_digest": summary_sources_digest(),
        "stats": stats,
    }


def _prepared(backend: str, url: str, content: dict[str, Any], version: str) -> Prepared:
    return Prepared(
        backend=backend,
        database_url=url,
        token=content["token"],
        password=content["password"],
        targets=Targets(**content["targets"]),
        stats=content["stats"],
        version=version,
    )


def start_cluster(
    workdir: Path, *, existing: bool
) -> tuple[conftest.PostgresServer, subprocess.Popen[bytes]]:
    """Start PostgreSQL on the cluster in workdir, creating it first unless it exists."""
    if not existing:
        workdir.mkdir(parents=True)
        return conftest.start_postgres(workdir)
    # NOTE: conftest.start_postgres always runs initdb, so a kept cluster is
    # started here with the same settings through conftest's helpers.
    binary = conftest._find_binary("postgres")
    if binary is None:
        raise FileNotFoundError("the PostgreSQL binary 'postgres' is not installed")
    port = conftest._free_port()
    log = workdir / "postgres.log"
    settings = (
        "fsync=off",
        "synchronous_commit=off",
        "full_page_writes=off",
        "max_connections=200",
    )
    with log.open("ab") as log_file:
        process = subprocess.Popen(
            [
                *conftest._run_as(),
                binary,
                "-D",
                str(workdir / "data"),
                "-p",
                str(port),
                "-h",
                "127.0.0.1",
                "-k",
                str(workdir),
                *(part for setting in settings for part in ("-c", setting)),
            ],
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    conftest._wait_until_accepting(port, process, log)
    return conftest.PostgresServer("127.0.0.1", port, "testoqa"), process


async def prepare_postgres(
    data_dir: Path, shape: datagen.Shape, reuse: bool, stack: contextlib.ExitStack
) -> Prepared:
    workdir = data_dir / "postgres"
    manifest = Manifest(data_dir / "postgres-manifest.json")
    content = manifest.read()
    existing = reuse and reusable(content, shape) and (workdir / "data").exists()
    if not existing:
        shutil.rmtree(workdir, ignore_errors=True)
        manifest.path.unlink(missing_ok=True)
    try:
        server, process = start_cluster(workdir, existing=existing)
    except (FileNotFoundError, RuntimeError, subprocess.CalledProcessError) as exc:
        raise BenchmarkError(f"{exc}: install PostgreSQL or pass --backend sqlite") from exc
    stack.callback(conftest.stop_postgres, workdir, process)
    url = server.url(POSTGRES_DATABASE)
    if existing:
        assert content is not None
        progress(f"postgres: reusing the cluster in {workdir}")
        run_cli("migrate", "--database-url", url)
        await refresh_summaries(content, url, manifest)
    else:
        content = await _generate_postgres(server, url, shape)
        manifest.write(content)
    admin = await connect(server, POSTGRES_DATABASE)
    try:
        # Autovacuum would have analyzed and vacuumed a live database by now.
        await admin.execute("VACUUM ANALYZE")
        version = str(await admin.fetchval("SHOW server_version"))
        size = await admin.fetchval("SELECT pg_database_size(current_database())")
    finally:
        await admin.close()
    content["stats"]["database_bytes"] = int(size)
    prepared = _prepared("postgres", url, content, version)
    prepared.postmaster_pid_file = workdir / "data" / "postmaster.pid"
    return prepared


async def _generate_postgres(
    server: conftest.PostgresServer, url: str, shape: datagen.Shape
) -> dict[str, Any]:
    progress(f"postgres: generating {shape.executions:,} executions")
    admin = await connect(server, "postgres")
    try:
        await admin.execute(f"CREATE DATABASE {POSTGRES_DATABASE}")
    finally:
        await admin.close()
    run_cli("migrate", "--database-url", url)
    token, password = create_accounts(url)
    connection = await connect(server, POSTGRES_DATABASE)
    try:
        project_id = int(
            await connection.fetchval("SELECT id FROM projects WHERE key = $1", PROJECT_KEY)
        )
        started = time.perf_counter()
        load = await datagen.load_postgres(connection, project_id, shape)
        await connection.execute("ANALYZE")
    finally:
        await connection.close()
    return await _finish_generation(url, shape, load, project_id, token, password, started)


# --- measuring ------------------------------------------------------------


class _FormFields(HTMLParser):
    """Collect the input fields of the first form with a password input."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[list[dict[str, str | None]]] = []
        self._inside = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "form":
            self.forms.append([])
            self._inside = True
        elif tag == "input" and self._inside:
            self.forms[-1].append(dict(attrs))

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._inside = False


def login_fields(html: str, password: str) -> dict[str, str]:
    """Return the sign-in form's fields filled in, hidden ones (such as CSRF) included."""
    parser = _FormFields()
    parser.feed(html)
    for form in parser.forms:
        if not any(field.get("type") == "password" for field in form):
            continue
        values: dict[str, str] = {}
        for field in form:
            name, kind = field.get("name"), field.get("type") or "text"
            if not name:
                continue
            if kind == "password":
                values[name] = password
            elif kind in ("email", "text"):
                values[name] = VIEWER_EMAIL
            elif kind == "hidden":
                values[name] = field.get("value") or ""
        return values
    raise BenchmarkError("GET /login returned no form with a password field")


async def sign_in(http: aiohttp.ClientSession, base: str, password: str) -> str | None:
    """Sign in through the login form; return None on success, else why it failed."""
    async with http.get(f"{base}/login") as reply:
        if reply.status != 200:
            return f"GET /login returned {reply.status}"
        fields = login_fields(await reply.text(), password)
    async with http.post(f"{base}/login", data=fields, allow_redirects=False) as reply:
        if reply.status not in (302, 303):
            return f"POST /login returned {reply.status}: {(await reply.text())[:300]}"
    return None


@dataclass
class Timing:
    """Latencies of one endpoint on one backend, or why it was not timed."""

    latencies: list[float] = dataclasses.field(default_factory=list)
    problem: str | None = None
    size: int = 0
    # CPU seconds used while the timed requests ran, summed over them: by
    # the server process (SQLite runs inside it) and by PostgreSQL's processes.
    server_cpu: float = 0.0
    database_cpu: float = 0.0

    @property
    def server_cpu_ms(self) -> float:
        return self.server_cpu * 1000 / len(self.latencies)

    @property
    def database_cpu_ms(self) -> float:
        return self.database_cpu * 1000 / len(self.latencies)

    @property
    def median_ms(self) -> float:
        return statistics.median(self.latencies) * 1000

    @property
    def p90_ms(self) -> float:
        return percentile(self.latencies, 0.90) * 1000


def database_cpu_seconds(pid_file: Path | None) -> float:
    """Return the CPU time of the PostgreSQL postmaster and its children, 0 without them.

    The children are the backends that run the server's queries and
    PostgreSQL's own background processes, which add a little noise.
    """
    if pid_file is None:
        return 0.0
    postmaster = int(pid_file.read_text().split()[0])
    ticks = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # Fields after the command name, which may contain spaces: ppid is the
        # 4th field of the line, utime and stime the 14th and 15th, in clock ticks.
        fields = stat.rsplit(")", 1)[1].split()
        if postmaster in (int(entry.name), int(fields[1])):
            ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


async def _request(http: aiohttp.ClientSession, url: str) -> tuple[int, bytes, str, float]:
    started = time.perf_counter()
    async with http.get(url, allow_redirects=False) as reply:
        body = await reply.read()
    elapsed = time.perf_counter() - started
    return reply.status, body, reply.headers.get("Content-Type", ""), elapsed


def _check(endpoint: Endpoint, status: int, body: bytes, content_type: str) -> str | None:
    """Return why a response is not a successful report, or None when it is."""
    if status != 200:
        return f"HTTP {status}"
    expected = {"page": "text/html", "json": "application/json", "csv": "text/csv"}[endpoint.kind]
    if not content_type.startswith(expected):
        return f"{content_type or 'no content type'}, expected {expected}"
    if endpoint.kind == "json":
        try:
            json.loads(body)
        except ValueError:
            return "invalid JSON"
    return None


async def measure(
    server: RunningServer,
    prepared: Prepared,
    measured: Sequence[Endpoint],
    rounds: int,
    warmup: int,
) -> tuple[dict[Endpoint, Timing], str]:
    """Warm up, then time every endpoint once per round; return timings and how pages signed in."""
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT)
    token_headers = {"Authorization": f"Bearer {prepared.token}"}
    timings = {endpoint: Timing() for endpoint in measured}
    async with (
        aiohttp.ClientSession(timeout=timeout, headers=token_headers) as api,
        # unsafe=True keeps cookies of a server addressed by IP, such as 127.0.0.1.
        aiohttp.ClientSession(
            timeout=timeout, cookie_jar=aiohttp.CookieJar(unsafe=True)
        ) as browser,
    ):
        failure = await sign_in(browser, server.url, prepared.password)
        pages = browser if failure is None else api
        how = "signed-in session" if failure is None else f"API token ({failure})"
        clients = {"page": pages, "json": api, "csv": api}
        for _ in range(warmup):
            for endpoint in measured:
                status, body, content_type, _ = await _request(
                    clients[endpoint.kind], server.url + endpoint.path
                )
                timing = timings[endpoint]
                timing.problem = _check(endpoint, status, body, content_type)
                timing.size = len(body)
        for number in range(1, rounds + 1):
            for endpoint in measured:
                timing = timings[endpoint]
                if timing.problem is not None:
                    continue
                server_cpu = server.cpu_seconds() or 0.0
                database_cpu = database_cpu_seconds(prepared.postmaster_pid_file)
                status, body, content_type, elapsed = await _request(
                    clients[endpoint.kind], server.url + endpoint.path
                )
                timing.server_cpu += (server.cpu_seconds() or 0.0) - server_cpu
                timing.database_cpu += (
                    database_cpu_seconds(prepared.postmaster_pid_file) - database_cpu
                )
                timing.problem = _check(endpoint, status, body, content_type)
                timing.latencies.append(elapsed)
            progress(f"  {prepared.backend}: round {number}/{rounds} done")
    return timings, how


@contextlib.contextmanager
def py_spy(pid: int, output: Path | None) -> Iterator[None]:
    """Record the server with py-spy while the block runs, if an output path is given."""
    if output is None:
        yield
        return
    binary = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    process = subprocess.Popen(
        [
            binary,
            "record",
            "--pid",
            str(pid),
            "--rate",
            "200",
            "--format",
            "raw",
            "-o",
            str(output),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            stop_process(process)


# --- report ---------------------------------------------------------------


@dataclass
class BackendResult:
    prepared: Prepared
    timings: dict[Endpoint, Timing]
    pages_as: str


def _columns(backend: str) -> list[str]:
    """Return the table's column titles for one backend; SQLite runs inside the server."""
    columns = [f"{backend} median", f"{backend} p90", f"{backend} server CPU"]
    return [*columns, f"{backend} database CPU"] if backend == "postgres" else columns


def _cells(endpoint: Endpoint, result: BackendResult, missing: bool) -> list[str]:
    empty = [""] * (len(_columns(result.prepared.backend)) - 1)
    if missing:
        return ["missing", *empty]
    timing = result.timings[endpoint]
    if timing.problem is not None:
        return [timing.problem, *empty]
    cells = [f"{timing.median_ms:.0f}", f"{timing.p90_ms:.0f}", f"{timing.server_cpu_ms:.0f}"]
    if result.prepared.backend == "postgres":
        cells.append(f"{timing.database_cpu_ms:.0f}")
    return cells


def _verdict(endpoint: Endpoint, results: Sequence[BackendResult], missing: bool) -> str:
    if missing:
        return "missing"
    timings = [result.timings[endpoint] for result in results]
    if any(timing.problem is not None for timing in timings):
        return "failed"
    slow = [
        result.prepared.backend
        for result, timing in zip(results, timings, strict=True)
        if timing.median_ms >= TARGET_MS
    ]
    return f"SLOW ({', '.join(slow)})" if slow else "OK"


def report(
    all_endpoints: Sequence[Endpoint],
    served: set[str],
    results: dict[str, BackendResult],
    rounds: int,
    load_at_start: tuple[float, float, float],
) -> str:
    """Return the Markdown report: command, machine, history, and the latency table."""
    versions = [f"SQLite {sqlite3.sqlite_version}"]
    if "postgres" in results:
        versions.append(f"PostgreSQL {results['postgres'].prepared.version}")
    lines = [
        f"Command: `{shlex.join(sys.orig_argv)}`",
        "",
        f"Commit: {git_commit()}. Date: {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC.",
        "",
        f"Machine: {os.cpu_count()} CPUs (nproc {len(os.sched_getaffinity(0))}), {cpu_model()}, "
        f"{platform.system()} {platform.release()}, Python {platform.python_version()}, "
        + ", ".join(versions)
        + f". Load average (1, 5, 15 min): {format_load(load_at_start)} at the start, "
        f"{format_load(os.getloadavg())} at the end.",
        "",
    ]
    for backend, result in results.items():
        stats = result.prepared.stats
        statuses = ", ".join(f"{count} {name}" for name, count in stats["run_statuses"].items())
        lines.append(
            f"{backend}: {stats['executions']:,} executions, {stats['runs']} runs ({statuses}), "
            f"{stats['cases']:,} cases, {stats['run_cases']:,} collected cases; generated and "
            f"loaded in {stats['load_seconds']} s, summaries built in "
            f"{stats['summary_seconds']} s; "
            f"database {stats['database_bytes'] / 1e6:,.0f} MB. Pages requested with the "
            f"{result.pages_as}."
        )
    lines += [
        "",
        f"Latency in ms over {rounds} interleaved rounds after warm-up; target: median under "
        f"{TARGET_MS:.0f} ms. CPU columns: mean CPU ms per request of the server process and "
        "of PostgreSQL's processes, from /proc in 10 ms clock ticks.",
        "",
    ]
    return "\n".join([*lines, *table(all_endpoints, served, results)])


def table(
    all_endpoints: Sequence[Endpoint], served: set[str], results: dict[str, BackendResult]
) -> list[str]:
    """Return the Markdown table: one row per request, the backends side by side."""
    header = ["report", "request"]
    for backend in results:
        header += _columns(backend)
    header += ["size (KB)", "result"]
    lines = [
        "| " + " | ".join(header) + " |",
        "| --- | --- |" + " ---: |" * (len(header) - 3) + " --- |",
    ]
    for endpoint in all_endpoints:
        missing = _route_shape(endpoint.route) not in served
        cells = [endpoint.report, endpoint.label]
        for result in results.values():
            cells += _cells(endpoint, result, missing)
        size = 0 if missing else max(r.timings[endpoint].size for r in results.values())
        cells.append(f"{size / 1000:,.1f}" if size else "")
        cells.append(_verdict(endpoint, list(results.values()), missing))
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def git_commit() -> str:
    completed = subprocess.run(
        ["git", "describe", "--always", "--dirty"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    return completed.stdout.strip() or "unknown"


# --- command line ---------------------------------------------------------


@dataclass(frozen=True)
class Options:
    backends: list[str]
    shape: datagen.Shape
    rounds: int
    warmup: int
    reuse: bool
    data_dir: Path
    only: str | None
    profile_dir: Path | None
    server_log_level: str


def _bounded_int(minimum: int, maximum: int) -> Any:
    def parse(value: str) -> int:
        try:
            number = int(value.replace("_", "").replace(",", ""))
        except ValueError:
            raise argparse.ArgumentTypeError(f"invalid integer {value!r}") from None
        if not minimum <= number <= maximum:
            raise argparse.ArgumentTypeError(
                f"invalid value {number}: use a value from {minimum:,} to {maximum:,}"
            )
        return number

    return parse


def parse_options(argv: Sequence[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(
        description="Measure every report page and JSON report on a generated project history."
    )
    parser.add_argument(
        "--backend",
        choices=["sqlite", "postgres", "both"],
        default="both",
        help="database to measure (default: %(default)s)",
    )
    parser.add_argument(
        "--executions",
        type=_bounded_int(10_000, 20_000_000),
        default=1_000_000,
        help="executions in the generated history, about 2,000 per run (default: 1,000,000)",
    )
    parser.add_argument(
        "--rounds",
        type=_bounded_int(1, 1000),
        default=15,
        help="timed requests of every report; the table gives median and p90 "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--warmup",
        type=_bounded_int(0, 100),
        default=2,
        help="untimed requests of every report before the rounds (default: %(default)s)",
    )
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="measure the data generated by an earlier run in --data-dir, if it was generated "
        "with the same --executions; otherwise generate it",
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=DEFAULT_DATA_DIR,
        help="where the generated databases are kept between runs (default: %(default)s)",
    )
    parser.add_argument(
        "--seed", type=int, default=datagen.Shape(0).seed, help="seed of the generated history"
    )
    parser.add_argument(
        "--only",
        help="time only the reports whose name or request contains this text, such as 'trends'",
    )
    parser.add_argument(
        "--profile",
        type=Path,
        dest="profile_dir",
        help="record the server with py-spy during the timed rounds into "
        "DIR/<backend>.txt (collapsed stacks)",
    )
    parser.add_argument(
        "--server-log-level",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        default="INFO",
        help="the server's --log-level (default: %(default)s)",
    )
    args = parser.parse_args(argv)
    backends = ["sqlite", "postgres"] if args.backend == "both" else [args.backend]
    return Options(
        backends=backends,
        shape=datagen.Shape(args.executions, args.seed),
        rounds=args.rounds,
        warmup=args.warmup,
        reuse=args.reuse,
        data_dir=args.data_dir.resolve(),
        only=args.only,
        profile_dir=args.profile_dir.resolve() if args.profile_dir else None,
        server_log_level=args.server_log_level,
    )


async def measure_backend(
    backend: str, options: Options, stack: contextlib.ExitStack
) -> tuple[BackendResult, list[Endpoint]]:
    """Prepare one database, then serve and time its reports."""
    if backend == "sqlite":
        prepared = await prepare_sqlite(options.data_dir, options.shape, options.reuse)
    else:
        prepared = await prepare_postgres(options.data_dir, options.shape, options.reuse, stack)
    all_endpoints = [
        endpoint
        for endpoint in endpoints(prepared.targets)
        if options.only is None or options.only in f"{endpoint.report} {endpoint.label}"
    ]
    served = served_routes()
    chosen = [endpoint for endpoint in all_endpoints if _route_shape(endpoint.route) in served]
    profile = None
    if options.profile_dir is not None:
        options.profile_dir.mkdir(parents=True, exist_ok=True)
        profile = options.profile_dir / f"{backend}.txt"
    with (
        tempfile.TemporaryDirectory(prefix="testoqa-report-server-") as logs,
        running_server(prepared.database_url, Path(logs), options.server_log_level) as server,
    ):
        progress(f"{backend}: server on {server.url}; timing {len(chosen)} requests")
        timings, how = await measure(server, prepared, chosen, options.rounds, options.warmup)
        if profile is not None:
            progress(f"{backend}: profiling one more set of rounds into {profile}")
            with py_spy(server.pid, profile):
                await measure(server, prepared, chosen, options.rounds, 0)
    return BackendResult(prepared, timings, how), all_endpoints


async def run(
    options: Options, stack: contextlib.ExitStack
) -> tuple[list[Endpoint], dict[str, BackendResult]]:
    options.data_dir.mkdir(parents=True, exist_ok=True)
    results: dict[str, BackendResult] = {}
    all_endpoints: list[Endpoint] = []
    for backend in options.backends:
        results[backend], all_endpoints = await measure_backend(backend, options, stack)
    return all_endpoints, results


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_options(argv)
    load_at_start = os.getloadavg()
    with contextlib.ExitStack() as stack:
        try:
            all_endpoints, results = asyncio.run(run(options, stack))
        except BenchmarkError as exc:
            print(f"benchmark failed: {exc}", file=sys.stderr)
            return 1
    served = served_routes()
    print()
    print(report(all_endpoints, served, results, options.rounds, load_at_start))
    print()
    print(
        f"The generated data stays in {options.data_dir}; measure it again with --reuse, "
        f"or remove the directory."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
