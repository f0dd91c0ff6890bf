"""Queries over API tokens, always within one project."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from ingest_server.db.models import ApiToken
from ingest_server.repositories.base import AlreadyExists


async def get_token(session: AsyncSession, project_id: int, number: int) -> ApiToken | None:
    return await session.get(ApiToken, (project_id, number))


async def list_tokens(session: AsyncSession, project_id: int) -> Sequence[ApiToken]:
    result = await session.execute(
        select(ApiToken).where(ApiToken.project_id == project_id).order_by(ApiToken.number)
    )
    return result.scalars().all()


async def create_token(
    session: AsyncSession,
    project_id: int,
    *,
    name: str,
    role: str,
    secret_hash: str,
    now: dt.datetime,
) -> ApiToken:
    """Insert a token under the project's next number."""
    highest = await session.scalar(
        select(func.max(ApiToken.number)).where(ApiToken.project_id == project_id)
    )
    token = ApiToken(
        project_id=project_id,
        number=(highest or 0) + 1,
        name=name,
        role=role,
        secret_hash=secret_hash,
        created_at=now,
    )
    session.add(token)
    try:
        async with session.begin_nested():
            await session.flush()
    except IntegrityError as exc:
        # Two creations raced for one number; the caller may retry.
        raise AlreadyExists(f"token number {token.number} was taken concurrently") from exc
    return token
