"""The flaky-tests report, JSON and CSV, from known runs on SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import io
from typing import Any

import pytest

from ingest_server.web.exports import csv_cell
from tests.conftest import Tenant
from tests.run_data import Client, Reporter, attempt, failure

MAIN_OUTCOMES = ("passed", "failed", "passed", "failed")


def run_items(number: int, flips: str) -> list[dict[str, Any]]:
    """Return one run's items: a steady test, a flipping one, and a rerun in run 1."""
    items = [attempt("t::steady", duration=1.0)]
    if flips == "passed":
        items.append(attempt("t::flips", duration=1.0))
    else:
        items.append(failure("t::flips", "AssertionError: 1 != 2"))
    if number == 1:
        items.append(failure("t::rerun", "TimeoutError: slow", number=1))
        items.append(attempt("t::rerun", number=2, started=5))
    else:
        items.append(attempt("t::rerun"))
    return items


async def report_history(reporter: Reporter) -> list[str]:
    """Report four main-branch runs and, in between, four feature runs; return main's run ids."""
    main_runs = []
    for number, outcome in enumerate(MAIN_OUTCOMES):
        started = number * 1000.0
        main_runs.append(
            await reporter.run(run_items(number, outcome), started=started, branch="main")
        )
        feature = "failed" if number % 2 else "passed"
        items = [
            attempt("t::feature_only") if feature == "passed" else failure("t::feature_only", "E")
        ]
        await reporter.run(items, started=started + 500, branch="feature/x")
    # The newest run is on main, so main is the default branch.
    await reporter.run([attempt("t::steady")], started=9000.0, branch="main")
    return main_runs


async def flaky(reporter: Reporter, **query: str) -> dict[str, Any]:
    result: dict[str, Any] = await reporter.get_json("/flaky", **query)
    return result


