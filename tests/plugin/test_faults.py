"""Server faults never fail, hang or lose a pytest run; ``testoqa upload`` recovers the results.

Every scenario runs one inner suite three ways: without the plugin (the
exit status and wall time to match), against a healthy live server (the
executions to expect), and against the fault. Afterwards the spool is
uploaded to a healthy server and must store what the clean run stored.
Stand-in servers on 127.0.0.1 produce only the faults a real server
cannot: 500 and 429 responses, and connections that never get a response.
"""

from __future__ import annotations

import dataclasses
import http.server
import itertools
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ingest_server.services.context import OPERATOR, RequestContext
from pytest_testoqa.ci import PROVIDERS
from pytest_testoqa.settings import OPTIONS, TOKEN_ENV
from tests.plugin.conftest import LiveServer

pytestmark = pytest.mark.timeout(300)

XDIST = pytest.mark.parametrize("xdist", [[], ["-n", "2"]], ids=["serial", "n2"])

FLUSH_DEADLINE = 3.0
# Seconds a faulty run may take beyond the plugin-free run plus the flush
# deadline, to allow for process start-up noise on a loaded machine.
MARGIN = 3.0
INNER_TIMEOUT = 120.0
COMMAND_TIMEOUT = 60.0
SERVER_START_TIMEOUT = 30.0

SUITE = """
import pytest

@pytest.fixture
def broken():
    raise RuntimeError("setup broke")

def test_pass():
    print("hello")

def test_fail():
    assert 1 == 2

def test_error(broken):
    pass

@pytest.mark.skip(reason="not today")
def test_skip():
    pass

@pytest.mark.xfail(reason="known bug")
def test_xfail():
    assert False

@pytest.mark.flaky(reruns=1)
def test_flaky(request):
    assert request.node.execution_count > 1

@pytest.mark.parametrize("number", [1, 2, 3])
def test_param(number):
    assert number
"""

PASSING_SUITE = """
def test_one():
    pass

def test_two():
    pass
"""

# The middle test sleeps so the results before it are delivered, then kills
# the server whose pid is in $FAULT_KILL_PID (the clean runs leave it unset).
KILL_SUITE = """
import os
import signal
import time

import pytest

def test_before_one():
    pass

def test_before_two():
    assert 1 == 2

def test_kill_server():
    time.sleep(1.5)
    pid = os.environ.get("FAULT_KILL_PID")
    if pid:
        os.kill(int(pid), signal.SIGKILL)

def test_after_one():
    pass

@pytest.mark.flaky(reruns=1)
def test_after_flaky(request):
    assert request.node.execution_count > 1

@pytest.mark.parametrize("number", [1, 2, 3])
def test_after_param(number):
    time.sleep(0.2)
"""

OUTAGE_LINE = "results not delivered: "
FATAL_HEADER = "TestoQA: results NOT delivered"


