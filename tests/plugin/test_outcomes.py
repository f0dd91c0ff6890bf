"""Outcomes end to end: what a live server stores must agree with what pytest reports.

Every scenario runs an inner session in a subprocess three times over: without
xdist, with ``-n 0`` and with ``-n 2``. Each inner session writes pytest's own
reports with ``--report-log``, and the same suite also runs once without the
plugin, so its exit code can be compared.

A run's executions and cases are read from the server's database with
SQLAlchemy: the API has no route that lists a run's cases, and the executions
route is checked on its own in ``test_executions_route``.

The helpers at the top are shared with ``test_identity.py`` and ``test_contract.py``.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import and_, select

from ingest_server.db.models import Execution, RunCase, TestCase
from pytest_testoqa.capture import TRUNCATION_MARK
from pytest_testoqa.settings import DEFAULT_CAPTURE_LIMIT
from tests.plugin.conftest import LiveServer

# Seconds one inner pytest session may take before pytester kills it.
INNER_TIMEOUT = 120.0
# "no-xdist" blocks the xdist plugin, as on a machine without pytest-xdist,
# where the plugin must not declare xdist's hooks.
XDIST_MODES = pytest.mark.parametrize(
    "xdist", [("-p", "no:xdist"), ("-n", "0"), ("-n", "2")], ids=["no-xdist", "n0", "n2"]
)
# Plugins installed beside this project that no inner suite uses. Blocking them
# in both runs of a scenario saves their imports in every inner session and
# every xdist worker, which shortens the suite noticeably on two cores.
UNUSED_PLUGINS = ("-p", "no:asyncio", "-p", "no:aiohttp", "-p", "no:timeout")
REPORT_LOG = "report-log.jsonl"
CRASH_PHASE = "???"  # xdist's phase name for the report of a crashed worker's test


@dataclass
class InnerRun:
    """An inner pytest session that reported to a server, and pytest's own reports of it."""

    result: pytest.RunResult
    reports: list[dict[str, Any]]

    @property
    def node_ids(self) -> set[str]:
        """Return the node ids of the tests pytest reported beyond their setup.

        A test that ran to its end has a teardown report, and the test of a
        crashed xdist worker has xdist's crash report. A test that
        ``pytest.exit`` stopped in its call has only a setup report.
        """
        return {report["nodeid"] for report in self.reports if report["when"] != "setup"}

    def captured_stdout(self, node_id: str) -> str:
        """Return what pytest captured on stdout for the test, over all its phases."""
        teardown = [r for r in self.reports if r["nodeid"] == node_id and r["when"] == "teardown"]
        assert len(teardown) == 1, f"expected one teardown report of {node_id}"
        sections = teardown[0]["sections"]
        return "".join(text for title, text in sections if title.startswith("Captured stdout"))

    def durations(self, node_id: str) -> float:
        """Return the sum of the durations pytest reported for the test's phases."""
        return float(sum(r["duration"] for r in self.reports if r["nodeid"] == node_id))

    @property
    def output(self) -> str:
        return self.result.stdout.str() + "\n" + self.result.stderr.str()


def read_report_log(path: Path) -> list[dict[str, Any]]:
    """Return the test reports of a ``--report-log`` file, or none when pytest died first."""
    if not path.exists():
        return []
    reports = []
    for line in path.read_text(encoding="utf-8").splitlines():
        entry = json.loads(line)
        if entry.get("$report_type") == "TestReport":
            reports.append(entry)
    return reports


def run_reported(
    pytester: pytest.Pytester, server: LiveServer, *args: str, env: dict[str, str] | None = None
) -> InnerRun:
    """Run pytest in a subprocess with the plugin reporting to server."""
    log = pytester.path / REPORT_LOG
    log.unlink(missing_ok=True)
    with pytest.MonkeyPatch.context() as patch:
        for name, value in {**server.env(), **(env or {})}.items():
            patch.setenv(name, value)
        result = pytester.runpytest_subprocess(
            "--testoqa-project",
            server.project,
            "--report-log",
            str(log),
            *UNUSED_PLUGINS,
            *args,
            timeout=INNER_TIMEOUT,
        )
    return InnerRun(result, read_report_log(log))


