"""The one error envelope, and the mapping of every failure onto it."""

from __future__ import annotations

import json

from aiohttp import web

from ingest_server.services import errors
from ingest_server.services.ingest import BatchTooLarge

STATUS_BY_ERROR: dict[type[errors.ServiceError], int] = {
    BatchTooLarge: 413,
    errors.InvalidInput: 422,
    errors.NotFound: 404,
    errors.Unauthenticated: 401,
    errors.PermissionDenied: 403,
    errors.Conflict: 409,
}


class RequestError(errors.ServiceError):
    """A problem with the HTTP request itself, found by the web layer."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        details: list[errors.FieldError] | None = None,
    ) -> None:
        super().__init__(message, details=details)
        self.status = status
        self.code = code


def status_for(error: errors.ServiceError) -> int:
    if isinstance(error, RequestError):
        return error.status
    for error_type in type(error).__mro__:
        if error_type in STATUS_BY_ERROR:
            return STATUS_BY_ERROR[error_type]
    return 400


def error_response(
    status: int,
    code: str,
    message: str,
    request_id: str,
    details: list[errors.FieldError] | None = None,
    headers: dict[str, str] | None = None,
) -> web.Response:
    body = {
        "error": {
            "code": code,
            "message": message,
            "request_id": request_id,
            "details": [{"field": d.field, "message": d.message} for d in details or []],
        }
    }
    return web.Response(
        status=status,
        body=json.dumps(body).encode(),
        content_type="application/json",
        headers=headers,
    )


# Codes for the HTTP errors aiohttp raises itself (unknown route, wrong method).
HTTP_ERROR_CODES = {
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
}


def from_http_exception(exc: web.HTTPException, request_id: str) -> web.Response:
    code = HTTP_ERROR_CODES.get(exc.status, "http_error")
    message = exc.reason
    if exc.status == 404:
        message = "no such route: see /api/v1/openapi.json for the API's routes"
    elif exc.status == 405:
        message = f"method not allowed: use {exc.headers.get('Allow', 'another method')}"
    elif exc.status == 413:
        message = exc.text or "request body too large"
    headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
    return error_response(exc.status, code, message, request_id, headers=headers)
