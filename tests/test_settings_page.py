"""The project settings page: members and API tokens, for maintainers and admins."""

from __future__ import annotations

import html
from html.parser import HTMLParser
from typing import Any

import pytest
from sqlalchemy import select

from ingest_server.db.models import AuditEvent
from ingest_server.services.container import Services
from tests.conftest import Member, Tenant, create_member, sign_in

SCRIPT_EMAIL = "<script>alert(1)</script>@example.com"


class SettingsPage(HTMLParser):
    """Read the members table, the token rows, the secrets shown and the forms."""

    def __init__(self) -> None:
        super().__init__()
        self.members: dict[str, str] = {}
        self.member_emails: list[str] = []
        self.tokens: dict[str, str] = {}
        self.secrets: list[str] = []
        self.forms: list[str] = []
        self.scripts = 0
        self._row: tuple[str, str] | None = None
        self._cells: list[str] = []
        self._selected: str | None = None
        self._in_cell = False
        self._secret = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if tag == "script":
            self.scripts += 1
        if tag == "form":
            self.forms.append(attributes.get("action") or "")
        if tag == "tr" and attributes.get("data-member"):
            self._row, self._cells = ("member", attributes["data-member"] or ""), []
            self._selected = None
        if tag == "tr" and attributes.get("data-token"):
            self._row, self._cells = ("token", attributes["data-token"] or ""), []
        if tag == "td" and self._row:
            self._in_cell = True
            self._cells.append("")
        if tag == "option" and self._row and "selected" in attributes:
            self._selected = attributes.get("value")
        if "data-secret" in attributes:
            self._secret = True
            self.secrets.append("")

    def handle_endtag(self, tag: str) -> None:
        if tag == "td":
            self._in_cell = False
        if tag == "code":
            self._secret = False
        if tag == "tr" and self._row:
            kind, _ = self._row
            if kind == "member":
                # The role is the selected option where an admin may change it.
                email = self._cells[0].strip()
                self.member_emails.append(email)
                self.members[email] = self._selected or self._cells[1].strip()
            else:
                self.tokens[self._cells[0].strip()] = self._cells[4].strip()
            self._row = None

    def handle_data(self, data: str) -> None:
        if self._in_cell and self._row:
            self._cells[-1] += data
        if self._secret:
            self.secrets[-1] += data


def parse(html: str) -> SettingsPage:
    page = SettingsPage()
    page.feed(html)
    return page


async def text_of(response: Any) -> str:
    """Return the page with entities decoded, to find messages that contain quotes."""
    return html.unescape(await response.text())


def settings_path(tenant: Tenant, suffix: str = "") -> str:
    return f"/projects/{tenant.key}/settings{suffix}"


async def settings_page(client: Any, tenant: Tenant) -> SettingsPage:
    response = await client.get(settings_path(tenant))
    assert response.status == 200, await response.text()
    return parse(await response.text())


async def audit_actions(services: Services, tenant: Tenant) -> list[str]:
    async with services.database.read() as session:
        events = await session.execute(
            select(AuditEvent.action)
            .where(AuditEvent.project_id == tenant.project_id)
            .order_by(AuditEvent.created_at)
        )
        return list(events.scalars())


@pytest.fixture
async def admin(client: Any, services: Services, tenant_a: Tenant) -> Member:
    return await sign_in(client, services, tenant_a, role="admin")


@pytest.mark.parametrize("role", ["viewer", "reporter"])
async def test_member_without_rights_forbidden(
    client: Any, services: Services, tenant_a: Tenant, role: str
) -> None:
    await sign_in(client, services, tenant_a, role=role)
    response = await client.get(settings_path(tenant_a))
    assert response.status == 403
    assert response.content_type == "text/html"
    assert "does not allow" in await text_of(response)


async def test_non_member_not_found(
    client: Any, services: Services, tenant_a: Tenant, tenant_b: Tenant
) -> None:
    member = await sign_in(client, services, tenant_a, role="admin")
    response = await client.get(settings_path(tenant_b))
    assert response.status == 404
    assert response.content_type == "text/html"
    response = await client.post(
        settings_path(tenant_b, "/tokens"), data=member.form(name="x", role="viewer")
    )
    assert response.status == 404


async def test_maintainer_sees_tokens_not_member_forms(
    client: Any, services: Services, tenant_a: Tenant
) -> None:
    member = await sign_in(client, services, tenant_a, role="maintainer")
    page = await settings_page(client, tenant_a)

    assert page.members == {member.email: "maintainer"}
    assert settings_path(tenant_a, "/tokens") in page.forms
    assert settings_path(tenant_a, "/members") not in page.forms
    response = await client.post(
        settings_path(tenant_a, "/members"), data=member.form(email=member.email, role="admin")
    )
    assert response.status == 403


