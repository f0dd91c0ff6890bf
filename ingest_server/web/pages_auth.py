"""Sign-in, sign-out, account and project settings pages."""

from __future__ import annotations

import secrets
from collections.abc import Mapping

from aiohttp import web

from ingest_server.services.admin import MAX_TOKEN_NAME_LENGTH, UnknownUser
from ingest_server.services.auth import IssuedToken
from ingest_server.services.authz import TOKEN_ROLES, Role
from ingest_server.services.errors import Conflict, FieldError, InvalidInput, NotFound
from ingest_server.services.sessions import (
    MAX_EMAIL_LENGTH,
    MAX_PASSWORD_LENGTH,
    Attempt,
    SignedIn,
    SignInFailed,
    SignInThrottled,
)
from ingest_server.web.errors import status_for
from ingest_server.web.keys import AUTH_FAILURES_KEY, METRICS_KEY, SERVICES_KEY, get_context
from ingest_server.web.middlewares import (
    LOGIN_CSRF_COOKIE,
    LOGIN_PATH,
    SESSION_COOKIE,
    clear_session_cookie,
    cookies_secure,
    safe_next,
    set_session_cookie,
)
from ingest_server.web.requests import (
    FORM_CONTENT_TYPES,
    check_query,
    parse_number,
    read_form_body,
)
from ingest_server.web.templating import render

LOGIN_CSRF_MAX_AGE = 2 * 60 * 60
MAX_NUMBER = 10**10


class FormError(InvalidInput):
    """A form field is missing or breaks a rule; the page is shown again with the message."""


async def read_form(request: web.Request) -> Mapping[str, object]:
    if request.content_type not in FORM_CONTENT_TYPES:
        raise FormError(
            f"unsupported content type {request.content_type!r}: submit the form from the page"
        )
    return await read_form_body(request)


def form_text(
    form: Mapping[str, object], name: str, label: str, maximum: int, *, strip: bool = True
) -> str:
    """Return a required text field, or raise FormError naming it and its limit."""
    value = form.get(name)
    if not isinstance(value, str):
        raise FormError(f"missing {label}: fill in the field")
    if strip:
        value = value.strip()
    if not value:
        raise FormError(f"missing {label}: fill in the field")
    if len(value) > maximum:
        raise FormError(f"invalid {label}: use at most {maximum} characters")
    return value


def path_number(request: web.Request, name: str, label: str) -> int:
    """Return a positive integer path parameter; any other value is a 404 like an unknown one."""
    value = request.match_info[name]
    number = parse_number(value)
    if number is None or not 0 < number < MAX_NUMBER:
        raise NotFound(f"{label} {value[:20]!r} not found: {label}s are positive numbers")
    return number


def see_other(location: str) -> web.Response:
    return web.Response(status=303, headers={"Location": location})


# --- sign-in and sign-out ---------------------------------------------------


async def root(request: web.Request) -> web.Response:
    return see_other("/projects")


async def login_form(request: web.Request) -> web.Response:
    ctx = get_context(request)
    next_path = safe_next(request.query.get("next"))
    if ctx.csrf_token is not None:  # already signed in through the session cookie
        return see_other(next_path)
    return _render_login(request, next_path, email="", message=None, status=200)


def _render_login(
    request: web.Request,
    next_path: str,
    *,
    email: str,
    message: str | None,
    status: int,
    headers: Mapping[str, str] | None = None,
) -> web.Response:
    token = request.cookies.get(LOGIN_CSRF_COOKIE) or secrets.token_urlsafe(32)
    context = {"login_csrf": token, "next_path": next_path, "email": email, "message": message}
    response = render(request, "auth/login.html", context, status=status)
    response.headers.update(headers or {})
    response.set_cookie(
        LOGIN_CSRF_COOKIE,
        token,
        max_age=LOGIN_CSRF_MAX_AGE,
        path=LOGIN_PATH,
        httponly=True,
        samesite="Strict",
        secure=cookies_secure(request),
    )
    return response


