"""Sign-in, sessions, sign-out and the sign-in rate limit through the real app."""

from __future__ import annotations

import datetime as dt
import ssl
from collections.abc import AsyncIterator
from html.parser import HTMLParser
from http.cookies import SimpleCookie
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, make_mocked_request
from sqlalchemy import select, update

from ingest_server.config import Settings
from ingest_server.db.models import INSTANCE_PROJECT_ID, AuditEvent, User, UserSession
from ingest_server.services import sessions as session_service
from ingest_server.services.container import Services
from ingest_server.web.app import create_app
from ingest_server.web.middlewares import LOGIN_CSRF_COOKIE, SESSION_COOKIE, cookies_secure
from tests.conftest import SIGN_IN_PASSWORD, Tenant, create_member, input_values, sign_in

WRONG_PASSWORD = "not the right password"


class FlashText(HTMLParser):
    """Collect the text of elements with the class 'flash'."""

    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []
        self._depth = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        classes = (dict(attrs).get("class") or "").split()
        if self._depth:
            self._depth += 1
        elif "flash" in classes:
            self._depth = 1
            self.messages.append("")

    def handle_endtag(self, tag: str) -> None:
        if self._depth:
            self._depth -= 1

    def handle_data(self, data: str) -> None:
        if self._depth:
            self.messages[-1] += data


def flash_messages(html: str) -> list[str]:
    parser = FlashText()
    parser.feed(html)
    return [message.strip() for message in parser.messages]


def set_cookie(response: Any, name: str) -> Any:
    """Return the Morsel of the Set-Cookie header for name in response."""
    for header in response.headers.getall("Set-Cookie", []):
        cookie: SimpleCookie = SimpleCookie()
        cookie.load(header)
        if name in cookie:
            return cookie[name]
    raise AssertionError(f"no Set-Cookie for {name!r} in {response.headers}")


async def login_token(client: Any) -> str:
    response = await client.get("/login")
    assert response.status == 200
    [token] = input_values(await response.text(), "csrf_token")
    return token


async def post_login(client: Any, email: str, password: str, next_path: str | None = None) -> Any:
    form = {"email": email, "password": password, "csrf_token": await login_token(client)}
    if next_path is not None:
        form["next"] = next_path
    return await client.post("/login", data=form, allow_redirects=False)


def session_cookie(client: Any) -> str | None:
    for cookie in client.session.cookie_jar:
        if cookie.key == SESSION_COOKIE:
            return str(cookie.value)
    return None


def replay_cookie(client: Any, value: str) -> None:
    """Make value the client's only session cookie, as a replayed stolen cookie would be."""
    client.session.cookie_jar.clear(lambda cookie: cookie.key == SESSION_COOKIE)
    client.session.cookie_jar.update_cookies({SESSION_COOKIE: value})


async def audit_actions(services: Services) -> list[AuditEvent]:
    async with services.database.read() as session:
        result = await session.execute(
            select(AuditEvent)
            .where(AuditEvent.project_id == INSTANCE_PROJECT_ID)
            .order_by(AuditEvent.created_at)
        )
        return list(result.scalars().all())


# --- signing in -------------------------------------------------------------


async def test_sign_in_cookie_attributes(
    client: Any, services: Services, tenant_a: Tenant
) -> None:
    _, email = await create_member(services, tenant_a, "viewer")
    response = await post_login(client, email, SIGN_IN_PASSWORD)

    assert response.status == 303
    assert response.headers["Location"] == "/projects"
    morsel = set_cookie(response, SESSION_COOKIE)
    assert morsel["httponly"] is True
    assert morsel["samesite"] == "Lax"
    assert morsel["path"] == "/"
    assert not morsel["secure"]
    assert int(morsel["max-age"]) == 12 * 60 * 60
    assert len(morsel.value) >= 43


async def test_sign_in_stores_only_hash(client: Any, services: Services, tenant_a: Tenant) -> None:
    await sign_in(client, services, tenant_a)
    cookie = session_cookie(client)
    assert cookie is not None
    async with services.database.read() as session:
        hashes = list((await session.execute(select(UserSession.id_hash))).scalars())
    assert hashes == [session_service.hash_session_id(cookie)]
    assert cookie not in hashes


@pytest.fixture
async def https_client(
    database_url: str, aiohttp_client: Any
) -> AsyncIterator[tuple[TestClient[Any, Any], Services]]:
    settings = Settings(database_url=database_url, public_url="https://testoqa.example.com")
    services = Services(settings)
    yield await aiohttp_client(create_app(services)), services
    await services.close()


