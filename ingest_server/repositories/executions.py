"""Queries over executions: idempotent batch inserts and paginated reads."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import and_, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from ingest_server.db.models import Execution, TestRun
from ingest_server.repositories.base import upsert


async def insert_new(
    session: AsyncSession, project_id: int, rows: Sequence[dict[str, Any]]
) -> set[uuid.UUID]:
    """Insert rows whose id is new in the project; return the ids actually inserted.

    A row whose id exists already is skipped by the database, which makes a
    repeated batch, or two identical batches at once, store each row once.
    """
    if not rows:
        return set()
    table = Execution.__table__
    # Id order makes concurrent batches with overlapping ids lock rows in
    # one order, so PostgreSQL never sees a deadlock between them.
    ordered = sorted(({**row, "project_id": project_id} for row in rows), key=lambda r: r["id"])
    statement = (
        upsert(session, table)
        .on_conflict_do_nothing(index_elements=["project_id", "id"])
        .returning(table.c.id)
    )
    # An executemany on the Core connection compiles the statement once and
    # lets SQLAlchemy batch the rows into multi-row INSERTs.
    connection = await session.connection()
    result = await connection.execute(statement, ordered)
    return set(result.scalars().all())


async def list_executions(
    session: AsyncSession,
    project_id: int,
    run_id: uuid.UUID,
    *,
    limit: int,
    outcome: str | None = None,
    after: tuple[dt.datetime, uuid.UUID] | None = None,
) -> Sequence[Execution]:
    """Return a run's executions in start order, continuing after the ``after`` position."""
    query = select(Execution).where(Execution.project_id == project_id, Execution.run_id == run_id)
    if outcome is not None:
        query = query.where(Execution.outcome == outcome)
    if after is not None:
        started_at, execution_id = after
        query = query.where(
            or_(
                Execution.started_at > started_at,
                and_(Execution.started_at == started_at, Execution.id > execution_id),
            )
        )
    query = query.order_by(Execution.started_at, Execution.id).limit(limit)
    result = await session.execute(query)
    return result.scalars().all()


async def case_history(
    session: AsyncSession,
    project_id: int,
    case_id: uuid.UUID,
    *,
    limit: int,
    before: tuple[dt.datetime, uuid.UUID] | None = None,
) -> Sequence[tuple[Execution, TestRun]]:
    """Return a case's executions newest first, each with its run."""
    query = (
        select(Execution, TestRun)
        .join(
            TestRun,
            and_(TestRun.project_id == Execution.project_id, TestRun.id == Execution.run_id),
        )
        .where(Execution.project_id == project_id, Execution.case_id == case_id)
    )
    if before is not None:
        started_at, execution_id = before
        query = query.where(
            or_(
                Execution.started_at < started_at,
                and_(Execution.started_at == started_at, Execution.id < execution_id),
            )
        )
    query = query.order_by(Execution.started_at.desc(), Execution.id.desc()).limit(limit)
    result = await session.execute(query)
    return [(execution, run) for execution, run in result.all()]
