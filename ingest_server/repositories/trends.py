"""Queries behind the reports over many runs: flaky tests, slow tests and trends.

They read the materialized ``run_summaries`` and ``run_results`` rows, never
executions: a window of runs comes from the ``test_runs`` indexes on
(project_id, started_at) or (project_id, branch, started_at), and its results
from the ``run_results`` primary key, which leads with (project_id, run_id).
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import String, cast, select
from sqlalchemy.ext.asyncio import AsyncSession

from ingest_server.db.models import RunResult, RunSummary, TestCase, TestRun
from ingest_server.repositories.base import chunks

# Runs whose results are complete enough to compare with each other.
SETTLED = ("finished", "interrupted")
FAILING = ("failed", "error")
# How many recent runs are read to list branches for a filter.
BRANCH_SCAN = 500


@dataclass(frozen=True)
class WindowRun:
    """A run of a report's window, with what the reports show of it."""

    id: uuid.UUID
    name: str | None
    status: str
    started_at: dt.datetime
    finished_at: dt.datetime | None
    branch: str | None
    commit: str | None


@dataclass(frozen=True)
class CaseName:
    key: str
    name: str | None


@dataclass(frozen=True)
class Result:
    """One case's final result in one run."""

    run_id: uuid.UUID
    case_id: uuid.UUID
    outcome: str
    attempts: int
    passed_on_rerun: bool
    duration: float | None
    execution_id: uuid.UUID | None


async def latest_branch(session: AsyncSession, project_id: int) -> str | None:
    """Return the branch of the newest settled run, or None without one or without a branch."""
    result = await session.execute(
        select(TestRun.branch)
        .where(TestRun.project_id == project_id, TestRun.status.in_(SETTLED))
        .order_by(TestRun.started_at.desc(), TestRun.id.desc())
        .limit(1)
    )
    row = result.first()
    return None if row is None else row.branch


async def window_runs(
    session: AsyncSession,
    project_id: int,
    *,
    branch: str | None,
    statuses: Sequence[str],
    limit: int,
) -> list[WindowRun]:
    """Return the newest runs with one of statuses, newest first.

    A branch of None reads the runs of every branch.
    """
    query = select(
        TestRun.id,
        TestRun.name,
        TestRun.status,
        TestRun.started_at,
        TestRun.finished_at,
        TestRun.branch,
        TestRun.commit,
    ).where(TestRun.project_id == project_id, TestRun.status.in_(statuses))
    if branch is not None:
        query = query.where(TestRun.branch == branch)
    query = query.order_by(TestRun.started_at.desc(), TestRun.id.desc()).limit(limit)
    result = await session.execute(query)
    return [WindowRun(**row._mapping) for row in result.all()]


async def summaries(
    session: AsyncSession, project_id: int, run_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, RunSummary]:
    found: dict[uuid.UUID, RunSummary] = {}
    for id_chunk in chunks(run_ids):
        result = await session.execute(
            select(RunSummary).where(
                RunSummary.project_id == project_id, RunSummary.run_id.in_(id_chunk)
            )
        )
        for summary in result.scalars():
            found[summary.run_id] = summary
    return found


async def failing_cases(
    session: AsyncSession, project_id: int, run_ids: Sequence[uuid.UUID]
) -> list[uuid.UUID]:
    """Return the cases that failed, errored or passed on a rerun in any of the given runs.

    Only those cases can flip or count reruns, so the steady ones never
    reach Python. The query has no GROUP BY or DISTINCT on purpose. With
    either, SQLite 3.40 without ANALYZE statistics reads the whole project
    through the (project_id, case_id, run_started_at) index instead of the
    window's runs through the primary key, which took seconds at a million
    results.
    """
    if not run_ids:
        return []
    result = await session.execute(
        select(RunResult.case_id).where(
            RunResult.project_id == project_id,
            RunResult.run_id.in_(run_ids),
            RunResult.outcome.in_(FAILING) | RunResult.passed_on_rerun.is_(True),
        )
    )
    return list(dict.fromkeys(result.scalars()))


async def results(
    session: AsyncSession,
    project_id: int,
    run_ids: Sequence[uuid.UUID],
    *,
    case_ids: Sequence[uuid.UUID] | None = None,
) -> list[Result]:
    """Return the final results of the given runs, of the given cases only if case_ids is set."""
    if not run_ids:
        return []
    columns = (
        RunResult.run_id,
        RunResult.case_id,
        RunResult.outcome,
        RunResult.attempts,
        RunResult.passed_on_rerun,
        RunResult.duration,
        RunResult.execution_id,
    )
    base = select(*columns).where(
        RunResult.project_id == project_id, RunResult.run_id.in_(run_ids)
    )
    if case_ids is None:
        return [Result(**row._mapping) for row in (await session.execute(base)).all()]
    rows: list[Result] = []
    for id_chunk in chunks(case_ids):
        query = base.where(RunResult.case_id.in_(id_chunk))
        rows.extend(Result(**row._mapping) for row in (await session.execute(query)).all())
    return rows


async def passed_durations(
    session: AsyncSession, project_id: int, run_ids: Sequence[uuid.UUID]
) -> dict[str, list[tuple[int, float]]]:
    """Return (position of the run in run_ids, duration) of each passed result, by case id.

    The case ids are text, cast by the database, because this reads one row
    per case and run: turning 19,000 ids into UUID objects made the read
    about 70 % slower on SQLite. One query per run keeps each query on the
    primary key.
    """
    samples: dict[str, list[tuple[int, float]]] = {}
    for position, run_id in enumerate(run_ids):
        result = await session.execute(
            select(cast(RunResult.case_id, String), RunResult.duration).where(
                RunResult.project_id == project_id,
                RunResult.run_id == run_id,
                RunResult.outcome == "passed",
            )
        )
        for case_id, duration in result.all():
            if duration is not None:
                samples.setdefault(case_id, []).append((position, duration))
    return samples


async def case_names(
    session: AsyncSession, project_id: int, case_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, CaseName]:
    names: dict[uuid.UUID, CaseName] = {}
    for id_chunk in chunks(case_ids):
        result = await session.execute(
            select(TestCase.id, TestCase.key, TestCase.name).where(
                TestCase.project_id == project_id, TestCase.id.in_(id_chunk)
            )
        )
        for case_id, key, name in result.all():
            names[case_id] = CaseName(key=key, name=name)
    return names


async def recent_branches(session: AsyncSession, project_id: int) -> list[str]:
    """Return the branches of the project's recent runs, most recently run first."""
    result = await session.execute(
        select(TestRun.branch)
        .where(TestRun.project_id == project_id, TestRun.branch.is_not(None))
        .order_by(TestRun.started_at.desc(), TestRun.id.desc())
        .limit(BRANCH_SCAN)
    )
    return list(dict.fromkeys(branch for branch in result.scalars() if branch is not None))