async def test_cookie_secure_behind_https(
    https_client: tuple[TestClient[Any, Any], Services],
) -> None:
    client, services = https_client
    _, email = await create_member(services, None, None)

    response = await client.get("/login")
    assert set_cookie(response, LOGIN_CSRF_COOKIE)["secure"] is True
    [token] = input_values(await response.text(), "csrf_token")
    # The client drops Secure cookies over plain HTTP, so the form's cookie is sent by hand.
    form = {"email": email, "password": SIGN_IN_PASSWORD, "csrf_token": token}
    response = await client.post(
        "/login",
        data=form,
        allow_redirects=False,
        headers={"Cookie": f"{LOGIN_CSRF_COOKIE}={token}"},
    )

    assert response.status == 303
    morsel = set_cookie(response, SESSION_COOKIE)
    assert morsel["secure"] is True
    assert morsel["httponly"] is True
    assert morsel["samesite"] == "Lax"


async def test_cookie_secure_over_tls(services: Services) -> None:
    # The test servers speak plain HTTP, so the TLS case uses a mocked request
    # whose transport reports an SSL context, as aiohttp's own does over TLS.
    app = create_app(services)
    tls = make_mocked_request("POST", "/login", app=app, sslcontext=ssl.create_default_context())
    plain = make_mocked_request("POST", "/login", app=app)
    assert cookies_secure(tls) is True
    assert cookies_secure(plain) is False


async def test_wrong_password_and_unknown_email_alike(
    client: Any, services: Services, tenant_a: Tenant
) -> None:
    _, email = await create_member(services, tenant_a, "viewer")

    wrong = await post_login(client, email, WRONG_PASSWORD)
    unknown = await post_login(client, "nobody@example.com", WRONG_PASSWORD)

    assert wrong.status == 401
    assert unknown.status == 401
    wrong_messages = flash_messages(await wrong.text())
    assert wrong_messages == [session_service.SIGN_IN_FAILED_MESSAGE]
    assert flash_messages(await unknown.text()) == wrong_messages
    assert SESSION_COOKIE not in wrong.cookies
    assert SESSION_COOKIE not in unknown.cookies


async def test_wrong_password_keeps_email(
    client: Any, services: Services, tenant_a: Tenant
) -> None:
    _, email = await create_member(services, tenant_a, "viewer")
    response = await post_login(client, email, WRONG_PASSWORD)
    html = await response.text()
    assert input_values(html, "email") == [email]
    assert WRONG_PASSWORD not in html


async def test_missing_password_rejected(client: Any) -> None:
    form = {"email": "someone@example.com", "csrf_token": await login_token(client)}
    response = await client.post("/login", data=form, allow_redirects=False)
    assert response.status == 422
    assert flash_messages(await response.text()) == ["missing password: fill in the field"]


async def test_disabled_user_refused(client: Any, services: Services, tenant_a: Tenant) -> None:
    member = await sign_in(client, services, tenant_a)
    async with services.database.write() as session:
        await session.execute(
            update(User)
            .where(User.id == member.user_id)
            .values(disabled_at=dt.datetime.now(dt.UTC))
        )

    # The open session ends, and signing in again fails like a wrong password.
    response = await client.get("/account", allow_redirects=False)
    assert response.status == 303
    assert response.headers["Location"].startswith("/login")
    response = await post_login(client, member.email, SIGN_IN_PASSWORD)
    assert response.status == 401
    assert flash_messages(await response.text()) == [session_service.SIGN_IN_FAILED_MESSAGE]
    events = [e for e in await audit_actions(services) if e.action == "session.sign_in_failed"]
    assert [e.details["reason"] for e in events] == ["disabled"]


async def test_sign_in_replaces_planted_cookie(
    client: Any, services: Services, tenant_a: Tenant
) -> None:
    planted = "attacker-chosen-session-id-" + "x" * 20
    client.session.cookie_jar.update_cookies({SESSION_COOKIE: planted})
    _, email = await create_member(services, tenant_a, "viewer")

    response = await post_login(client, email, SIGN_IN_PASSWORD)

    assert response.status == 303
    issued = set_cookie(response, SESSION_COOKIE).value
    assert issued != planted
    async with services.database.read() as session:
        hashes = set((await session.execute(select(UserSession.id_hash))).scalars())
    assert session_service.hash_session_id(planted) not in hashes
    assert session_service.hash_session_id(issued) in hashes


async def test_second_sign_in_new_session(
    client: Any, services: Services, tenant_a: Tenant
) -> None:
    member = await sign_in(client, services, tenant_a)
    first = session_cookie(client)

    # The sign-in page redirects a signed-in browser, so the form's
    # double-submit pair is set by hand to post the form again.
    client.session.cookie_jar.update_cookies({LOGIN_CSRF_COOKIE: "pair"})
    form = {"email": member.email, "password": SIGN_IN_PASSWORD, "csrf_token": "pair"}
    response = await client.post("/login", data=form, allow_redirects=False)
    assert response.status == 303
    second = session_cookie(client)

    assert first is not None
    assert second is not None
    assert first != second
    # The session that was presented while signing in again is gone.
    replay_cookie(client, first)
    response = await client.get("/account", allow_redirects=False)
    assert response.status == 303


