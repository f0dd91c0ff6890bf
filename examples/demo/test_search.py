"""Search: a test that passes on a rerun, one that flips between runs, and slow tests."""

from __future__ import annotations

import time
from collections import Counter

import pytest

# Attempts per test in this pytest process. pytest-rerunfailures reruns a
# test in the same process, so the count separates a first attempt from a rerun.
ATTEMPTS: Counter[str] = Counter()


@pytest.mark.flaky(reruns=2)
def test_search_retries_backend(request: pytest.FixtureRequest) -> None:
    ATTEMPTS[request.node.nodeid] += 1
    if ATTEMPTS[request.node.nodeid] == 1:
        raise ConnectionResetError("search backend reset the connection")


def test_ranking_is_stable(round_number: int) -> None:
    # Fails in round 3 only, so the flaky report shows an outcome that
    # flips between runs of the same branch.
    first = ["coffee", "bread", "apple"]
    second = ["bread", "coffee", "apple"] if round_number == 3 else list(first)
    assert first == second, "ranking changed between two identical queries"


def test_full_reindex() -> None:
    time.sleep(0.8)


@pytest.mark.parametrize("prefix", ["co", "br", "ap"])
def test_suggest(prefix: str) -> None:
    time.sleep(0.2)
    assert prefix.isalpha()


def test_export_csv(round_number: int) -> None:
    # Slower from round 3 on, so its duration grows in the reports.
    time.sleep(0.9 if round_number >= 3 else 0.3)
