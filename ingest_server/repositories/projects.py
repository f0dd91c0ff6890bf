"""Queries over projects, users and memberships: the tenant registry and its people."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from ingest_server.db.models import Membership, Project, User
from ingest_server.repositories.base import AlreadyExists


async def get_project_by_key(session: AsyncSession, key: str) -> Project | None:
    result = await session.execute(select(Project).where(Project.key == key))
    return result.scalar_one_or_none()


async def create_project(
    session: AsyncSession, *, key: str, name: str, now: dt.datetime
) -> Project:
    project = Project(key=key, name=name, created_at=now)
    session.add(project)
    try:
        async with session.begin_nested():
            await session.flush()
    except IntegrityError as exc:
        raise AlreadyExists(f"project {key!r} already exists") from exc
    return project


async def list_project_ids(session: AsyncSession) -> list[int]:
    """Return every project's id; projects are the tenant registry, not tenant data."""
    result = await session.execute(select(Project.id).order_by(Project.id))
    return list(result.scalars().all())


async def get_user_by_email(session: AsyncSession, email: str) -> User | None:
    result = await session.execute(select(User).where(User.email == email))
    return result.scalar_one_or_none()


async def create_user(
    session: AsyncSession, *, email: str, password_hash: str, now: dt.datetime
) -> User:
    user = User(email=email, password_hash=password_hash, created_at=now)
    session.add(user)
    try:
        async with session.begin_nested():
            await session.flush()
    except IntegrityError as exc:
        raise AlreadyExists(f"user {email!r} already exists") from exc
    return user


async def get_membership(
    session: AsyncSession, project_id: int, user_id: int
) -> Membership | None:
    return await session.get(Membership, (project_id, user_id))


async def set_membership(
    session: AsyncSession, project_id: int, *, user_id: int, role: str, now: dt.datetime
) -> tuple[Membership, str | None]:
    """Give user_id the role on the project; return the membership and the previous role."""
    membership = await get_membership(session, project_id, user_id)
    if membership is None:
        membership = Membership(
            project_id=project_id, user_id=user_id, role=role, created_at=now, updated_at=now
        )
        session.add(membership)
        await session.flush()
        return membership, None
    previous = membership.role
    membership.role = role
    membership.updated_at = now
    await session.flush()
    return membership, previous
