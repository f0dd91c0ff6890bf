"""Every report page in headless Chromium: sign-in, each page, sign-out and a live run."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import DemoServer, server_env, sign_in

# Case keys of the example suite in examples/demo.
DISCOUNT_10 = "test_cart.py::test_discounted_total[10-percent]"
FREE_SHIPPING = "test_cart.py::test_free_shipping_from_50"
CACHE = "test_checkout.py::test_price_cache_expires"
RANKING = "test_search.py::test_ranking_is_stable"
RERUN = "test_search.py::test_search_retries_backend"
REINDEX = "test_search.py::test_full_reindex"
EXPORT = "test_search.py::test_export_csv"
# Pages in the project navigation, with the heading each one shows.
PROJECT_PAGES = [
    ("Runs", "/runs", "Runs"),
    ("Flaky", "/flaky", "Flaky tests"),
    ("Slow", "/slow", "Slow tests"),
    ("Trends", "/trends", "Trends"),
    ("Compare", "/compare", "Compare runs"),
    ("Quality gate", "/gate", "Quality gate"),
    ("Settings", "/settings", "Settings of Demo shop (DEMO)"),
]
LIVE_TIMEOUT = 120
API_TIMEOUT = 10
RUN_START_TIMEOUT = 60.0


def project_url(server: DemoServer, path: str = "") -> str:
    return f"{server.url}/projects/DEMO{path}"


# --- signing in and out --------------------------------------------------------------


def test_sign_in_through_form(signed_out_page: Page, demo_server: DemoServer) -> None:
    sign_in(signed_out_page, demo_server)
    expect(signed_out_page.locator("h1")).to_have_text("Your projects")
    expect(signed_out_page.locator("#projects tr[data-project=DEMO]")).to_be_visible()
    expect(signed_out_page.locator(".user-menu")).to_contain_text(demo_server.email)


def test_sign_in_redirects_back(signed_out_page: Page, demo_server: DemoServer) -> None:
    sign_in(signed_out_page, demo_server, "/projects/DEMO/slow")
    expect(signed_out_page.locator("h1")).to_have_text("Slow tests")


def test_wrong_password_shows_form(signed_out_page: Page, demo_server: DemoServer) -> None:
    signed_out_page.goto(f"{demo_server.url}/login")
    signed_out_page.get_by_label("Email address").fill(demo_server.email)
    signed_out_page.get_by_label("Password").fill("not the password")
    signed_out_page.get_by_role("button", name="Sign in").click()
    expect(signed_out_page.locator("h1")).to_have_text("Sign in")
    expect(signed_out_page.locator(".flash")).to_be_visible()
    expect(signed_out_page.get_by_label("Email address")).to_have_value(demo_server.email)


def test_sign_out(signed_out_page: Page, demo_server: DemoServer) -> None:
    sign_in(signed_out_page, demo_server)
    signed_out_page.get_by_role("button", name="Sign out").click()
    expect(signed_out_page.locator("h1")).to_have_text("Sign in")
    signed_out_page.goto(project_url(demo_server, "/runs"))
    expect(signed_out_page).to_have_url(re.compile(r"/login\?next="))


# --- the pages of a project --------------------------------------------------------------


def test_root_leads_to_projects(page: Page, demo_server: DemoServer) -> None:
    page.goto(f"{demo_server.url}/")
    expect(page).to_have_url(f"{demo_server.url}/projects")
    row = page.locator("#projects tr[data-project=DEMO]")
    expect(row).to_contain_text("Demo shop")
    expect(row).to_contain_text("main")


@pytest.mark.parametrize(("link", "path", "heading"), PROJECT_PAGES)
def test_project_nav_opens_page(
    page: Page, demo_server: DemoServer, link: str, path: str, heading: str
) -> None:
    page.goto(project_url(demo_server))
    expect(page).to_have_url(project_url(demo_server, "/runs"))
    page.locator("nav.project-nav").get_by_role("link", name=link, exact=True).click()
    expect(page).to_have_url(re.compile(re.escape(project_url(demo_server, path))))
    expect(page.locator("h1")).to_have_text(heading)


def test_runs_page_lists_runs(page: Page, demo_server: DemoServer) -> None:
    page.goto(project_url(demo_server, "/runs"))
    rows = page.locator("#runs tbody tr")
    expect(rows).to_have_count(4)
    newest = rows.first
    expect(newest).to_have_attribute("data-run-id", demo_server.runs[4])
    expect(newest).to_contain_text("demo run 4 on main")


def test_runs_page_filters_branch(page: Page, demo_server: DemoServer) -> None:
    page.goto(project_url(demo_server, "/runs"))
    page.get_by_label("Branch").fill("feature/faster-checkout")
    page.get_by_role("button", name="Filter").click()
    rows = page.locator("#runs tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first).to_have_attribute("data-run-id", demo_server.runs[2])


def test_run_page_totals(page: Page, demo_server: DemoServer) -> None:
    page.goto(project_url(demo_server, f"/runs/{demo_server.runs[1]}"))
    expect(page.locator("h1")).to_contain_text("demo run 1 on main")
    totals = page.locator("#totals")
    expect(totals.locator("[data-outcome=total] .value")).to_have_text("28")
    expect(totals.locator("[data-outcome=failed] .value")).to_have_text("5")
    expect(totals.locator("[data-outcome=error] .value")).to_have_text("1")
    expect(totals.locator("[data-outcome=skipped] .value")).to_have_text("3")
    expect(page.locator("#live-progress")).to_have_count(0)


def test_run_page_groups_failures(page: Page, demo_server: DemoServer) -> None:
    page.goto(project_url(demo_server, f"/runs/{demo_server.runs[1]}"))
    groups = page.locator("#failure-groups article.failure-group")
    discount = groups.filter(has=page.get_by_role("link", name=DISCOUNT_10, exact=True))
    expect(discount).to_have_attribute("data-count", "2")
    key_error = groups.filter(has_text="KeyError")
    expect(key_error).to_have_attribute("data-count", "2")
    expect(groups.filter(has_text="ConnectionRefusedError")).to_have_count(1)


def test_run_page_sections(page: Page, demo_server: DemoServer) -> None:
    page.goto(project_url(demo_server, f"/runs/{demo_server.runs[1]}"))
    expect(page.locator(f"#passed-on-rerun tr[data-case='{RERUN}']")).to_be_visible()
    expect(page.locator("#skipped")).to_contain_text("the catalog importer is being rewritten")
    expect(page.locator("#skipped")).to_contain_text("prices in JPY have no minor unit yet")
    expect(page.locator(f"#slowest tr[data-case='{REINDEX}']")).to_be_visible()
    expect(page.locator("#metadata")).to_contain_text("4be1c2d3e5f60718293a4b5c6d7e8f9012345678")


def test_run_page_new_failures(page: Page, demo_server: DemoServer) -> None:
    page.goto(project_url(demo_server, f"/runs/{demo_server.runs[3]}"))
    new_failures = page.locator("#new-failures tbody tr")
    expect(new_failures).to_have_count(2)
    expect(page.locator(f"#new-failures tr[data-case='{CACHE}']")).to_be_visible()
    expect(page.locator(f"#new-failures tr[data-case='{RANKING}']")).to_be_visible()


def test_case_page_from_run(page: Page, demo_server: DemoServer) -> None:
    page.goto(project_url(demo_server, f"/runs/{demo_server.runs[4]}"))
    page.locator("#failure-groups").get_by_role("link", name=DISCOUNT_10, exact=True).click()
    expect(page).to_have_url(re.compile(r"/projects/DEMO/cases/[0-9a-f-]{36}$"))
    expect(page.locator("h1")).to_be_visible()
    expect(page.locator("#history-table tbody tr")).to_have_count(4)
    expect(page.locator("#last-failure")).to_contain_text("17.99")
    expect(page.locator("#branches")).to_contain_text("feature/faster-checkout")


def test_flaky_page(page: Page, demo_server: DemoServer) -> None:
    page.goto(project_url(demo_server, "/flaky"))
    expect(page.locator("#report-settings")).to_contain_text("main")
    table = page.locator("table.flaky-tests")
    ranking = table.locator("tr", has=page.get_by_role("link", name=RANKING, exact=True))
    expect(ranking.locator("[data-field=flips]")).to_have_text("2")
    rerun = table.locator("tr", has=page.get_by_role("link", name=RERUN, exact=True))
    expect(rerun.locator("[data-field=passed_on_rerun]")).to_have_text("3")


def test_slow_page(page: Page, demo_server: DemoServer) -> None:
    page.goto(project_url(demo_server, "/slow"))
    expect(page.locator("#report-settings")).to_contain_text("main")
    slowest = page.locator("table.slowest tbody tr")
    # On main the export's median is 0.9 s (0.3 s, then 0.9 s twice) and the
    # reindex takes 0.8 s every time.
    expect(slowest.nth(0)).to_contain_text(EXPORT)
    expect(slowest.nth(1)).to_contain_text(REINDEX)


def test_trends_page(page: Page, demo_server: DemoServer) -> None:
    page.goto(project_url(demo_server, "/trends?branch=main"))
    expect(page.locator("section.charts svg").first).to_be_visible()
    expect(page.locator("table.trend-runs tbody tr")).to_have_count(3)


def test_compare_page(page: Page, demo_server: DemoServer) -> None:
    base, head = demo_server.runs[1], demo_server.runs[3]
    page.goto(project_url(demo_server, f"/compare?base={base}&head={head}"))
    expect(page.locator("section#new-failures")).to_have_attribute("data-count", "2")
    expect(page.locator(f"section#new-failures tr[data-case='{CACHE}']")).to_be_visible()
    expect(page.locator(f"section#fixed tr[data-case='{FREE_SHIPPING}']")).to_be_visible()
    expect(page.locator("section#still-failing")).to_have_attribute("data-count", "5")


def test_compare_form(page: Page, demo_server: DemoServer) -> None:
    page.goto(project_url(demo_server, "/compare"))
    page.locator("select[name=base]").select_option(demo_server.runs[3])
    page.locator("select[name=head]").select_option(demo_server.runs[4])
    page.get_by_role("button", name="Compare").click()
    expect(page.locator("section#fixed")).to_have_attribute("data-count", "1")
    expect(page.locator(f"section#fixed tr[data-case='{RANKING}']")).to_be_visible()


def test_gate_page_saves_rules(page: Page, demo_server: DemoServer) -> None:
    page.goto(project_url(demo_server, "/gate"))
    page.get_by_label("Maximum failed or error tests (empty: off)").fill("100")
    page.get_by_role("button", name="Save rules").click()
    expect(page.locator(".flash")).to_contain_text("Gate rules saved.")
    expect(page.locator("#rules tr[data-rule=max_failed] td")).to_have_text("100")
    expect(page.locator("#verdict-rules tr[data-rule=max_failed]")).to_have_attribute(
        "data-passed", "true"
    )


def test_settings_page_creates_token(page: Page, demo_server: DemoServer) -> None:
    page.goto(project_url(demo_server, "/settings"))
    expect(page.locator("table.members")).to_contain_text(demo_server.email)
    expect(page.locator("table.tokens")).to_contain_text("quickstart")
    form = page.locator("#create-token")
    form.get_by_label("Name").fill("browser test")
    form.get_by_role("button", name="Create token").click()
    expect(page.locator("#new-token [data-secret]")).to_have_text(re.compile(r"^tqa_\d+_\d+_"))
    expect(page.locator("table.tokens")).to_contain_text("browser test")


def test_account_page_creates_token(page: Page, demo_server: DemoServer) -> None:
    page.goto(f"{demo_server.url}/account")
    expect(page.locator("h1")).to_have_text("Your account")
    page.get_by_label("Name").fill("dashboard")
    page.get_by_role("button", name="Create token").click()
    expect(page.locator("#new-token [data-secret]")).to_be_visible()
    expect(page.locator("table.tokens")).to_contain_text("dashboard")


def test_unknown_project_not_found(page: Page, demo_server: DemoServer) -> None:
    response = page.goto(f"{demo_server.url}/projects/NOPE/runs")
    assert response is not None
    assert response.status == 404
    expect(page.locator("h1")).to_be_visible()


# --- a live run ------------------------------------------------------------------------------

LIVE_SUITE = """
import os
from pathlib import Path

