"""The slow-tests report, JSON and CSV, from known durations on SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import io
from typing import Any

import pytest

from ingest_server.services.trends import percentile
from tests.conftest import Tenant
from tests.run_data import Client, Reporter, attempt, failure

# Durations per run, oldest run first. With window 8 and recent 3 the
# baseline is the first five runs and the recent part the last three.
DURATIONS = {
    # Baseline median 1.0, recent median 2.2: ratio 2.2, delta 1.2 s.
    "t::slower": [1.0, 1.2, 1.1, 0.9, 1.0, 2.0, 2.4, 2.2],
    # Five times slower but only 0.04 s more: under the 0.1 s minimum delta.
    "t::tiny": [0.01, 0.01, 0.01, 0.01, 0.01, 0.05, 0.05, 0.05],
    "t::steady": [3.0] * 8,
    # Median (0.4 + 0.5) / 2 = 0.45, 90th percentile the 8th smallest = 0.8.
    # The recent median (0.4) is below the baseline median (0.6).
    "t::spread": [0.8, 0.1, 0.7, 0.2, 0.6, 0.3, 0.5, 0.4],
}


async def report_durations(reporter: Reporter) -> list[str]:
    runs = []
    for number in range(8):
        items = [attempt(key, duration=durations[number]) for key, durations in DURATIONS.items()]
        # A failure's duration is left out: only passed attempts count.
        outcome = failure("t::sometimes", "E", duration=50.0)
        items.append(outcome if number % 2 else attempt("t::sometimes", duration=0.5))
        runs.append(await reporter.run(items, started=number * 100.0))
    return runs


async def slow(reporter: Reporter, **query: str) -> dict[str, Any]:
    params = {"window": "8", "recent": "3", **query}
    result: dict[str, Any] = await reporter.get_json("/slow", **params)
    return result


def by_key(items: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {item["case_key"]: item for item in items}


async def test_slow_regression_numbers(client: Client, tenant_a: Tenant) -> None:
    reporter = Reporter(client, tenant_a)
    await report_durations(reporter)

    report = await slow(reporter)
    regression = by_key(report["regressions"])["t::slower"]

    assert regression["recent_median"] == 2.2
    assert regression["baseline_median"] == 1.0
    assert regression["ratio"] == pytest.approx(2.2, abs=1e-12)
    assert regression["delta"] == pytest.approx(1.2, abs=1e-12)
    assert regression["recent_runs"] == 3
    assert regression["baseline_runs"] == 5


async def test_slow_small_delta_not_flagged(client: Client, tenant_a: Tenant) -> None:
    reporter = Reporter(client, tenant_a)
    await report_durations(reporter)

    strict = await slow(reporter)
    loose = await slow(reporter, min_delta="0.03")

    assert "t::tiny" not in by_key(strict["regressions"])
    assert by_key(loose["regressions"])["t::tiny"]["ratio"] == pytest.approx(5.0)


async def test_slow_ratio_threshold(client: Client, tenant_a: Tenant) -> None:
    reporter = Reporter(client, tenant_a)
    await report_durations(reporter)

    report = await slow(reporter, min_ratio="2.3")

    assert report["regressions"] == []
    assert report["min_ratio"] == 2.3


async def test_slow_slowest_by_median(client: Client, tenant_a: Tenant) -> None:
    reporter = Reporter(client, tenant_a)
    await report_durations(reporter)

    report = await slow(reporter)
    keys = [test["case_key"] for test in report["slowest"]]

    assert keys == ["t::steady", "t::slower", "t::sometimes", "t::spread", "t::tiny"]


async def test_slow_median_p90_max(client: Client, tenant_a: Tenant) -> None:
    reporter = Reporter(client, tenant_a)
    await report_durations(reporter)

    spread = by_key((await slow(reporter))["slowest"])["t::spread"]

    assert spread["median"] == pytest.approx(0.45, abs=1e-12)
    assert spread["p90"] == 0.8
    assert spread["max"] == 0.8
    assert spread["runs"] == 8


async def test_slow_counts_passed_attempts_only(client: Client, tenant_a: Tenant) -> None:
    reporter = Reporter(client, tenant_a)
    await report_durations(reporter)

    sometimes = by_key((await slow(reporter))["slowest"])["t::sometimes"]

    assert sometimes["max"] == 0.5
    assert sometimes["runs"] == 4


async def test_slow_window_and_limit(client: Client, tenant_a: Tenant) -> None:
    reporter = Reporter(client, tenant_a)
    await report_durations(reporter)

    report = await slow(reporter, window="4", recent="2", limit="2")

    assert report["runs"] == 4
    assert [test["case_key"] for test in report["slowest"]] == ["t::steady", "t::slower"]
    # The newest four runs of t::slower: 1.0 and 2.0, then 2.4 and 2.2.
    regression = by_key(report["regressions"])["t::slower"]
    assert regression["baseline_median"] == pytest.approx(1.5, abs=1e-12)
    assert regression["recent_median"] == pytest.approx(2.3, abs=1e-12)


async def test_slow_defaults(client: Client, tenant_a: Tenant) -> None:
    reporter = Reporter(client, tenant_a)
    await report_durations(reporter)

    report: dict[str, Any] = await reporter.get_json("/slow")

    assert report["window"] == 10
    # Without recent, the recent part is half of the 8 runs found.
    assert report["recent"] == 4
    assert report["recent_given"] is False
    assert report["min_ratio"] == 1.5
    assert report["min_delta"] == 0.1
    assert report["branch"] == "main"
    assert report["runs"] == 8


async def test_slow_csv_rows_and_header(client: Client, tenant_a: Tenant) -> None:
    reporter = Reporter(client, tenant_a)
    await report_durations(reporter)

    response = await client.get(
        f"/api/v1/projects/{tenant_a.key}/slow",
        params={"window": "8", "recent": "3", "format": "csv"},
        headers=tenant_a.auth("viewer"),
    )
    rows = list(csv.reader(io.StringIO(await response.text())))

    assert response.status == 200
    assert response.content_type == "text/csv"
    assert rows[0] == [
        "list",
        "case_key",
        "case_name",
        "case_id",
        "median",
        "p90",
        "max",
        "runs",
        "recent_median",
        "baseline_median",
        "ratio",
        "delta",
        "recent_runs",
        "baseline_runs",
    ]
    steady = next(row for row in rows if row[:2] == ["slowest", "t::steady"])
    assert steady[4:8] == ["3.0", "3.0", "3.0", "8"]
    assert steady[8:] == ["", "", "", "", "", ""]
    regression = next(row for row in rows if row[0] == "regression")
    assert regression[1] == "t::slower"
    assert regression[8:10] == ["2.2", "1.0"]
    assert regression[12:] == ["3", "5"]
    assert len(rows) == 1 + 5 + 1


@pytest.mark.parametrize(
    ("query", "parameter", "allowed"),
    [
        ({"window": "1"}, "window", "from 2 to 200"),
        ({"window": "x"}, "window", "from 2 to 200"),
        ({"recent": "0"}, "recent", "from 1 to 199"),
        ({"recent": "soon"}, "recent", "from 1 to 199"),
        ({"min_ratio": "0.5"}, "min_ratio", "from 1 to 1000"),
        ({"min_ratio": "inf"}, "min_ratio", "from 1 to 1000"),
        ({"min_delta": "-1"}, "min_delta", "from 0 to 86400"),
        ({"limit": "501"}, "limit", "from 1 to 500"),
        ({"format": "CSV"}, "format", "json or csv"),
    ],
)
async def test_slow_rejects_bad_query(
    client: Client, tenant_a: Tenant, query: dict[str, str], parameter: str, allowed: str
) -> None:
    response = await client.get(
        f"/api/v1/projects/{tenant_a.key}/slow", params=query, headers=tenant_a.auth("viewer")
    )
    body = await response.json()

    assert response.status == 422
    assert body["error"]["message"].startswith(f"invalid {parameter} ")
    assert allowed in body["error"]["message"]
    assert body["error"]["details"][0]["field"] == parameter


async def test_slow_recent_covering_window_flags_nothing(client: Client, tenant_a: Tenant) -> None:
    reporter = Reporter(client, tenant_a)
    await report_durations(reporter)

    report = await slow(reporter, window="3", recent="3")

    assert report["regressions"] == []
    assert len(report["slowest"]) == 5


def test_percentile_nearest_rank() -> None:
    assert percentile([5.0], 0.9) == 5.0
    assert percentile([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0], 0.9) == 9.0
    assert percentile([3.0, 1.0, 2.0], 0.5) == 2.0


async def report_series(reporter: Reporter, durations: list[float]) -> None:
    for number, duration in enumerate(durations):
        items = [attempt("t::slower", duration=duration), attempt("t::instant", duration=0.0)]
        await reporter.run(items, started=number * 100.0)


async def test_slow_default_recent_is_half_of_runs(client: Client, tenant_a: Tenant) -> None:
    reporter = Reporter(client, tenant_a)
    await report_series(reporter, [1.0, 1.0, 3.0, 3.0])

    report: dict[str, Any] = await reporter.get_json("/slow")

    assert report["runs"] == 4
    assert report["recent"] == 2
    assert report["recent_runs"] == 2
    assert report["baseline_runs"] == 2
    assert report["regressions_note"] is None
    assert [item["case_key"] for item in report["regressions"]] == ["t::slower"]


async def test_slow_few_runs_explains_empty_regressions(client: Client, tenant_a: Tenant) -> None:
    reporter = Reporter(client, tenant_a)
    await report_series(reporter, [1.0, 1.0, 3.0])

    report: dict[str, Any] = await reporter.get_json("/slow")

    assert report["recent"] == 1
    assert report["recent_runs"] == 1
    assert report["baseline_runs"] == 2
    assert report["regressions"] == []
    assert "the recent part has 1 and the baseline 2" in report["regressions_note"]


async def test_slow_explicit_recent_kept(client: Client, tenant_a: Tenant) -> None:
    reporter = Reporter(client, tenant_a)
    await report_durations(reporter)

    report = await slow(reporter, window="10", recent="5")

    assert report["recent"] == 5
    assert report["recent_given"] is True
    assert report["recent_runs"] == 5
    assert report["baseline_runs"] == 3
    assert report["regressions_note"] is None


async def test_slow_recent_covering_window_has_note(client: Client, tenant_a: Tenant) -> None:
    reporter = Reporter(client, tenant_a)
    await report_durations(reporter)

    report = await slow(reporter, window="3", recent="5")

    assert report["recent_runs"] == 3
    assert report["baseline_runs"] == 0
    assert "the baseline 0" in report["regressions_note"]


async def test_slow_slowest_leaves_out_zero_median(client: Client, tenant_a: Tenant) -> None:
    reporter = Reporter(client, tenant_a)
    await report_series(reporter, [1.0, 1.0, 3.0, 3.0])

    report: dict[str, Any] = await reporter.get_json("/slow")

    assert [test["case_key"] for test in report["slowest"]] == ["t::slower"]
