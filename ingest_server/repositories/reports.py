"""Queries behind the report pages: projects, run baselines, case history and gate settings.

Every query over tenant data is scoped by ``project_id`` and reads an index:
runs by (project_id, started_at) or (project_id, branch, started_at), one
case's results by (project_id, case_id, run_started_at), one run's rows by
their primary keys.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import and_, select
from sqlalchemy.ext.asyncio import AsyncSession

from ingest_server.db.models import (
    Execution,
    Membership,
    Project,
    ProjectSettings,
    RunResult,
    TestCase,
    TestRun,
)
from ingest_server.repositories.base import chunks, upsert
from ingest_server.repositories.results import check_run_project

FAILING = ("failed", "error")


async def member_projects(session: AsyncSession, user_id: int) -> list[tuple[Project, str]]:
    """Return the projects a user is a member of, with the role, by project key."""
    result = await session.execute(
        select(Project, Membership.role)
        .join(Membership, Membership.project_id == Project.id)
        .where(Membership.user_id == user_id)
        .order_by(Project.key)
    )
    return [(project, role) for project, role in result.all()]


async def get_project(session: AsyncSession, project_id: int) -> Project | None:
    return await session.get(Project, project_id)


async def latest_run(session: AsyncSession, project_id: int) -> TestRun | None:
    result = await session.execute(
        select(TestRun)
        .where(TestRun.project_id == project_id)
        .order_by(TestRun.started_at.desc(), TestRun.id.desc())
        .limit(1)
    )
    return result.scalar_one_or_none()


async def latest_finished_runs(
    session: AsyncSession, project_id: int, limit: int
) -> list[TestRun]:
    result = await session.execute(
        select(TestRun)
        .where(TestRun.project_id == project_id, TestRun.status == "finished")
        .order_by(TestRun.started_at.desc(), TestRun.id.desc())
        .limit(limit)
    )
    return list(result.scalars().all())


async def previous_finished_run(
    session: AsyncSession, project_id: int, run: TestRun
) -> TestRun | None:
    """Return the finished run of the same branch that started last before run.

    A run without a branch is compared with earlier runs without a branch.
    """
    check_run_project(project_id, run)
    branch = TestRun.branch.is_(None) if run.branch is None else TestRun.branch == run.branch
    result = await session.execute(
        select(TestRun)
        .where(
            TestRun.project_id == project_id,
            branch,
            TestRun.status == "finished",
            TestRun.id != run.id,
            TestRun.started_at <= run.started_at,
        )
        .order_by(TestRun.started_at.desc(), TestRun.id.desc())
        .limit(1)
    )
    return result.scalar_one_or_none()


async def cases_by_id(
    session: AsyncSession, project_id: int, case_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, TestCase]:
    cases: dict[uuid.UUID, TestCase] = {}
    for id_chunk in chunks(sorted(set(case_ids))):
        result = await session.execute(
            select(TestCase).where(TestCase.project_id == project_id, TestCase.id.in_(id_chunk))
        )
        cases.update((case.id, case) for case in result.scalars().all())
    return cases


async def executions_by_id(
    session: AsyncSession, project_id: int, execution_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, Execution]:
    executions: dict[uuid.UUID, Execution] = {}
    for id_chunk in chunks(sorted(set(execution_ids))):
        result = await session.execute(
            select(Execution).where(Execution.project_id == project_id, Execution.id.in_(id_chunk))
        )
        executions.update((execution.id, execution) for execution in result.scalars().all())
    return executions


async def reasons_by_execution(
    session: AsyncSession, project_id: int, execution_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, str | None]:
    """Return the skip or xfail reason of each execution, without its larger columns."""
    reasons: dict[uuid.UUID, str | None] = {}
    for id_chunk in chunks(sorted(set(execution_ids))):
        result = await session.execute(
            select(Execution.id, Execution.reason).where(
                Execution.project_id == project_id, Execution.id.in_(id_chunk)
            )
        )
        reasons.update((execution_id, reason) for execution_id, reason in result.all())
    return reasons


async def case_results(
    session: AsyncSession, project_id: int, case_id: uuid.UUID, *, limit: int
) -> list[tuple[RunResult, TestRun]]:
    """Return a case's results in its latest summarized runs, newest first, with each run."""
    result = await session.execute(
        select(RunResult, TestRun)
        .join(
            TestRun,
            and_(TestRun.project_id == RunResult.project_id, TestRun.id == RunResult.run_id),
        )
        .where(RunResult.project_id == project_id, RunResult.case_id == case_id)
        .order_by(RunResult.run_started_at.desc(), RunResult.run_id.desc())
        .limit(limit)
    )
    return [(row, run) for row, run in result.all()]


async def last_failed_execution(
    session: AsyncSession, project_id: int, case_id: uuid.UUID
) -> Execution | None:
    """Return the case's latest failed or errored attempt, reruns and running runs included."""
    result = await session.execute(
        select(Execution)
        .where(
            Execution.project_id == project_id,
            Execution.case_id == case_id,
            Execution.outcome.in_(FAILING),
        )
        .order_by(Execution.started_at.desc(), Execution.id.desc())
        .limit(1)
    )
    return result.scalar_one_or_none()


async def get_gate(session: AsyncSession, project_id: int) -> dict[str, Any] | None:
    settings = await session.get(ProjectSettings, project_id)
    return dict(settings.gate) if settings is not None and settings.gate else None


async def save_gate(
    session: AsyncSession, project_id: int, gate: dict[str, Any], *, now: dt.datetime
) -> None:
    """Store the project's gate rules, keeping its other settings."""
    statement = upsert(session, ProjectSettings.__table__).values(
        project_id=project_id, gate=gate, reports={}, updated_at=now
    )
    statement = statement.on_conflict_do_update(
        index_elements=["project_id"],
        set_={"gate": statement.excluded.gate, "updated_at": statement.excluded.updated_at},
    )
    await session.execute(statement)