GATES = Path(os.environ["LIVE_GATES"])


def wait_for_gate(name):
    # Opening a FIFO for reading blocks until the browser test opens it for
    # writing, so each test ends only when the browser test releases it.
    (GATES / name).read_text()


def test_first():
    wait_for_gate("1")


def test_second():
    wait_for_gate("2")
    assert False, "fails on purpose"


def test_third():
    wait_for_gate("3")


def test_fourth():
    wait_for_gate("4")
"""


def release(gate: Path) -> None:
    """Let the live suite's test waiting on gate finish, or fail if none waits in time."""
    opener = threading.Thread(target=gate.write_text, args=("go",), daemon=True)
    opener.start()
    opener.join(LIVE_TIMEOUT)
    assert not opener.is_alive(), f"no test of the live suite waited on gate {gate.name}"


def running_run_id(server: DemoServer, token: str, run_name: str) -> str:
    """Wait until the run named run_name exists on the server and return its id.

    The plugin creates the run when the session starts and prints nothing
    about it until the end, so the JSON API is asked until it lists the run.
    """
    query = urllib.parse.urlencode({"status": "running", "limit": 50})
    request = urllib.request.Request(
        f"{server.url}/api/v1/projects/LIVE/runs?{query}",
        headers={"Authorization": f"Bearer {token}"},
    )
    assert request.full_url.startswith("http://127.0.0.1:")
    deadline = time.monotonic() + RUN_START_TIMEOUT
    while time.monotonic() < deadline:
        with urllib.request.urlopen(request, timeout=API_TIMEOUT) as response:
            runs = json.load(response)["items"]
        for run in runs:
            if run["name"] == run_name:
                return str(run["id"])
        time.sleep(0.1)
    raise AssertionError(f"the run {run_name!r} did not start within {RUN_START_TIMEOUT} s")


