"""Materialized run results: one summary row per run and one result row per case and run.

``summarize_run`` rebuilds both from the run's executions and collected
cases. Reports over many runs read these rows through their indexes instead
of scanning executions.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from ingest_server.db.models import Execution, RunCase, RunResult, RunSummary, TestRun
from ingest_server.fingerprint import exception_type, fingerprint
from ingest_server.repositories.base import chunks

FAILING = frozenset({"failed", "error"})
SUMMARY_OUTCOMES = ("passed", "failed", "error", "skipped", "xfailed", "xpassed", "not_run")


@dataclass
class _CaseAttempts:
    """The executions of one case in one run, as summarizing needs them."""

    final: Any  # the row of the final attempt
    attempts: int = 0
    failed_before: bool = False


def is_final_before(candidate: Any, current: Any) -> bool:
    """Return True when current is a later attempt than candidate.

    The final attempt has the highest attempt number. Equal numbers, from the
    same test on several workers, are ordered by start time, then id.
    """
    return (candidate.attempt, candidate.started_at, candidate.id) < (
        current.attempt,
        current.started_at,
        current.id,
    )


def final_attempts(rows: Iterable[Any]) -> dict[uuid.UUID, _CaseAttempts]:
    """Group execution rows by case and pick each case's final attempt.

    Each row needs case_id, id, attempt, started_at and outcome. A case
    counts as failed before its final attempt when any other attempt failed
    or errored.
    """
    cases: dict[uuid.UUID, _CaseAttempts] = {}
    failures: dict[uuid.UUID, int] = {}
    for row in rows:
        state = cases.get(row.case_id)
        if state is None:
            state = cases[row.case_id] = _CaseAttempts(final=row)
        elif is_final_before(state.final, row):
            state.final = row
        state.attempts += 1
        failures[row.case_id] = failures.get(row.case_id, 0) + (row.outcome in FAILING)
    for case_id, state in cases.items():
        final_failed = state.final.outcome in FAILING
        state.failed_before = failures[case_id] - final_failed > 0
    return cases


async def _attempt_rows(session: AsyncSession, project_id: int, run_id: uuid.UUID) -> Any:
    result = await session.execute(
        select(
            Execution.case_id,
            Execution.id,
            Execution.attempt,
            Execution.started_at,
            Execution.outcome,
            Execution.duration,
        ).where(Execution.project_id == project_id, Execution.run_id == run_id)
    )
    return result.all()


async def _failure_texts(
    session: AsyncSession, project_id: int, execution_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, tuple[str | None, str | None]]:
    """Return message and traceback of the given executions, read only for failures."""
    texts: dict[uuid.UUID, tuple[str | None, str | None]] = {}
    for id_chunk in chunks(execution_ids):
        result = await session.execute(
            select(Execution.id, Execution.message, Execution.traceback).where(
                Execution.project_id == project_id, Execution.id.in_(id_chunk)
            )
        )
        for execution_id, message, traceback in result.all():
            texts[execution_id] = (message, traceback)
    return texts


async def _collected_case_ids(
    session: AsyncSession, project_id: int, run_id: uuid.UUID
) -> list[uuid.UUID]:
    result = await session.execute(
        select(RunCase.case_id).where(RunCase.project_id == project_id, RunCase.run_id == run_id)
    )
    return list(result.scalars().all())


def _result_rows(
    run: TestRun,
    cases: dict[uuid.UUID, _CaseAttempts],
    texts: dict[uuid.UUID, tuple[str | None, str | None]],
    not_run: Iterable[uuid.UUID],
) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for case_id, state in cases.items():
        final = state.final
        exception = cause = None
        if final.outcome in FAILING:
            message, traceback = texts.get(final.id, (None, None))
            exception = exception_type(message, traceback)
            cause = fingerprint(exception, message, traceback)
        rows.append(
            {
                "project_id": run.project_id,
                "run_id": run.id,
                "case_id": case_id,
                "outcome": final.outcome,
                "attempts": state.attempts,
                "passed_on_rerun": final.outcome == "passed" and state.failed_before,
                "duration": final.duration,
                "execution_id": final.id,
                "exception_type": exception,
                "fingerprint": cause,
                "run_started_at": run.started_at,
                "branch": run.branch,
            }
        )
    for case_id in not_run:
        rows.append(
            {
                "project_id": run.project_id,
                "run_id": run.id,
                "case_id": case_id,
                "outcome": "not_run",
                "attempts": 0,
                "passed_on_rerun": False,
                "duration": None,
                "execution_id": None,
                "exception_type": None,
                "fingerprint": None,
                "run_started_at": run.started_at,
                "branch": run.branch,
            }
        )
    return rows


def _summary_row(run: TestRun, rows: Sequence[dict[str, Any]], now: dt.datetime) -> dict[str, Any]:
    counts = dict.fromkeys(SUMMARY_OUTCOMES, 0)
    for row in rows:
        counts[row["outcome"]] = counts.get(row["outcome"], 0) + 1
    return {
        "project_id": run.project_id,
        "run_id": run.id,
        "total": len(rows),
        **counts,
        "passed_on_rerun": sum(1 for row in rows if row["passed_on_rerun"]),
        "test_duration": sum(row["duration"] or 0.0 for row in rows),
        "summarized_at": now,
    }


async def delete_summary(session: AsyncSession, project_id: int, run_id: uuid.UUID) -> None:
    """Delete a run's summary and results, as for a run that is running again."""
    await session.execute(
        delete(RunResult).where(RunResult.project_id == project_id, RunResult.run_id == run_id)
    )
    await session.execute(
        delete(RunSummary).where(RunSummary.project_id == project_id, RunSummary.run_id == run_id)
    )