def by_key(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {test["case_key"]: test for test in report["tests"]}


async def test_flaky_flip_rate_of_alternating_test(client: Client, tenant_a: Tenant) -> None:
    reporter = Reporter(client, tenant_a)
    await report_history(reporter)

    test = by_key(await flaky(reporter, branch="main"))["t::flips"]

    # P F P F (then one run without it): 3 flips over 4 runs seen, 3 / (4 - 1).
    assert test["flips"] == 3
    assert test["runs_seen"] == 4
    assert test["flip_rate"] == 1.0
    assert test["passed_on_rerun"] == 0
    assert test["last_outcome"] == "failed"


async def test_flaky_evidence_links_runs_and_executions(client: Client, tenant_a: Tenant) -> None:
    reporter = Reporter(client, tenant_a)
    main_runs = await report_history(reporter)

    test = by_key(await flaky(reporter, branch="main"))["t::flips"]

    evidence = test["evidence"]
    assert [item["run_id"] for item in evidence] == list(reversed(main_runs))
    assert [item["outcome"] for item in evidence] == list(reversed(MAIN_OUTCOMES))
    assert evidence[0]["run_url"].endswith(f"/projects/{tenant_a.key}/runs/{main_runs[-1]}")
    assert all(item["execution_id"] for item in evidence)
    assert test["case_url"].endswith(f"/projects/{tenant_a.key}/cases/{test['case_id']}")


async def test_flaky_lists_rerun_with_its_run(client: Client, tenant_a: Tenant) -> None:
    reporter = Reporter(client, tenant_a)
    main_runs = await report_history(reporter)

    test = by_key(await flaky(reporter, branch="main"))["t::rerun"]

    assert test["passed_on_rerun"] == 1
    assert test["flips"] == 0
    assert test["flip_rate"] == 0.0
    (evidence,) = test["evidence"]
    assert evidence["run_id"] == main_runs[1]
    assert evidence["passed_on_rerun"] is True
    assert evidence["attempts"] == 2


async def test_flaky_steady_test_not_listed(client: Client, tenant_a: Tenant) -> None:
    reporter = Reporter(client, tenant_a)
    await report_history(reporter)

    report = await flaky(reporter, branch="main")

    assert "t::steady" not in by_key(report)


async def test_flaky_other_branch_not_shown(client: Client, tenant_a: Tenant) -> None:
    reporter = Reporter(client, tenant_a)
    await report_history(reporter)

    on_main = await flaky(reporter, branch="main")
    on_feature = await flaky(reporter, branch="feature/x")

    assert "t::feature_only" not in by_key(on_main)
    assert by_key(on_feature)["t::feature_only"]["flips"] == 3
    assert on_main["branch"] == "main"
    assert on_main["runs"] == 5


async def test_flaky_all_branches_with_empty_branch(client: Client, tenant_a: Tenant) -> None:
    reporter = Reporter(client, tenant_a)
    await report_history(reporter)

    report = await flaky(reporter, branch="")

    assert report["branch"] is None
    assert report["runs"] == 9
    assert {"t::flips", "t::rerun", "t::feature_only"} <= set(by_key(report))


async def test_flaky_default_branch_is_newest_runs(client: Client, tenant_a: Tenant) -> None:
    reporter = Reporter(client, tenant_a)
    await report_history(reporter)

    report = await flaky(reporter)

    assert report["branch"] == "main"
    assert report["window"] == 20
    assert report["min_flip_rate"] == 0.1
    assert report["min_runs"] == 3
    assert report["min_flips"] == 2


async def test_flaky_window_limits_runs(client: Client, tenant_a: Tenant) -> None:
    reporter = Reporter(client, tenant_a)
    await report_history(reporter)

    # The newest three main runs contain P and F for t::flips (the newest run
    # lacks it), so it ran in two runs, fewer than min_runs 3.
    report = await flaky(reporter, branch="main", window="3")
    relaxed = await flaky(reporter, branch="main", window="3", min_runs="2", min_flips="1")

    assert report["runs"] == 3
    assert "t::flips" not in by_key(report)
    assert by_key(relaxed)["t::flips"]["flip_rate"] == 1.0


async def test_flaky_min_flip_rate_filters(client: Client, tenant_a: Tenant) -> None:
    reporter = Reporter(client, tenant_a)
    for number, outcome in enumerate(("passed", "passed", "passed", "failed", "failed")):
        items = [attempt("t::once") if outcome == "passed" else failure("t::once", "E")]
        await reporter.run(items, started=number * 100.0)

    # One flip over five runs: 1 / 4 = 0.25. min_flips 1 lets a single flip through.
    low = await flaky(reporter, min_flip_rate="0.25", min_flips="1")
    high = await flaky(reporter, min_flip_rate="0.3", min_flips="1")

    assert by_key(low)["t::once"]["flip_rate"] == 0.25
    assert "t::once" not in by_key(high)


async def test_flaky_ignores_interrupted_runs(client: Client, tenant_a: Tenant) -> None:
    reporter = Reporter(client, tenant_a)
    for number, outcome in enumerate(MAIN_OUTCOMES):
        items = [attempt("t::x") if outcome == "passed" else failure("t::x", "E")]
        settle = "interrupted" if outcome == "failed" else "finished"
        await reporter.run(items, started=number * 100.0, settle=settle)

    report = await flaky(reporter)

    assert report["runs"] == 2
    assert report["tests"] == []


async def test_flaky_csv_rows_and_header(client: Client, tenant_a: Tenant) -> None:
    reporter = Reporter(client, tenant_a)
    main_runs = await report_history(reporter)

    response = await client.get(
        f"/api/v1/projects/{tenant_a.key}/flaky",
        params={"branch": "main", "format": "csv"},
        headers=tenant_a.auth("viewer"),
    )
    rows = list(csv.reader(io.StringIO(await response.text())))

    assert response.status == 200
    assert response.content_type == "text/csv"
    assert rows[0] == [
        "case_key",
        "case_name",
        "case_id",
        "flip_rate",
        "flips",
        "runs_seen",
        "passed_on_rerun",
        "last_outcome",
        "last_run_id",
        "evidence_run_ids",
    ]
    flips = next(row for row in rows[1:] if row[0] == "t::flips")
    assert flips[3:9] == ["1.0", "3", "4", "0", "failed", main_runs[-1]]
    assert flips[9].split() == list(reversed(main_runs))
    assert len(rows) == 3


async def test_flaky_csv_guards_formula_cells(client: Client, tenant_a: Tenant) -> None:
    reporter = Reporter(client, tenant_a)
    key = '=HYPERLINK("http://example.invalid")'
    await reporter.run([attempt(key)], started=0.0, collected=[key])
    await reporter.run([failure(key, "E")], started=100.0, collected=[key])
    await reporter.run([attempt(key)], started=200.0, collected=[key])

    response = await client.get(
        f"/api/v1/projects/{tenant_a.key}/flaky",
        params={"format": "csv"},
        headers=tenant_a.auth("viewer"),
    )
    rows = list(csv.reader(io.StringIO(await response.text())))

    assert rows[1][0] == "'" + key
    assert rows[1][1] == "'" + key


@pytest.mark.parametrize("text", ["=1+2", "+1", "-1", "@SUM(A1)", "\tx", "\rx"])
def test_csv_cell_quotes_formula_text(text: str) -> None:
    assert csv_cell(text) == "'" + text


def test_csv_cell_keeps_numbers_and_plain_text() -> None:
    assert csv_cell(-1.5) == -1.5
    assert csv_cell("test_x") == "test_x"
    assert csv_cell(None) == ""


@pytest.mark.parametrize(
    ("query", "parameter", "allowed"),
    [
        ({"window": "1"}, "window", "from 2 to 200"),
        ({"window": "201"}, "window", "from 2 to 200"),
        ({"window": "many"}, "window", "from 2 to 200"),
        ({"min_flip_rate": "1.5"}, "min_flip_rate", "from 0 to 1"),
        ({"min_flip_rate": "nan"}, "min_flip_rate", "from 0 to 1"),
        ({"min_runs": "1"}, "min_runs", "from 2 to 200"),
        ({"min_flips": "0"}, "min_flips", "from 1 to 200"),
        ({"min_flips": "201"}, "min_flips", "from 1 to 200"),
        ({"min_flips": "two"}, "min_flips", "from 1 to 200"),
        ({"limit": "0"}, "limit", "from 1 to 500"),
        ({"format": "xml"}, "format", "json or csv"),
        ({"branch": "b" * 251}, "branch", "at most 250 characters"),
        ({"windw": "3"}, "windw", "unknown query parameter"),
    ],
)
async def test_flaky_rejects_bad_query(
    client: Client, tenant_a: Tenant, query: dict[str, str], parameter: str, allowed: str
) -> None:
    response = await client.get(
        f"/api/v1/projects/{tenant_a.key}/flaky", params=query, headers=tenant_a.auth("viewer")
    )
    body = await response.json()

    assert response.status == 422
    assert parameter in body["error"]["message"]
    assert allowed in body["error"]["message"] + body["error"]["details"][0]["message"]
    assert body["error"]["details"][0]["field"] == parameter


async def test_flaky_unknown_branch_is_empty(client: Client, tenant_a: Tenant) -> None:
    reporter = Reporter(client, tenant_a)
    await report_history(reporter)

    report = await flaky(reporter, branch="no-such-branch")

    assert report["runs"] == 0
    assert report["tests"] == []


# Outcomes per run, oldest first: a fix, a regression, a flaky test, and a
# test that passed on a rerun in the middle run (marked "rerun").
FIX_AND_REGRESSION = {
    "t::fixed": ("failed", "passed", "passed"),
    "t::broken": ("passed", "failed", "failed"),
    "t::flaky": ("passed", "failed", "passed"),
    "t::rerun": ("passed", "rerun", "passed"),
}


async def report_fix_and_regression(reporter: Reporter) -> None:
    for number in range(3):
        items = []
        for key, outcomes in FIX_AND_REGRESSION.items():
            outcome = outcomes[number]
            if outcome == "passed":
                items.append(attempt(key))
            elif outcome == "failed":
                items.append(failure(key, "AssertionError: 1 != 2"))
            else:
                items.append(failure(key, "TimeoutError: slow", number=1))
                items.append(attempt(key, number=2, started=5))
        await reporter.run(items, started=number * 100.0, branch="main")


async def test_flaky_single_flip_not_listed(client: Client, tenant_a: Tenant) -> None:
    reporter = Reporter(client, tenant_a)
    await report_fix_and_regression(reporter)

    listed = by_key(await flaky(reporter))

    assert "t::fixed" not in listed
    assert "t::broken" not in listed
    assert listed["t::flaky"]["flips"] == 2
    assert listed["t::rerun"]["passed_on_rerun"] == 1


async def test_flaky_min_flips_one_lists_fixes(client: Client, tenant_a: Tenant) -> None:
    reporter = Reporter(client, tenant_a)
    await report_fix_and_regression(reporter)

    report = await flaky(reporter, min_flips="1")
    listed = by_key(report)

    assert report["min_flips"] == 1
    assert listed["t::fixed"]["flips"] == 1
    assert listed["t::broken"]["flips"] == 1


async def test_flaky_rerun_listed_despite_min_flips(client: Client, tenant_a: Tenant) -> None:
    reporter = Reporter(client, tenant_a)
    await report_fix_and_regression(reporter)

    listed = by_key(await flaky(reporter, min_flips="200"))

    assert set(listed) == {"t::rerun"}
