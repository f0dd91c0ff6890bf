"""Authentication of callers and resolution of their rights on the project in scope."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from ingest_server.db.engine import Database
from ingest_server.repositories import projects as project_repo
from ingest_server.repositories import tokens as token_repo
from ingest_server.services.authz import Action, Role, actions_for
from ingest_server.services.context import Principal, ProjectScope
from ingest_server.services.errors import Unauthenticated

TOKEN_PREFIX = "tqa"  # noqa: S105 - a public prefix, not a secret
# tqa_<project id>_<token number>_<secret>; the ids make the lookup a
# primary-key read inside the token's own project.
TOKEN_PATTERN = re.compile(r"^tqa_([1-9][0-9]{0,9})_([1-9][0-9]{0,9})_([A-Za-z0-9_-]{43})$")


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
        return ProjectScope(project.id, project.key, project.name, role, actions_for(role))

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
