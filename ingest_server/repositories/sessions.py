"""Queries over sign-in sessions and failed sign-ins; neither table belongs to a project."""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from ingest_server.db.models import SignInFailure, User, UserSession


async def create_session(
    session: AsyncSession,
    *,
    id_hash: str,
    user_id: int,
    csrf_token: str,
    now: dt.datetime,
    expires_at: dt.datetime,
    address: str | None,
    user_agent: str | None,
) -> UserSession:
    row = UserSession(
        id_hash=id_hash,
        user_id=user_id,
        csrf_token=csrf_token,
        created_at=now,
        last_seen_at=now,
        expires_at=expires_at,
        address=address,
        user_agent=user_agent,
    )
    session.add(row)
    await session.flush()
    return row


async def get_session_with_user(
    session: AsyncSession, id_hash: str
) -> tuple[UserSession, User] | None:
    result = await session.execute(
        select(UserSession, User)
        .join(User, User.id == UserSession.user_id)
        .where(UserSession.id_hash == id_hash)
    )
    row = result.first()
    return None if row is None else (row[0], row[1])


async def touch_session(session: AsyncSession, id_hash: str, now: dt.datetime) -> None:
    await session.execute(
        update(UserSession).where(UserSession.id_hash == id_hash).values(last_seen_at=now)
    )


async def delete_session(session: AsyncSession, id_hash: str) -> bool:
    """Delete one session; return whether it existed."""
    result = await session.execute(delete(UserSession).where(UserSession.id_hash == id_hash))
    return bool(getattr(result, "rowcount", 0))


async def delete_user_sessions(session: AsyncSession, user_id: int) -> None:
    await session.execute(delete(UserSession).where(UserSession.user_id == user_id))


async def delete_stale_sessions(
    session: AsyncSession, *, now: dt.datetime, idle_since: dt.datetime
) -> None:
    """Delete sessions past their absolute lifetime or idle since before idle_since."""
    await session.execute(
        delete(UserSession).where(
            (UserSession.expires_at <= now) | (UserSession.last_seen_at < idle_since)
        )
    )


async def count_failures(
    session: AsyncSession, scope: str, subject: str, since: dt.datetime
) -> tuple[int, dt.datetime | None]:
    """Return how many failures of (scope, subject) happened since, and the oldest of them."""
    result = await session.execute(
        select(func.count(), func.min(SignInFailure.failed_at)).where(
            SignInFailure.scope == scope,
            SignInFailure.subject == subject,
            SignInFailure.failed_at > since,
        )
    )
    count, oldest = result.one()
    if isinstance(oldest, str):  # SQLite returns min() of a timestamp as text
        oldest = dt.datetime.fromisoformat(oldest)
    if oldest is not None and oldest.tzinfo is None:
        oldest = oldest.replace(tzinfo=dt.UTC)
    return int(count), oldest


async def add_failure(session: AsyncSession, scope: str, subject: str, now: dt.datetime) -> None:
    session.add(SignInFailure(id=uuid.uuid4(), scope=scope, subject=subject, failed_at=now))
    await session.flush()


async def delete_failures(session: AsyncSession, scope: str, subject: str) -> None:
    await session.execute(
        delete(SignInFailure).where(SignInFailure.scope == scope, SignInFailure.subject == subject)
    )


async def delete_failures_before(session: AsyncSession, cutoff: dt.datetime) -> None:
    await session.execute(delete(SignInFailure).where(SignInFailure.failed_at <= cutoff))