def cli(server: DemoServer, *args: str) -> str:
    """Run a testoqa-server command on the server's database and return its output."""
    result = subprocess.run(
        [sys.executable, "-m", "ingest_server", *args, "--database-url", server.database_url],
        env=server_env(),
        capture_output=True,
        text=True,
        timeout=API_TIMEOUT * 6,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.fixture(scope="module")
def live_token(demo_server: DemoServer) -> str:
    """Create the project LIVE for the live runs, so they leave DEMO's reports as they are."""
    cli(demo_server, "create-project", "LIVE", "--name", "Live runs")
    cli(demo_server, "add-member", demo_server.email, "LIVE", "--role", "viewer")
    output = cli(demo_server, "create-token", "LIVE", "--name", "live", "--role", "reporter")
    return output.splitlines()[1]


@dataclass(frozen=True)
class LiveSession:
    run_name: str
    gates: Path
    token: str


@pytest.fixture
def live_session(
    demo_server: DemoServer, live_token: str, tmp_path: Path
) -> Iterator[LiveSession]:
    """Start a pytest session that reports into LIVE and waits at each test for a gate."""
    gates = tmp_path / "gates"
    gates.mkdir()
    for name in ("1", "2", "3", "4"):
        os.mkfifo(gates / name)
    suite = tmp_path / "suite"
    suite.mkdir()
    (suite / "test_live.py").write_text(LIVE_SUITE)
    run_name = f"live {uuid.uuid4().hex[:8]}"
    env = server_env()
    env.update(
        {
            "TESTOQA_URL": demo_server.url,
            "TESTOQA_TOKEN": live_token,
            "LIVE_GATES": str(gates),
        }
    )
    command = [
        sys.executable,
        "-m",
        "pytest",
        "-p",
        "no:cacheprovider",
        "--testoqa-project",
        "LIVE",
        "--testoqa-run-name",
        run_name,
        str(suite),
    ]
    with (tmp_path / "live-session.log").open("w") as log:
        process = subprocess.Popen(command, cwd=suite, env=env, stdout=log, stderr=log)
    try:
        yield LiveSession(run_name, gates, live_token)
        assert process.wait(timeout=LIVE_TIMEOUT) == 1, (tmp_path / "live-session.log").read_text()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=LIVE_TIMEOUT)


