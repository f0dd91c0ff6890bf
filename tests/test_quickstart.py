"""The ``testoqa-quickstart`` command, run for real: a server, the example suite and SQLite."""

from __future__ import annotations

import argparse
import os
import queue
import re
import shutil
import signal
import socket
import sqlite3
import stat
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import pytest

from ingest_server import quickstart
from ingest_server.config import Settings
from ingest_server.schemas import RunDetail
from ingest_server.services.container import Services
from ingest_server.services.context import OPERATOR, RequestContext

QUICKSTART_TIMEOUT = 180
STOP_TIMEOUT = 30
READY = "Serving until Ctrl-C."
RUN_LINE = re.compile(
    r"^  run (\d) \(([\w/-]+)\): (http://127\.0\.0\.1:\d+)/projects/DEMO/runs/([0-9a-f-]{36})$",
    re.MULTILINE,
)
BRANCHES = {1: "main", 2: "feature/faster-checkout", 3: "main", 4: "main"}


def quickstart_env() -> dict[str, str]:
    """Return the environment of a quickstart run: no TESTOQA_* settings of the caller leak in."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("TESTOQA_")}
    env["PYTHONUNBUFFERED"] = "1"
    return env


# The quickstart runs from the top folder of a clone, where examples/demo is;
# the package under test may be installed elsewhere, as tox does.
CLONE = Path(__file__).resolve().parent.parent


def quickstart_command(data_dir: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "ingest_server.quickstart", "--data-dir", str(data_dir), *args]


def run_quickstart(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the quickstart to completion from the top folder of the clone."""
    return subprocess.run(
        quickstart_command(data_dir, *args),
        cwd=CLONE,
        env=quickstart_env(),
        capture_output=True,
        text=True,
        timeout=QUICKSTART_TIMEOUT,
        check=False,
    )


@dataclass(frozen=True)
class Demo:
    data_dir: Path
    result: subprocess.CompletedProcess[str]

    @property
    def database_url(self) -> str:
        return f"sqlite+aiosqlite:///{self.data_dir / 'testoqa.db'}"


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Demo:
    """Run the quickstart once with --no-serve; the tests of this module read what it stored."""
    data_dir = tmp_path_factory.mktemp("quickstart") / "demo-data"
    result = run_quickstart(data_dir, "--no-serve", "--port", "0")
    assert result.returncode == 0, result.stdout + result.stderr
    return Demo(data_dir, result)


async def _runs(database_url: str) -> list[RunDetail]:
    """Return every run of project DEMO, oldest first, read through the services."""
    services = Services(Settings(database_url=database_url))
    try:
        scope = await services.auth.resolve_scope(OPERATOR, "DEMO")
        assert scope is not None
        ctx = RequestContext("test", OPERATOR, project_key="DEMO", project=scope)
        page = await services.runs.list(ctx, branch=None, status=None, limit=100, cursor=None)
        return [await services.runs.get(ctx, run.id) for run in reversed(page.items)]
    finally:
        await services.close()


@pytest.fixture
async def demo_runs(demo: Demo) -> list[RunDetail]:
    return await _runs(demo.database_url)


# --- what one quickstart stores and prints ---------------------------------------


def test_output_names_reports_url(demo: Demo) -> None:
    match = re.search(
        r"^Reports of project DEMO: (http://127\.0\.0\.1:\d+)/projects/DEMO/runs$",
        demo.result.stdout,
        re.MULTILINE,
    )
    assert match is not None, demo.result.stdout


def test_output_names_each_run(demo: Demo, demo_runs: list[RunDetail]) -> None:
    printed = RUN_LINE.findall(demo.result.stdout)
    assert [(int(number), branch) for number, branch, _, _ in printed] == sorted(BRANCHES.items())
    assert [run_id for *_, run_id in printed] == [str(run.id) for run in demo_runs]


def test_output_names_sign_in(demo: Demo) -> None:
    stdout = demo.result.stdout
    assert re.search(r"^Sign in at http://127\.0\.0\.1:\d+/login$", stdout, re.MULTILINE)
    assert re.search(r"^  email: +demo@example\.com$", stdout, re.MULTILINE)


def test_output_password_matches_file(demo: Demo) -> None:
    stored = (demo.data_dir / "credentials.json").read_text()
    match = re.search(r"^  password: +(\S+)$", demo.result.stdout, re.MULTILINE)
    assert match is not None, demo.result.stdout
    assert f'"password": "{match[1]}"' in stored


def test_output_says_how_to_serve_again(demo: Demo) -> None:
    assert "Serve the demo again with:" in demo.result.stdout
    database = demo.data_dir / "testoqa.db"
    assert f"--database-url sqlite+aiosqlite:///{database}" in demo.result.stdout


def test_credentials_private(demo: Demo) -> None:
    mode = stat.S_IMODE((demo.data_dir / "credentials.json").stat().st_mode)
    assert mode == 0o600


