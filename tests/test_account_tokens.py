"""Personal access tokens: created on the account page or the JSON API, read-only, revocable."""

from __future__ import annotations

import datetime as dt
import re
from html.parser import HTMLParser
from typing import Any

from sqlalchemy import select, update

from ingest_server.db.models import INSTANCE_PROJECT_ID, AuditEvent, PersonalToken
from ingest_server.services import auth as auth_service
from ingest_server.services.container import Services
from tests.conftest import Member, Tenant, sign_in

API = "/api/v1/projects"
STARTED_AT = "2026-01-01T00:00:00Z"
PERSONAL_TOKEN = re.compile(r"^tqp_[1-9][0-9]*_[1-9][0-9]*_[A-Za-z0-9_-]{43}$")
SCRIPT = "<script>alert(1)</script>"


class PageText(HTMLParser):
    """Collect the secrets shown (elements with data-secret), script elements and cell texts."""

    def __init__(self) -> None:
        super().__init__()
        self.secrets: list[str] = []
        self.scripts = 0
        self.cells: list[str] = []
        self._secret = False
        self._cell = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "script":
            self.scripts += 1
        if "data-secret" in dict(attrs):
            self._secret = True
            self.secrets.append("")
        if tag == "td":
            self._cell = True
            self.cells.append("")

    def handle_endtag(self, tag: str) -> None:
        if tag == "code":
            self._secret = False
        if tag == "td":
            self._cell = False

    def handle_data(self, data: str) -> None:
        if self._secret:
            self.secrets[-1] += data
        if self._cell:
            self.cells[-1] += data


def parse(html: str) -> PageText:
    page = PageText()
    page.feed(html)
    return page


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def create_on_page(client: Any, member: Member, name: str) -> str:
    response = await client.post("/account/tokens", data=member.form(name=name))
    assert response.status == 201, await response.text()
    [secret] = parse(await response.text()).secrets
    return secret


async def test_page_shows_secret_once(client: Any, services: Services, tenant_a: Tenant) -> None:
    member = await sign_in(client, services, tenant_a)

    secret = await create_on_page(client, member, "dashboard")

    assert PERSONAL_TOKEN.match(secret)
    assert secret.startswith(f"tqp_{member.user_id}_1_")
    response = await client.get("/account")
    html = await response.text()
    assert secret not in html
    assert secret[-43:] not in html
    assert parse(html).secrets == []
    assert "dashboard" in parse(html).cells
    async with services.database.read() as session:
        stored = (await session.execute(select(PersonalToken))).scalar_one()
    assert stored.secret_hash == auth_service.hash_secret(secret[-43:])


async def test_token_reads_member_projects(
    client: Any, services: Services, tenant_a: Tenant, tenant_b: Tenant
) -> None:
    member = await sign_in(client, services, tenant_a, role="admin")
    secret = await create_on_page(client, member, "reports")
    client.session.cookie_jar.clear()

    response = await client.get(f"{API}/{tenant_a.key}/runs", headers=bearer(secret))
    assert response.status == 200
    response = await client.get(f"{API}/{tenant_b.key}/runs", headers=bearer(secret))
    assert response.status == 404
    assert (await response.json())["error"]["code"] == "not_found"


async def test_token_cannot_report(client: Any, services: Services, tenant_a: Tenant) -> None:
    # Even an admin's token only reads.
    member = await sign_in(client, services, tenant_a, role="admin")
    secret = await create_on_page(client, member, "reports")
    client.session.cookie_jar.clear()

    body = {"client_run_id": "pat-session", "started_at": STARTED_AT}
    response = await client.post(f"{API}/{tenant_a.key}/runs", json=body, headers=bearer(secret))

    assert response.status == 403
    error = (await response.json())["error"]
    assert error["code"] == "permission_denied"
    # The reason is the token's kind, not the user's role.
    assert "personal access token only reads" in error["message"]


async def test_token_cannot_manage_tokens(
    client: Any, services: Services, tenant_a: Tenant
) -> None:
    member = await sign_in(client, services, tenant_a)
    secret = await create_on_page(client, member, "reports")
    client.session.cookie_jar.clear()

    response = await client.get("/api/v1/account/tokens", headers=bearer(secret))
    assert response.status == 200
    response = await client.post(
        "/api/v1/account/tokens", json={"name": "more"}, headers=bearer(secret)
    )
    assert response.status == 403
    response = await client.delete("/api/v1/account/tokens/1", headers=bearer(secret))
    assert response.status == 403


async def test_revoked_token_rejected(client: Any, services: Services, tenant_a: Tenant) -> None:
    member = await sign_in(client, services, tenant_a)
    secret = await create_on_page(client, member, "reports")

    response = await client.post(
        "/account/tokens/1/revoke", data=member.form(), allow_redirects=False
    )
    assert response.status == 303
    assert response.headers["Location"] == "/account?done=token-revoked"

    path = f"{API}/{tenant_a.key}/runs"
    response = await client.get(path, headers=bearer(secret))
    assert response.status == 401
    assert (await response.json())["error"]["code"] == "unauthenticated"
    page = parse(await (await client.get("/account")).text())
    assert any(cell.startswith("revoked") for cell in page.cells)


