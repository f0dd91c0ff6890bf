"""The one error envelope, the HTML error page, and the mapping of every failure onto them."""

from __future__ import annotations

import json

from aiohttp import web

from ingest_server.services import errors
from ingest_server.services.ingest import BatchTooLarge
from ingest_server.services.live import TooManyStreams
from ingest_server.services.sessions import SignInThrottled
from ingest_server.web.templating import render

# Paths outside the browser pages: their errors use the JSON envelope.
NON_PAGE_PREFIXES = ("/api/", "/static/")
NON_PAGE_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})

STATUS_TITLES = {
    400: "Bad request",
    401: "Sign-in required",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    413: "Request too large",
    415: "Unsupported media type",
    422: "Invalid input",
    429: "Too many requests",
    500: "Server error",
}

STATUS_BY_ERROR: dict[type[errors.ServiceError], int] = {
    BatchTooLarge: 413,
    SignInThrottled: 429,
    TooManyStreams: 503,
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


class CsrfRejected(RequestError):
    """A state-changing request of a session without the session's CSRF token."""

    def __init__(self, message: str) -> None:
        super().__init__(403, "csrf_failed", message)


def is_page_path(path: str) -> bool:
    """Return whether path belongs to the HTML pages rather than the API or system routes."""
    return not path.startswith(NON_PAGE_PREFIXES) and path not in NON_PAGE_PATHS


def retry_after_headers(error: errors.ServiceError) -> dict[str, str] | None:
    if isinstance(error, SignInThrottled):
        return {"Retry-After": str(error.retry_after)}
    return None


def error_page(
    request: web.Request,
    status: int,
    message: str,
    request_id: str,
    headers: dict[str, str] | None = None,
) -> web.Response:
    """Render the HTML error page; pages show it where the API returns the envelope."""
    context = {
        "status": status,
        "title": STATUS_TITLES.get(status, "Error"),
        "message": message,
        "request_id": request_id,
    }
    response = render(request, "error.html", context, status=status)
    response.headers.update(headers or {})
    return response


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


def from_http_exception(
    exc: web.HTTPException, request_id: str, page_request: web.Request | None = None
) -> web.Response:
    """Map an aiohttp HTTP error to the envelope, or to the error page when page_request is set."""
    code = HTTP_ERROR_CODES.get(exc.status, "http_error")
    message = exc.reason
    if exc.status == 404:
        message = "no such route: see /api/v1/openapi.json for the API's routes"
        if page_request is not None:
            message = "no such page: check the address, or start from your projects"
    elif exc.status == 405:
        message = f"method not allowed: use {exc.headers.get('Allow', 'another method')}"
    elif exc.status == 413:
        message = exc.text or "request body too large"
    headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
    if page_request is not None:
        return error_page(page_request, exc.status, message, request_id, headers)
    return error_response(exc.status, code, message, request_id, headers=headers)
