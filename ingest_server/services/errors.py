"""Typed domain errors; the web layer maps each to one HTTP status and error code."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FieldError:
    """One invalid value: where it is (a dotted path) and what is allowed."""

    field: str | None
    message: str


class ServiceError(Exception):
    """Base of the errors a use case raises on purpose."""

    code = "error"

    def __init__(self, message: str, *, details: list[FieldError] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or []


class NotFound(ServiceError):
    """The thing does not exist, or the caller may not know that it does."""

    code = "not_found"


class Unauthenticated(ServiceError):
    """No credentials, or credentials that are unknown, malformed or revoked."""

    code = "unauthenticated"


class PermissionDenied(ServiceError):
    """The caller sees the project but its role lacks the permission."""

    code = "permission_denied"


class InvalidInput(ServiceError):
    """A value breaks a rule; details name each field."""

    code = "validation_error"


class Conflict(ServiceError):
    """The request contradicts stored state (a duplicate key, a finished session)."""

    code = "conflict"
