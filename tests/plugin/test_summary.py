"""The TestoQA section of pytest's terminal summary: where the report is, or how to recover."""

from __future__ import annotations

import shlex
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from ingest_server.services.context import OPERATOR, RequestContext
from pytest_testoqa.ci import PROVIDERS
from pytest_testoqa.settings import OPTIONS, TOKEN_ENV
from tests.plugin.conftest import LiveServer

pytestmark = pytest.mark.timeout(180)

INNER_TIMEOUT = 120.0
COMMAND_TIMEOUT = 60.0
XDIST = pytest.mark.parametrize("xdist", [[], ["-n", "2"]], ids=["serial", "n2"])

# Four executions: the flaky test fails once and passes on its rerun.
SUITE = """
import pytest

def test_pass():
    pass

def test_fail():
    assert 1 == 2

@pytest.mark.flaky(reruns=1)
def test_flaky(request):
    assert request.node.execution_count > 1
"""
SUITE_EXECUTIONS = 4


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, pytester: pytest.Pytester) -> None:
    """Drop outer CI and TestoQA variables and set pytest-asyncio's loop scope."""
    for variable, _ in PROVIDERS:
        monkeypatch.delenv(variable, raising=False)
    for option in OPTIONS:
        monkeypatch.delenv(option.env, raising=False)
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    monkeypatch.delenv("CI", raising=False)
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    pytester.makepyfile(test_suite=SUITE)


@pytest.fixture
def dead_url() -> Iterator[str]:
    """A loopback URL that refuses connections: its port is bound but never listens."""
    holder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    holder.bind(("127.0.0.1", 0))
    yield f"http://127.0.0.1:{holder.getsockname()[1]}"
    holder.close()


def run_inner(
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    url: str,
    token: str,
    *args: str,
) -> pytest.RunResult:
    with monkeypatch.context() as patch:
        patch.setenv(TOKEN_ENV, token)
        return pytester.runpytest_subprocess(
            "--testoqa-project",
            "PLUG",
            "--testoqa-url",
            url,
            "--testoqa-flush-deadline",
            "2",
            *args,
            timeout=INNER_TIMEOUT,
        )


def section(result: pytest.RunResult) -> list[str]:
    """Return the lines of the TestoQA section, its separator line included."""
    lines = result.outlines
    starts = [
        i for i, line in enumerate(lines) if " TestoQA" in line and line.startswith(("-", "="))
    ]
    assert len(starts) == 1, result.stdout.str()
    end = next(
        (i for i in range(starts[0] + 1, len(lines)) if lines[i].startswith("=")), len(lines)
    )
    return lines[starts[0] : end]


def run_command(argv: list[str], token: str) -> subprocess.CompletedProcess[str]:
    """Run a printed ``testoqa`` command line with the console script of this environment."""
    script = Path(sys.executable).parent / argv[0]
    return subprocess.run(
        [str(script), *argv[1:]],
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT,
        env={"PATH": str(Path(sys.executable).parent), TOKEN_ENV: token},
        check=False,
    )


@XDIST
def test_success_shows_report_url(
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    live_server: LiveServer,
    xdist: list[str],
) -> None:
    result = run_inner(pytester, monkeypatch, live_server.url, live_server.token, *xdist)

    run = live_server.only_run()
    report_url = f"{live_server.url}/projects/PLUG/runs/{run['id']}"
    lines = section(result)
    assert lines[0].strip("- ") == "TestoQA"
    assert lines[1:] == [f"{SUITE_EXECUTIONS} executions sent to project PLUG: {report_url}"]
    assert run["report_url"] == report_url


@XDIST
def test_outage_shows_spool_and_command(
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    live_server: LiveServer,
    dead_url: str,
    xdist: list[str],
) -> None:
    result = run_inner(pytester, monkeypatch, dead_url, live_server.token, *xdist)

    spool = pytester.path / ".testoqa" / "spool"
    command = f"TESTOQA_TOKEN=... testoqa upload --url {dead_url} {spool}"
    lines = section(result)
    assert lines[0].strip("- ") == "TestoQA"
    assert lines[1].startswith("results not delivered: server unreachable: ")
    assert lines[2] == (
        f"{SUITE_EXECUTIONS} executions and the run's events are kept in {spool}; "
        "send them later with:"
    )
    assert lines[3] == f"  {command}"
    assert len(lines) == 4

    argv = shlex.split(command)
    assert argv[0] == "TESTOQA_TOKEN=..."
    recovered = run_command([*argv[1:], "--url", live_server.url], live_server.token)
    assert recovered.returncode == 0, recovered.stderr
    assert len(live_server.executions(live_server.only_run()["id"])) == SUITE_EXECUTIONS


def test_printed_command_runs_verbatim(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, dead_url: str
) -> None:
    """The printed command runs as printed, and with the server still down it keeps the spool."""
    result = run_inner(pytester, monkeypatch, dead_url, "unused")

    command = section(result)[-1].strip()
    done = run_command(shlex.split(command)[1:], "unused")

    assert done.returncode == 1
    assert "not delivered: server unreachable" in done.stderr
    assert sorted((pytester.path / ".testoqa" / "spool").rglob("*.jsonl")) != []


def test_spool_dir_shown_absolute(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, dead_url: str
) -> None:
    result = run_inner(
        pytester, monkeypatch, dead_url, "unused", "--testoqa-spool-dir", "results/spool"
    )

    spool = pytester.path / "results" / "spool"
    assert section(result)[-1] == f"  TESTOQA_TOKEN=... testoqa upload --url {dead_url} {spool}"
    assert sorted(spool.rglob("*.jsonl")) != []


def test_rejected_token_is_prominent(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, live_server: LiveServer
) -> None:
    result = run_inner(pytester, monkeypatch, live_server.url, "PLUG_not-a-real-token")

    lines = section(result)
    assert lines[0].startswith("=")
    assert lines[0].strip("= ") == "TestoQA: results NOT delivered"
    assert lines[1] == (
        "the token was rejected: check TESTOQA_TOKEN (missing, mistyped or revoked) "
        "(server response: 401 unauthenticated: invalid token: it is not a TestoQA API token)"
    )
    assert lines[-1].strip().startswith("TESTOQA_TOKEN=... testoqa upload --url ")


def test_viewer_token_hint(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, live_server: LiveServer
) -> None:
    async def create_viewer_token() -> str:
        scope = await live_server.services.auth.resolve_scope(OPERATOR, live_server.project)
        ctx = RequestContext(
            request_id="test", principal=OPERATOR, project_key=live_server.project, project=scope
        )
        issued = await live_server.services.admin.create_token(ctx, "read only", "viewer")
        return issued.secret

    viewer = str(live_server.call(create_viewer_token()))

    result = run_inner(pytester, monkeypatch, live_server.url, viewer)

    lines = section(result)
    assert lines[0].strip("= ") == "TestoQA: results NOT delivered"
    assert lines[1].startswith(
        "the token's role may not report results: create a token with --role reporter "
        "(server response: 403 "
    )
    assert result.ret == 1, "the suite's own failure decides the exit status"
