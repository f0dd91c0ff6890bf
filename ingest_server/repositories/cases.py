"""Queries over test cases and the cases each run collected."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from ingest_server.db.models import RunCase, TestCase
from ingest_server.repositories.base import chunks, upsert

CASE_FIELDS = ("node_id", "file", "name", "line", "class_name", "function", "markers")


async def upsert_cases(
    session: AsyncSession, project_id: int, cases: Sequence[dict[str, Any]], *, now: dt.datetime
) -> tuple[dict[str, uuid.UUID], int]:
    """Insert or refresh cases by key; return their ids by key and how many were new.

    Each dict has ``key`` and the fields of CASE_FIELDS. Rows are written in
    key order, so concurrent upserts of overlapping sets lock in one order.
    """
    ids: dict[str, uuid.UUID] = {}
    created = 0
    rows = [
        {
            "project_id": project_id,
            "id": uuid.uuid4(),
            "key": case["key"],
            **{name: case.get(name) for name in CASE_FIELDS},
            "first_seen_at": now,
            "last_seen_at": now,
        }
        for case in sorted(cases, key=lambda case: str(case["key"]))
    ]
    table = TestCase.__table__
    statement = upsert(session, table)
    statement = statement.on_conflict_do_update(
        index_elements=["project_id", "key"],
        set_={name: statement.excluded[name] for name in (*CASE_FIELDS, "last_seen_at")},
    ).returning(table.c.key, table.c.id, table.c.first_seen_at)
    result = await _executemany(session, statement, rows)
    for key, case_id, first_seen_at in result:
        ids[key] = case_id
        created += first_seen_at == now
    return ids, created


async def ensure_cases(
    session: AsyncSession, project_id: int, keys: dict[str, str | None], *, now: dt.datetime
) -> dict[str, uuid.UUID]:
    """Return case ids by key, creating missing cases; keys maps each key to its node id.

    Known cases are only read: rewriting every case of every batch would
    double the write load of ingest. ``last_seen_at`` is refreshed when the
    run's collected cases are stored.
    """
    sorted_keys = sorted(keys)
    ids = await _case_ids(session, project_id, sorted_keys)
    rows: list[dict[str, Any]] = [
        {
            "project_id": project_id,
            "id": uuid.uuid4(),
            "key": key,
            "node_id": keys[key],
            "markers": [],
            "first_seen_at": now,
            "last_seen_at": now,
        }
        for key in sorted_keys
        if key not in ids
    ]
    if not rows:
        return ids
    # DO NOTHING, not an update: updating a case row would lock it against the
    # foreign-key checks of concurrent execution inserts, and deadlock them.
    table = TestCase.__table__
    statement = (
        upsert(session, table)
        .on_conflict_do_nothing(index_elements=["project_id", "key"])
        .returning(table.c.key, table.c.id)
    )
    ids.update({key: case_id for key, case_id in await _executemany(session, statement, rows)})
    # A key another batch created meanwhile returned nothing; it is committed
    # now, because the insert waited for that batch to end.
    raced = [key for key in sorted_keys if key not in ids]
    if raced:
        ids.update(await _case_ids(session, project_id, raced))
    return ids


async def _case_ids(
    session: AsyncSession, project_id: int, keys: list[str]
) -> dict[str, uuid.UUID]:
    table = TestCase.__table__
    ids: dict[str, uuid.UUID] = {}
    for chunk in chunks(keys):
        result = await session.execute(
            select(table.c.key, table.c.id).where(
                table.c.project_id == project_id, table.c.key.in_(chunk)
            )
        )
        ids.update({key: case_id for key, case_id in result.all()})
    return ids


async def link_run_cases(
    session: AsyncSession, project_id: int, run_id: uuid.UUID, case_ids: Sequence[uuid.UUID]
) -> None:
    """Record that the run collected these cases."""
    rows = [
        {"project_id": project_id, "run_id": run_id, "case_id": case_id}
        for case_id in sorted(set(case_ids))
    ]
    if rows:
        statement = upsert(session, RunCase.__table__).on_conflict_do_nothing()
        connection = await session.connection()
        await connection.execute(statement, rows)


async def _executemany(
    session: AsyncSession, statement: Any, rows: list[dict[str, Any]]
) -> list[Any]:
    """Run statement for every row with one compiled statement; return all RETURNING rows."""
    if not rows:
        return []
    connection = await session.connection()
    result = await connection.execute(statement, rows)
    return list(result.all())


async def get_case(session: AsyncSession, project_id: int, case_id: uuid.UUID) -> TestCase | None:
    return await session.get(TestCase, (project_id, case_id))


async def get_case_keys(
    session: AsyncSession, project_id: int, case_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, str]:
    if not case_ids:
        return {}
    result = await session.execute(
        select(TestCase.id, TestCase.key).where(
            TestCase.project_id == project_id, TestCase.id.in_(set(case_ids))
        )
    )
    return {case_id: key for case_id, key in result.all()}