async def test_signed_in_login_page_redirects(
    client: Any, services: Services, tenant_a: Tenant
) -> None:
    await sign_in(client, services, tenant_a)
    response = await client.get("/login?next=/account", allow_redirects=False)
    assert response.status == 303
    assert response.headers["Location"] == "/account"


async def test_root_redirects_to_projects(
    client: Any, services: Services, tenant_a: Tenant
) -> None:
    await sign_in(client, services, tenant_a)
    response = await client.get("/", allow_redirects=False)
    assert response.status == 303
    assert response.headers["Location"] == "/projects"


async def test_signed_out_page_redirects(client: Any) -> None:
    response = await client.get("/account?tab=tokens", allow_redirects=False)
    assert response.status == 303
    assert response.headers["Location"] == "/login?next=/account%3Ftab%3Dtokens"


async def test_next_followed_after_sign_in(
    client: Any, services: Services, tenant_a: Tenant
) -> None:
    _, email = await create_member(services, tenant_a, "viewer")
    response = await post_login(client, email, SIGN_IN_PASSWORD, "/projects/ALPHA/runs?branch=x")
    assert response.status == 303
    assert response.headers["Location"] == "/projects/ALPHA/runs?branch=x"


@pytest.mark.parametrize(
    "next_path",
    [
        "//evil.example/",
        "///evil.example/",
        "https://evil.example/",
        "javascript:alert(1)",
        "/\\evil.example",
        "\\\\evil.example",
        "/account\r\nSet-Cookie: x=1",
        "evil.example",
        "/login?next=//evil.example",
        "",
    ],
)
async def test_open_redirect_refused(
    client: Any, services: Services, tenant_a: Tenant, next_path: str
) -> None:
    _, email = await create_member(services, tenant_a, "viewer")
    response = await post_login(client, email, SIGN_IN_PASSWORD, next_path)
    assert response.status == 303
    assert response.headers["Location"] == "/projects"


async def test_login_page_drops_foreign_next(client: Any) -> None:
    response = await client.get("/login", params={"next": "//evil.example/"})
    assert input_values(await response.text(), "next") == ["/projects"]


# --- signing out and ending sessions ----------------------------------------


async def test_sign_out_ends_session(client: Any, services: Services, tenant_a: Tenant) -> None:
    member = await sign_in(client, services, tenant_a)
    cookie = session_cookie(client)
    assert cookie is not None

    response = await client.post("/logout", data=member.form(), allow_redirects=False)

    assert response.status == 303
    assert response.headers["Location"] == "/login"
    assert set_cookie(response, SESSION_COOKIE).value == ""
    async with services.database.read() as session:
        assert (await session.execute(select(UserSession))).first() is None
    # Replaying the old cookie does not bring the session back.
    replay_cookie(client, cookie)
    response = await client.get("/account", allow_redirects=False)
    assert response.status == 303
    assert response.headers["Location"] == "/login?next=/account"
    actions = [event.action for event in await audit_actions(services)]
    assert actions.count("session.sign_out") == 1


@pytest.mark.parametrize("column", ["expires_at", "last_seen_at"])
async def test_ended_session_rejected(
    client: Any, services: Services, tenant_a: Tenant, column: str
) -> None:
    await sign_in(client, services, tenant_a)
    past = dt.datetime.now(dt.UTC) - dt.timedelta(hours=13)
    async with services.database.write() as session:
        await session.execute(update(UserSession).values({column: past}))

    response = await client.get("/account", allow_redirects=False)

    assert response.status == 303
    assert response.headers["Location"] == "/login?next=/account"
    assert set_cookie(response, SESSION_COOKIE).value == ""
    async with services.database.read() as session:
        assert (await session.execute(select(UserSession))).first() is None


async def test_session_touch_throttled(client: Any, services: Services, tenant_a: Tenant) -> None:
    await sign_in(client, services, tenant_a)
    async with services.database.read() as session:
        before = (await session.execute(select(UserSession.last_seen_at))).scalar_one()
    assert (await client.get("/account")).status == 200
    async with services.database.read() as session:
        after = (await session.execute(select(UserSession.last_seen_at))).scalar_one()
    assert after == before


# --- rate limit -------------------------------------------------------------


