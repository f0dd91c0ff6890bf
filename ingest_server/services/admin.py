"""Administration: projects, users, memberships and API tokens, each audited."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import argon2
from sqlalchemy.ext.asyncio import AsyncSession

from ingest_server.db.engine import Database
from ingest_server.db.models import INSTANCE_PROJECT_ID
from ingest_server.repositories import accounts as account_repo
from ingest_server.repositories import audit as audit_repo
from ingest_server.repositories import projects as project_repo
from ingest_server.repositories import tokens as token_repo
from ingest_server.repositories.base import AlreadyExists
from ingest_server.services.auth import IssuedToken, new_token_secret
from ingest_server.services.authz import TOKEN_ROLES, Action, Role, parse_role
from ingest_server.services.clock import utcnow
from ingest_server.services.context import ProjectScope, RequestContext
from ingest_server.services.errors import (
    Conflict,
    FieldError,
    InvalidInput,
    NotFound,
    PermissionDenied,
)

PROJECT_KEY_PATTERN = re.compile(r"^[A-Z][A-Z0-9_]{1,19}$")
PROJECT_KEY_RULE = "2 to 20 characters: uppercase letters, digits and '_', starting with a letter"
TOKEN_ID_PATTERN = re.compile(r"^([A-Z][A-Z0-9_]{1,19})-([1-9][0-9]{0,9})$")
EMAIL_PATTERN = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]+$")
MIN_PASSWORD_LENGTH = 10
MAX_PASSWORD_LENGTH = 1_024
MAX_NAME_LENGTH = 200
MAX_TOKEN_NAME_LENGTH = 100

_password_hasher = argon2.PasswordHasher()


class UnknownUser(NotFound):
    """No user has the email address given for a membership."""


@dataclass(frozen=True)
class TokenInfo:
    token_id: str
    name: str
    role: str
    created_at: str
    revoked_at: str | None
    number: int = 0


@dataclass(frozen=True)
class MemberInfo:
    user_id: int
    email: str
    role: str
    disabled: bool


@dataclass(frozen=True)
class SettingsOverview:
    """The content of the project settings page, with the changes the caller may make."""

    project_key: str
    project_name: str
    members: list[MemberInfo]
    tokens: list[TokenInfo]
    can_manage_members: bool
    can_manage_tokens: bool


def validate_project_key(key: str) -> str:
    if not PROJECT_KEY_PATTERN.match(key):
        raise InvalidInput(
            f"invalid project key {key!r}: use {PROJECT_KEY_RULE}",
            details=[FieldError("key", PROJECT_KEY_RULE)],
        )
    return key


def parse_token_id(token_id: str) -> tuple[str, int]:
    """Split a public token id such as ``WEB-3`` into project key and number."""
    match = TOKEN_ID_PATTERN.match(token_id)
    if match is None:
        raise InvalidInput(
            f"invalid token id {token_id!r}: expected PROJECT_KEY-NUMBER such as 'WEB-3', "
            "as printed by create-token and list-tokens"
        )
    return match[1], int(match[2])


def _check_name(value: str, field: str, limit: int) -> str:
    value = value.strip()
    if not value or len(value) > limit:
        raise InvalidInput(
            f"invalid {field} {value[:50]!r}: use 1 to {limit} characters",
            details=[FieldError(field, f"1 to {limit} characters")],
        )
    return value


def _require_any(ctx: RequestContext, *actions: Action) -> ProjectScope:
    """Return the project if the principal may perform at least one of actions on it."""
    denied: PermissionDenied | None = None
    for action in actions:
        try:
            return ctx.require(action)
        except PermissionDenied as exc:
            denied = denied or exc
    assert denied is not None  # actions is never empty
    raise denied


def _require_operator(ctx: RequestContext, operation: str) -> None:
    if ctx.principal.kind != "operator":
        raise NotFound(f"{operation} is only available to the server's operator")


class AdminService:
    """Change who may do what. Every change writes an AuditEvent in the same transaction."""

    def __init__(self, database: Database) -> None:
        self._db = database

    async def create_project(self, ctx: RequestContext, key: str, name: str) -> int:
        _require_operator(ctx, "creating projects")
        validate_project_key(key)
        name = _check_name(name, "project name", MAX_NAME_LENGTH)
        now = utcnow()
        async with self._db.write() as session:
            try:
                project = await project_repo.create_project(session, key=key, name=name, now=now)
            except AlreadyExists as exc:
                raise Conflict(f"project {key!r} already exists") from exc
            await self._audit(session, ctx, project.id, "project.create", key, {"name": name})
        return project.id

    async def create_user(self, ctx: RequestContext, email: str, password: str) -> int:
        _require_operator(ctx, "creating users")
        email = email.strip().lower()
        if len(email) > 320 or not EMAIL_PATTERN.match(email):
            raise InvalidInput(f"invalid email address {email[:100]!r}")
        if not MIN_PASSWORD_LENGTH <= len(password) <= MAX_PASSWORD_LENGTH:
            raise InvalidInput(
                f"invalid password: use {MIN_PASSWORD_LENGTH} to {MAX_PASSWORD_LENGTH} characters"
            )
        password_hash = _password_hasher.hash(password)
        now = utcnow()
        async with self._db.write() as session:
            try:
                user = await project_repo.create_user(
                    session, email=email, password_hash=password_hash, now=now
                )
            except AlreadyExists as exc:
                raise Conflict(f"user {email!r} already exists") from exc
            await self._audit(session, ctx, INSTANCE_PROJECT_ID, "user.create", email, {})
        return user.id

    async def set_member(self, ctx: RequestContext, email: str, role_name: str) -> Role:
        """Give the user with email a role on the project, adding the membership if needed."""
        project = ctx.require(Action.MANAGE_MEMBERS)
        role = self._parse_role(role_name, tuple(Role))
        now = utcnow()
        async with self._db.write() as session:
            user = await project_repo.get_user_by_email(session, email.strip().lower())
            if user is None:
                raise UnknownUser(
                    f"user {email[:100]!r} not found: the server's operator creates users "
                    "with create-user"
                )
            if role is not Role.ADMIN:
                await self._keep_an_admin(session, project, user.id, "demote")
            _, previous = await project_repo.set_membership(
                session, project.id, user_id=user.id, role=role.value, now=now
            )
            details = {"role": role.value, "previous_role": previous}
            await self._audit(session, ctx, project.id, "membership.set", user.email, details)
        return role

    async def remove_member(self, ctx: RequestContext, user_id: int) -> str:
        """Remove a user's membership; return the user's email."""
        project = ctx.require(Action.MANAGE_MEMBERS)
        async with self._db.write() as session:
            user = await account_repo.get_user(session, user_id)
            membership = await project_repo.get_membership(session, project.id, user_id)
            if user is None or membership is None:
                raise NotFound(f"member {user_id} not found in project {project.key!r}")
            await self._keep_an_admin(session, project, user_id, "remove")
            await account_repo.delete_membership(session, project.id, user_id)
            details = {"previous_role": membership.role}
            await self._audit(session, ctx, project.id, "membership.remove", user.email, details)
        return user.email

    @staticmethod
    async def _keep_an_admin(
        session: AsyncSession, project: ProjectScope, user_id: int, change: str
    ) -> None:
        """Raise Conflict if the change would leave the project without an admin."""
        admins = await account_repo.lock_admins(session, project.id)
        if admins == [user_id]:
            raise Conflict(
                f"cannot {change} the last admin of project {project.key!r}: "
                "make another member admin first"
            )

    async def list_members(self, ctx: RequestContext) -> list[MemberInfo]:
        project = _require_any(ctx, Action.MANAGE_MEMBERS, Action.MANAGE_TOKENS)
        async with self._db.read() as session:
            rows = await account_repo.list_members(session, project.id)
        return [MemberInfo(row.user_id, row.email, row.role, row.disabled) for row in rows]

    async def settings_overview(self, ctx: RequestContext) -> SettingsOverview:
        """Return the members and tokens of the project, for maintainers and admins."""
        project = _require_any(ctx, Action.MANAGE_MEMBERS, Action.MANAGE_TOKENS)
        can_manage_tokens = Action.MANAGE_TOKENS in project.actions
        return SettingsOverview(
            project_key=project.key,
            project_name=project.name,
            members=await self.list_members(ctx),
            tokens=await self.list_tokens(ctx) if can_manage_tokens else [],
            can_manage_members=Action.MANAGE_MEMBERS in project.actions,
            can_manage_tokens=can_manage_tokens,
        )

    async def create_token(self, ctx: RequestContext, name: str, role_name: str) -> IssuedToken:
        project = ctx.require(Action.MANAGE_TOKENS)
        name = _check_name(name, "token name", MAX_TOKEN_NAME_LENGTH)
        role = self._parse_role(role_name, TOKEN_ROLES)
        now = utcnow()
        for _ in range(5):
            try:
                return await self._insert_token(ctx, project.id, project.key, name, role, now)
            except AlreadyExists:
                continue
        raise Conflict("could not allocate a token number: too many concurrent creations")

    async def _insert_token(
        self, ctx: RequestContext, project_id: int, key: str, name: str, role: Role, now: Any
    ) -> IssuedToken:
        async with self._db.write() as session:
            # The number is chosen inside the insert; the hash depends on it.
            placeholder_hash = "0" * 64
            token = await token_repo.create_token(
                session,
                project_id,
                name=name,
                role=role.value,
                secret_hash=placeholder_hash,
                now=now,
            )
            full_token, secret_hash = new_token_secret(project_id, token.number)
            token.secret_hash = secret_hash
            await session.flush()
            token_id = f"{key}-{token.number}"
            details = {"name": name, "role": role.value}
            await self._audit(session, ctx, project_id, "token.create", token_id, details)
        return IssuedToken(token_id=token_id, secret=full_token)

    async def revoke_token(self, ctx: RequestContext, number: int) -> str:
        project = ctx.require(Action.MANAGE_TOKENS)
        token_id = f"{project.key}-{number}"
        async with self._db.write() as session:
            token = await token_repo.get_token(session, project.id, number)
            if token is None:
                raise NotFound(f"token {token_id!r} not found")
            if token.revoked_at is not None:
                return token_id
            token.revoked_at = utcnow()
            await session.flush()
            await self._audit(session, ctx, project.id, "token.revoke", token_id, {})
        return token_id

    async def list_tokens(self, ctx: RequestContext) -> list[TokenInfo]:
        project = ctx.require(Action.MANAGE_TOKENS)
        async with self._db.read() as session:
            tokens = await token_repo.list_tokens(session, project.id)
        return [
            TokenInfo(
                token_id=f"{project.key}-{token.number}",
                name=token.name,
                role=token.role,
                created_at=token.created_at.isoformat(timespec="seconds"),
                revoked_at=token.revoked_at.isoformat(timespec="seconds")
                if token.revoked_at
                else None,
                number=token.number,
            )
            for token in tokens
        ]

    @staticmethod
    def _parse_role(value: str, allowed: tuple[Role, ...]) -> Role:
        try:
            return parse_role(value, allowed)
        except ValueError as exc:
            raise InvalidInput(str(exc), details=[FieldError("role", str(exc))]) from exc

    @staticmethod
    async def _audit(
        session: AsyncSession,
        ctx: RequestContext,
        project_id: int,
        action: str,
        target: str,
        details: dict[str, Any],
    ) -> None:
        await audit_repo.record(
            session,
            project_id,
            actor=ctx.principal.id,
            action=action,
            target=target,
            request_id=ctx.request_id,
            details=details,
            now=utcnow(),
        )
