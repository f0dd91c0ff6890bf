"""A first pass of the plugin against a live server."""

from __future__ import annotations

import pytest

from tests.plugin.conftest import LiveServer


@pytest.mark.parametrize("xdist", [[], ["-n", "0"], ["-n", "2"]], ids=["plain", "n0", "n2"])
def test_outcomes_reach_server(
    pytester: pytest.Pytester,
    live_server: LiveServer,
    monkeypatch: pytest.MonkeyPatch,
    xdist: list[str],
) -> None:
    for name, value in live_server.env().items():
        monkeypatch.setenv(name, value)
    pytester.makepyfile(
        """
        import pytest
        def test_pass(): pass
        def test_fail(): assert 0
        @pytest.mark.skip(reason="later")
        def test_skip(): pass
        """
    )
    result = pytester.runpytest_subprocess("--testoqa-project", live_server.project, *xdist)
    result.assert_outcomes(passed=1, failed=1, skipped=1)
    run = live_server.only_run()
    assert run["totals"]["passed"] == 1
    assert run["totals"]["failed"] == 1
    assert run["totals"]["skipped"] == 1
    assert run["status"] == "finished"
