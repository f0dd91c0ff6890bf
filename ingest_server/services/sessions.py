"""Sign-in sessions, CSRF tokens and the rate limit on failed sign-ins."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import math
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import argon2
from sqlalchemy.ext.asyncio import AsyncSession

from ingest_server.db.engine import Database
from ingest_server.db.models import INSTANCE_PROJECT_ID, User
from ingest_server.repositories import accounts as account_repo
from ingest_server.repositories import audit as audit_repo
from ingest_server.repositories import projects as project_repo
from ingest_server.repositories import sessions as session_repo
from ingest_server.services.clock import utcnow
from ingest_server.services.context import Principal
from ingest_server.services.errors import ServiceError, Unauthenticated

# A session ends 12 hours after sign-in, or after 2 hours without a request.
SESSION_LIFETIME = dt.timedelta(hours=12)
SESSION_IDLE_TIMEOUT = dt.timedelta(hours=2)
# last_seen_at is written at most this often, so reading a page is not a write.
SESSION_TOUCH_INTERVAL = dt.timedelta(minutes=1)

# Failed sign-ins allowed within the window before further attempts are
# rejected without checking the password.
FAILURE_WINDOW = dt.timedelta(minutes=15)
MAX_FAILURES_PER_ACCOUNT = 5
MAX_FAILURES_PER_ADDRESS = 20

MAX_EMAIL_LENGTH = 320
MAX_PASSWORD_LENGTH = 1_024
MAX_USER_AGENT_LENGTH = 300
MAX_ADDRESS_LENGTH = 100

SIGN_IN_FAILED_MESSAGE = "sign-in failed: the email address or the password is wrong"

_password_hasher = argon2.PasswordHasher()
# Unknown emails are verified against this hash, so they cost as much time
# as a wrong password and the timing does not tell which accounts exist.
_DUMMY_HASH = _password_hasher.hash(secrets.token_urlsafe(16))


class SignInFailed(Unauthenticated):
    """Wrong email or password, or a disabled account. The message does not say which."""


class SignInThrottled(ServiceError):
    """Too many failed sign-ins for the account or the address."""

    code = "too_many_requests"

    def __init__(self, message: str, *, retry_after: int = 60) -> None:
        super().__init__(message)
        # Seconds until the oldest counted failure leaves the window.
        self.retry_after = retry_after


@dataclass(frozen=True)
class SignedIn:
    """A new session: the cookie value is returned once and only its hash is stored."""

    cookie_value: str
    csrf_token: str
    user_id: int
    email: str


@dataclass(frozen=True)
class SessionPrincipal:
    """The principal a valid session cookie belongs to, with the session's CSRF token."""

    principal: Principal
    csrf_token: str


@dataclass(frozen=True)
class Attempt:
    """The origin of a sign-in attempt, for the rate limit and the audit trail."""

    address: str
    user_agent: str | None
    request_id: str


def hash_session_id(cookie_value: str) -> str:
    return hashlib.sha256(cookie_value.encode()).hexdigest()


def user_principal(user: User) -> Principal:
    return Principal(kind="user", id=f"user:{user.id}", user_id=user.id, email=user.email)


def _verify_password(password_hash: str, password: str) -> bool:
    try:
        return _password_hasher.verify(password_hash, password)
    except (argon2.exceptions.VerificationError, argon2.exceptions.InvalidHashError):
        return False


