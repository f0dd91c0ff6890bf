"""Middlewares: the request boundary (id, errors, logs, metrics) and the RequestContext."""

from __future__ import annotations

import hmac
import re
import time
import uuid
from dataclasses import dataclass
from urllib.parse import quote, urlsplit

from aiohttp import web
from aiohttp.typedefs import Handler

from ingest_server.logs import access_logger, request_fields, server_logger
from ingest_server.services.auth import parse_bearer
from ingest_server.services.context import ANONYMOUS, Principal, RequestContext
from ingest_server.services.errors import NotFound, ServiceError, Unauthenticated
from ingest_server.services.sessions import SESSION_LIFETIME
from ingest_server.web.errors import (
    CsrfRejected,
    error_page,
    error_response,
    from_http_exception,
    is_page_path,
    retry_after_headers,
    status_for,
)
from ingest_server.web.keys import (
    AUTH_FAILURES_KEY,
    LOG_FIELDS_KEY,
    METRICS_KEY,
    SERVICES_KEY,
    get_request_id,
    set_context,
    set_request_id,
)
from ingest_server.web.requests import FORM_CONTENT_TYPES, read_form_body

REQUEST_ID_HEADER = "X-Request-ID"
REQUEST_ID_PATTERN = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")

SESSION_COOKIE = "testoqa_session"
# The sign-in form has no session yet, so it carries a double-submit token:
# the form field must equal this cookie, which other sites cannot read or set.
LOGIN_CSRF_COOKIE = "testoqa_login_csrf"
LOGIN_PATH = "/login"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# Routes that need no caller at all; a bad Authorization header is ignored there.
PUBLIC_PATHS = frozenset({"/healthz", "/readyz", "/metrics", "/api/v1/openapi.json"})
DEFAULT_NEXT = "/projects"
MAX_NEXT_LENGTH = 2_000


def request_id_for(request: web.Request) -> str:
    """Return the client's X-Request-ID when well-formed, else a new id."""
    supplied = request.headers.get(REQUEST_ID_HEADER, "")
    if REQUEST_ID_PATTERN.match(supplied):
        return supplied
    return uuid.uuid4().hex


def route_label(request: web.Request) -> str:
    """Return the matched route's path template, so metrics stay low in cardinality."""
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "unmatched"


@web.middleware
async def boundary_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Give the request an id, turn every failure into the error envelope, log and count it."""
    request_id = request_id_for(request)
    set_request_id(request, request_id)
    token = request_fields.set((("request_id", request_id),))
    started = time.perf_counter()
    try:
        response = await _answer(request, handler, request_id)
    finally:
        request_fields.reset(token)
    response.headers[REQUEST_ID_HEADER] = request_id
    _observe(request, response, time.perf_counter() - started, request_id)
    return response


async def _answer(request: web.Request, handler: Handler, request_id: str) -> web.StreamResponse:
    page = is_page_path(request.path)
    try:
        return await handler(request)
    except ServiceError as exc:
        status = status_for(exc)
        headers = retry_after_headers(exc)
        if page:
            return error_page(request, status, exc.message, request_id, headers)
        return error_response(status, exc.code, exc.message, request_id, exc.details, headers)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return from_http_exception(exc, request_id, request if page else None)
    except Exception:
        server_logger.exception(
            "unexpected error while handling %s %s", request.method, request.path
        )
        message = f"internal server error; quote request id {request_id}"
        if page:
            return error_page(request, 500, message, request_id)
        return error_response(500, "internal_error", message, request_id)


def _observe(
    request: web.Request, response: web.StreamResponse, elapsed: float, request_id: str
) -> None:
    metrics = request.app[METRICS_KEY]
    route = route_label(request)
    metrics.requests.labels(request.method, route, str(response.status)).inc()
    metrics.latency.labels(request.method, route).observe(elapsed)
    ctx_fields = request.get(LOG_FIELDS_KEY, {})
    access_logger.info(
        '"%s %s" %d %.1fms',
        request.method,
        request.rel_url.path,
        response.status,
        elapsed * 1000,
        extra={
            "request_id": request_id,
            "project_id": ctx_fields.get("project_id", "-"),
            "principal": ctx_fields.get("principal", "-"),
        },
    )


@dataclass(frozen=True)
class Caller:
    """The sender of a request and its credentials: only session callers need a CSRF token."""

    principal: Principal
    csrf_token: str | None = None
    # True when the request carried a session cookie that is unknown or has ended.
    stale_cookie: bool = False


@web.middleware
async def context_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Resolve who is calling and on which project before any handler runs.

    Page routes send signed-out visitors to the sign-in page, and every
    state-changing request authenticated by the session cookie must carry
    the session's CSRF token.
    """
    services = request.app[SERVICES_KEY]
    project_key = request.match_info.get("key")
    caller = await _identify(request)
    scope = None
    if project_key is not None:
        scope = await services.auth.resolve_scope(caller.principal, project_key)
    ctx = RequestContext(
        request_id=get_request_id(request),
        principal=caller.principal,
        project_key=project_key,
        project=scope,
        base_url=services.settings.public_url or f"{request.scheme}://{request.host}",
        csrf_token=caller.csrf_token,
    )
    fields = ctx.log_fields()
    request[LOG_FIELDS_KEY] = fields
    request_fields.set(tuple(fields.items()))
    set_context(request, ctx)

    response = await _guard(request, handler, ctx, caller)
    # An unknown or ended session's cookie is cleared, unless the handler
    # has just issued a new one (signing in over a stale cookie).
    if caller.stale_cookie and not response.prepared and SESSION_COOKIE not in response.cookies:
        clear_session_cookie(response)
    return response