async def test_forged_token_rejected(client: Any, services: Services, tenant_a: Tenant) -> None:
    member = await sign_in(client, services, tenant_a)
    secret = await create_on_page(client, member, "reports")
    forged = secret[:-1] + ("A" if secret[-1] != "A" else "B")
    other_user = f"tqp_{member.user_id + 1}_1_{secret[-43:]}"
    client.session.cookie_jar.clear()

    for token in (forged, other_user, "tqp_1_1_short"):
        response = await client.get(f"{API}/{tenant_a.key}/runs", headers=bearer(token))
        assert response.status == 401, token


async def test_last_used_recorded(client: Any, services: Services, tenant_a: Tenant) -> None:
    member = await sign_in(client, services, tenant_a)
    secret = await create_on_page(client, member, "reports")
    path = f"{API}/{tenant_a.key}/runs"

    assert (await client.get(path, headers=bearer(secret))).status == 200
    async with services.database.read() as session:
        first = (await session.execute(select(PersonalToken.last_used_at))).scalar_one()
    assert first is not None
    # A second use within the minute does not write again.
    assert (await client.get(path, headers=bearer(secret))).status == 200
    async with services.database.read() as session:
        second = (await session.execute(select(PersonalToken.last_used_at))).scalar_one()
    assert second == first

    earlier = first - dt.timedelta(minutes=5)
    async with services.database.write() as session:
        await session.execute(update(PersonalToken).values(last_used_at=earlier))
    assert (await client.get(path, headers=bearer(secret))).status == 200
    async with services.database.read() as session:
        third = (await session.execute(select(PersonalToken.last_used_at))).scalar_one()
    assert third is not None
    assert third > earlier


async def test_json_create_list_revoke(client: Any, services: Services, tenant_a: Tenant) -> None:
    member = await sign_in(client, services, tenant_a)

    response = await client.post(
        "/api/v1/account/tokens", json={"name": "script"}, headers=member.csrf_header
    )
    assert response.status == 201
    created = await response.json()
    assert created["number"] == 1
    assert created["name"] == "script"
    assert PERSONAL_TOKEN.match(created["token"])

    response = await client.get("/api/v1/account/tokens")
    assert response.status == 200
    [listed] = (await response.json())["tokens"]
    assert listed["number"] == 1
    assert listed["revoked_at"] is None
    assert "token" not in listed
    assert created["token"] not in await response.text()

    response = await client.delete("/api/v1/account/tokens/1", headers=member.csrf_header)
    assert response.status == 200
    assert (await response.json())["revoked_at"] is not None
    response = await client.delete("/api/v1/account/tokens/2", headers=member.csrf_header)
    assert response.status == 404


async def test_json_name_validated(client: Any, services: Services, tenant_a: Tenant) -> None:
    member = await sign_in(client, services, tenant_a)
    for body in ({"name": ""}, {"name": "x" * 101}, {}, {"name": "ok", "role": "admin"}):
        response = await client.post(
            "/api/v1/account/tokens", json=body, headers=member.csrf_header
        )
        assert response.status == 422, body
        assert (await response.json())["error"]["code"] == "validation_error"


async def test_page_name_validated(client: Any, services: Services, tenant_a: Tenant) -> None:
    member = await sign_in(client, services, tenant_a)
    response = await client.post("/account/tokens", data=member.form(name="x" * 101))
    assert response.status == 422
    assert "invalid token name: use at most 100 characters" in await response.text()


async def test_anonymous_json_rejected(client: Any) -> None:
    response = await client.get("/api/v1/account/tokens")
    assert response.status == 401
    assert (await response.json())["error"]["code"] == "unauthenticated"


async def test_token_name_escaped(client: Any, services: Services, tenant_a: Tenant) -> None:
    member = await sign_in(client, services, tenant_a)
    await create_on_page(client, member, SCRIPT)

    page = parse(await (await client.get("/account")).text())

    assert page.scripts == 0
    assert SCRIPT in page.cells


async def test_token_changes_audited(client: Any, services: Services, tenant_a: Tenant) -> None:
    member = await sign_in(client, services, tenant_a)
    await create_on_page(client, member, "audited")
    await client.post("/account/tokens/1/revoke", data=member.form())

    async with services.database.read() as session:
        events = (
            await session.execute(
                select(AuditEvent)
                .where(AuditEvent.project_id == INSTANCE_PROJECT_ID)
                .where(AuditEvent.action.like("personal_token.%"))
                .order_by(AuditEvent.created_at)
            )
        ).scalars()
        actions = [(event.action, event.target, event.actor) for event in events]
    actor = f"user:{member.user_id}"
    assert actions == [
        ("personal_token.create", f"{member.user_id}-1", actor),
        ("personal_token.revoke", f"{member.user_id}-1", actor),
    ]