class SessionService:
    """Sign people in and out, and turn a session cookie back into a Principal."""

    def __init__(self, database: Database, clock: Callable[[], dt.datetime] = utcnow) -> None:
        self._db = database
        self._now = clock

    async def sign_in(
        self, email: str, password: str, attempt: Attempt, *, replaces: str | None = None
    ) -> SignedIn:
        """Check the password and open a new session, or raise SignInFailed or SignInThrottled.

        A throttled attempt is rejected before the password is checked. The
        new session always has a new id. The session of the cookie value
        ``replaces``, sent before signing in, is deleted.
        """
        email = email.strip().lower()[:MAX_EMAIL_LENGTH]
        address = attempt.address[:MAX_ADDRESS_LENGTH]
        now = self._now()
        await self._check_rate_limit(email, address, attempt, now)

        async with self._db.read() as session:
            user = await project_repo.get_user_by_email(session, email) if email else None
        password = password[:MAX_PASSWORD_LENGTH]
        stored_hash = user.password_hash if user is not None else _DUMMY_HASH
        # argon2 takes tens of milliseconds of CPU, so it runs off the event
        # loop to avoid stalling the other requests.
        valid = await asyncio.to_thread(_verify_password, stored_hash, password)
        if user is None or not valid or user.disabled_at is not None:
            reason = "unknown_email" if user is None else "wrong_password"
            if user is not None and valid:
                reason = "disabled"
            await self._record_failure(email, address, attempt, reason, now)
            raise SignInFailed(SIGN_IN_FAILED_MESSAGE)
        return await self._open_session(user, password, attempt, now, replaces)

    async def authenticate(self, cookie_value: str) -> SessionPrincipal | None:
        """Return the principal of a valid session, or None for an unknown or ended one."""
        id_hash = hash_session_id(cookie_value)
        now = self._now()
        async with self._db.read() as session:
            found = await session_repo.get_session_with_user(session, id_hash)
        if found is None:
            return None
        row, user = found
        if self._ended(row.expires_at, row.last_seen_at, now) or user.disabled_at is not None:
            async with self._db.write() as session:
                await session_repo.delete_session(session, id_hash)
            return None
        if now - row.last_seen_at >= SESSION_TOUCH_INTERVAL:
            async with self._db.write() as session:
                await session_repo.touch_session(session, id_hash, now)
        return SessionPrincipal(principal=user_principal(user), csrf_token=row.csrf_token)

    async def sign_out(self, cookie_value: str, request_id: str) -> None:
        """Delete the session of cookie_value. Signing out twice is not an error."""
        id_hash = hash_session_id(cookie_value)
        async with self._db.write() as session:
            found = await session_repo.get_session_with_user(session, id_hash)
            if found is None:
                return
            _, user = found
            await session_repo.delete_session(session, id_hash)
            await self._audit(
                session, f"user:{user.id}", "session.sign_out", user.email, request_id, {}
            )

    @staticmethod
    def _ended(expires_at: dt.datetime, last_seen_at: dt.datetime, now: dt.datetime) -> bool:
        return now >= expires_at or now - last_seen_at >= SESSION_IDLE_TIMEOUT

    async def _check_rate_limit(
        self, email: str, address: str, attempt: Attempt, now: dt.datetime
    ) -> None:
        # NOTE: counting and recording are separate transactions, so attempts
        # that run at the same moment may each pass. The excess is at most the
        # number of concurrent attempts. Each throttled attempt is audited, so
        # a flood of them grows audit_events.
        since = now - FAILURE_WINDOW
        async with self._db.read() as session:
            by_account = await session_repo.count_failures(session, "account", email, since)
            by_address = await session_repo.count_failures(session, "address", address, since)
        limits = (
            ("account", by_account, MAX_FAILURES_PER_ACCOUNT),
            ("address", by_address, MAX_FAILURES_PER_ADDRESS),
        )
        for scope, (count, oldest), limit in limits:
            if count < limit or oldest is None:
                continue
            retry_after = max(1, math.ceil((oldest + FAILURE_WINDOW - now).total_seconds()))
            async with self._db.write() as session:
                details = {"address": address, "scope": scope, "retry_after": retry_after}
                await self._audit(
                    session,
                    "anonymous",
                    "session.sign_in_throttled",
                    email,
                    attempt.request_id,
                    details,
                )
            raise SignInThrottled(
                f"too many failed sign-ins for this {scope}: try again in {_minutes(retry_after)}",
                retry_after=retry_after,
            )

    async def _record_failure(
        self, email: str, address: str, attempt: Attempt, reason: str, now: dt.datetime
    ) -> None:
        async with self._db.write() as session:
            await session_repo.delete_failures_before(session, now - FAILURE_WINDOW)
            if email:
                await session_repo.add_failure(session, "account", email, now)
            await session_repo.add_failure(session, "address", address, now)
            details = {"address": address, "reason": reason}
            await self._audit(
                session, "anonymous", "session.sign_in_failed", email, attempt.request_id, details
            )

    async def _open_session(
        self, user: User, password: str, attempt: Attempt, now: dt.datetime, replaces: str | None
    ) -> SignedIn:
        cookie_value = secrets.token_urlsafe(32)
        csrf_token = secrets.token_urlsafe(32)
        async with self._db.write() as session:
            if replaces:
                await session_repo.delete_session(session, hash_session_id(replaces))
            await session_repo.delete_stale_sessions(
                session, now=now, idle_since=now - SESSION_IDLE_TIMEOUT
            )
            await session_repo.create_session(
                session,
                id_hash=hash_session_id(cookie_value),
                user_id=user.id,
                csrf_token=csrf_token,
                now=now,
                expires_at=now + SESSION_LIFETIME,
                address=attempt.address[:MAX_ADDRESS_LENGTH] or None,
                user_agent=(attempt.user_agent or "")[:MAX_USER_AGENT_LENGTH] or None,
            )
            # A success clears the account's failures, so its owner is not
            # locked out by earlier typos. The address's count stays.
            await session_repo.delete_failures(session, "account", user.email)
            if _password_hasher.check_needs_rehash(user.password_hash):
                stored = await account_repo.get_user(session, user.id)
                if stored is not None:
                    stored.password_hash = _password_hasher.hash(password)
            details = {"address": attempt.address[:MAX_ADDRESS_LENGTH]}
            await self._audit(
                session,
                f"user:{user.id}",
                "session.sign_in",
                user.email,
                attempt.request_id,
                details,
            )
        return SignedIn(cookie_value, csrf_token, user.id, user.email)

    @staticmethod
    async def _audit(
        session: AsyncSession,
        actor: str,
        action: str,
        target: str,
        request_id: str,
        details: Mapping[str, object],
    ) -> None:
        await audit_repo.record(
            session,
            INSTANCE_PROJECT_ID,
            actor=actor,
            action=action,
            target=target[:400],
            request_id=request_id,
            details=dict(details),
            now=utcnow(),
        )


def _minutes(seconds: int) -> str:
    minutes = math.ceil(seconds / 60)
    return "1 minute" if minutes == 1 else f"{minutes} minutes"
