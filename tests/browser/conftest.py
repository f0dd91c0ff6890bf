"""Fixtures of the browser tests: Debian's Chromium, driven by Playwright, on a real server.

The server is a ``testoqa-server serve`` process on a free loopback port,
with a SQLite database that ``testoqa-quickstart --no-serve`` filled with
the example suite's runs. Playwright never downloads a browser: it starts
the Chromium at ``$TESTOQA_CHROMIUM``, else ``/usr/bin/chromium`` (Debian's
``chromium`` package). Without that browser the tests are skipped, unless
``CI=true`` is set, which makes them fail.
"""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect, sync_playwright

DEFAULT_CHROMIUM = "/usr/bin/chromium"
# Chromium's background services try to reach Google's hosts; on a machine
# without internet access they fail slowly and fill the log.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
QUICKSTART_TIMEOUT = 180
SERVE_TIMEOUT = 60
STOP_TIMEOUT = 30
# Live updates arrive once the plugin has sent a batch, about every second.
EXPECT_TIMEOUT_MS = 15_000
LISTENING = re.compile(r"listening on (http://127\.0\.0\.1:\d+) ")
RUN_LINE = re.compile(r"^  run (\d) \(([\w/-]+)\): http://\S+/runs/([0-9a-f-]{36})$", re.MULTILINE)

PHASE_REPORTS = pytest.StashKey[dict[str, pytest.TestReport]]()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Keep each phase's report on the item, so fixtures can tell whether the test failed."""
    report: pytest.TestReport = yield
    item.stash.setdefault(PHASE_REPORTS, {})[report.when] = report
    return report  # type: ignore[return-value]


def server_env() -> dict[str, str]:
    """Return an environment without the caller's TESTOQA_* settings."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("TESTOQA_")}
    env["PYTHONUNBUFFERED"] = "1"
    return env


@dataclass(frozen=True)
class DemoServer:
    """A running server with the quickstart's project, user, token and runs."""

    url: str
    email: str
    password: str
    token: str
    # Run ids by quickstart round: 1, 3 and 4 are on main, 2 on a feature branch.
    runs: dict[int, str]
    database_url: str
    log: Path


@pytest.fixture(scope="module")
def chromium_path() -> str:
    """Return the Chromium to drive; skip without one, or fail when CI=true."""
    path = os.environ.get("TESTOQA_CHROMIUM", DEFAULT_CHROMIUM)
    if os.access(path, os.X_OK):
        return path
    reason = (
        f"Chromium not found at {path}: install Debian's chromium package "
        "or set TESTOQA_CHROMIUM to a Chromium binary"
    )
    if os.environ.get("CI") == "true":
        pytest.fail(f"the browser tests need Chromium when CI=true. {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser(chromium_path: str) -> Iterator[Browser]:
    """Start Chromium once per module.

    Module scope keeps Playwright's own event loop from outliving these
    tests, so it never overlaps the asyncio tests of other modules.
    """
    expect.set_options(timeout=EXPECT_TIMEOUT_MS)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=chromium_path, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def _forward_lines(stream: IO[str], lines: queue.Queue[str | None]) -> None:
    for line in stream:
        lines.put(line)
    lines.put(None)


def _seed(data_dir: Path) -> dict[int, str]:
    """Fill data_dir with the quickstart's demo and return its run ids by round."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "ingest_server.quickstart",
            "--no-serve",
            "--port",
            "0",
            "--data-dir",
            str(data_dir),
        ],
        # The quickstart finds examples/demo in the top folder of the clone.
        cwd=Path(__file__).resolve().parents[2],
        env=server_env(),
        capture_output=True,
        text=True,
        timeout=QUICKSTART_TIMEOUT,
        check=False,
    )
    assert result.returncode == 0, f"the quickstart failed:\n{result.stdout}\n{result.stderr}"
    return {int(number): run_id for number, _, run_id in RUN_LINE.findall(result.stdout)}


def _start_serve(database_url: str, log: Path) -> tuple[subprocess.Popen[str], str]:
    """Start ``serve --port 0`` and return the process and the URL from its banner."""
    command = [
        sys.executable,
        "-m",
        "ingest_server",
        "serve",
        "--port",
        "0",
        "--database-url",
        database_url,
    ]
    with log.open("w") as stderr:
        process = subprocess.Popen(
            command, env=server_env(), stdout=subprocess.PIPE, stderr=stderr, text=True
        )
    assert process.stdout is not None
    lines: queue.Queue[str | None] = queue.Queue()
    threading.Thread(target=_forward_lines, args=(process.stdout, lines), daemon=True).start()
    while True:
        line = lines.get(timeout=SERVE_TIMEOUT)
        if line is None:
            process.wait(timeout=STOP_TIMEOUT)
            raise AssertionError(f"serve exited before listening:\n{log.read_text()}")
        match = LISTENING.search(line)
        if match:
            return process, match[1]


@pytest.fixture(scope="module")
def demo_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoServer]:
    """Seed a database with the quickstart, then serve it on a free loopback port."""
    data_dir = tmp_path_factory.mktemp("browser") / "demo-data"
    runs = _seed(data_dir)
    credentials = json.loads((data_dir / "credentials.json").read_text())
    log = data_dir / "serve.log"
    database_url = f"sqlite+aiosqlite:///{data_dir / 'testoqa.db'}"
    process, url = _start_serve(database_url, log)
    try:
        yield DemoServer(
            url=url,
            email=credentials["email"],
            password=credentials["password"],
            token=credentials["token"],
            runs=runs,
            database_url=database_url,
            log=log,
        )
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=STOP_TIMEOUT)
        if process.stdout is not None:
            process.stdout.close()


def sign_in(page: Page, server: DemoServer, path: str = "/projects") -> None:
    """Open path signed out, which leads to the sign-in form, and sign in through it."""
    page.goto(f"{server.url}{path}")
    expect(page).to_have_url(re.compile(r"/login\?next="))
    page.get_by_label("Email address").fill(server.email)
    page.get_by_label("Password").fill(server.password)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(f"{server.url}{path}")


@pytest.fixture(scope="module")
def signed_in_state(browser: Browser, demo_server: DemoServer) -> dict[str, object]:
    """Sign in once per module and return the browser state with the session cookie."""
    context = browser.new_context()
    try:
        sign_in(context.new_page(), demo_server)
        return dict(context.storage_state())
    finally:
        context.close()


def _close(context: BrowserContext, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    """Close context, taking a screenshot of each of its pages first if the test failed."""
    reports = request.node.stash.get(PHASE_REPORTS, {})
    if any(report.failed for report in reports.values()):
        for number, page in enumerate(context.pages):
            path = tmp_path / f"failure-{number}.png"
            page.screenshot(path=str(path), full_page=True)
            print(f"screenshot of {page.url}: {path}")
    context.close()


@pytest.fixture
def page(
    browser: Browser,
    signed_in_state: dict[str, object],
    request: pytest.FixtureRequest,
    tmp_path: Path,
) -> Iterator[Page]:
    """Return a page of a browser context signed in as the demo user."""
    context = browser.new_context(storage_state=signed_in_state)  # type: ignore[arg-type]
    yield context.new_page()
    _close(context, request, tmp_path)


@pytest.fixture
def signed_out_page(
    browser: Browser, request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[Page]:
    """Return a page of a browser context with no session."""
    context = browser.new_context()
    yield context.new_page()
    _close(context, request, tmp_path)
