"""The plugin's hooks and redaction, as conftest.py files and ini files use them."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from ingest_server.db.models import TestCase
from ingest_server.services.context import OPERATOR
from pytest_testoqa.ci import PROVIDERS
from pytest_testoqa.settings import OPTIONS, TOKEN_ENV
from tests.plugin.conftest import LiveServer

pytestmark = pytest.mark.timeout(180)

INNER_TIMEOUT = 120.0
XDIST = pytest.mark.parametrize("xdist", [[], ["-n", "2"]], ids=["serial", "n2"])
ASYNCIO_INI = "asyncio_default_fixture_loop_scope = function\n"

SECRET = "sk-ABCDEFGHIJKL0123"
PASSWORD = "hunter2hunter2"
REDACTED = "[REDACTED]"

REDACT_INI = (
    "[pytest]\n"
    + ASYNCIO_INI
    + "testoqa_redact =\n"
    + "    sk-[A-Za-z0-9]{12,}\n"
    + "    password=\\S+\n"
)

LEAKY_SUITE = f"""
import logging
import sys

import pytest

def test_leaks():
    key = "{SECRET}"
    print(f"using key {{key}}")
    print("password={PASSWORD}", file=sys.stderr)
    logging.getLogger("app").warning("login with %s", key)
    assert key == "", f"rejected key {{key}}"

@pytest.mark.skip(reason="needs {SECRET}")
def test_skipped():
    pass
"""


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Drop CI and TestoQA variables of the outer environment."""
    for variable, _ in PROVIDERS:
        monkeypatch.delenv(variable, raising=False)
    for option in OPTIONS:
        monkeypatch.delenv(option.env, raising=False)
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    monkeypatch.delenv("CI", raising=False)


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


def by_case(live_server: LiveServer) -> dict[str, dict[str, Any]]:
    """Return the executions of the only run by the test name at the end of their case key."""
    run = live_server.only_run()
    return {e["case_key"].split("::")[-1]: e for e in live_server.executions(run["id"])}


def case_keys(live_server: LiveServer) -> list[str]:
    """Return every case key stored in the project, whichever run reported it."""

    async def read() -> list[str]:
        scope = await live_server.services.auth.resolve_scope(OPERATOR, live_server.project)
        assert scope is not None
        async with live_server.services.database.read() as session:
            rows = await session.execute(
                select(TestCase.key).where(TestCase.project_id == scope.id)
            )
            return sorted(rows.scalars())

    return list(live_server.call(read()))


# --- pytest_testoqa_run_metadata ------------------------------------------------------


@XDIST
def test_run_metadata_stored(
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    live_server: LiveServer,
    xdist: list[str],
) -> None:
    pytester.makeini("[pytest]\n" + ASYNCIO_INI)
    pytester.makeconftest(
        """
        def pytest_testoqa_run_metadata(config):
            return {"deployment": "staging", "shards": 3}
        """
    )
    pytester.makepyfile(
        extra_metadata="""
        def pytest_testoqa_run_metadata(config):
            return {"region": "eu-west"}
        """,
        test_suite="def test_one():\n    pass\n",
    )

    result = run_inner(
        pytester, monkeypatch, live_server.url, live_server.token, "-p", "extra_metadata", *xdist
    )

    assert result.ret == 0, result.stdout.str()
    metadata = live_server.only_run()["environment"]["metadata"]
    assert metadata["deployment"] == "staging"
    assert metadata["shards"] == "3"
    assert metadata["region"] == "eu-west"


# --- pytest_testoqa_execution -----------------------------------------------------------


@XDIST
def test_execution_hook_edits_and_drops(
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    live_server: LiveServer,
    xdist: list[str],
) -> None:
    pytester.makeini("[pytest]\n" + ASYNCIO_INI)
    pytester.makeconftest(
        """
        def pytest_testoqa_execution(execution, report):
            if execution["case_key"].endswith("::test_private"):
                return False
            if execution["case_key"].endswith("::test_edited"):
                execution["stdout"] = "replaced by the hook"
                execution["log"] = "last phase: " + report.when
                return execution
            return None
        """
    )
    pytester.makepyfile(
        test_suite="""
        def test_edited():
            print("original output")

        def test_private():
            pass

        def test_plain():
            print("plain output")
        """
    )

    result = run_inner(pytester, monkeypatch, live_server.url, live_server.token, *xdist)

    assert result.ret == 0, result.stdout.str()
    executions = by_case(live_server)
    assert sorted(executions) == ["test_edited", "test_plain"]
    assert executions["test_edited"]["stdout"] == "replaced by the hook"
    assert executions["test_edited"]["log"] == "last phase: teardown"
    assert executions["test_plain"]["stdout"] == "plain output\n"


# --- pytest_testoqa_exclude ------------------------------------------------------------------


@XDIST
def test_exclude_hook_keeps_item_out(
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    live_server: LiveServer,
    xdist: list[str],
) -> None:
    pytester.makeini(
        "[pytest]\n" + ASYNCIO_INI + "markers =\n    local_only: never reported to TestoQA\n"
    )
    pytester.makeconftest(
        """
        def pytest_testoqa_exclude(item):
            return item.get_closest_marker("local_only") is not None
        """
    )
    pytester.makepyfile(
        test_suite="""
        import pytest

        def test_kept():
            pass

        @pytest.mark.local_only
        def test_local():
            assert 1 == 2

        def test_also_kept():
            pass
        """
    )

    result = run_inner(pytester, monkeypatch, live_server.url, live_server.token, *xdist)

    assert result.ret == 1, "the excluded test still runs and fails"
    assert sorted(by_case(live_server)) == ["test_also_kept", "test_kept"]
    assert case_keys(live_server) == ["test_suite.py::test_also_kept", "test_suite.py::test_kept"]
    run = live_server.only_run()
    assert run["planned"] == 2
    assert run["not_run"] == 0
    assert run["totals"]["failed"] == 0


# --- testoqa_redact -----------------------------------------------------------------------------


@XDIST
def test_redact_on_server(
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    live_server: LiveServer,
    xdist: list[str],
) -> None:
    pytester.makeini(REDACT_INI)
    pytester.makepyfile(test_suite=LEAKY_SUITE)

    result = run_inner(pytester, monkeypatch, live_server.url, live_server.token, *xdist)

    result.assert_outcomes(failed=1, skipped=1)
    executions = by_case(live_server)
    leaky = executions["test_leaks"]
    for field in ("stdout", "message", "traceback", "log"):
        assert leaky[field] is not None, field
        assert SECRET not in leaky[field], field
        assert REDACTED in leaky[field], field
    assert PASSWORD not in leaky["stderr"]
    assert f"{REDACTED}\n" in leaky["stderr"]
    assert SECRET not in executions["test_skipped"]["reason"]
    assert executions["test_skipped"]["reason"] == f"needs {REDACTED}"


def read_spool(root: Path) -> str:
    files = sorted(root.rglob("*.jsonl"))
    assert files, f"no spool files under {root}"
    return "".join(path.read_text() for path in files)


@XDIST
def test_redact_in_spool(
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    dead_url: str,
    xdist: list[str],
) -> None:
    pytester.makeini(REDACT_INI)
    pytester.makepyfile(test_suite=LEAKY_SUITE)

    result = run_inner(pytester, monkeypatch, dead_url, "unused", *xdist)

    result.assert_outcomes(failed=1, skipped=1)
    assert SECRET in result.stdout.str(), "the terminal still shows the real value"
    spooled = read_spool(pytester.path / ".testoqa" / "spool")
    assert SECRET not in spooled
    assert PASSWORD not in spooled
    assert REDACTED in spooled