def test_live_run_updates(page: Page, demo_server: DemoServer, live_session: LiveSession) -> None:
    gates = live_session.gates
    run_id = running_run_id(demo_server, live_session.token, live_session.run_name)
    page.goto(f"{demo_server.url}/projects/LIVE/runs/{run_id}")
    live = page.locator("#live-progress")
    expect(live.locator("[data-field=status]")).to_have_text("running")
    expect(live.locator("[data-field=hint]")).to_have_text("Updating live.")
    expect(live.locator("[data-field=collected]")).to_have_text("4")
    expect(live.locator("[data-field=done]")).to_have_text("0")
    # A reload would drop this flag, so it shows the counts changed in place.
    page.evaluate("window.notReloaded = true")

    release(gates / "1")
    expect(live.locator("[data-count=passed]")).to_have_text("1")
    expect(live.locator("[data-field=done]")).to_have_text("1")
    release(gates / "2")
    expect(live.locator("[data-count=failed]")).to_have_text("1")
    expect(live.locator("[data-field=done]")).to_have_text("2")
    assert page.evaluate("window.notReloaded") is True

    release(gates / "3")
    release(gates / "4")
    # Once the run finishes, the page reloads itself to show the full report.
    expect(page.locator("#live-progress")).to_have_count(0, timeout=LIVE_TIMEOUT * 1000)
    expect(page.locator("#totals [data-outcome=passed] .value")).to_have_text("3")
    expect(page.locator("#totals [data-outcome=failed] .value")).to_have_text("1")
    expect(page.locator("#failure-groups")).to_contain_text("fails on purpose")