async def login(request: web.Request) -> web.Response:
    form = await read_form(request)
    raw_next = form.get("next")
    next_path = safe_next(raw_next if isinstance(raw_next, str) else None)
    raw_email = form.get("email")
    email = raw_email.strip()[:MAX_EMAIL_LENGTH] if isinstance(raw_email, str) else ""
    try:
        email = form_text(form, "email", "email address", MAX_EMAIL_LENGTH)
        password = form_text(form, "password", "password", MAX_PASSWORD_LENGTH, strip=False)
    except FormError as exc:
        return _render_login(request, next_path, email=email, message=exc.message, status=422)

    try:
        signed_in = await _sign_in(request, email, password)
    except SignInThrottled as exc:
        _log_failure(request, email, "throttled")
        headers = {"Retry-After": str(exc.retry_after)}
        return _render_login(
            request, next_path, email=email, message=exc.message, status=429, headers=headers
        )
    except SignInFailed as exc:
        _log_failure(request, email, "wrong email address or password")
        return _render_login(request, next_path, email=email, message=exc.message, status=401)

    response = see_other(next_path)
    set_session_cookie(request, response, signed_in.cookie_value)
    response.del_cookie(LOGIN_CSRF_COOKIE, path=LOGIN_PATH)
    return response


async def _sign_in(request: web.Request, email: str, password: str) -> SignedIn:
    attempt = Attempt(
        address=request.remote or "unknown",
        user_agent=request.headers.get("User-Agent"),
        request_id=get_context(request).request_id,
    )
    return await request.app[SERVICES_KEY].sessions.sign_in(
        email, password, attempt, replaces=request.cookies.get(SESSION_COOKIE)
    )


def _log_failure(request: web.Request, email: str, reason: str) -> None:
    # Repeats within a minute are folded into one line with a count.
    request.app[METRICS_KEY].auth_failures.inc()
    request.app[AUTH_FAILURES_KEY].record(
        "sign-in failed for %r from %s: %s", email, request.remote, reason
    )


async def logout(request: web.Request) -> web.Response:
    ctx = get_context(request)
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie:
        await request.app[SERVICES_KEY].sessions.sign_out(cookie, ctx.request_id)
    response = see_other(LOGIN_PATH)
    clear_session_cookie(response)
    return response


# --- personal access tokens -------------------------------------------------


# Success messages shown after a redirect-after-POST, by the value of ?done=.
DONE_MESSAGES = {
    "token-revoked": "Token revoked.",
    "member-saved": "Member saved.",
    "member-removed": "Member removed.",
}


def _done_message(request: web.Request) -> str | None:
    check_query(request, ("done",))
    done = request.query.get("done")
    if done is None:
        return None
    if done not in DONE_MESSAGES:
        raise InvalidInput(
            f"invalid done value {done[:40]!r}: use one of {', '.join(DONE_MESSAGES)}",
            details=[FieldError("done", f"one of {', '.join(DONE_MESSAGES)}")],
        )
    return DONE_MESSAGES[done]


async def account(request: web.Request) -> web.Response:
    return await _render_account(request, success=_done_message(request))


async def _render_account(
    request: web.Request,
    *,
    issued: IssuedToken | None = None,
    message: str | None = None,
    success: str | None = None,
    status: int = 200,
) -> web.Response:
    ctx = get_context(request)
    tokens = await request.app[SERVICES_KEY].auth.list_personal_tokens(ctx)
    context = {
        "tokens": tokens,
        "issued": issued,
        "message": message,
        "success": success,
        "max_name_length": MAX_TOKEN_NAME_LENGTH,
    }
    return render(request, "account/index.html", context, status=status)


async def create_personal_token(request: web.Request) -> web.Response:
    ctx = get_context(request)
    form = await read_form(request)
    try:
        name = form_text(form, "name", "token name", MAX_TOKEN_NAME_LENGTH)
        issued = await request.app[SERVICES_KEY].auth.create_personal_token(ctx, name)
    except (InvalidInput, Conflict) as exc:
        return await _render_account(request, message=exc.message, status=status_for(exc))
    # The page that shows the secret is the POST's response, so the secret
    # is never in a URL or a cached page (render sets Cache-Control: no-store).
    return await _render_account(request, issued=issued, status=201)


