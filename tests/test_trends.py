"""The trends report, JSON and CSV, from known runs on SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import io
from typing import Any

import pytest

from tests.conftest import Tenant
from tests.run_data import Client, Reporter, attempt, failure


async def report_runs(reporter: Reporter) -> dict[str, str]:
    """Report runs of two branches, one interrupted and one still running; return their ids."""
    runs = {}
    runs["first"] = await reporter.run(
        [
            attempt("t::a", duration=1.0),
            attempt("t::b", duration=2.0),
            failure("t::c", "AssertionError", duration=0.5),
            attempt("t::d", "skipped", duration=0.0),
        ],
        started=0.0,
    )
    runs["feature"] = await reporter.run(
        [attempt("t::a", duration=1.0)], started=500.0, branch="feature/y"
    )
    runs["second"] = await reporter.run(
        [
            attempt("t::a", duration=1.5),
            failure("t::b", "OSError", outcome="error", duration=0.25),
        ],
        started=1000.0,
        commit="fedcba9876",
    )
    runs["interrupted"] = await reporter.run(
        [attempt("t::a", duration=1.0)], started=2000.0, settle="interrupted"
    )
    runs["running"] = await reporter.run([attempt("t::a")], started=3000.0, settle=None)
    return runs


async def trends(reporter: Reporter, **query: str) -> dict[str, Any]:
    result: dict[str, Any] = await reporter.get_json("/trends", **query)
    return result


async def test_trends_values_per_run(client: Client, tenant_a: Tenant) -> None:
    reporter = Reporter(client, tenant_a)
    runs = await report_runs(reporter)

    report = await trends(reporter, branch="main")
    first = next(point for point in report["points"] if point["run_id"] == runs["first"])

    assert first["tests"] == 4
    assert first["passed"] == 2
    assert first["failed"] == 1
    assert first["skipped"] == 1
    assert first["failures"] == 1
    assert first["pass_rate"] == pytest.approx(2 / 3)
    assert first["test_duration"] == 3.5
    # The reporter finishes each run 60 s after its start.
    assert first["wall_duration"] == 60.0
    assert first["summarized"] is True


async def test_trends_error_counts_as_failure(client: Client, tenant_a: Tenant) -> None:
    reporter = Reporter(client, tenant_a)
    runs = await report_runs(reporter)

    report = await trends(reporter, branch="main")
    second = next(point for point in report["points"] if point["run_id"] == runs["second"])

    assert second["error"] == 1
    assert second["failures"] == 1
    assert second["pass_rate"] == 0.5
    assert second["commit"] == "fedcba9876"
    assert second["run_url"].endswith(f"/projects/{tenant_a.key}/runs/{runs['second']}")


async def test_trends_settled_runs_newest_first(client: Client, tenant_a: Tenant) -> None:
    reporter = Reporter(client, tenant_a)
    runs = await report_runs(reporter)

    report = await trends(reporter, branch="main")

    assert [point["run_id"] for point in report["points"]] == [
        runs["interrupted"],
        runs["second"],
        runs["first"],
    ]
    assert report["points"][0]["status"] == "interrupted"
    assert report["runs"] == 3


async def test_trends_branch_filter(client: Client, tenant_a: Tenant) -> None:
    reporter = Reporter(client, tenant_a)
    runs = await report_runs(reporter)

    feature = await trends(reporter, branch="feature/y")
    everything = await trends(reporter, branch="")
    unknown = await trends(reporter, branch="nope")

    assert [point["run_id"] for point in feature["points"]] == [runs["feature"]]
    assert everything["branch"] is None
    assert everything["runs"] == 4
    assert unknown["points"] == []


async def test_trends_window(client: Client, tenant_a: Tenant) -> None:
    reporter = Reporter(client, tenant_a)
    runs = await report_runs(reporter)

    report = await trends(reporter, window="1")
    default = await trends(reporter)

    assert [point["run_id"] for point in report["points"]] == [runs["interrupted"]]
    assert default["window"] == 50
    assert default["branch"] == "main"


async def test_trends_csv(client: Client, tenant_a: Tenant) -> None:
    reporter = Reporter(client, tenant_a)
    runs = await report_runs(reporter)

    response = await client.get(
        f"/api/v1/projects/{tenant_a.key}/trends",
        params={"branch": "main", "format": "csv"},
        headers=tenant_a.auth("viewer"),
    )
    rows = list(csv.reader(io.StringIO(await response.text())))

    assert response.status == 200
    assert response.headers["Content-Disposition"] == (
        f'attachment; filename="{tenant_a.key}-trends.csv"'
    )
    assert rows[0] == [
        "run_id",
        "started_at",
        "status",
        "branch",
        "commit",
        "tests",
        "passed",
        "failures",
        "pass_rate",
        "wall_duration",
        "test_duration",
    ]
    assert rows[2][0] == runs["second"]
    assert rows[2][2:] == ["finished", "main", "fedcba9876", "2", "1", "1", "0.5", "60.0", "1.75"]
    assert len(rows) == 4


@pytest.mark.parametrize(
    ("value", "allowed"), [("0", "from 1 to 500"), ("501", "from 1 to 500"), ("1.5", "integer")]
)
async def test_trends_rejects_bad_window(
    client: Client, tenant_a: Tenant, value: str, allowed: str
) -> None:
    response = await client.get(
        f"/api/v1/projects/{tenant_a.key}/trends",
        params={"window": value},
        headers=tenant_a.auth("viewer"),
    )
    body = await response.json()

    assert response.status == 422
    assert body["error"]["details"][0]["field"] == "window"
    assert allowed in body["error"]["message"]


@pytest.mark.parametrize("report", ["flaky", "slow", "trends"])
async def test_trend_reports_hidden_from_other_project(
    client: Client, tenant_a: Tenant, tenant_b: Tenant, report: str
) -> None:
    await Reporter(client, tenant_b).run([attempt("t::a")])

    response = await client.get(
        f"/api/v1/projects/{tenant_b.key}/{report}", headers=tenant_a.auth("viewer")
    )
    body = await response.json()

    assert response.status == 404
    assert body["error"]["code"] == "not_found"
