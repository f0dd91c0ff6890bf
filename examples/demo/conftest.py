"""Shared fixtures of the demo suite.

The quickstart runs this suite four times and sets ``DEMO_ROUND`` to 1, 2,
3 and 4, so that a few tests change outcome or speed from one run to the
next, as they do in real suites. Without the variable every test behaves as
in round 1. Nothing here is random: each round gives the same outcomes on
every machine.
"""

from __future__ import annotations

import os

import pytest


def pytest_configure(config: pytest.Config) -> None:
    # The search tests show a rerun that passes, and without the plugin
    # that provides reruns they would just fail.
    if not config.pluginmanager.hasplugin("rerunfailures"):
        raise pytest.UsageError(
            "the demo suite needs pytest-rerunfailures: pip install 'testoqa[examples]'"
        )


@pytest.fixture
def round_number() -> int:
    """Return the quickstart's round number, 1 when the suite runs on its own."""
    value = os.environ.get("DEMO_ROUND", "1")
    if not value.isdigit():
        raise ValueError(f"invalid DEMO_ROUND {value!r}: expected a number from 1 to 4")
    return int(value)