async def revoke_personal_token(request: web.Request) -> web.Response:
    ctx = get_context(request)
    number = path_number(request, "number", "personal access token")
    await request.app[SERVICES_KEY].auth.revoke_personal_token(ctx, number)
    return see_other("/account?done=token-revoked")


# --- project settings -------------------------------------------------------


def _settings_path(key: str) -> str:
    return f"/projects/{key}/settings"


async def settings(request: web.Request) -> web.Response:
    return await _render_settings(request, success=_done_message(request))


async def _render_settings(
    request: web.Request,
    *,
    issued: IssuedToken | None = None,
    message: str | None = None,
    success: str | None = None,
    status: int = 200,
) -> web.Response:
    ctx = get_context(request)
    overview = await request.app[SERVICES_KEY].admin.settings_overview(ctx)
    context = {
        "overview": overview,
        "issued": issued,
        "message": message,
        "success": success,
        "roles": [role.value for role in Role],
        "token_roles": [role.value for role in TOKEN_ROLES],
        "max_name_length": MAX_TOKEN_NAME_LENGTH,
    }
    return render(request, "settings/index.html", context, status=status)


async def create_project_token(request: web.Request) -> web.Response:
    ctx = get_context(request)
    form = await read_form(request)
    admin = request.app[SERVICES_KEY].admin
    try:
        name = form_text(form, "name", "token name", MAX_TOKEN_NAME_LENGTH)
        role = form_text(form, "role", "role", 20)
        issued = await admin.create_token(ctx, name, role)
    except (InvalidInput, Conflict) as exc:
        return await _render_settings(request, message=exc.message, status=status_for(exc))
    return await _render_settings(request, issued=issued, status=201)


async def revoke_project_token(request: web.Request) -> web.Response:
    ctx = get_context(request)
    number = path_number(request, "number", "token")
    await request.app[SERVICES_KEY].admin.revoke_token(ctx, number)
    return see_other(_settings_path(ctx.project_key or "") + "?done=token-revoked")


async def set_member(request: web.Request) -> web.Response:
    ctx = get_context(request)
    form = await read_form(request)
    admin = request.app[SERVICES_KEY].admin
    try:
        email = form_text(form, "email", "email address", MAX_EMAIL_LENGTH)
        role = form_text(form, "role", "role", 20)
        await admin.set_member(ctx, email, role)
    except (InvalidInput, Conflict, UnknownUser) as exc:
        return await _render_settings(request, message=exc.message, status=status_for(exc))
    return see_other(_settings_path(ctx.project_key or "") + "?done=member-saved")


async def remove_member(request: web.Request) -> web.Response:
    ctx = get_context(request)
    user_id = path_number(request, "user_id", "user")
    await request.app[SERVICES_KEY].admin.remove_member(ctx, user_id)
    return see_other(_settings_path(ctx.project_key or "") + "?done=member-removed")


def add_routes(app: web.Application) -> None:
    """Register this module's routes."""
    router = app.router
    router.add_get("/", root, name="root")
    router.add_get(LOGIN_PATH, login_form, name="login_form")
    router.add_post(LOGIN_PATH, login, name="login")
    router.add_post("/logout", logout, name="logout")
    router.add_get("/account", account, name="account")
    router.add_post("/account/tokens", create_personal_token, name="account_token_create")
    router.add_post(
        "/account/tokens/{number}/revoke",
        revoke_personal_token,
        name="account_token_revoke",
    )
    settings_path = "/projects/{key}/settings"
    router.add_get(settings_path, settings, name="settings")
    router.add_post(f"{settings_path}/tokens", create_project_token, name="settings_token_create")
    router.add_post(
        f"{settings_path}/tokens/{{number}}/revoke",
        revoke_project_token,
        name="settings_token_revoke",
    )
    router.add_post(f"{settings_path}/members", set_member, name="settings_member_set")
    router.add_post(
        f"{settings_path}/members/{{user_id}}/remove", remove_member, name="settings_member_remove"
    )