def run_unreported(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    """Run pytest in a subprocess with the plugin blocked: the baseline of a scenario."""
    return pytester.runpytest_subprocess(
        "-p", "no:testoqa", *UNUSED_PLUGINS, *args, timeout=INNER_TIMEOUT
    )


def _columns(row: Any) -> dict[str, Any]:
    return {column.key: getattr(row, column.key) for column in row.__mapper__.column_attrs}


@dataclass
class StoredRun:
    """What the server stored of one run: its detail, its executions and its cases."""

    detail: dict[str, Any]
    executions: dict[str, list[dict[str, Any]]]
    cases: dict[str, dict[str, Any]]

    @property
    def totals(self) -> dict[str, int]:
        return dict(self.detail["totals"])

    def only(self, key: str) -> dict[str, Any]:
        """Return the only execution stored for key, and fail unless there is exactly one."""
        attempts = self.executions.get(key, [])
        assert len(attempts) == 1, f"expected one execution of {key!r}, found {len(attempts)}"
        return attempts[0]

    @property
    def all_executions(self) -> list[dict[str, Any]]:
        return [e for attempts in self.executions.values() for e in attempts]


def stored_run(server: LiveServer) -> StoredRun:
    """Read the server's only run: its detail from the API, the rest from its database."""
    detail = server.only_run()
    run_id = uuid.UUID(detail["id"])

    async def read() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        async with server.services.database.read() as session:
            executions = await session.execute(
                select(Execution, TestCase.key)
                .join(
                    TestCase,
                    and_(
                        TestCase.project_id == Execution.project_id,
                        TestCase.id == Execution.case_id,
                    ),
                )
                .where(Execution.run_id == run_id)
                .order_by(Execution.attempt, Execution.started_at)
            )
            cases = await session.execute(
                select(TestCase)
                .join(
                    RunCase,
                    and_(
                        RunCase.project_id == TestCase.project_id, RunCase.case_id == TestCase.id
                    ),
                )
                .where(RunCase.run_id == run_id)
            )
            return (
                [{**_columns(row), "case_key": key} for row, key in executions.all()],
                [_columns(row) for row in cases.scalars().all()],
            )

    execution_rows, case_rows = server.call(read())
    by_key: dict[str, list[dict[str, Any]]] = {}
    for row in execution_rows:
        by_key.setdefault(row["case_key"], []).append(row)
    return StoredRun(detail, by_key, {row["key"]: row for row in case_rows})


def truncation_mark(omitted: int) -> str:
    return TRUNCATION_MARK.format(omitted=omitted)


# --- pass, fail and errors ---------------------------------------------------------

KINDS_SUITE = """
import pytest

@pytest.fixture
def broken_setup():
    raise RuntimeError("setup broke")

@pytest.fixture
def broken_teardown():
    yield
    raise RuntimeError("teardown broke")

def test_passes():
    pass

def test_fails():
    assert 1 == 2, "numbers differ"

def test_setup_error(broken_setup):
    pass

def test_teardown_error(broken_teardown):
    pass
"""


@XDIST_MODES
def test_pass_fail_errors(
    pytester: pytest.Pytester, live_server: LiveServer, xdist: tuple[str, ...]
) -> None:
    pytester.makepyfile(test_kinds=KINDS_SUITE)

    inner = run_reported(pytester, live_server, *xdist)
    baseline = run_unreported(pytester, *xdist)
    run = stored_run(live_server)

    assert inner.result.ret == baseline.ret
    # pytest counts the passing call of test_teardown_error and its teardown error apart.
    inner.result.assert_outcomes(passed=2, failed=1, errors=2)
    assert set(run.executions) == inner.node_ids
    assert run.totals["passed"] == 1
    assert run.totals["failed"] == 1
    assert run.totals["error"] == 2
    assert run.detail["attempts"] == 4
    assert run.detail["status"] == "finished"
    assert run.detail["exit_status"] == inner.result.ret

    passed = run.only("test_kinds.py::test_passes")
    assert passed["outcome"] == "passed"
    assert passed["phase"] == "call"
    assert passed["attempt"] == 1
    assert passed["message"] is None
    assert passed["traceback"] is None
    # The plugin rounds durations to microseconds.
    duration = inner.durations("test_kinds.py::test_passes")
    assert passed["duration"] == pytest.approx(duration, abs=1e-6)

    failed = run.only("test_kinds.py::test_fails")
    assert failed["outcome"] == "failed"
    assert failed["phase"] == "call"
    assert "numbers differ" in failed["message"]
    assert "assert 1 == 2" in failed["traceback"]

    setup = run.only("test_kinds.py::test_setup_error")
    assert setup["outcome"] == "error"
    assert setup["phase"] == "setup"
    assert "setup broke" in setup["message"]
    assert "RuntimeError" in setup["traceback"]

    teardown = run.only("test_kinds.py::test_teardown_error")
    assert teardown["outcome"] == "error"
    assert teardown["phase"] == "teardown"
    assert "teardown broke" in teardown["message"]
    assert "RuntimeError" in teardown["traceback"]

    workers = {e["worker"] for e in run.all_executions}
    if xdist == ("-n", "2"):
        assert workers <= {"gw0", "gw1"}
    else:
        assert workers == {None}


# --- skips -------------------------------------------------------------------------

SKIP_SUITE = """
import pytest

@pytest.fixture
def database():
    pytest.skip("no database here")

@pytest.mark.skip(reason="marked as skipped")
def test_skip_mark():
    pass

@pytest.mark.skipif(True, reason="condition holds")
def test_skipif_mark():
    pass

def test_skip_fixture(database):
    pass

def test_skip_body():
    pytest.skip("skipped in the body")
"""

MODULE_SKIP_SUITE = """
import pytest

pytest.skip("whole module skipped", allow_module_level=True)

def test_never_collected():
    pass
"""


@XDIST_MODES
def test_skip_reasons(
    pytester: pytest.Pytester, live_server: LiveServer, xdist: tuple[str, ...]
) -> None:
    pytester.makepyfile(test_skips=SKIP_SUITE, test_module_skip=MODULE_SKIP_SUITE)

    inner = run_reported(pytester, live_server, *xdist)
    baseline = run_unreported(pytester, *xdist)
    run = stored_run(live_server)

    assert inner.result.ret == baseline.ret
    outcomes = inner.result.parseoutcomes()
    assert outcomes["skipped"] == 5
    assert inner.node_ids <= set(run.executions)

    marked = run.only("test_skips.py::test_skip_mark")
    assert marked["outcome"] == "skipped"
    assert marked["phase"] == "setup"
    assert marked["reason"] == "marked as skipped"

    conditional = run.only("test_skips.py::test_skipif_mark")
    assert conditional["outcome"] == "skipped"
    assert conditional["reason"] == "condition holds"

    fixture = run.only("test_skips.py::test_skip_fixture")
    assert fixture["outcome"] == "skipped"
    assert fixture["phase"] == "setup"
    assert fixture["reason"] == "no database here"

    body = run.only("test_skips.py::test_skip_body")
    assert body["outcome"] == "skipped"
    assert body["phase"] == "call"
    assert body["reason"] == "skipped in the body"

    # pytest reports the module skipped at import as one skipped result.
    reasons = {e["reason"] for e in run.all_executions}
    assert "whole module skipped" in reasons
    assert run.totals["skipped"] == outcomes["skipped"]


# --- xfail and xpass ---------------------------------------------------------------

XFAIL_SUITE = """
import pytest

@pytest.mark.xfail(reason="known bug")
def test_xfails():
    assert 0

def test_xfail_in_body():
    pytest.xfail("gave up in the body")

@pytest.mark.xfail(reason="strict expectation", strict=True)
def test_strict_xpass():
    pass

@pytest.mark.xfail(reason="lenient expectation", strict=False)
def test_lenient_xpass():
    pass
"""


@XDIST_MODES
def test_xfail_xpass(
    pytester: pytest.Pytester, live_server: LiveServer, xdist: tuple[str, ...]
) -> None:
    pytester.makepyfile(test_xfails=XFAIL_SUITE)

    inner = run_reported(pytester, live_server, *xdist)
    baseline = run_unreported(pytester, *xdist)
    run = stored_run(live_server)

    assert inner.result.ret == baseline.ret
    inner.result.assert_outcomes(xfailed=2, failed=1, xpassed=1)
    assert set(run.executions) == inner.node_ids
    assert run.totals["xfailed"] == 2
    assert run.totals["failed"] == 1
    assert run.totals["xpassed"] == 1

    xfailed = run.only("test_xfails.py::test_xfails")
    assert xfailed["outcome"] == "xfailed"
    assert xfailed["phase"] == "call"
    assert xfailed["reason"] == "known bug"

    in_body = run.only("test_xfails.py::test_xfail_in_body")
    assert in_body["outcome"] == "xfailed"
    assert in_body["reason"] == "gave up in the body"

    strict = run.only("test_xfails.py::test_strict_xpass")
    assert strict["outcome"] == "failed"
    assert strict["phase"] == "call"
    assert "strict expectation" in strict["message"]

    lenient = run.only("test_xfails.py::test_lenient_xpass")
    assert lenient["outcome"] == "xpassed"
    assert lenient["reason"] == "lenient expectation"


# --- reruns ------------------------------------------------------------------------

# Each test counts its attempts in a file under the session's base temporary
# directory, which is new for every inner session. pytest-rerunfailures reruns
# a test in the same process, so under xdist the count stays on one worker.
RERUN_SUITE = """
import pytest

def attempt(tmp_path_factory, name):
    counter = tmp_path_factory.getbasetemp() / (name + ".count")
    number = int(counter.read_text()) + 1 if counter.exists() else 1
    counter.write_text(str(number))
    return number

def test_flaky(tmp_path_factory):
    assert attempt(tmp_path_factory, "flaky") == 3

def test_broken():
    assert 0, "always broken"

@pytest.mark.flaky(reruns=1)
def test_marked_flaky(tmp_path_factory):
    assert attempt(tmp_path_factory, "marked") == 2

def test_steady():
    pass
"""


@XDIST_MODES
def test_reruns_stored(
    pytester: pytest.Pytester, live_server: LiveServer, xdist: tuple[str, ...]
) -> None:
    pytester.makepyfile(test_reruns=RERUN_SUITE)

    inner = run_reported(pytester, live_server, "--reruns", "2", *xdist)
    baseline = run_unreported(pytester, "--reruns", "2", *xdist)
    run = stored_run(live_server)

    assert inner.result.ret == baseline.ret
    outcomes = inner.result.parseoutcomes()
    assert outcomes["passed"] == 3
    assert outcomes["failed"] == 1
    assert outcomes["rerun"] == 5
    assert set(run.executions) == inner.node_ids

    flaky = run.executions["test_reruns.py::test_flaky"]
    assert [e["attempt"] for e in flaky] == [1, 2, 3]
    assert [e["outcome"] for e in flaky] == ["failed", "failed", "passed"]

    broken = run.executions["test_reruns.py::test_broken"]
    assert [e["attempt"] for e in broken] == [1, 2, 3]
    assert [e["outcome"] for e in broken] == ["failed", "failed", "failed"]
    assert all("always broken" in e["message"] for e in broken)

    marked = run.executions["test_reruns.py::test_marked_flaky"]
    assert [e["attempt"] for e in marked] == [1, 2]
    assert [e["outcome"] for e in marked] == ["failed", "passed"]

    steady = run.executions["test_reruns.py::test_steady"]
    assert [e["attempt"] for e in steady] == [1]

    # Totals count each test once, by its last attempt.
    assert run.totals["passed"] == 3
    assert run.totals["failed"] == 1
    assert run.detail["attempts"] == 9
    assert run.detail["passed_on_rerun"] == 2


# --- classes, unittest and doctests ------------------------------------------------

STYLES_SUITE = '''
import unittest

class TestCart:
    def test_total(self):
        assert 2 + 2 == 4

    def test_discount(self):
        assert 0.5 * 100 == 40

class CartCase(unittest.TestCase):
    def test_empty(self):
        self.assertEqual([], [])

    @unittest.skip("needs a printer")
    def test_print(self):
        pass

    @unittest.expectedFailure
    def test_known_bug(self):
        self.assertEqual(1, 2)

def add(a, b):
    """Add two numbers.

    >>> add(1, 2)
    3
    """
    return a + b

def half(n):
    """Halve a number.

    >>> half(3)
    1
    """
    return n / 2
'''


@XDIST_MODES
def test_classes_and_doctests(
    pytester: pytest.Pytester, live_server: LiveServer, xdist: tuple[str, ...]
) -> None:
    pytester.makepyfile(test_styles=STYLES_SUITE)

    inner = run_reported(pytester, live_server, "--doctest-modules", *xdist)
    baseline = run_unreported(pytester, "--doctest-modules", *xdist)
    run = stored_run(live_server)

    assert inner.result.ret == baseline.ret
    inner.result.assert_outcomes(passed=3, failed=2, skipped=1, xfailed=1)
    assert set(run.executions) == inner.node_ids
    assert set(run.cases) == inner.node_ids

    assert run.only("test_styles.py::TestCart::test_total")["outcome"] == "passed"
    discount = run.only("test_styles.py::TestCart::test_discount")
    assert discount["outcome"] == "failed"
    assert "assert (0.5 * 100) == 40" in discount["traceback"]
    assert run.cases["test_styles.py::TestCart::test_total"]["class_name"] == "TestCart"

    assert run.only("test_styles.py::CartCase::test_empty")["outcome"] == "passed"
    printing = run.only("test_styles.py::CartCase::test_print")
    assert printing["outcome"] == "skipped"
    assert printing["reason"] == "needs a printer"
    assert run.only("test_styles.py::CartCase::test_known_bug")["outcome"] == "xfailed"
    assert run.cases["test_styles.py::CartCase::test_empty"]["class_name"] == "CartCase"

    assert run.only("test_styles.py::test_styles.add")["outcome"] == "passed"
    half = run.only("test_styles.py::test_styles.half")
    assert half["outcome"] == "failed"
    assert half["message"]
    assert "Expected:" in half["traceback"]
    assert "1.5" in half["traceback"]


# --- captured output ---------------------------------------------------------------

FLOOD_SUITE = r"""
import sys

def test_floods_stdout():
    print("HEAD-MARK")
    sys.stdout.write("x" * 3_000_000)
    sys.stdout.flush()
    sys.stdout.buffer.write(b"\xff\xfe not utf-8 \xc3\x28\n")
    sys.stdout.buffer.flush()
    print("TAIL-MARK")

def test_fails_loudly():
    print("y" * 200_000)
    assert 0, "loud failure"
"""


@XDIST_MODES
def test_big_output_bounded(
    pytester: pytest.Pytester, live_server: LiveServer, xdist: tuple[str, ...]
) -> None:
    pytester.makepyfile(test_flood=FLOOD_SUITE)

    inner = run_reported(pytester, live_server, *xdist)
    baseline = run_unreported(pytester, *xdist)
    run = stored_run(live_server)

    assert inner.result.ret == baseline.ret
    inner.result.assert_outcomes(passed=1, failed=1)

    node_id = "test_flood.py::test_floods_stdout"
    captured = inner.captured_stdout(node_id)
    stdout = run.only(node_id)["stdout"]
    half = DEFAULT_CAPTURE_LIMIT // 2
    omitted = len(captured) - DEFAULT_CAPTURE_LIMIT
    assert len(captured) > 3_000_000
    assert len(stdout) == DEFAULT_CAPTURE_LIMIT + len(truncation_mark(omitted))
    assert stdout.startswith("HEAD-MARK\n")
    assert stdout.endswith("TAIL-MARK\n")
    assert stdout[:half] == captured[:half]
    assert stdout[-half:] == captured[-half:]
    assert truncation_mark(omitted) in stdout
    # pytest decodes the invalid bytes with replacement characters.
    assert "\ufffd\ufffd not utf-8 \ufffd(" in stdout

    loud = run.only("test_flood.py::test_fails_loudly")
    assert loud["outcome"] == "failed"
    assert "loud failure" in loud["message"]
    assert len(loud["stdout"]) < DEFAULT_CAPTURE_LIMIT + 100
    assert "characters truncated by TestoQA" in loud["stdout"]


LIMIT_SUITE = """
def test_prints():
    print("HEAD-MARK" + "x" * 100_000 + "TAIL-MARK")
"""


@XDIST_MODES
def test_capture_limit_option(
    pytester: pytest.Pytester, live_server: LiveServer, xdist: tuple[str, ...]
) -> None:
    pytester.makepyfile(test_limit=LIMIT_SUITE)

    inner = run_reported(pytester, live_server, "--testoqa-capture-limit", "1000", *xdist)
    baseline = run_unreported(pytester, *xdist)
    run = stored_run(live_server)

    assert inner.result.ret == baseline.ret
    captured = inner.captured_stdout("test_limit.py::test_prints")
    stdout = run.only("test_limit.py::test_prints")["stdout"]
    omitted = len(captured) - 1000
    assert len(stdout) == 1000 + len(truncation_mark(omitted))
    assert stdout[:500] == captured[:500]
    assert stdout[-500:] == captured[-500:]
    assert stdout.startswith("HEAD-MARK")
    assert stdout.endswith("TAIL-MARK\n")
    assert truncation_mark(omitted) in stdout


# --- sessions that end early -------------------------------------------------------

CRASH_SUITE = """
import os

def test_first():
    pass

def test_second():
    pass

def test_crashes():
    os._exit(3)

def test_third():
    pass

def test_fourth():
    pass
"""


# Only xdist has workers: without them, os._exit ends the whole session.
@pytest.mark.parametrize("xdist", [("-n", "2")], ids=["n2"])
def test_worker_crash(
    pytester: pytest.Pytester, live_server: LiveServer, xdist: tuple[str, ...]
) -> None:
    pytester.makepyfile(test_crash=CRASH_SUITE)

    inner = run_reported(pytester, live_server, *xdist)
    baseline = run_unreported(pytester, *xdist)
    run = stored_run(live_server)

    assert inner.result.ret == baseline.ret
    inner.result.assert_outcomes(passed=4, failed=1)
    assert set(run.executions) == inner.node_ids

    crash = run.only("test_crash.py::test_crashes")
    assert crash["outcome"] == "failed"
    assert crash["worker"] in ("gw0", "gw1")
    assert crash["worker"] in crash["message"]
    assert "crash" in crash["message"]

    for name in ("test_first", "test_second", "test_third", "test_fourth"):
        assert run.only(f"test_crash.py::{name}")["outcome"] == "passed"
    assert run.totals["passed"] == 4
    assert run.totals["failed"] == 1
    assert run.detail["not_run"] == 0
    assert run.detail["status"] == "finished"
    # The plugin must leave the crash report as xdist made it for other plugins.
    assert any(r["when"] == CRASH_PHASE for r in inner.reports)


EXIT_SUITE = """
import pytest

def test_before():
    pass

def test_stops():
    pytest.exit("stop the run here")

def test_after():
    pass

def test_last():
    pass
"""


@XDIST_MODES
def test_pytest_exit_interrupts(
    pytester: pytest.Pytester, live_server: LiveServer, xdist: tuple[str, ...]
) -> None:
    pytester.makepyfile(test_exit=EXIT_SUITE)

    inner = run_reported(pytester, live_server, *xdist)
    baseline = run_unreported(pytester, *xdist)
    run = stored_run(live_server)

    assert inner.result.ret == baseline.ret
    assert inner.result.ret == pytest.ExitCode.INTERRUPTED
    assert run.detail["status"] == "interrupted"
    assert run.detail["exit_status"] == pytest.ExitCode.INTERRUPTED
    assert run.detail["planned"] == 4
    assert run.detail["not_run"] == run.detail["planned"] - len(inner.node_ids)
    assert set(run.executions) == inner.node_ids
    assert run.only("test_exit.py::test_before")["outcome"] == "passed"
    if not xdist or xdist == ("-n", "0"):
        assert run.detail["not_run"] == 3


COLLECTION_ERROR_SUITE = """
import module_that_does_not_exist

def test_unreachable():
    pass
"""


@XDIST_MODES
def test_collection_error(
    pytester: pytest.Pytester, live_server: LiveServer, xdist: tuple[str, ...]
) -> None:
    pytester.makepyfile(
        test_broken_import=COLLECTION_ERROR_SUITE, test_fine="def test_fine():\n    pass\n"
    )

    inner = run_reported(pytester, live_server, *xdist)
    baseline = run_unreported(pytester, *xdist)
    run = stored_run(live_server)

    assert inner.result.ret == baseline.ret
    if xdist != ("-n", "2"):
        # xdist reports a collection error as a failed session (exit code 1).
        assert inner.result.ret == pytest.ExitCode.INTERRUPTED
    assert "INTERNALERROR" not in inner.output
    inner.result.stdout.fnmatch_lines(["*executions sent to project PLUG*"])
    assert run.detail["exit_status"] == inner.result.ret
    assert set(run.executions) == inner.node_ids
    assert run.detail["not_run"] == run.detail["planned"] - len(inner.node_ids)


# --- selection ---------------------------------------------------------------------

SELECTION_SUITE = """
def test_keep_one():
    pass

def test_keep_two():
    pass

def test_drop():
    pass
"""


@XDIST_MODES
def test_deselected_not_planned(
    pytester: pytest.Pytester, live_server: LiveServer, xdist: tuple[str, ...]
) -> None:
    pytester.makepyfile(test_selection=SELECTION_SUITE)

    inner = run_reported(pytester, live_server, "-k", "keep", *xdist)
    baseline = run_unreported(pytester, "-k", "keep", *xdist)
    run = stored_run(live_server)

    assert inner.result.ret == baseline.ret
    inner.result.assert_outcomes(passed=2)
    assert run.detail["planned"] == len(inner.node_ids)
    assert run.detail["planned"] == 2
    assert run.detail["not_run"] == 0
    assert "test_selection.py::test_drop" not in run.cases
    assert set(run.cases) == inner.node_ids


@XDIST_MODES
def test_collect_only_sends_nothing(
    pytester: pytest.Pytester, live_server: LiveServer, xdist: tuple[str, ...]
) -> None:
    pytester.makepyfile(test_selection=SELECTION_SUITE)

    inner = run_reported(pytester, live_server, "--collect-only", *xdist)
    baseline = run_unreported(pytester, "--collect-only", *xdist)

    assert inner.result.ret == baseline.ret
    inner.result.stdout.fnmatch_lines(["*3 tests collected*"])
    assert live_server.runs() == []
    assert not (pytester.path / ".testoqa").exists()


# --- the executions route ----------------------------------------------------------


def test_executions_route(pytester: pytest.Pytester, live_server: LiveServer) -> None:
    pytester.makepyfile(test_kinds=KINDS_SUITE)
    run_reported(pytester, live_server)
    run = stored_run(live_server)

    listed = live_server.executions(run.detail["id"])

    assert sorted(e["id"] for e in listed) == sorted(str(e["id"]) for e in run.all_executions)
    assert {e["case_key"] for e in listed} == set(run.executions)