def test_data_dir_ignored_by_git(demo: Demo) -> None:
    assert (demo.data_dir / ".gitignore").read_text() == "*\n"


def test_runs_on_two_branches(demo_runs: list[RunDetail]) -> None:
    assert [run.ci.branch for run in demo_runs] == list(BRANCHES.values())
    assert len({run.ci.commit for run in demo_runs}) == 4


def test_runs_finished(demo_runs: list[RunDetail]) -> None:
    assert [run.status for run in demo_runs] == ["finished"] * 4


def test_runs_have_failures(demo_runs: list[RunDetail]) -> None:
    assert [run.totals.failed for run in demo_runs] == [5, 4, 6, 5]
    assert [run.totals.error for run in demo_runs] == [1, 1, 1, 1]


def test_runs_have_rerun_pass(demo_runs: list[RunDetail]) -> None:
    assert [run.passed_on_rerun for run in demo_runs] == [1, 1, 1, 1]
    # 28 tests and one extra attempt of the rerun test.
    assert [run.attempts for run in demo_runs] == [29, 29, 29, 29]


def test_runs_have_skips_and_xfails(demo_runs: list[RunDetail]) -> None:
    assert [run.totals.skipped for run in demo_runs] == [3, 3, 3, 3]
    assert [run.totals.xfailed for run in demo_runs] == [1, 1, 1, 1]
    assert [run.totals.xpassed for run in demo_runs] == [1, 1, 1, 1]


def test_runs_count_every_test(demo_runs: list[RunDetail]) -> None:
    assert [run.tests for run in demo_runs] == [28, 28, 28, 28]
    assert [run.not_run for run in demo_runs] == [0, 0, 0, 0]


def test_suite_leaves_no_files(demo: Demo) -> None:
    suite = Path(__file__).resolve().parent.parent / "examples" / "demo"
    leftovers = {path.name for path in suite.iterdir()} - {
        "conftest.py",
        "pytest.ini",
        "test_cart.py",
        "test_catalog.py",
        "test_checkout.py",
        "test_search.py",
    }
    assert leftovers == set()


# --- running it again ------------------------------------------------------------


@pytest.fixture(scope="module")
def rerun(demo: Demo, tmp_path_factory: pytest.TempPathFactory) -> Demo:
    """Run the quickstart a second time, once, on a copy of the first run's data folder."""
    data_dir = tmp_path_factory.mktemp("rerun") / "demo-data"
    shutil.copytree(demo.data_dir, data_dir)
    result = run_quickstart(data_dir, "--no-serve", "--port", "0", "--rounds", "1")
    assert result.returncode == 0, result.stdout + result.stderr
    return Demo(data_dir, result)


def test_rerun_reuses_project(rerun: Demo) -> None:
    assert "Project DEMO: already exists, reused" in rerun.result.stdout


def test_rerun_reuses_user(demo: Demo, rerun: Demo) -> None:
    assert "User demo@example.com: already exists, password read from" in rerun.result.stdout
    first = re.search(r"^  password: +(\S+)$", demo.result.stdout, re.MULTILINE)
    second = re.search(r"^  password: +(\S+)$", rerun.result.stdout, re.MULTILINE)
    assert first is not None
    assert second is not None
    assert second[1] == first[1]


def test_rerun_reuses_token(demo: Demo, rerun: Demo) -> None:
    assert "Reporter token: reused" in rerun.result.stdout
    first = re.search(r"TESTOQA_TOKEN=(\S+)", demo.result.stdout)
    second = re.search(r"TESTOQA_TOKEN=(\S+)", rerun.result.stdout)
    assert first is not None
    assert second is not None
    assert second[1] == first[1]


async def test_rerun_adds_runs(rerun: Demo) -> None:
    runs = await _runs(rerun.database_url)
    assert len(runs) == 5


def test_lost_credentials_file_named(demo: Demo, tmp_path: Path) -> None:
    data_dir = tmp_path / "demo-data"
    shutil.copytree(demo.data_dir, data_dir)
    (data_dir / "credentials.json").unlink()
    result = run_quickstart(data_dir, "--no-serve", "--port", "0", "--rounds", "0")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "its password is not in" in result.stdout
    assert "delete the data folder to start over" in result.stdout
    assert re.search(r"Reporter token DEMO-2: created", result.stdout)


# --- bad input and failures --------------------------------------------------------


def test_port_in_use(tmp_path: Path) -> None:
    data_dir = tmp_path / "demo-data"
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_quickstart(data_dir, "--no-serve", "--port", str(port))
    assert result.returncode == 1
    assert f"port {port} on 127.0.0.1 is already in use" in result.stderr
    assert "choose another port with --port" in result.stderr
    assert not (data_dir / "testoqa.db").exists()


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--port", "70000", "invalid port 70000: use a value from 0 to 65535"),
        ("--port", "http", "invalid port 'http': expected an integer"),
        ("--rounds", "5", "invalid number of rounds 5: use a value from 0 to 4"),
    ],
)
def test_bad_option_named(tmp_path: Path, option: str, value: str, message: str) -> None:
    result = run_quickstart(tmp_path / "demo-data", option, value)
    assert result.returncode == 2
    assert message in result.stderr


