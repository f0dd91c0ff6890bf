"""The audit trail of security-relevant actions."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from ingest_server.db.models import AuditEvent


async def record(
    session: AsyncSession,
    project_id: int,
    *,
    actor: str,
    action: str,
    target: str,
    request_id: str | None,
    details: dict[str, Any],
    now: dt.datetime,
) -> None:
    session.add(
        AuditEvent(
            project_id=project_id,
            id=uuid.uuid4(),
            created_at=now,
            actor=actor,
            action=action,
            target=target,
            request_id=request_id,
            details=details,
        )
    )
    await session.flush()


async def list_events(
    session: AsyncSession, project_id: int, *, limit: int = 100
) -> Sequence[AuditEvent]:
    result = await session.execute(
        select(AuditEvent)
        .where(AuditEvent.project_id == project_id)
        .order_by(AuditEvent.created_at.desc())
        .limit(limit)
    )
    return result.scalars().all()
