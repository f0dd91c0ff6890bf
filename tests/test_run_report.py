"""The run report, comparison and quality gate over known runs, on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

from tests.conftest import Tenant
from tests.run_data import Client, Reporter, attempt, failure


def keys(items: list[dict[str, Any]]) -> list[str]:
    """Return the case keys of report items, or of case references themselves."""
    return [item["case"]["key"] if "case" in item else item["key"] for item in items]


async def seed_history(reporter: Reporter) -> tuple[str, str, str]:
    """Report a finished base run on main, a feature-branch run, and a head run on main."""
    base = await reporter.run(
        [
            attempt("t::steady"),
            failure("t::old_bug", "ValueError: bad 1"),
            attempt("t::will_break"),
            failure("t::gets_fixed", "KeyError: 'a'"),
            attempt("t::removed", duration=1.0),
            attempt("t::slows", duration=1.0),
        ],
        started=0,
    )
    await reporter.run(
        [attempt("t::steady"), attempt("t::new_elsewhere")], started=100, branch="dev"
    )
    head = await reporter.run(
        [
            attempt("t::steady"),
            failure("t::old_bug", "ValueError: bad 2"),
            failure("t::will_break", "ValueError: bad 3"),
            attempt("t::gets_fixed"),
            failure("t::added", "TimeoutError: after 5 s"),
            attempt("t::slows", duration=4.0),
            failure("t::flaky", "OSError: x", number=1),
            attempt("t::flaky", number=2, started=2),
            attempt("t::skips", "skipped", reason="needs GPU"),
        ],
        started=200,
    )
    running = await reporter.run([failure("t::steady", "ValueError: 9")], started=300, settle=None)
    return base, head, running


async def test_new_failures_against_same_branch(client: Client, tenant_a: Tenant) -> None:
    reporter = Reporter(client, tenant_a)
    base, head, _ = await seed_history(reporter)

    report = await reporter.get_json(f"/runs/{head}/report")

    assert report["baseline"]["id"] == base
    assert keys(report["new_failures"]) == ["t::added", "t::will_break"]
    assert report["new_failure_count"] == 2
    assert report["new_failures"][0]["previous_outcome"] is None
    assert report["new_failures"][1]["previous_outcome"] == "passed"


async def test_failure_groups_count_causes(client: Client, tenant_a: Tenant) -> None:
    reporter = Reporter(client, tenant_a)
    _, head, _ = await seed_history(reporter)

    report = await reporter.get_json(f"/runs/{head}/report")
    groups = report["failure_groups"]

    assert [group["count"] for group in groups] == [2, 1]
    assert groups[0]["exception_type"] == "ValueError"
    assert keys(groups[0]["tests"]) == ["t::old_bug", "t::will_break"]
    assert groups[0]["traceback"] is not None
    assert groups[1]["exception_type"] == "TimeoutError"


async def test_run_report_lists(client: Client, tenant_a: Tenant) -> None:
    reporter = Reporter(client, tenant_a)
    _, head, _ = await seed_history(reporter)

    report = await reporter.get_json(f"/runs/{head}/report")

    assert report["summarized"] is True
    assert report["run"]["counts"]["failed"] == 3
    assert report["run"]["pass_rate"] == 4 / 7
    assert keys(report["passed_on_rerun"]) == ["t::flaky"]
    assert report["slowest"][0]["case"]["key"] == "t::slows"
    assert report["skipped"][0]["reason"] == "needs GPU"


async def test_running_run_report_computed(client: Client, tenant_a: Tenant) -> None:
    reporter = Reporter(client, tenant_a)
    _, head, running = await seed_history(reporter)

    report = await reporter.get_json(f"/runs/{running}/report")

    assert report["summarized"] is False
    assert report["run"]["counts"]["failed"] == 1
    assert report["baseline"]["id"] == head


async def test_compare_categories(client: Client, tenant_a: Tenant) -> None:
    reporter = Reporter(client, tenant_a)
    base, head, _ = await seed_history(reporter)

    comparison = await reporter.get_json("/compare", base=base, head=head)

    assert keys(comparison["new_failures"]) == ["t::added", "t::will_break"]
    assert keys(comparison["fixed"]) == ["t::gets_fixed"]
    assert keys(comparison["still_failing"]) == ["t::old_bug"]
    assert keys(comparison["added"]) == ["t::added", "t::flaky", "t::skips"]
    assert keys(comparison["removed"]) == ["t::removed"]
    assert comparison["slower"][0]["case"]["key"] == "t::slows"
    assert comparison["slower"][0]["change"] == 3.0
    assert comparison["counts"]["new_failures"] == 2


async def test_compare_defaults_to_latest(client: Client, tenant_a: Tenant) -> None:
    reporter = Reporter(client, tenant_a)
    base, head, _ = await seed_history(reporter)

    comparison = await reporter.get_json("/compare")

    assert comparison["head"]["id"] == head
    assert comparison["base"]["id"] == base


async def test_compare_rejects_bad_uuid(client: Client, tenant_a: Tenant) -> None:
    response = await client.get(
        f"/api/v1/projects/{tenant_a.key}/compare",
        params={"base": "nope"},
        headers=tenant_a.auth("viewer"),
    )
    body = await response.json()

    assert response.status == 422
    assert "'nope'" in body["error"]["message"]
    assert body["error"]["details"][0]["field"] == "base"


async def test_gate_verdicts(client: Client, tenant_a: Tenant) -> None:
    reporter = Reporter(client, tenant_a)
    _, head, running = await seed_history(reporter)

    rules = await reporter.get_json("/gate")
    head_verdict = await reporter.get_json(f"/runs/{head}/gate")
    running_verdict = await reporter.get_json(f"/runs/{running}/gate")

    assert rules == {"no_new_failures": True, "min_pass_rate": None, "max_failed": None}
    assert head_verdict["passed"] is False
    assert head_verdict["rules"][0]["rule"] == "no_new_failures"
    assert head_verdict["rules"][0]["actual"] == 2
    assert running_verdict["passed"] is False
    assert "still running" in running_verdict["reason"]


async def test_gate_edit_needs_maintainer(client: Client, tenant_a: Tenant) -> None:
    response = await client.put(
        f"/api/v1/projects/{tenant_a.key}/gate",
        json={"no_new_failures": False, "min_pass_rate": 90},
        headers=tenant_a.auth("reporter"),
    )

    assert response.status == 403


async def test_runs_csv_guards_formulas(client: Client, tenant_a: Tenant) -> None:
    reporter = Reporter(client, tenant_a)
    await reporter.run([attempt("t::a"), failure("t::b", "E: x")], name="=HYPERLINK(1)")

    response = await client.get(
        f"/api/v1/projects/{tenant_a.key}/runs",
        params={"format": "csv"},
        headers=tenant_a.auth("viewer"),
    )
    lines = (await response.text()).splitlines()

    assert response.status == 200
    assert response.content_type == "text/csv"
    assert lines[0].startswith("id,name,run_key,status")
    assert ",'=HYPERLINK(1)," in lines[1]
    assert lines[1].endswith(",0.5")


async def test_runs_text_filter(client: Client, tenant_a: Tenant) -> None:
    reporter = Reporter(client, tenant_a)
    await reporter.run([attempt("t::a")], name="nightly 100%", started=0)
    await reporter.run([attempt("t::a")], name="nightly 1000", started=10)

    page = await reporter.get_json("/runs", q="100%")

    assert [run["name"] for run in page["items"]] == ["nightly 100%"]


async def test_running_report_pending_not_run(client: Client, tenant_a: Tenant) -> None:
    reporter = Reporter(client, tenant_a)
    run_id = await reporter.run([attempt("t::a")], collected=["t::a", "t::b", "t::c"], settle=None)

    report = await reporter.get_json(f"/runs/{run_id}/report")

    assert report["run"]["counts"]["not_run"] == 0
    assert report["run"]["counts"]["passed"] == 1
    assert report["pending"] == 2
    assert report["not_run"] == []


async def test_settled_report_counts_not_run(client: Client, tenant_a: Tenant) -> None:
    reporter = Reporter(client, tenant_a)
    run_id = await reporter.run([attempt("t::a")], collected=["t::a", "t::b"])

    report = await reporter.get_json(f"/runs/{run_id}/report")

    assert report["run"]["counts"]["not_run"] == 1
    assert report["pending"] == 0
    assert keys(report["not_run"]) == ["t::b"]


async def test_slowest_only_executed_timed(client: Client, tenant_a: Tenant) -> None:
    reporter = Reporter(client, tenant_a)
    run_id = await reporter.run(
        [
            attempt("t::slow", duration=0.5),
            attempt("t::fast", duration=0.0004),
            attempt("t::zero", duration=0.0),
            attempt("t::skips", "skipped", duration=2.0, reason="no GPU"),
        ]
    )

    report = await reporter.get_json(f"/runs/{run_id}/report")

    assert keys(report["slowest"]) == ["t::slow", "t::fast"]


async def test_compare_lists_real_duration_changes(client: Client, tenant_a: Tenant) -> None:
    reporter = Reporter(client, tenant_a)
    base = await reporter.run(
        [
            attempt("t::noise", duration=0.0003),
            attempt("t::ratio", duration=1.0),
            attempt("t::big", duration=1.0),
            attempt("t::bigger", duration=0.5),
            attempt("t::faster", duration=2.0),
            attempt("t::skips", "skipped", duration=0.1),
        ],
        started=0,
    )
    head = await reporter.run(
        [
            attempt("t::noise", duration=0.0009),
            attempt("t::ratio", duration=1.1),
            attempt("t::big", duration=3.0),
            attempt("t::bigger", duration=4.0),
            attempt("t::faster", duration=0.5),
            attempt("t::skips", "skipped", duration=2.0),
        ],
        started=100,
    )

    comparison = await reporter.get_json("/compare", base=base, head=head)

    assert keys(comparison["slower"]) == ["t::bigger", "t::big"]
    assert keys(comparison["faster"]) == ["t::faster"]


async def test_gate_verdict_names_runs(client: Client, tenant_a: Tenant) -> None:
    reporter = Reporter(client, tenant_a)
    await reporter.run([attempt("t::a")], name="nightly 1", started=0)
    head = await reporter.run([failure("t::a", "E: x")], name="nightly 2", started=100)

    verdict = await reporter.get_json(f"/runs/{head}/gate")

    assert verdict["run"]["name"] == "nightly 2"
    assert "nightly 1" in verdict["rules"][0]["detail"]
    assert reporter.run_ids[0] not in verdict["rules"][0]["detail"]


async def test_case_last_failure_names_run(client: Client, tenant_a: Tenant) -> None:
    reporter = Reporter(client, tenant_a)
    run_id = await reporter.run([failure("t::a", "E: x")], name="nightly 7")
    report = await reporter.get_json(f"/runs/{run_id}/report")
    case_id = report["failure_groups"][0]["tests"][0]["id"]

    case = await reporter.get_json(f"/cases/{case_id}/report")

    assert case["last_failure"]["run"]["name"] == "nightly 7"
    assert case["last_failure"]["run_id"] == run_id