async def _guard(
    request: web.Request, handler: Handler, ctx: RequestContext, caller: Caller
) -> web.StreamResponse:
    matched = request.match_info.http_exception is None
    page = matched and is_page_path(request.path)
    if page and ctx.principal.kind == "anonymous" and request.path != LOGIN_PATH:
        return redirect_to_login(request)
    if request.method not in SAFE_METHODS:
        if request.path == LOGIN_PATH:
            await _check_login_csrf(request)
        elif caller.csrf_token is not None:
            await _check_session_csrf(request, caller.csrf_token)
    if page and ctx.project_key is not None and ctx.project is None:
        raise NotFound(f"project {ctx.project_key!r} not found")
    return await handler(request)


async def _identify(request: web.Request) -> Caller:
    """Return the caller: a Bearer token first, else the session cookie, else anonymous."""
    if request.path in PUBLIC_PATHS or request.path.startswith("/static/"):
        return Caller(ANONYMOUS)
    if "Authorization" in request.headers:
        return Caller(await _authenticate(request))
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie:
        found = await request.app[SERVICES_KEY].sessions.authenticate(cookie)
        if found is not None:
            return Caller(found.principal, found.csrf_token)
    if request.path.startswith("/api/") and request.match_info.http_exception is None:
        # API routes return 401 without credentials, before the body is read.
        await _authenticate(request)
    return Caller(ANONYMOUS, stale_cookie=bool(cookie))


async def _authenticate(request: web.Request) -> Principal:
    services = request.app[SERVICES_KEY]
    try:
        token = parse_bearer(request.headers.get("Authorization"))
        return await services.auth.authenticate_token(token)
    except Unauthenticated as exc:
        request.app[METRICS_KEY].auth_failures.inc()
        request.app[AUTH_FAILURES_KEY].record(
            "authentication failed for %s %s from %s: %s",
            request.method,
            request.rel_url.path,
            request.remote,
            exc.message,
        )
        raise


async def submitted_csrf_token(request: web.Request) -> str:
    """Return the CSRF token of a request: the X-CSRF-Token header, else the form field."""
    header = request.headers.get(CSRF_HEADER)
    if header:
        return header
    if request.content_type in FORM_CONTENT_TYPES:
        form = await read_form_body(request)
        value = form.get(CSRF_FIELD)
        return value if isinstance(value, str) else ""
    return ""


def _tokens_match(submitted: str, expected: str) -> bool:
    return bool(submitted) and hmac.compare_digest(submitted.encode(), expected.encode())


async def _check_session_csrf(request: web.Request, expected: str) -> None:
    if not _tokens_match(await submitted_csrf_token(request), expected):
        raise CsrfRejected(
            "missing or invalid CSRF token: reload the page and submit the form again "
            f"(API clients send the session's token in the {CSRF_HEADER} header)"
        )


async def _check_login_csrf(request: web.Request) -> None:
    expected = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    if not expected or not _tokens_match(await submitted_csrf_token(request), expected):
        raise CsrfRejected(
            "missing or invalid CSRF token on the sign-in form: reload the sign-in page "
            "(with cookies enabled) and sign in again"
        )


def safe_next(value: str | None) -> str:
    """Return value if it is a path on this server, else the default landing page.

    Rejects anything a browser could resolve to another host: scheme or
    authority (``https://x``, ``//x``), backslashes (``/\\x``), control
    characters, and the sign-in page itself.
    """
    if not value or len(value) > MAX_NEXT_LENGTH:
        return DEFAULT_NEXT
    if not value.startswith("/") or value.startswith("//") or "\\" in value:
        return DEFAULT_NEXT
    if any(ord(char) < 0x20 or ord(char) == 0x7F for char in value):
        return DEFAULT_NEXT
    parts = urlsplit(value)
    if parts.scheme or parts.netloc or parts.path.startswith(LOGIN_PATH):
        return DEFAULT_NEXT
    return value


def redirect_to_login(request: web.Request) -> web.Response:
    """Return a 303 to the sign-in page that leads back to this page afterwards."""
    location = LOGIN_PATH
    if request.method in ("GET", "HEAD"):
        location = f"{LOGIN_PATH}?next={quote(request.path_qs, safe='/')}"
    return web.Response(status=303, headers={"Location": location})


def cookies_secure(request: web.Request) -> bool:
    """Return whether cookies get the Secure attribute: served or published over HTTPS."""
    public_url = request.app[SERVICES_KEY].settings.public_url or ""
    return request.secure or public_url.lower().startswith("https://")


def set_session_cookie(
    request: web.Request, response: web.StreamResponse, cookie_value: str
) -> None:
    response.set_cookie(
        SESSION_COOKIE,
        cookie_value,
        max_age=int(SESSION_LIFETIME.total_seconds()),
        path="/",
        httponly=True,
        samesite="Lax",
        secure=cookies_secure(request),
    )


def clear_session_cookie(response: web.StreamResponse) -> None:
    response.del_cookie(SESSION_COOKIE, path="/")
