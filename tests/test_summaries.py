"""Materialized run summaries and results, built from known runs on SQLite and PostgreSQL."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from sqlalchemy import select

from ingest_server.db.models import RunResult, RunSummary, TestCase
from ingest_server.repositories import results as result_repo
from ingest_server.services.container import Services
from ingest_server.services.context import OPERATOR, Principal, RequestContext
from ingest_server.services.errors import NotFound
from ingest_server.services.summaries import pass_rate
from tests.conftest import Tenant
from tests.run_data import Client, Reporter, attempt, failure


async def read_summary(services: Services, tenant: Tenant, run_id: str) -> RunSummary | None:
    async with services.database.read() as session:
        return await session.get(RunSummary, (tenant.project_id, uuid.UUID(run_id)))


async def read_results(services: Services, tenant: Tenant, run_id: str) -> dict[str, RunResult]:
    """Return the run's result rows by case key."""
    async with services.database.read() as session:
        rows = await session.execute(
            select(TestCase.key, RunResult)
            .join(
                TestCase,
                (TestCase.project_id == RunResult.project_id) & (TestCase.id == RunResult.case_id),
            )
            .where(
                RunResult.project_id == tenant.project_id,
                RunResult.run_id == uuid.UUID(run_id),
            )
        )
        return {key: result for key, result in rows.all()}


def rerun_items() -> list[dict[str, Any]]:
    return [
        attempt("t::passes", "passed", duration=1.0),
        failure("t::flaky", "AssertionError: 1 != 2", number=1, duration=2.0),
        attempt("t::flaky", "passed", number=2, started=5, duration=3.0),
        attempt("t::fixed_late", "passed", number=1, duration=0.5),
        failure("t::fixed_late", "ValueError: bad 7", number=2, started=5, duration=0.5),
        attempt("t::skips", "skipped", duration=0.0, reason="not on CI"),
        failure("t::breaks", "ConnectionError: refused", outcome="error", duration=0.25),
    ]


async def test_summary_counts_final_attempts(
    client: Client, tenant_a: Tenant, services: Services
) -> None:
    reporter = Reporter(client, tenant_a)
    run_id = await reporter.run(rerun_items(), collected=["t::passes", "t::never"])

    summary = await read_summary(services, tenant_a, run_id)

    assert summary is not None
    assert summary.total == 6
    assert summary.passed == 2
    assert summary.failed == 1
    assert summary.error == 1
    assert summary.skipped == 1
    assert summary.not_run == 1
    assert summary.passed_on_rerun == 1
    # The final attempts' durations: 1.0 + 3.0 + 0.5 + 0.0 + 0.25.
    assert summary.test_duration == 4.75


async def test_results_final_attempt_decides(
    client: Client, tenant_a: Tenant, services: Services
) -> None:
    reporter = Reporter(client, tenant_a)
    run_id = await reporter.run(rerun_items(), collected=["t::never"], branch="feature/x")

    results = await read_results(services, tenant_a, run_id)

    assert results["t::flaky"].outcome == "passed"
    assert results["t::flaky"].passed_on_rerun is True
    assert results["t::flaky"].attempts == 2
    assert results["t::flaky"].duration == 3.0
    assert results["t::fixed_late"].outcome == "failed"
    assert results["t::fixed_late"].passed_on_rerun is False
    assert results["t::fixed_late"].exception_type == "ValueError"
    assert results["t::passes"].passed_on_rerun is False
    assert results["t::breaks"].exception_type == "ConnectionError"
    assert results["t::breaks"].fingerprint is not None
    assert results["t::never"].outcome == "not_run"
    assert results["t::never"].attempts == 0
    assert results["t::never"].execution_id is None
    assert results["t::passes"].branch == "feature/x"
    assert results["t::passes"].fingerprint is None


async def test_running_run_has_no_summary(
    client: Client, tenant_a: Tenant, services: Services
) -> None:
    reporter = Reporter(client, tenant_a)
    run_id = await reporter.run([attempt("t::a")], settle=None)

    assert await read_summary(services, tenant_a, run_id) is None
    assert await read_results(services, tenant_a, run_id) == {}