async def unsummarized_runs(session: AsyncSession, project_id: int, limit: int) -> list[uuid.UUID]:
    """Return up to limit settled runs of the project that have no summary yet."""
    summarized = select(RunSummary.run_id).where(
        RunSummary.project_id == project_id, RunSummary.run_id == TestRun.id
    )
    result = await session.execute(
        select(TestRun.id)
        .where(
            TestRun.project_id == project_id,
            TestRun.status.in_(("finished", "interrupted")),
            ~summarized.exists(),
        )
        .order_by(TestRun.started_at)
        .limit(limit)
    )
    return list(result.scalars().all())


def check_run_project(project_id: int, run: TestRun) -> None:
    """Refuse a run loaded from another project than the one the caller is scoped to."""
    if run.project_id != project_id:
        raise ValueError(f"run {run.id} belongs to project {run.project_id}, not {project_id}")


async def compute_results(
    session: AsyncSession, project_id: int, run: TestRun
) -> list[dict[str, Any]]:
    """Return the run's result rows, as dicts of RunResult columns, from its executions.

    The last attempt of each case decides its outcome. A collected case
    without executions is ``not_run``.
    """
    check_run_project(project_id, run)
    cases = final_attempts(await _attempt_rows(session, project_id, run.id))
    failing = [state.final.id for state in cases.values() if state.final.outcome in FAILING]
    texts = await _failure_texts(session, project_id, failing)
    collected = await _collected_case_ids(session, project_id, run.id)
    not_run = [case_id for case_id in collected if case_id not in cases]
    return _result_rows(run, cases, texts, not_run)


async def summarize_run(
    session: AsyncSession, project_id: int, run_id: uuid.UUID, *, now: dt.datetime | None = None
) -> None:
    """Rebuild the run's summary row and result rows from its executions and collected cases.

    Runs inside the caller's transaction, so readers see either the old rows
    or the new ones.
    """
    run = await session.get(TestRun, (project_id, run_id))
    if run is None:
        raise LookupError(f"run {run_id} not found in project {project_id}")
    rows = await compute_results(session, project_id, run)
    summarized_at = now or dt.datetime.now(dt.UTC)

    await delete_summary(session, project_id, run_id)
    for row_chunk in chunks(rows):
        await session.execute(insert(RunResult), list(row_chunk))
    await session.execute(insert(RunSummary), [_summary_row(run, rows, summarized_at)])


async def run_results(
    session: AsyncSession, project_id: int, run: TestRun
) -> list[dict[str, Any]]:
    """Return the run's result rows: stored ones once it is summarized, else computed.

    A running run, or a settled run summarized by no one yet, is computed
    from its executions.
    """
    check_run_project(project_id, run)
    if run.status == "running" or await get_summary(session, project_id, run.id) is None:
        return await compute_results(session, project_id, run)
    result = await session.execute(
        select(RunResult.__table__).where(
            RunResult.project_id == project_id, RunResult.run_id == run.id
        )
    )
    # Zipping plain rows with the column names once is several times cheaper
    # than a RowMapping per row, and a run has thousands of rows.
    columns = tuple(result.keys())
    return [dict(zip(columns, row, strict=True)) for row in result.all()]


async def get_summary(
    session: AsyncSession, project_id: int, run_id: uuid.UUID
) -> RunSummary | None:
    return await session.get(RunSummary, (project_id, run_id))


async def summaries_by_run(
    session: AsyncSession, project_id: int, run_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, RunSummary]:
    """Return the summaries of the given runs that have one, by run id."""
    summaries: dict[uuid.UUID, RunSummary] = {}
    for id_chunk in chunks(run_ids):
        result = await session.execute(
            select(RunSummary).where(
                RunSummary.project_id == project_id, RunSummary.run_id.in_(id_chunk)
            )
        )
        for summary in result.scalars().all():
            summaries[summary.run_id] = summary
    return summaries
