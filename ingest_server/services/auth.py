"""Authentication of callers and resolution of their rights on the project in scope."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from ingest_server.db.engine import Database
from ingest_server.db.models import INSTANCE_PROJECT_ID
from ingest_server.repositories import accounts as account_repo
from ingest_server.repositories import audit as audit_repo
from ingest_server.repositories import projects as project_repo
from ingest_server.repositories import tokens as token_repo
from ingest_server.repositories.base import AlreadyExists
from ingest_server.services.authz import Action, Role, actions_for
from ingest_server.services.clock import utcnow
from ingest_server.services.context import Principal, ProjectScope, RequestContext
from ingest_server.services.errors import (
    Conflict,
    FieldError,
    InvalidInput,
    NotFound,
    PermissionDenied,
    Unauthenticated,
)

TOKEN_PREFIX = "tqa"  # noqa: S105 - a public prefix, not a secret
# tqa_<project id>_<token number>_<secret>; the ids make the lookup a
# primary-key read inside the token's own project.
TOKEN_PATTERN = re.compile(r"^tqa_([1-9][0-9]{0,9})_([1-9][0-9]{0,9})_([A-Za-z0-9_-]{43})$")

PERSONAL_TOKEN_PREFIX = "tqp"  # noqa: S105 - a public prefix, not a secret
# tqp_<user id>_<token number>_<secret>: the same shape as project tokens,
# keyed by the user instead of the project.
PERSONAL_TOKEN_PATTERN = re.compile(
    r"^tqp_([1-9][0-9]{0,9})_([1-9][0-9]{0,9})_([A-Za-z0-9_-]{43})$"
)
MAX_PERSONAL_TOKEN_NAME_LENGTH = 100
MAX_ACTIVE_PERSONAL_TOKENS = 50
# last_used_at is written at most this often per token, so using a token
# for reads does not turn every request into a write.
LAST_USED_INTERVAL = dt.timedelta(minutes=1)
# The actions a personal access token has on its user's projects, whatever the role.
PERSONAL_TOKEN_ACTIONS = frozenset({Action.READ_RESULTS})


@dataclass(frozen=True)
class IssuedToken:
    """A new token: the secret is returned once and never stored."""

    token_id: str
    secret: str


def hash_secret(secret: str) -> str:
    # The secret has 256 random bits, so a fast hash is enough: there is
    # nothing to brute-force that a slow hash would protect.
    return hashlib.sha256(secret.encode()).hexdigest()


def new_token_secret(project_id: int, number: int) -> tuple[str, str]:
    """Return (full token, hash of its secret part)."""
    secret = secrets.token_urlsafe(32)
    return f"{TOKEN_PREFIX}_{project_id}_{number}_{secret}", hash_secret(secret)


def new_personal_token_secret(user_id: int, number: int) -> tuple[str, str]:
    """Return (full personal access token, hash of its secret part)."""
    secret = secrets.token_urlsafe(32)
    return f"{PERSONAL_TOKEN_PREFIX}_{user_id}_{number}_{secret}", hash_secret(secret)


@dataclass(frozen=True)
class PersonalTokenInfo:
    """A personal access token as its owner sees it: never the secret."""

    number: int
    name: str
    created_at: dt.datetime
    last_used_at: dt.datetime | None
    revoked_at: dt.datetime | None


def parse_bearer(authorization: str | None) -> str:
    """Return the token from an Authorization header value, or raise Unauthenticated."""
    if not authorization:
        raise Unauthenticated(
            "missing credentials: send the header 'Authorization: Bearer <token>'"
        )
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("unsupported Authorization header: use the form 'Bearer <token>'")
    return token.strip()


class AuthService:
    """Turn credentials into a Principal and a Principal into a ProjectScope."""

    def __init__(self, database: Database) -> None:
        self._db = database

    async def authenticate_token(self, token: str) -> Principal:
        """Return the principal of a project API token or a personal access token."""
        if token.startswith(f"{PERSONAL_TOKEN_PREFIX}_"):
            return await self.authenticate_personal_token(token)
        match = TOKEN_PATTERN.match(token)
        if match is None:
            raise Unauthenticated("invalid token: it is not a TestoQA API token")
        project_id, number, secret = int(match[1]), int(match[2]), match[3]
        async with self._db.read() as session:
            stored = await token_repo.get_token(session, project_id, number)
        if (
            stored is None
            or stored.revoked_at is not None
            or not hmac.compare_digest(stored.secret_hash, hash_secret(secret))
        ):
            raise Unauthenticated("invalid token: it is unknown or has been revoked")
        return Principal(
            kind="token",
            id=f"token:{project_id}-{number}",
            token_project_id=project_id,
            token_role=Role(stored.role),
        )

    async def resolve_scope(self, principal: Principal, project_key: str) -> ProjectScope | None:
        """Return the project as principal may see it, or None if it may not see it."""
        async with self._db.read() as session:
            project = await project_repo.get_project_by_key(session, project_key)
            if project is None:
                return None
            role = await self._role_on(session, principal, project.id)
        if principal.kind == "operator":
            return ProjectScope(project.id, project.key, project.name, None, frozenset(Action))
        if role is None:
            return None
        actions = actions_for(role)
        if principal.read_only:
            actions = actions & PERSONAL_TOKEN_ACTIONS
        return ProjectScope(project.id, project.key, project.name, role, actions)

    @staticmethod
    async def _role_on(
        session: AsyncSession, principal: Principal, project_id: int
    ) -> Role | None:
        if principal.kind == "token":
            return principal.token_role if principal.token_project_id == project_id else None
        if principal.kind == "user" and principal.user_id is not None:
            membership = await project_repo.get_membership(session, project_id, principal.user_id)
            return Role(membership.role) if membership else None
        return None

    async def authenticate_personal_token(self, token: str) -> Principal:
        match = PERSONAL_TOKEN_PATTERN.match(token)
        if match is None:
            raise Unauthenticated("invalid token: it is not a TestoQA personal access token")
        user_id, number, secret = int(match[1]), int(match[2]), match[3]
        async with self._db.read() as session:
            stored = await account_repo.get_personal_token(session, user_id, number)
            user = await account_repo.get_user(session, user_id) if stored else None
        if (
            stored is None
            or user is None
            or stored.revoked_at is not None
            or user.disabled_at is not None
            or not hmac.compare_digest(stored.secret_hash, hash_secret(secret))
        ):
            raise Unauthenticated("invalid token: it is unknown or has been revoked")
        now = utcnow()
        if stored.last_used_at is None or now - stored.last_used_at >= LAST_USED_INTERVAL:
            async with self._db.write() as session:
                await account_repo.touch_personal_token(session, user_id, number, now)
        return Principal(
            kind="user",
            id=f"personal_token:{user_id}-{number}",
            user_id=user_id,
            email=user.email,
            read_only=True,
        )

    async def create_personal_token(self, ctx: RequestContext, name: str) -> IssuedToken:
        """Create a personal access token for the signed-in user; the secret is returned once."""
        user_id = require_signed_in_user(ctx)
        name = name.strip()
        if not name or len(name) > MAX_PERSONAL_TOKEN_NAME_LENGTH:
            rule = f"1 to {MAX_PERSONAL_TOKEN_NAME_LENGTH} characters"
            raise InvalidInput(
                f"invalid token name {name[:50]!r}: use {rule}",
                details=[FieldError("name", rule)],
            )
        for _ in range(5):
            try:
                return await self._insert_personal_token(ctx, user_id, name)
            except AlreadyExists:
                continue
        raise Conflict("could not allocate a token number: too many concurrent creations")

    async def _insert_personal_token(
        self, ctx: RequestContext, user_id: int, name: str
    ) -> IssuedToken:
        now = utcnow()
        async with self._db.write() as session:
            active = await account_repo.count_active_personal_tokens(session, user_id)
            if active >= MAX_ACTIVE_PERSONAL_TOKENS:
                raise Conflict(
                    f"you have {active} active personal access tokens, the maximum: "
                    "revoke one before creating another"
                )
            token = await account_repo.create_personal_token(
                session, user_id, name=name, secret_hash="0" * 64, now=now
            )
            # The number is chosen inside the insert; the secret's prefix contains it.
            full_token, token.secret_hash = new_personal_token_secret(user_id, token.number)
            await session.flush()
            token_id = f"{user_id}-{token.number}"
            await _audit(session, ctx, "personal_token.create", token_id, {"name": name})
        return IssuedToken(token_id=token_id, secret=full_token)

    async def list_personal_tokens(self, ctx: RequestContext) -> list[PersonalTokenInfo]:
        user_id = require_signed_in_user(ctx, reading=True)
        async with self._db.read() as session:
            tokens = await account_repo.list_personal_tokens(session, user_id)
        return [
            PersonalTokenInfo(
                number=token.number,
                name=token.name,
                created_at=token.created_at,
                last_used_at=token.last_used_at,
                revoked_at=token.revoked_at,
            )
            for token in tokens
        ]

    async def revoke_personal_token(self, ctx: RequestContext, number: int) -> None:
        """Revoke one of the caller's own tokens; revoking twice is not an error."""
        user_id = require_signed_in_user(ctx)
        async with self._db.write() as session:
            token = await account_repo.get_personal_token(session, user_id, number)
            if token is None:
                raise NotFound(f"personal access token {number} not found")
            if token.revoked_at is not None:
                return
            token.revoked_at = utcnow()
            await session.flush()
            await _audit(session, ctx, "personal_token.revoke", f"{user_id}-{number}", {})


def require_signed_in_user(ctx: RequestContext, *, reading: bool = False) -> int:
    """Return the caller's user id; personal access tokens may only read."""
    principal = ctx.principal
    if principal.kind != "user" or principal.user_id is None:
        raise Unauthenticated("sign in first: personal access tokens belong to a user")
    if principal.read_only and not reading:
        raise PermissionDenied(
            "a personal access token cannot manage tokens: sign in with a password"
        )
    return principal.user_id


async def _audit(
    session: AsyncSession, ctx: RequestContext, action: str, target: str, details: dict[str, str]
) -> None:
    await audit_repo.record(
        session,
        INSTANCE_PROJECT_ID,
        actor=ctx.principal.id,
        action=action,
        target=target,
        request_id=ctx.request_id,
        details=dict(details),
        now=utcnow(),
    )