async def test_interrupted_run_is_summarized(
    client: Client, tenant_a: Tenant, services: Services
) -> None:
    reporter = Reporter(client, tenant_a)
    run_id = await reporter.run(
        [attempt("t::a")], collected=["t::a", "t::b"], settle="interrupted"
    )

    summary = await read_summary(services, tenant_a, run_id)

    assert summary is not None
    assert summary.passed == 1
    assert summary.not_run == 1


async def test_late_executions_rebuild_summary(
    client: Client, tenant_a: Tenant, services: Services
) -> None:
    reporter = Reporter(client, tenant_a)
    run_id = await reporter.run([attempt("t::a")], collected=["t::a", "t::b"])

    await reporter.send(run_id, [failure("t::b", "KeyError: 'x'")])
    summary = await read_summary(services, tenant_a, run_id)
    results = await read_results(services, tenant_a, run_id)

    assert summary is not None
    assert summary.not_run == 0
    assert summary.failed == 1
    assert results["t::b"].exception_type == "KeyError"


async def test_late_collected_cases_rebuild_summary(
    client: Client, tenant_a: Tenant, services: Services
) -> None:
    reporter = Reporter(client, tenant_a)
    run_id = await reporter.run([attempt("t::a")])

    await reporter.collect(run_id, ["t::a", "t::c"])
    summary = await read_summary(services, tenant_a, run_id)

    assert summary is not None
    assert summary.total == 2
    assert summary.not_run == 1


async def test_joining_shard_drops_summary(
    client: Client, tenant_a: Tenant, services: Services
) -> None:
    reporter = Reporter(client, tenant_a)
    run_id = await reporter.run([attempt("t::a")], run_key="ci-42")
    assert await read_summary(services, tenant_a, run_id) is not None

    joined = await reporter.start(run_key="ci-42")

    assert joined == run_id
    assert await read_summary(services, tenant_a, run_id) is None
    assert await read_results(services, tenant_a, run_id) == {}


async def test_summarize_service_rebuilds(
    client: Client, tenant_a: Tenant, services: Services
) -> None:
    reporter = Reporter(client, tenant_a)
    run_id = await reporter.run([attempt("t::a"), attempt("t::b", "failed")], settle=None)

    await services.summaries.summarize(tenant_a.project_id, uuid.UUID(run_id))
    summary = await read_summary(services, tenant_a, run_id)

    assert summary is not None
    assert summary.passed == 1
    assert summary.failed == 1


async def test_backfill_summarizes_old_runs(
    client: Client, tenant_a: Tenant, services: Services
) -> None:
    """A settled run without a summary, as after an upgrade, gets one from the backfill."""
    reporter = Reporter(client, tenant_a)
    old_run = await reporter.run([attempt("t::a"), attempt("t::b", "failed")])
    running = await reporter.run([attempt("t::a")], settle=None)
    async with services.database.write() as session:
        await result_repo.delete_summary(session, tenant_a.project_id, uuid.UUID(old_run))
    operator = RequestContext(request_id="test", principal=OPERATOR)

    first = await services.summaries.backfill(operator)
    second = await services.summaries.backfill(operator)
    summary = await read_summary(services, tenant_a, old_run)

    assert first == 1
    assert second == 0
    assert summary is not None
    assert summary.passed == 1
    assert summary.failed == 1
    assert await read_summary(services, tenant_a, running) is None


async def test_backfill_needs_operator(services: Services) -> None:
    ctx = RequestContext(request_id="test", principal=Principal(kind="user", id="user:1"))

    with pytest.raises(NotFound):
        await services.summaries.backfill(ctx)


def test_pass_rate_ignores_skips_and_not_run() -> None:
    totals = {"passed": 3, "failed": 1, "skipped": 5, "xfailed": 2, "not_run": 4}

    assert pass_rate(totals) == 0.75


def test_pass_rate_without_verdicts_is_none() -> None:
    assert pass_rate({"skipped": 2}) is None