async def test_admin_adds_changes_removes_member(
    client: Any, services: Services, tenant_a: Tenant, admin: Member
) -> None:
    user_id, email = await create_member(services, None, None)
    members_path = settings_path(tenant_a, "/members")

    response = await client.post(
        members_path, data=admin.form(email=email, role="viewer"), allow_redirects=False
    )
    assert response.status == 303
    assert response.headers["Location"] == settings_path(tenant_a) + "?done=member-saved"
    assert (await settings_page(client, tenant_a)).members[email] == "viewer"

    response = await client.post(members_path, data=admin.form(email=email, role="maintainer"))
    assert response.status == 200
    assert (await settings_page(client, tenant_a)).members[email] == "maintainer"

    response = await client.post(
        settings_path(tenant_a, f"/members/{user_id}/remove"), data=admin.form()
    )
    assert response.status == 200
    assert email not in (await settings_page(client, tenant_a)).members
    assert await audit_actions(services, tenant_a) == [
        "project.create",
        "token.create",
        "token.create",
        "membership.set",
        "membership.set",
        "membership.set",
        "membership.remove",
    ]


async def test_unknown_email_shown_on_page(client: Any, tenant_a: Tenant, admin: Member) -> None:
    response = await client.post(
        settings_path(tenant_a, "/members"),
        data=admin.form(email="nobody@example.com", role="viewer"),
    )
    assert response.status == 404
    assert "user 'nobody@example.com' not found" in await text_of(response)


@pytest.mark.parametrize(
    ("fields", "status", "message"),
    [
        ({"email": "", "role": "viewer"}, 422, "missing email address"),
        ({"role": "viewer"}, 422, "missing email address"),
        ({"email": "a@example.com", "role": "owner"}, 422, "invalid role 'owner'"),
        ({"email": "a@example.com"}, 422, "missing role"),
    ],
)
async def test_member_form_validated(
    client: Any,
    services: Services,
    tenant_a: Tenant,
    admin: Member,
    fields: dict[str, str],
    status: int,
    message: str,
) -> None:
    await create_member(services, None, None, email="a@example.com")
    response = await client.post(settings_path(tenant_a, "/members"), data=admin.form(**fields))
    assert response.status == status
    assert message in await text_of(response)


async def test_last_admin_kept(
    client: Any, services: Services, tenant_a: Tenant, admin: Member
) -> None:
    response = await client.post(
        settings_path(tenant_a, "/members"), data=admin.form(email=admin.email, role="viewer")
    )
    assert response.status == 409
    assert "cannot demote the last admin" in await text_of(response)
    response = await client.post(
        settings_path(tenant_a, f"/members/{admin.user_id}/remove"), data=admin.form()
    )
    assert response.status == 409
    assert (await settings_page(client, tenant_a)).members[admin.email] == "admin"

    # With a second admin the first may step down.
    await create_member(services, tenant_a, "admin")
    response = await client.post(
        settings_path(tenant_a, "/members"),
        data=admin.form(email=admin.email, role="maintainer"),
        allow_redirects=False,
    )
    assert response.status == 303


async def test_admin_creates_and_revokes_token(
    client: Any, services: Services, tenant_a: Tenant, admin: Member
) -> None:
    response = await client.post(
        settings_path(tenant_a, "/tokens"), data=admin.form(name="GitHub Actions", role="reporter")
    )
    assert response.status == 201
    [secret] = parse(await response.text()).secrets
    assert secret.startswith(f"tqa_{tenant_a.project_id}_3_")

    page = await settings_page(client, tenant_a)
    assert page.secrets == []
    assert secret[-43:] not in await (await client.get(settings_path(tenant_a))).text()
    assert page.tokens[f"{tenant_a.key}-3"] == "active"
    runs = f"/api/v1/projects/{tenant_a.key}/runs"
    assert (await client.get(runs, headers={"Authorization": f"Bearer {secret}"})).status == 200

    response = await client.post(
        settings_path(tenant_a, "/tokens/3/revoke"), data=admin.form(), allow_redirects=False
    )
    assert response.status == 303
    page = await settings_page(client, tenant_a)
    assert page.tokens[f"{tenant_a.key}-3"].startswith("revoked")
    assert (await client.get(runs, headers={"Authorization": f"Bearer {secret}"})).status == 401
    assert (await audit_actions(services, tenant_a))[-2:] == ["token.create", "token.revoke"]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"name": "ci", "role": "admin"}, "invalid role 'admin'"),
        ({"name": "x" * 101, "role": "viewer"}, "at most 100 characters"),
        ({"role": "viewer"}, "missing token name"),
    ],
)
async def test_token_form_validated(
    client: Any, tenant_a: Tenant, admin: Member, fields: dict[str, str], message: str
) -> None:
    response = await client.post(settings_path(tenant_a, "/tokens"), data=admin.form(**fields))
    assert response.status == 422
    assert message in await text_of(response)


async def test_unknown_token_revoke_not_found(
    client: Any, tenant_a: Tenant, admin: Member
) -> None:
    for number in ("99", "0", "abc"):
        response = await client.post(
            settings_path(tenant_a, f"/tokens/{number}/revoke"), data=admin.form()
        )
        assert response.status == 404, number


async def test_member_email_escaped(
    client: Any, services: Services, tenant_a: Tenant, admin: Member
) -> None:
    await create_member(services, tenant_a, "viewer", email=SCRIPT_EMAIL)
    await client.post(
        settings_path(tenant_a, "/tokens"), data=admin.form(name="<b>bold</b>", role="viewer")
    )

    page = await settings_page(client, tenant_a)

    assert page.scripts == 0
    assert SCRIPT_EMAIL.lower() in page.member_emails
    response = await client.get(settings_path(tenant_a))
    assert "<b>bold</b>" not in await response.text()
