"""The wire contract: every event the plugin spools validates against the server's request models.

The plugin reports to a loopback port that nothing listens on, so every
event stays in the spool. The test then reads each spool file back and
validates each event body with the pydantic model the server applies to it.
"""

from __future__ import annotations

import json
import socket
from collections import Counter
from pathlib import Path

import pytest
from pydantic import BaseModel, ValidationError

from ingest_server.schemas import CasesUpsert, ExecutionIn, RunCreate, RunFinish
from pytest_testoqa import spool
from tests.plugin.test_outcomes import (
    INNER_TIMEOUT,
    REPORT_LOG,
    UNUSED_PLUGINS,
    XDIST_MODES,
    read_report_log,
    run_unreported,
)

REQUEST_MODELS: dict[str, type[BaseModel]] = {
    "run": RunCreate,
    "cases": CasesUpsert,
    "execution": ExecutionIn,
    "finish": RunFinish,
}
# Parameters and markers of one test: more than the 100 the server accepts per item.
MANY = 120

# A GitHub Actions environment with values longer than the server's length limits.
CI_ENVIRONMENT = {
    "GITHUB_ACTIONS": "true",
    "GITHUB_SERVER_URL": "https://github.example.com",
    "GITHUB_REPOSITORY": "team/" + "r" * 3000,
    "GITHUB_RUN_ID": "9" * 300,
    "GITHUB_REF_NAME": "feature/" + "b" * 300,
    "GITHUB_SHA": "f" * 100,
    "GITHUB_JOB": "j" * 300,
    "GITHUB_REF": "refs/pull/" + "1" * 200 + "/merge",
}

CONFTEST = """
import pytest

@pytest.hookimpl(optionalhook=True)
def pytest_testoqa_run_metadata(config):
    return {f"entry-{index}-" + "k" * 150: "v" * 2000 for index in range(60)}
"""

_MANY_NAMES = ", ".join(f"p{index}" for index in range(MANY))
_MANY_MARKERS = "\n".join(f"@pytest.mark.tag{index}" for index in range(MANY))
_LONG_MARKER = "m" * 300

SUITE = f'''
import logging
import sys
import unittest

import pytest

LONG = "L" * 600

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
    assert 1 == 2

def test_setup_error(broken_setup):
    pass

def test_teardown_error(broken_teardown):
    pass

def test_skips():
    pytest.skip("s" * 10_000)

@pytest.mark.xfail(reason="x" * 10_000)
def test_xfails():
    assert 0

@pytest.mark.xfail(reason="strict", strict=True)
def test_strict_xpass():
    pass

@pytest.mark.xfail(reason="lenient")
def test_lenient_xpass():
    pass

def test_flaky(tmp_path_factory):
    counter = tmp_path_factory.getbasetemp() / "flaky.count"
    first = not counter.exists()
    counter.write_text("1")
    assert not first

def test_huge_message():
    raise ValueError("m" * 2_000_000)

def test_floods_output():
    print("HEAD")
    sys.stdout.write("o" * 2_000_000 + "\\x00")
    sys.stdout.flush()
    sys.stdout.buffer.write(b"\\xff\\xfe\\xc3\\x28")
    sys.stdout.buffer.flush()
    sys.stderr.write("e" * 2_000_000)
    logging.getLogger("flood").warning("w" * 2_000_000)

class Unprintable:
    def __repr__(self):
        raise RuntimeError("no repr")

ODD_IDS = ["ünï", "a::b", "x[y", "with space", LONG, LONG + "-other"]

@pytest.mark.parametrize(
    "value",
    [*ODD_IDS, b"\\xff", Unprintable(), "r" * 5000],
    ids=[*ODD_IDS, "bytes", "unprintable", "long-repr"],
)
def test_odd_ids(value):
    pass

@pytest.mark.parametrize("{_MANY_NAMES}", [tuple(range({MANY}))])
def test_many_parameters({_MANY_NAMES}):
    pass

{_MANY_MARKERS}
@pytest.mark.{_LONG_MARKER}
def test_many_markers():
    pass

class TestGroup:
    def test_in_class(self):
        pass

class GroupCase(unittest.TestCase):
    def test_unittest(self):
        self.assertTrue(True)

def add(a, b):
    """
    >>> add(1, 2)
    3
    """
    return a + b
'''

MODULE_SKIP_SUITE = """
import pytest

pytest.skip("whole module skipped", allow_module_level=True)
"""


def closed_port() -> int:
    """Return a loopback port that nothing listens on: bound once by the OS, then released."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def schema_errors(event: spool.Event) -> str | None:
    """Return the validation errors of an event body, or None when it is valid."""
    model = REQUEST_MODELS.get(event.kind)
    if model is None:
        return f"no request model for event kind {event.kind!r}"
    try:
        model.model_validate(event.body)
    except ValidationError as exc:
        return str(exc)
    return None


def collection_skips(log: Path) -> int:
    """Count the collectors pytest skipped, from a ``--report-log`` file."""
    count = 0
    for line in log.read_text(encoding="utf-8").splitlines():
        entry = json.loads(line)
        count += entry.get("$report_type") == "CollectReport" and entry["outcome"] == "skipped"
    return count


@XDIST_MODES
def test_payloads_match_schemas(pytester: pytest.Pytester, xdist: tuple[str, ...]) -> None:
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_everything=SUITE, test_module_skip=MODULE_SKIP_SUITE)
    spool_dir = pytester.path / "spool"
    log = pytester.path / REPORT_LOG
    suite_args = ("--doctest-modules", "--reruns", "1", *xdist)

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TESTOQA_TOKEN", "unused-token")
        for name, value in CI_ENVIRONMENT.items():
            patch.setenv(name, value)
        result = pytester.runpytest_subprocess(
            "--testoqa-project",
            "PLUG",
            "--testoqa-url",
            f"http://127.0.0.1:{closed_port()}",
            "--testoqa-spool-dir",
            str(spool_dir),
            "--testoqa-flush-deadline",
            "0",
            "--testoqa-run-name",
            "n" * 300,
            "--report-log",
            str(log),
            *UNUSED_PLUGINS,
            *suite_args,
            timeout=INNER_TIMEOUT,
        )
    baseline = run_unreported(pytester, *suite_args)
    reports = read_report_log(log)

    assert result.ret == baseline.ret
    assert "INTERNALERROR" not in result.stdout.str()
    paths = list(spool.spool_files([spool_dir]))
    events = [(path, event) for path in paths for event in spool.read(path)[1]]
    errors = {
        f"{path.name}:{event.seq} {event.kind}": problem
        for path, event in events
        if (problem := schema_errors(event)) is not None
    }
    assert errors == {}

    kinds = Counter(event.kind for _, event in events)
    assert set(kinds) == set(REQUEST_MODELS)
    assert kinds["run"] == len(paths)
    assert kinds["finish"] == 1
    # Every attempt pytest ran ends with a teardown report, reruns included,
    # and each module skipped while collecting is one more execution.
    attempts = sum(report["when"] == "teardown" for report in reports)
    assert attempts > 20
    assert kinds["execution"] == attempts + collection_skips(log)

    for _, event in events:
        if event.kind == "cases":
            keys = [case["key"] for case in event.body["cases"]]
            assert len(keys) == len(set(keys)), "the server rejects repeated keys in one request"