# --- environment -------------------------------------------------------------


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Drop CI and TestoQA variables of the outer environment, so runs never join by accident."""
    for variable, _ in PROVIDERS:
        monkeypatch.delenv(variable, raising=False)
    for option in OPTIONS:
        monkeypatch.delenv(option.env, raising=False)
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    monkeypatch.delenv("CI", raising=False)


@pytest.fixture(autouse=True)
def inner_ini(pytester: pytest.Pytester) -> None:
    """Set the one option pytest-asyncio warns about in every inner session without it."""
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")


@dataclass
class InnerRun:
    result: pytest.RunResult
    seconds: float

    @property
    def output(self) -> str:
        return self.result.stdout.str() + "\n" + self.result.stderr.str()


def run_inner(
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    args: list[str],
    env: dict[str, str] | None = None,
) -> InnerRun:
    """Run pytest in a subprocess with extra environment variables and time it."""
    with monkeypatch.context() as patch:
        for name, value in (env or {}).items():
            patch.setenv(name, value)
        started = time.monotonic()
        result = pytester.runpytest_subprocess(*args, timeout=INNER_TIMEOUT)
        seconds = time.monotonic() - started
    return InnerRun(result, seconds)


def run_without_plugin(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, xdist: list[str]
) -> InnerRun:
    return run_inner(pytester, monkeypatch, ["-p", "no:testoqa", *xdist])


def plugin_args(
    project: str, url: str, spool: Path, *extra: str, deadline: float = FLUSH_DEADLINE
) -> list[str]:
    return [
        "--testoqa-project",
        project,
        "--testoqa-url",
        url,
        "--testoqa-spool-dir",
        str(spool),
        "--testoqa-flush-deadline",
        str(deadline),
        *extra,
    ]


# --- results -------------------------------------------------------------------


ExecutionKey = tuple[str, int, str]


def execution_keys(executions: list[dict[str, Any]]) -> list[ExecutionKey]:
    """Return (case key, attempt, outcome) of each execution, sorted, keeping duplicates."""
    return sorted((e["case_key"], int(e["attempt"]), e["outcome"]) for e in executions)


def spool_files(spool: Path) -> list[Path]:
    return sorted(spool.rglob("*.jsonl")) if spool.exists() else []


def spooled_events(spool: Path, kind: str) -> list[dict[str, Any]]:
    events = []
    for path in spool_files(spool):
        for line in path.read_text().splitlines():
            event = json.loads(line)
            if event["kind"] == kind:
                events.append(event["body"])
    return events


@dataclass
class CleanRun:
    run_id: str
    keys: list[ExecutionKey]
    totals: dict[str, int]


def run_clean(
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    live_server: LiveServer,
    xdist: list[str],
) -> CleanRun:
    """Run the suite against the healthy live server: the results every recovery must match."""
    spool = pytester.path / "clean-spool"
    args = plugin_args(live_server.project, live_server.url, spool, *xdist)
    run_inner(pytester, monkeypatch, args, {TOKEN_ENV: live_server.token})
    assert spool_files(spool) == [], "the clean run left undelivered results"
    run = live_server.only_run()
    keys = execution_keys(live_server.executions(run["id"]))
    assert keys, "the clean run stored no executions"
    return CleanRun(run["id"], keys, run["totals"])


def api_get(url: str, project: str, token: str, path: str) -> Any:
    request = urllib.request.Request(
        f"{url}/api/v1/projects/{project}{path}",
        headers={"Authorization": f"Bearer {token}"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def other_runs(live_server: LiveServer, clean: CleanRun) -> list[dict[str, Any]]:
    return [run for run in live_server.runs() if run["id"] != clean.run_id]


def upload(
    spool: Path, url: str, token: str | None, *extra: str
) -> subprocess.CompletedProcess[str]:
    """Run ``testoqa upload`` as a user would, with the token in the environment only."""
    env = {k: v for k, v in os.environ.items() if k not in ("TESTOQA_URL", TOKEN_ENV)}
    if token is not None:
        env[TOKEN_ENV] = token
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest_testoqa.upload",
            "upload",
            str(spool),
            "--url",
            url,
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT,
        env=env,
        check=False,
    )


# --- common checks ---------------------------------------------------------------


def check_run_survived(run: InnerRun, plain: InnerRun, deadline: float = FLUSH_DEADLINE) -> None:
    """The faulty run exits like the plugin-free run, within the flush deadline plus margin."""
    assert run.result.ret == plain.result.ret, run.output
    limit = plain.seconds + deadline + MARGIN
    assert run.seconds <= limit, f"run took {run.seconds:.1f} s, limit {limit:.1f} s"
    assert "Exception in thread" not in run.output
    assert "INTERNALERROR" not in run.output


def check_quiet_outage(run: InnerRun) -> None:
    """An outage gets one plain line, not the loud banner of a rejected token."""
    lines = [line for line in run.result.outlines if line.startswith(OUTAGE_LINE)]
    assert len(lines) == 1, run.output
    assert FATAL_HEADER not in run.output
    assert "Traceback" not in run.result.stderr.str()


def check_spooled(spool: Path, clean: CleanRun) -> None:
    """Nothing reached the server, so every execution of the clean run waits in the spool."""
    executions = spooled_events(spool, "execution")
    assert execution_keys(executions) == clean.keys
    assert spooled_events(spool, "run"), "the spool lost the run's start event"
    assert spooled_events(spool, "finish"), "the spool lost the run's finish event"


def check_uploaded(
    spool: Path,
    url: str,
    token: str,
    read_keys: Callable[[], list[ExecutionKey]],
    expected: list[ExecutionKey],
) -> None:
    """Upload the spool, compare what the server stores, then upload again: nothing changes."""
    first = upload(spool, url, token)
    assert first.returncode == 0, first.stdout + first.stderr
    assert read_keys() == expected
    assert spool_files(spool) == []
    assert [path for path in spool.rglob("*") if path.is_file()] == []

    second = upload(spool, url, token)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "Nothing to upload" in second.stdout
    assert read_keys() == expected


def uploaded_keys(live_server: LiveServer, clean: CleanRun) -> Callable[[], list[ExecutionKey]]:
    def read() -> list[ExecutionKey]:
        runs = other_runs(live_server, clean)
        assert len(runs) == 1, f"expected one uploaded run, found {len(runs)}"
        return execution_keys(live_server.executions(runs[0]["id"]))

    return read


# --- stand-in servers --------------------------------------------------------------

Responder = Callable[[str, str, dict[str, str], bytes], tuple[int, dict[str, str], bytes]]


class _StandInHandler(http.server.BaseHTTPRequestHandler):
    server: StandInServer

    def _respond(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        self.server.record(self.command, self.path)
        headers = {name: value for name, value in self.headers.items()}
        status, extra, payload = self.server.responder(self.command, self.path, headers, body)
        self.send_response(status)
        for name, value in extra.items():
            self.send_header(name, value)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_PUT = _respond

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep the test's output to its own failures


class StandInServer(http.server.ThreadingHTTPServer):
    """An HTTP server on 127.0.0.1 and a free port whose responses a test chooses."""

    daemon_threads = True

    def __init__(self, responder: Responder) -> None:
        super().__init__(("127.0.0.1", 0), _StandInHandler)
        self.responder = responder
        self.requests: list[tuple[float, str, str]] = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(
            target=self.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True
        )
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def record(self, method: str, path: str) -> None:
        with self._lock:
            self.requests.append((time.monotonic(), method, path))

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
        self._thread.join(10)


class SilentServer:
    """Accept connections on 127.0.0.1 and a free port, and never respond to them."""

    def __init__(self) -> None:
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(128)
        self._listener.settimeout(0.1)
        self.connections: list[socket.socket] = []
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._listener.getsockname()[1]}"

    def _accept(self) -> None:
        while not self._stopping.is_set():
            try:
                connection, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections.append(connection)

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(10)
        for connection in self.connections:
            connection.close()
        self._listener.close()


def error_body(code: str, message: str) -> bytes:
    return json.dumps({"error": {"code": code, "message": message, "request_id": "x"}}).encode()


def always(status: int, code: str, headers: dict[str, str] | None = None) -> Responder:
    body = error_body(code, f"stand-in returns {status}")
    return lambda method, path, request_headers, request_body: (status, headers or {}, body)


@pytest.fixture
def stand_in() -> Iterator[Callable[[Responder], StandInServer]]:
    servers: list[StandInServer] = []

    def start(responder: Responder) -> StandInServer:
        server = StandInServer(responder)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def silent_server() -> Iterator[SilentServer]:
    server = SilentServer()
    yield server
    server.stop()


@pytest.fixture
def dead_url() -> Iterator[str]:
    """A loopback URL that refuses connections: its port is bound but never listens."""
    holder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    holder.bind(("127.0.0.1", 0))
    yield f"http://127.0.0.1:{holder.getsockname()[1]}"
    holder.close()


# --- a real server in a subprocess ------------------------------------------------


@dataclass
class ServerProcess:
    """``python -m ingest_server serve`` on a SQLite file, which a test may kill and restart."""

    workdir: Path
    project: str = "FAULT"
    token: str = ""
    url: str = ""
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0

    @property
    def database_url(self) -> str:
        return f"sqlite+aiosqlite:///{self.workdir / 'server.db'}"

    def command(self, *args: str) -> str:
        completed = subprocess.run(
            [sys.executable, "-m", "ingest_server", *args, "--database-url", self.database_url],
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT,
            check=False,
        )
        assert completed.returncode == 0, completed.stderr
        return completed.stdout

    def create_project(self) -> None:
        self.command("create-project", self.project, "--name", "Fault tests")
        output = self.command(
            "create-token", self.project, "--name", "fault tests", "--role", "reporter"
        )
        self.token = output.strip().splitlines()[-1]

    def start(self) -> None:
        self.starts += 1
        log = self.workdir / f"server-{self.starts}.log"
        with log.open("wb") as output:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "ingest_server",
                    "serve",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    "0",
                    "--database-url",
                    self.database_url,
                ],
                stdout=output,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + SERVER_START_TIMEOUT
        while time.monotonic() < deadline:
            found = re.search(r"listening on (http://127\.0\.0\.1:\d+)", log.read_text())
            if found:
                self.url = found[1]
                return
            if self.process.poll() is not None:
                break
            time.sleep(0.1)
        self.stop()
        pytest.fail(f"the server did not start:\n{log.read_text()}")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)

    def get(self, path: str) -> Any:
        return api_get(self.url, self.project, self.token, path)


@pytest.fixture
def server_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    server = ServerProcess(tmp_path_factory.mktemp("server-process"))
    server.create_project()
    try:
        yield server
    finally:
        server.stop()


# --- administration on the live server ------------------------------------------------


async def _project_context(live_server: LiveServer, project: str) -> RequestContext:
    scope = await live_server.services.auth.resolve_scope(OPERATOR, project)
    return RequestContext(
        request_id="test", principal=OPERATOR, project_key=project, project=scope
    )


def revoke_token(live_server: LiveServer, number: int) -> None:
    async def revoke() -> None:
        ctx = await _project_context(live_server, live_server.project)
        await live_server.services.admin.revoke_token(ctx, number)

    live_server.call(revoke())


def new_token(live_server: LiveServer, project: str) -> str:
    async def create() -> str:
        ctx = await _project_context(live_server, project)
        issued = await live_server.services.admin.create_token(ctx, "upload", "reporter")
        return issued.secret

    return str(live_server.call(create()))


def create_project(live_server: LiveServer, project: str) -> None:
    async def create() -> None:
        ctx = RequestContext(request_id="test", principal=OPERATOR)
        await live_server.services.admin.create_project(ctx, project, "Created late")

    live_server.call(create())


# --- scenarios ------------------------------------------------------------------------


@XDIST
def test_server_down_from_start(
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    live_server: LiveServer,
    dead_url: str,
    xdist: list[str],
) -> None:
    pytester.makepyfile(test_suite=SUITE)
    plain = run_without_plugin(pytester, monkeypatch, xdist)
    clean = run_clean(pytester, monkeypatch, live_server, xdist)
    spool = pytester.path / "spool"

    run = run_inner(
        pytester,
        monkeypatch,
        plugin_args(live_server.project, dead_url, spool, *xdist),
        {TOKEN_ENV: live_server.token},
    )

    check_run_survived(run, plain)
    check_quiet_outage(run)
    assert f"{OUTAGE_LINE}server unreachable" in run.result.stdout.str()
    check_spooled(spool, clean)
    check_uploaded(
        spool, live_server.url, live_server.token, uploaded_keys(live_server, clean), clean.keys
    )
    assert other_runs(live_server, clean)[0]["totals"] == clean.totals


@XDIST
def test_server_killed_mid_run(
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    live_server: LiveServer,
    server_process: ServerProcess,
    xdist: list[str],
) -> None:
    pytester.makepyfile(test_suite=KILL_SUITE)
    plain = run_without_plugin(pytester, monkeypatch, xdist)
    clean = run_clean(pytester, monkeypatch, live_server, xdist)
    spool = pytester.path / "spool"
    server_process.start()
    assert server_process.process is not None

    run = run_inner(
        pytester,
        monkeypatch,
        plugin_args(server_process.project, server_process.url, spool, *xdist),
        {TOKEN_ENV: server_process.token, "FAULT_KILL_PID": str(server_process.process.pid)},
    )

    assert server_process.process.poll() is not None, "the suite did not kill the server"
    check_run_survived(run, plain)
    check_quiet_outage(run)
    spooled = spooled_events(spool, "execution")
    assert len(spooled) > 0, "the results after the kill are missing from the spool"
    assert len(spooled) < len(clean.keys), "the results before the kill were not delivered"
    assert spooled_events(spool, "finish"), "the spool lost the run's finish event"

    server_process.start()

    def read_keys() -> list[ExecutionKey]:
        runs = server_process.get("/runs")["items"]
        assert len(runs) == 1, f"expected one run, found {len(runs)}"
        page = server_process.get(f"/runs/{runs[0]['id']}/executions?limit=500")
        return execution_keys(page["items"])

    check_uploaded(spool, server_process.url, server_process.token, read_keys, clean.keys)
    run_detail = server_process.get(f"/runs/{server_process.get('/runs')['items'][0]['id']}")
    assert run_detail["status"] == "finished"
    assert run_detail["totals"] == clean.totals


@XDIST
def test_server_returns_500(
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    live_server: LiveServer,
    stand_in: Callable[[Responder], StandInServer],
    xdist: list[str],
) -> None:
    pytester.makepyfile(test_suite=SUITE)
    plain = run_without_plugin(pytester, monkeypatch, xdist)
    clean = run_clean(pytester, monkeypatch, live_server, xdist)
    spool = pytester.path / "spool"
    broken = stand_in(always(500, "internal_error"))

    run = run_inner(
        pytester,
        monkeypatch,
        plugin_args(live_server.project, broken.url, spool, *xdist),
        {TOKEN_ENV: live_server.token},
    )

    check_run_survived(run, plain)
    check_quiet_outage(run)
    assert f"{OUTAGE_LINE}500 internal_error: stand-in returns 500" in run.result.stdout.str()
    assert len(broken.requests) > 1, "a 500 response should be retried"
    check_spooled(spool, clean)
    check_uploaded(
        spool, live_server.url, live_server.token, uploaded_keys(live_server, clean), clean.keys
    )


@XDIST
def test_server_returns_429(
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    live_server: LiveServer,
    stand_in: Callable[[Responder], StandInServer],
    xdist: list[str],
) -> None:
    pytester.makepyfile(test_suite=SUITE)
    plain = run_without_plugin(pytester, monkeypatch, xdist)
    clean = run_clean(pytester, monkeypatch, live_server, xdist)
    spool = pytester.path / "spool"
    limited = stand_in(always(429, "rate_limited", {"Retry-After": "1"}))

    run = run_inner(
        pytester,
        monkeypatch,
        plugin_args(live_server.project, limited.url, spool, *xdist),
        {TOKEN_ENV: live_server.token},
    )

    check_run_survived(run, plain)
    check_quiet_outage(run)
    assert f"{OUTAGE_LINE}429 rate_limited" in run.result.stdout.str()
    check_spooled(spool, clean)
    check_uploaded(
        spool, live_server.url, live_server.token, uploaded_keys(live_server, clean), clean.keys
    )


def request_gaps(server: StandInServer, within: float | None = None) -> list[float]:
    """Return the seconds between consecutive requests, optionally only the first ones."""
    times = [at for at, _, _ in server.requests]
    if within is not None:
        times = [at for at in times if at - times[0] <= within]
    return [later - earlier for earlier, later in itertools.pairwise(times)]


def test_retry_after_during_run(
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    stand_in: Callable[[Responder], StandInServer],
) -> None:
    pytester.makepyfile(
        test_suite="""
        import time

        def test_slow():
            time.sleep(4)
        """
    )
    limited = stand_in(always(429, "rate_limited", {"Retry-After": "1"}))

    run_inner(
        pytester,
        monkeypatch,
        plugin_args("PLUG", limited.url, pytester.path / "spool"),
        {TOKEN_ENV: "unused"},
    )

    # While the test sleeps, the session is not over, so only Retry-After paces the requests.
    gaps = request_gaps(limited, within=3.0)
    assert len(gaps) >= 2, limited.requests
    # Without Retry-After the first backoff is at most 0.75 s.
    assert min(gaps) >= 0.9, gaps


def test_retry_after_at_session_end(
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    stand_in: Callable[[Responder], StandInServer],
) -> None:
    """A session that ends during a Retry-After wait still waits, within the flush deadline."""
    pytester.makepyfile(test_suite=PASSING_SUITE)
    limited = stand_in(always(429, "rate_limited", {"Retry-After": "1"}))

    run_inner(
        pytester,
        monkeypatch,
        plugin_args("PLUG", limited.url, pytester.path / "spool"),
        {TOKEN_ENV: "unused"},
    )

    gaps = request_gaps(limited)
    assert len(gaps) >= 1, limited.requests
    assert min(gaps) >= 0.9, gaps


@XDIST
def test_rate_limit_then_recovers(
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    live_server: LiveServer,
    stand_in: Callable[[Responder], StandInServer],
    xdist: list[str],
) -> None:
    """A proxy to the live server rejects the first requests with 429, then forwards the rest."""
    pytester.makepyfile(test_suite=SUITE)
    plain = run_without_plugin(pytester, monkeypatch, xdist)
    clean = run_clean(pytester, monkeypatch, live_server, xdist)
    spool = pytester.path / "spool"
    limited_requests = 2
    received = {"count": 0}
    lock = threading.Lock()

    def forward(
        method: str, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        with lock:
            received["count"] += 1
            limited = received["count"] <= limited_requests
        if limited:
            return 429, {"Retry-After": "1"}, error_body("rate_limited", "slow down")
        request = urllib.request.Request(
            live_server.url + path,
            data=body,
            method=method,
            headers={
                "Authorization": headers.get("Authorization", ""),
                "Content-Type": "application/json",
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, {}, response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, {}, exc.read()

    proxy = stand_in(forward)

    run = run_inner(
        pytester,
        monkeypatch,
        plugin_args(live_server.project, proxy.url, spool, *xdist),
        {TOKEN_ENV: live_server.token},
    )

    check_run_survived(run, plain)
    assert OUTAGE_LINE not in run.result.stdout.str()
    assert spool_files(spool) == []
    assert uploaded_keys(live_server, clean)() == clean.keys
    assert other_runs(live_server, clean)[0]["status"] == "finished"


@XDIST
@pytest.mark.parametrize(
    ("timeout", "deadline", "reason"),
    # With a short timeout the attempts time out and the retries run out. With
    # a timeout longer than the deadline, the deadline must cut the wait.
    [
        ("1", FLUSH_DEADLINE, "server unreachable: timed out"),
        ("30", 5.0, "the final flush deadline passed"),
    ],
    ids=["short-timeout", "long-timeout"],
)
def test_server_never_responds(
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    live_server: LiveServer,
    silent_server: SilentServer,
    xdist: list[str],
    timeout: str,
    deadline: float,
    reason: str,
) -> None:
    pytester.makepyfile(test_suite=SUITE)
    plain = run_without_plugin(pytester, monkeypatch, xdist)
    clean = run_clean(pytester, monkeypatch, live_server, xdist)
    spool = pytester.path / "spool"

    run = run_inner(
        pytester,
        monkeypatch,
        plugin_args(
            live_server.project,
            silent_server.url,
            spool,
            "--testoqa-timeout",
            timeout,
            *xdist,
            deadline=deadline,
        ),
        {TOKEN_ENV: live_server.token},
    )

    check_run_survived(run, plain, deadline)
    check_quiet_outage(run)
    assert f"{OUTAGE_LINE}{reason}" in run.result.stdout.str()
    assert silent_server.connections, "the plugin never connected"
    check_spooled(spool, clean)
    check_uploaded(
        spool, live_server.url, live_server.token, uploaded_keys(live_server, clean), clean.keys
    )


@XDIST
def test_token_revoked(
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    live_server: LiveServer,
    xdist: list[str],
) -> None:
    pytester.makepyfile(test_suite=SUITE)
    plain = run_without_plugin(pytester, monkeypatch, xdist)
    clean = run_clean(pytester, monkeypatch, live_server, xdist)
    spool = pytester.path / "spool"
    revoke_token(live_server, number=1)  # the fixture's token is the project's first

    run = run_inner(
        pytester,
        monkeypatch,
        plugin_args(live_server.project, live_server.url, spool, *xdist),
        {TOKEN_ENV: live_server.token},
    )

    check_run_survived(run, plain)
    stdout = run.result.stdout.str()
    assert FATAL_HEADER in stdout
    assert "the token was rejected: check TESTOQA_TOKEN" in stdout
    assert "401 unauthenticated" in stdout
    assert OUTAGE_LINE not in stdout
    check_spooled(spool, clean)

    # The revoked token can no longer read either: read and upload with a new one.
    reader = dataclasses.replace(live_server, token=new_token(live_server, live_server.project))
    assert other_runs(reader, clean) == []
    check_uploaded(spool, reader.url, reader.token, uploaded_keys(reader, clean), clean.keys)


@XDIST
def test_project_unknown(
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    live_server: LiveServer,
    xdist: list[str],
) -> None:
    pytester.makepyfile(test_suite=SUITE)
    plain = run_without_plugin(pytester, monkeypatch, xdist)
    clean = run_clean(pytester, monkeypatch, live_server, xdist)
    spool = pytester.path / "spool"

    run = run_inner(
        pytester,
        monkeypatch,
        plugin_args("LATER", live_server.url, spool, *xdist),
        {TOKEN_ENV: live_server.token},
    )

    check_run_survived(run, plain)
    stdout = run.result.stdout.str()
    assert FATAL_HEADER in stdout
    assert "the project was not found on the server" in stdout
    assert "404 not_found" in stdout
    check_spooled(spool, clean)

    create_project(live_server, "LATER")
    later = dataclasses.replace(
        live_server, project="LATER", token=new_token(live_server, "LATER")
    )

    def read_keys() -> list[ExecutionKey]:
        return execution_keys(later.executions(later.only_run()["id"]))

    check_uploaded(spool, later.url, later.token, read_keys, clean.keys)


@XDIST
def test_strict_undelivered_exits_1(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, dead_url: str, xdist: list[str]
) -> None:
    pytester.makepyfile(test_suite=PASSING_SUITE)
    spool = pytester.path / "spool"

    run = run_inner(
        pytester,
        monkeypatch,
        plugin_args("PLUG", dead_url, spool, "--testoqa-strict", *xdist),
        {TOKEN_ENV: "unused"},
    )

    run.result.assert_outcomes(passed=2)
    assert run.result.ret == 1
    assert spool_files(spool) != []


@XDIST
def test_strict_delivered_exits_0(
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    live_server: LiveServer,
    xdist: list[str],
) -> None:
    pytester.makepyfile(test_suite=PASSING_SUITE)
    spool = pytester.path / "spool"

    run = run_inner(
        pytester,
        monkeypatch,
        plugin_args(live_server.project, live_server.url, spool, "--testoqa-strict", *xdist),
        {TOKEN_ENV: live_server.token},
    )

    run.result.assert_outcomes(passed=2)
    assert run.result.ret == 0
    assert spool_files(spool) == []
