"""Case keys end to end: odd node ids, over-long ids and keys pinned with the testoqa marker."""

from __future__ import annotations

import re

import pytest

from pytest_testoqa.identity import HASH_SUFFIX_LENGTH, MAX_KEY_LENGTH
from tests.plugin.conftest import LiveServer
from tests.plugin.test_outcomes import (
    XDIST_MODES,
    run_reported,
    run_unreported,
    stored_run,
)

LONG_ID = "L" * 600

ODD_IDS_SUITE = f"""
import pytest

IDS = ["ünï", "a::b", "x[y", "with space", "{LONG_ID}", "{LONG_ID}-other"]

@pytest.mark.parametrize("value", IDS, ids=IDS)
def test_odd(value):
    pass

def test_ünïcode_name():
    pass
"""


@XDIST_MODES
def test_odd_ids_stored(
    pytester: pytest.Pytester, live_server: LiveServer, xdist: tuple[str, ...]
) -> None:
    pytester.makepyfile(test_ids=ODD_IDS_SUITE)

    inner = run_reported(pytester, live_server, *xdist)
    baseline = run_unreported(pytester, *xdist)
    run = stored_run(live_server)

    assert inner.result.ret == baseline.ret
    inner.result.assert_outcomes(passed=7)
    assert run.totals["passed"] == 7
    assert run.detail["planned"] == 7
    short_ids = {node_id for node_id in inner.node_ids if len(node_id) <= MAX_KEY_LENGTH}
    long_ids = inner.node_ids - short_ids
    assert len(short_ids) == 5
    assert len(long_ids) == 2
    # pytest escapes non-ASCII parametrize ids, but not function names.
    assert "test_ids.py::test_odd[\\xfcn\\xef]" in short_ids
    assert "test_ids.py::test_ünïcode_name" in short_ids
    assert short_ids <= set(run.executions)
    assert short_ids <= set(run.cases)

    capped = set(run.executions) - short_ids
    assert len(capped) == 2
    prefix_length = MAX_KEY_LENGTH - HASH_SUFFIX_LENGTH - 1
    for key in capped:
        assert len(key) == MAX_KEY_LENGTH
        assert re.fullmatch(rf"~[0-9a-f]{{{HASH_SUFFIX_LENGTH}}}", key[prefix_length:])
        assert key[:prefix_length] == f"test_ids.py::test_odd[{LONG_ID}"[:prefix_length]
    assert set(run.cases) - short_ids == capped
    assert {run.cases[key]["node_id"] for key in capped} == long_ids


PINNED_SUITE = """
import pytest

@pytest.mark.testoqa(key="CHECKOUT-12")
def test_checkout():
    pass

def test_other():
    pass
"""


@XDIST_MODES
def test_pinned_key_stored(
    pytester: pytest.Pytester, live_server: LiveServer, xdist: tuple[str, ...]
) -> None:
    pytester.makepyfile(test_pinned=PINNED_SUITE)

    inner = run_reported(pytester, live_server, *xdist)
    baseline = run_unreported(pytester, *xdist)
    run = stored_run(live_server)

    assert inner.result.ret == baseline.ret
    inner.result.assert_outcomes(passed=2)
    assert set(run.executions) == {"CHECKOUT-12", "test_pinned.py::test_other"}
    assert set(run.cases) == {"CHECKOUT-12", "test_pinned.py::test_other"}
    assert run.only("CHECKOUT-12")["outcome"] == "passed"
    assert run.cases["CHECKOUT-12"]["node_id"] == "test_pinned.py::test_checkout"
    assert run.cases["CHECKOUT-12"]["function"] == "test_checkout"


PINNED_PARAMETRIZED_SUITE = """
import pytest

@pytest.mark.testoqa(key="CHECKOUT-13")
@pytest.mark.parametrize("currency", ["EUR", "USD"])
def test_pay(currency):
    pass

def test_other():
    pass
"""


@XDIST_MODES
def test_pinned_key_parametrized(
    pytester: pytest.Pytester, live_server: LiveServer, xdist: tuple[str, ...]
) -> None:
    """A key pinned on a parametrized test must not cost the session its results."""
    pytester.makepyfile(test_pinned=PINNED_PARAMETRIZED_SUITE)

    inner = run_reported(pytester, live_server, *xdist)
    baseline = run_unreported(pytester, *xdist)
    run = stored_run(live_server)

    assert inner.result.ret == baseline.ret
    inner.result.assert_outcomes(passed=3)
    assert "NOT delivered" not in inner.output
    assert run.detail["status"] == "finished"
    assert run.totals["passed"] == 3
    assert len(run.executions) == 3
    pinned = set(run.executions) - {"test_pinned.py::test_other"}
    assert len(pinned) == 2
    assert all(key.startswith("CHECKOUT-13") for key in pinned)


@XDIST_MODES
def test_marker_listed(
    pytester: pytest.Pytester, live_server: LiveServer, xdist: tuple[str, ...]
) -> None:
    inner = run_reported(pytester, live_server, "--markers", *xdist)
    baseline = run_unreported(pytester, "--markers", *xdist)

    assert inner.result.ret == baseline.ret
    inner.result.stdout.fnmatch_lines(["@pytest.mark.testoqa(key): pin the TestoQA case key*"])
    assert live_server.runs() == []


UNPINNED_SUITE = """
import pytest

def test_fine():
    pass

@pytest.mark.testoqa
def test_unpinned():
    pass
"""


@XDIST_MODES
def test_marker_without_key(
    pytester: pytest.Pytester, live_server: LiveServer, xdist: tuple[str, ...]
) -> None:
    # Reporting never fails a test run: the test falls back to its node id and
    # the TestoQA summary names the marker that needs fixing.
    pytester.makepyfile(test_unpinned=UNPINNED_SUITE)
    baseline = run_unreported(pytester, *xdist)

    inner = run_reported(pytester, live_server, *xdist)

    assert inner.result.ret == baseline.ret
    assert "INTERNALERROR" not in inner.output
    inner.result.stdout.fnmatch_lines(
        ["*warning: test_unpinned.py::test_unpinned: @pytest.mark.testoqa needs key=*"]
    )
    stored = stored_run(live_server)
    assert set(stored.executions) == {
        "test_unpinned.py::test_fine",
        "test_unpinned.py::test_unpinned",
    }
