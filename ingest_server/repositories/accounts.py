"""Queries over users, their memberships and their personal access tokens."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from ingest_server.db.models import Membership, PersonalToken, Project, User
from ingest_server.repositories.base import AlreadyExists, dialect_name


@dataclass(frozen=True)
class MemberRow:
    user_id: int
    email: str
    role: str
    disabled: bool


@dataclass(frozen=True)
class UserProject:
    project_id: int
    key: str
    name: str
    role: str


async def get_user(session: AsyncSession, user_id: int) -> User | None:
    return await session.get(User, user_id)


async def list_members(session: AsyncSession, project_id: int) -> list[MemberRow]:
    result = await session.execute(
        select(Membership.user_id, User.email, Membership.role, User.disabled_at)
        .join(User, User.id == Membership.user_id)
        .where(Membership.project_id == project_id)
        .order_by(User.email)
    )
    return [
        MemberRow(user_id=user_id, email=email, role=role, disabled=disabled_at is not None)
        for user_id, email, role, disabled_at in result.all()
    ]


async def lock_admins(session: AsyncSession, project_id: int) -> list[int]:
    """Return the user ids of the project's admins, locking their rows on PostgreSQL.

    The lock serialises concurrent demotions, so two admins cannot demote
    each other and leave the project without one. SQLite write
    transactions are serialised already.
    """
    query = select(Membership.user_id).where(
        Membership.project_id == project_id, Membership.role == "admin"
    )
    if dialect_name(session) == "postgresql":
        query = query.with_for_update()
    result = await session.execute(query)
    return list(result.scalars().all())


async def delete_membership(session: AsyncSession, project_id: int, user_id: int) -> bool:
    result = await session.execute(
        delete(Membership).where(
            Membership.project_id == project_id, Membership.user_id == user_id
        )
    )
    return bool(getattr(result, "rowcount", 0))


async def list_user_projects(session: AsyncSession, user_id: int) -> list[UserProject]:
    """Return the projects where user_id has a membership, ordered by key."""
    result = await session.execute(
        select(Project.id, Project.key, Project.name, Membership.role)
        .join(Membership, Membership.project_id == Project.id)
        .where(Membership.user_id == user_id)
        .order_by(Project.key)
    )
    return [
        UserProject(project_id=project_id, key=key, name=name, role=role)
        for project_id, key, name, role in result.all()
    ]


async def get_personal_token(
    session: AsyncSession, user_id: int, number: int
) -> PersonalToken | None:
    return await session.get(PersonalToken, (user_id, number))


async def list_personal_tokens(session: AsyncSession, user_id: int) -> Sequence[PersonalToken]:
    result = await session.execute(
        select(PersonalToken)
        .where(PersonalToken.user_id == user_id)
        .order_by(PersonalToken.number)
    )
    return result.scalars().all()


async def count_active_personal_tokens(session: AsyncSession, user_id: int) -> int:
    count = await session.scalar(
        select(func.count()).where(
            PersonalToken.user_id == user_id, PersonalToken.revoked_at.is_(None)
        )
    )
    return int(count or 0)


async def create_personal_token(
    session: AsyncSession, user_id: int, *, name: str, secret_hash: str, now: dt.datetime
) -> PersonalToken:
    """Insert a token under the user's next number."""
    highest = await session.scalar(
        select(func.max(PersonalToken.number)).where(PersonalToken.user_id == user_id)
    )
    token = PersonalToken(
        user_id=user_id,
        number=(highest or 0) + 1,
        name=name,
        secret_hash=secret_hash,
        created_at=now,
    )
    session.add(token)
    try:
        async with session.begin_nested():
            await session.flush()
    except IntegrityError as exc:
        raise AlreadyExists(f"token number {token.number} was taken concurrently") from exc
    return token


async def touch_personal_token(
    session: AsyncSession, user_id: int, number: int, now: dt.datetime
) -> None:
    await session.execute(
        update(PersonalToken)
        .where(PersonalToken.user_id == user_id, PersonalToken.number == number)
        .values(last_used_at=now)
    )