async def test_account_rate_limited(client: Any, services: Services, tenant_a: Tenant) -> None:
    _, email = await create_member(services, tenant_a, "viewer")
    for _ in range(session_service.MAX_FAILURES_PER_ACCOUNT):
        assert (await post_login(client, email, WRONG_PASSWORD)).status == 401

    # Even the right password is not checked once the limit is reached.
    response = await post_login(client, email, SIGN_IN_PASSWORD)

    assert response.status == 429
    retry_after = int(response.headers["Retry-After"])
    assert 0 < retry_after <= 15 * 60
    [message] = flash_messages(await response.text())
    assert message.startswith("too many failed sign-ins for this account: try again in ")
    assert SESSION_COOKIE not in response.cookies
    events = await audit_actions(services)
    failed = [e for e in events if e.action == "session.sign_in_failed"]
    throttled = [e for e in events if e.action == "session.sign_in_throttled"]
    assert len(failed) == session_service.MAX_FAILURES_PER_ACCOUNT
    assert {e.target for e in failed} == {email}
    assert len(throttled) == 1
    assert throttled[0].details["scope"] == "account"


async def test_address_rate_limited(client: Any, services: Services, tenant_a: Tenant) -> None:
    _, email = await create_member(services, tenant_a, "viewer")
    for number in range(session_service.MAX_FAILURES_PER_ADDRESS):
        response = await post_login(client, f"guess{number}@example.com", WRONG_PASSWORD)
        assert response.status == 401

    response = await post_login(client, email, SIGN_IN_PASSWORD)

    assert response.status == 429
    assert int(response.headers["Retry-After"]) > 0
    [message] = flash_messages(await response.text())
    assert message.startswith("too many failed sign-ins for this address")
    throttled = [
        e for e in await audit_actions(services) if e.action == "session.sign_in_throttled"
    ]
    assert [e.details["scope"] for e in throttled] == ["address"]


async def test_success_clears_account_failures(
    client: Any, services: Services, tenant_a: Tenant
) -> None:
    _, email = await create_member(services, tenant_a, "viewer")
    for _ in range(session_service.MAX_FAILURES_PER_ACCOUNT - 1):
        assert (await post_login(client, email, WRONG_PASSWORD)).status == 401
    assert (await post_login(client, email, SIGN_IN_PASSWORD)).status == 303
    client.session.cookie_jar.clear()

    for _ in range(session_service.MAX_FAILURES_PER_ACCOUNT - 1):
        assert (await post_login(client, email, WRONG_PASSWORD)).status == 401
    assert (await post_login(client, email, SIGN_IN_PASSWORD)).status == 303


async def test_sign_in_audited(client: Any, services: Services, tenant_a: Tenant) -> None:
    member = await sign_in(client, services, tenant_a)
    [event] = [e for e in await audit_actions(services) if e.action == "session.sign_in"]
    assert event.actor == f"user:{member.user_id}"
    assert event.target == member.email
    assert event.details["address"] == "127.0.0.1"


# --- HTML escaping and error pages ------------------------------------------


class ScriptCounter(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.scripts = 0
        self.text = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.scripts += tag == "script"

    def handle_data(self, data: str) -> None:
        self.text += data


def read_page(html: str) -> ScriptCounter:
    page = ScriptCounter()
    page.feed(html)
    return page


async def test_login_form_escapes_email(client: Any) -> None:
    typed = '"><script>alert(1)</script>'
    response = await post_login(client, typed, WRONG_PASSWORD)
    html = await response.text()
    assert read_page(html).scripts == 0
    assert input_values(html, "email") == [typed]


async def test_error_page_escapes_path(client: Any, services: Services, tenant_a: Tenant) -> None:
    await sign_in(client, services, tenant_a)
    response = await client.get("/projects/%3Cscript%3Ealert(1)%3C%2Fscript%3E/settings")
    assert response.status == 404
    assert response.content_type == "text/html"
    page = read_page(await response.text())
    assert page.scripts == 0
    assert "project '<script>alert(1)</script>' not found" in page.text


async def test_unknown_page_is_html_404(client: Any, services: Services, tenant_a: Tenant) -> None:
    await sign_in(client, services, tenant_a)
    response = await client.get("/no-such-page")
    assert response.status == 404
    assert response.content_type == "text/html"
    assert "no such page" in read_page(await response.text()).text


async def test_api_keeps_json_401(client: Any, tenant_a: Tenant) -> None:
    response = await client.get(f"/api/v1/projects/{tenant_a.key}/runs", allow_redirects=False)
    assert response.status == 401
    assert (await response.json())["error"]["code"] == "unauthenticated"


async def test_session_reads_json(client: Any, services: Services, tenant_a: Tenant) -> None:
    await sign_in(client, services, tenant_a)
    response = await client.get(f"/api/v1/projects/{tenant_a.key}/runs")
    assert response.status == 200
    assert (await response.json())["items"] == []
