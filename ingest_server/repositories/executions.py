"""Queries over executions: idempotent batch inserts and paginated reads."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import and_, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from ingest_server.db.models import Execution, TestRun
from ingest_server.repositories.base import chunks

# Columns of an inserted execution, in the order of the driver-level inserts.
INSERT_COLUMNS = (
    "project_id",
    "id",
    "run_id",
    "case_id",
    "attempt",
    "outcome",
    "phase",
    "duration",
    "started_at",
    "finished_at",
    "worker",
    "message",
    "traceback",
    "stdout",
    "stderr",
    "log",
    "reason",
    "parameters",
    "phases",
    "received_at",
)
JSON_COLUMNS = frozenset({"parameters", "phases"})
SQLITE_TIMESTAMP = "%Y-%m-%d %H:%M:%S.%f"

# PostgreSQL takes the whole batch as one array per column, so a batch is
# one statement whose RETURNING names exactly the rows it inserted.
POSTGRESQL_INSERT = f"""
INSERT INTO executions ({", ".join(INSERT_COLUMNS)})
SELECT project_id, id, run_id, case_id, attempt, outcome, phase, duration, started_at,
       finished_at, worker, message, traceback, stdout, stderr, log, reason,
       parameters::jsonb, phases::jsonb, received_at
FROM unnest($1::integer[], $2::uuid[], $3::uuid[], $4::uuid[], $5::integer[],
            $6::varchar[], $7::varchar[], $8::float8[], $9::timestamptz[], $10::timestamptz[],
            $11::varchar[], $12::text[], $13::text[], $14::text[], $15::text[], $16::text[],
            $17::text[], $18::text[], $19::text[], $20::timestamptz[])
     AS batch({", ".join(INSERT_COLUMNS)})
ON CONFLICT (project_id, id) DO NOTHING
RETURNING id
"""
SQLITE_INSERT = (
    f"INSERT INTO executions ({', '.join(INSERT_COLUMNS)}) "
    f"VALUES ({', '.join('?' * len(INSERT_COLUMNS))}) ON CONFLICT (project_id, id) DO NOTHING"
)


async def insert_new(
    session: AsyncSession, project_id: int, rows: Sequence[dict[str, Any]]
) -> set[uuid.UUID]:
    """Insert rows whose id is new in the project; return the ids actually inserted.

    A row whose id exists already is skipped by the database, which makes a
    repeated batch, or two identical batches at once, store each row once.
    The rows go straight to the driver: this is the ingest hot path, and
    SQLAlchemy's per-value bind processing cost more than the insert itself.
    """
    if not rows:
        return set()
    # Id order makes concurrent batches with overlapping ids lock rows in one
    # order, so they cannot deadlock each other on PostgreSQL (tested in
    # tests/test_idempotency.py with overlapping batches in opposite orders).
    ordered = sorted(rows, key=lambda row: row["id"])
    connection = await session.connection()
    driver = (await connection.get_raw_connection()).driver_connection
    if connection.dialect.name == "postgresql":
        return await _insert_postgresql(driver, project_id, ordered)
    return await _insert_sqlite(driver, project_id, ordered)


async def _insert_postgresql(
    driver: Any, project_id: int, rows: Sequence[dict[str, Any]]
) -> set[uuid.UUID]:
    columns: list[list[Any]] = [[project_id] * len(rows)]
    for name in INSERT_COLUMNS[1:]:
        if name in JSON_COLUMNS:
            columns.append([_json(row[name]) for row in rows])
        else:
            columns.append([row[name] for row in rows])
    records = await driver.fetch(POSTGRESQL_INSERT, *columns)
    return {record["id"] for record in records}


def _sqlite_timestamp(value: dt.datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(dt.UTC).strftime(SQLITE_TIMESTAMP)


def _json(value: dict[str, Any]) -> str:
    return json.dumps(value) if value else "{}"


def _sqlite_row(project_id: int, row: dict[str, Any]) -> tuple[Any, ...]:
    """Encode a row the way SQLAlchemy stores it on SQLite, so reads see one format."""
    return (
        project_id,
        row["id"].hex,
        row["run_id"].hex,
        row["case_id"].hex,
        row["attempt"],
        row["outcome"],
        row["phase"],
        row["duration"],
        _sqlite_timestamp(row["started_at"]),
        _sqlite_timestamp(row["finished_at"]),
        row["worker"],
        row["message"],
        row["traceback"],
        row["stdout"],
        row["stderr"],
        row["log"],
        row["reason"],
        _json(row["parameters"]),
        _json(row["phases"]),
        _sqlite_timestamp(row["received_at"]),
    )


async def _insert_sqlite(
    driver: Any, project_id: int, rows: Sequence[dict[str, Any]]
) -> set[uuid.UUID]:
    # The write transaction began with BEGIN IMMEDIATE, so no other writer can
    # insert between this read of existing ids and the insert below.
    ids = [row["id"] for row in rows]
    existing: set[str] = set()
    for id_chunk in chunks(ids):
        chunk = [row_id.hex for row_id in id_chunk]
        marks = ", ".join("?" * len(chunk))
        cursor = await driver.execute(
            f"SELECT id FROM executions WHERE project_id = ? AND id IN ({marks})",
            [project_id, *chunk],
        )
        existing.update(row[0] for row in await cursor.fetchall())
        await cursor.close()
    await driver.executemany(SQLITE_INSERT, [_sqlite_row(project_id, row) for row in rows])
    return {row_id for row_id in ids if row_id.hex not in existing}


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
