"""Queries over runs, their sessions and their computed totals."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, case, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from ingest_server.db.models import Execution, RunCase, RunSession, TestRun
from ingest_server.repositories.base import AlreadyExists, upsert


@dataclass(frozen=True)
class RunStats:
    """Figures of one run computed from its executions."""

    totals: dict[str, int]
    tests: int
    attempts: int
    passed_on_rerun: int


async def get_run(session: AsyncSession, project_id: int, run_id: uuid.UUID) -> TestRun | None:
    return await session.get(TestRun, (project_id, run_id))


async def get_run_by_key(session: AsyncSession, project_id: int, run_key: str) -> TestRun | None:
    result = await session.execute(
        select(TestRun).where(TestRun.project_id == project_id, TestRun.run_key == run_key)
    )
    return result.scalar_one_or_none()


async def get_session(
    session: AsyncSession, project_id: int, client_run_id: str
) -> RunSession | None:
    return await session.get(RunSession, (project_id, client_run_id))


async def list_sessions(
    session: AsyncSession, project_id: int, run_id: uuid.UUID
) -> Sequence[RunSession]:
    result = await session.execute(
        select(RunSession).where(RunSession.project_id == project_id, RunSession.run_id == run_id)
    )
    return result.scalars().all()


async def insert_run(session: AsyncSession, project_id: int, **values: Any) -> TestRun:
    """Insert a run; raise AlreadyExists when its run key is taken.

    ON CONFLICT DO NOTHING waits for a concurrent insert of the same key to
    commit and then skips the row, so the caller can read and join that run.
    """
    table = TestRun.__table__
    statement = (
        upsert(session, table)
        .values(project_id=project_id, **values)
        .on_conflict_do_nothing()
        .returning(table.c.id)
    )
    inserted = (await session.execute(statement)).scalar_one_or_none()
    if inserted is None:
        raise AlreadyExists(f"run key {values.get('run_key')!r} already exists")
    run = await session.get(TestRun, (project_id, inserted))
    assert run is not None
    return run


async def insert_session(session: AsyncSession, project_id: int, **values: Any) -> None:
    """Insert a run session; raise AlreadyExists when its client run id is taken."""
    statement = (
        upsert(session, RunSession.__table__)
        .values(project_id=project_id, **values)
        .on_conflict_do_nothing()
        .returning(RunSession.__table__.c.client_run_id)
    )
    if (await session.execute(statement)).scalar_one_or_none() is None:
        raise AlreadyExists(f"client run id {values.get('client_run_id')!r} exists")


async def list_runs(
    session: AsyncSession,
    project_id: int,
    *,
    limit: int,
    branch: str | None = None,
    status: str | None = None,
    text: str | None = None,
    before: tuple[dt.datetime, uuid.UUID] | None = None,
) -> Sequence[TestRun]:
    """Return runs newest first, continuing after the ``before`` position.

    text matches a substring of the name, run key, branch or commit,
    ignoring case.
    """
    query = select(TestRun).where(TestRun.project_id == project_id)
    if branch is not None:
        query = query.where(TestRun.branch == branch)
    if status is not None:
        query = query.where(TestRun.status == status)
    if text:
        pattern = f"%{_escape_like(text)}%"
        query = query.where(
            or_(
                *(
                    column.ilike(pattern, escape="\\")
                    for column in (TestRun.name, TestRun.run_key, TestRun.branch, TestRun.commit)
                )
            )
        )
    if before is not None:
        started_at, run_id = before
        query = query.where(
            or_(
                TestRun.started_at < started_at,
                and_(TestRun.started_at == started_at, TestRun.id < run_id),
            )
        )
    query = query.order_by(TestRun.started_at.desc(), TestRun.id.desc()).limit(limit)
    result = await session.execute(query)
    return result.scalars().all()


def _escape_like(text: str) -> str:
    """Escape LIKE wildcards so the text matches literally."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _final_attempts(project_id: int, run_ids: Sequence[uuid.UUID]) -> Any:
    """Select each case's executions of the given runs, ranked with the final one first.

    The final attempt is the highest attempt number; equal numbers (the same
    test on several workers) are ordered by start time, then id.
    """
    failed = case((Execution.outcome.in_(("failed", "error")), 1), else_=0)
    partition = (Execution.run_id, Execution.case_id)
    return (
        select(
            Execution.run_id,
            Execution.case_id,
            Execution.outcome,
            func.row_number()
            .over(
                partition_by=partition,
                order_by=(
                    Execution.attempt.desc(),
                    Execution.started_at.desc(),
                    Execution.id.desc(),
                ),
            )
            .label("rank"),
            func.sum(failed).over(partition_by=partition).label("failures"),
        )
        .where(Execution.project_id == project_id, Execution.run_id.in_(run_ids))
        .subquery()
    )


async def totals_by_run(
    session: AsyncSession, project_id: int, run_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, dict[str, int]]:
    """Count each run's tests by final outcome, a rerun test counted once."""
    if not run_ids:
        return {}
    ranked = _final_attempts(project_id, run_ids)
    result = await session.execute(
        select(ranked.c.run_id, ranked.c.outcome, func.count())
        .where(ranked.c.rank == 1)
        .group_by(ranked.c.run_id, ranked.c.outcome)
    )
    totals: dict[uuid.UUID, dict[str, int]] = {run_id: {} for run_id in run_ids}
    for run_id, outcome, count in result.all():
        totals[run_id][outcome] = count
    return totals


async def run_stats(session: AsyncSession, project_id: int, run_id: uuid.UUID) -> RunStats:
    ranked = _final_attempts(project_id, [run_id])
    finals = await session.execute(
        select(
            ranked.c.outcome,
            func.count(),
            func.sum(case((ranked.c.failures > 0, 1), else_=0)),
        )
        .where(ranked.c.rank == 1)
        .group_by(ranked.c.outcome)
    )
    totals: dict[str, int] = {}
    passed_on_rerun = 0
    for outcome, count, with_failures in finals.all():
        totals[outcome] = count
        if outcome == "passed":
            passed_on_rerun = int(with_failures or 0)
    attempts = await session.scalar(
        select(func.count()).where(Execution.project_id == project_id, Execution.run_id == run_id)
    )
    return RunStats(
        totals=totals,
        tests=sum(totals.values()),
        attempts=int(attempts or 0),
        passed_on_rerun=passed_on_rerun,
    )


async def count_not_run(session: AsyncSession, project_id: int, run_id: uuid.UUID) -> int:
    """Count the cases the run collected that have no execution in it."""
    executed = select(Execution.case_id).where(
        Execution.project_id == RunCase.project_id,
        Execution.run_id == RunCase.run_id,
        Execution.case_id == RunCase.case_id,
    )
    count = await session.scalar(
        select(func.count()).where(
            RunCase.project_id == project_id, RunCase.run_id == run_id, ~executed.exists()
        )
    )
    return int(count or 0)


async def count_planned(session: AsyncSession, project_id: int, run_id: uuid.UUID) -> int:
    count = await session.scalar(
        select(func.count()).where(RunCase.project_id == project_id, RunCase.run_id == run_id)
    )
    return int(count or 0)