def test_database_locked(demo: Demo, tmp_path: Path) -> None:
    data_dir = tmp_path / "demo-data"
    shutil.copytree(demo.data_dir, data_dir)
    holder = sqlite3.connect(data_dir / "testoqa.db", isolation_level=None)
    try:
        holder.execute("BEGIN EXCLUSIVE")
        result = run_quickstart(data_dir, "--no-serve", "--port", "0", "--rounds", "0")
    finally:
        holder.close()
    assert result.returncode == 1
    assert "the database is locked by another program" in result.stderr


# --- serving and stopping ------------------------------------------------------------


def _forward_lines(stream: IO[str], lines: queue.Queue[str | None]) -> None:
    for line in stream:
        lines.put(line)
    lines.put(None)


@dataclass
class Running:
    process: subprocess.Popen[str]
    lines: queue.Queue[str | None]
    output: list[str]

    def wait_for(self, text: str) -> None:
        """Read output lines until one contains text; fail if the quickstart exits first."""
        while True:
            try:
                line = self.lines.get(timeout=QUICKSTART_TIMEOUT)
            except queue.Empty:
                pytest.fail(f"the quickstart printed no {text!r} within {QUICKSTART_TIMEOUT} s")
            if line is None:
                pytest.fail(f"the quickstart exited before {text!r}:\n{''.join(self.output)}")
            self.output.append(line)
            if text in line:
                return

    def rest(self) -> str:
        """Return the remaining output once the process has closed its standard output."""
        while (line := self.lines.get(timeout=STOP_TIMEOUT)) is not None:
            self.output.append(line)
        return "".join(self.output)


@pytest.fixture
def start_quickstart(tmp_path: Path) -> Iterator[Callable[..., Running]]:
    """Start the quickstart in the background; teardown kills it if a test left it running."""
    started: list[subprocess.Popen[str]] = []

    def start(*args: str) -> Running:
        process = subprocess.Popen(
            quickstart_command(tmp_path / "demo-data", *args),
            cwd=CLONE,
            env=quickstart_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        started.append(process)
        assert process.stdout is not None
        lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=_forward_lines, args=(process.stdout, lines), daemon=True).start()
        return Running(process, lines, [])

    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=STOP_TIMEOUT)
        if process.stdout is not None:
            process.stdout.close()


def _url_in(output: list[str]) -> str:
    for line in output:
        match = re.match(r"Server listening on (http://127\.0\.0\.1:\d+)$", line.strip())
        if match:
            return match[1]
    raise AssertionError(f"no server URL in the output:\n{''.join(output)}")


def _status(url: str) -> int:
    assert url.startswith("http://127.0.0.1:"), f"not contacting {url}: loopback only"
    with urllib.request.urlopen(url, timeout=10) as response:
        return int(response.status)


def test_ctrl_c_stops_server(start_quickstart: Callable[..., Running]) -> None:
    running = start_quickstart("--port", "0", "--rounds", "0")
    running.wait_for(READY)
    url = _url_in(running.output)
    assert _status(f"{url}/healthz") == 200
    running.process.send_signal(signal.SIGINT)
    assert running.process.wait(timeout=STOP_TIMEOUT) == 0
    assert "Stopping the server." in running.rest()
    with pytest.raises(OSError, match="Connection refused"):
        _status(f"{url}/healthz")


def test_ctrl_c_during_suite(start_quickstart: Callable[..., Running]) -> None:
    running = start_quickstart("--port", "0", "--rounds", "4")
    running.wait_for("Running the example suite")
    running.process.send_signal(signal.SIGINT)
    assert running.process.wait(timeout=STOP_TIMEOUT) == 130
    output = running.rest()
    assert "stopped before the demo was ready" in output
    assert READY not in output


# --- documentation -----------------------------------------------------------------

DOC = Path(__file__).resolve().parent.parent / "docs" / "quickstart.md"


def _documented_rows() -> dict[str, list[str]]:
    rows = {}
    for line in DOC.read_text().splitlines():
        if line.startswith("| `"):
            cells = [cell.strip() for cell in line.strip("|").split("|")]
            rows[cells[0].strip("`").split()[0]] = cells
    return rows


@pytest.mark.parametrize(
    "action",
    [action for action in quickstart.build_parser()._actions if action.option_strings[0] != "-h"],
    ids=lambda action: action.option_strings[0],
)
def test_option_documented(action: argparse.Action) -> None:
    row = _documented_rows().get(action.option_strings[0])
    assert row is not None
    default = "off" if action.default is False else f"`{action.default}`"
    assert row[1] == default


@pytest.mark.parametrize("round_", quickstart.ROUNDS, ids=lambda round_: str(round_.number))
def test_round_documented(round_: quickstart.Round) -> None:
    assert f"| {round_.number} | `{round_.branch}` |" in DOC.read_text()
