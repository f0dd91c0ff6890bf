"""Fixtures for server tests: a migrated database on SQLite or PostgreSQL, and a live app.

``backend`` runs a test once on SQLite and once on PostgreSQL; each test
gets a database of its own, created from a migrated template on PostgreSQL.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from conftest import PostgresServer
from ingest_server.config import Settings
from ingest_server.db.engine import Database
from ingest_server.db.migrate import upgrade
from ingest_server.services.container import Services
from ingest_server.services.context import OPERATOR, RequestContext
from ingest_server.web.app import create_app

TEMPLATE_DATABASE = "testoqa_template"
_database_numbers = itertools.count(1)


@pytest.fixture(scope="session")
def postgres_template(postgres_server: PostgresServer) -> str:
    """Create a migrated template database once; tests clone it."""

    async def create() -> None:
        admin = await asyncpg.connect(postgres_server.url("postgres", driver="postgresql"))
        try:
            await admin.execute(f"DROP DATABASE IF EXISTS {TEMPLATE_DATABASE}")
            await admin.execute(f"CREATE DATABASE {TEMPLATE_DATABASE}")
        finally:
            await admin.close()
        database = Database(postgres_server.url(TEMPLATE_DATABASE))
        await upgrade(database)
        await database.dispose()

    # Fixtures that need this one may run inside an event loop already, so
    # the template is built on a thread with a loop of its own.
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as executor:
        executor.submit(asyncio.run, create()).result()
    return TEMPLATE_DATABASE


async def _clone_postgres(server: PostgresServer, template: str) -> str:
    name = f"testoqa_{next(_database_numbers)}_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(server.url("postgres", driver="postgresql"))
    try:
        await admin.execute(f"CREATE DATABASE {name} TEMPLATE {template}")
    finally:
        await admin.close()
    return server.url(name)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def backend(request: pytest.FixtureRequest) -> str:
    """The database kind a test runs on: each test using it runs on both."""
    return str(request.param)


@pytest.fixture
async def database_url(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[str]:
    """Return the URL of a new, migrated database of the test's backend."""
    if backend == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'testoqa.db'}"
        database = Database(url)
        await upgrade(database)
        await database.dispose()
        yield url
        return
    server: PostgresServer = request.getfixturevalue("postgres_server")
    template: str = request.getfixturevalue("postgres_template")
    yield await _clone_postgres(server, template)


@pytest.fixture
def settings(database_url: str) -> Settings:
    return Settings(database_url=database_url)


@pytest.fixture
async def services(settings: Settings) -> AsyncIterator[Services]:
    services = Services(settings)
    yield services
    await services.close()


@pytest.fixture
async def client(services: Services, aiohttp_client: Any) -> AsyncIterator[TestClient[Any, Any]]:
    """An HTTP client of the real app, served on 127.0.0.1 at a free port."""
    # The app closes the services' database on cleanup; the services
    # fixture's own close afterwards is a harmless second dispose.
    return await aiohttp_client(create_app(services))


@dataclass
class Tenant:
    """A project with one API token per token role, for tests to call the API with."""

    key: str
    project_id: int
    tokens: dict[str, str] = field(default_factory=dict)

    def auth(self, role: str = "reporter") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[role]}"}


async def make_tenant(services: Services, key: str) -> Tenant:
    operator = RequestContext(request_id="test", principal=OPERATOR)
    project_id = await services.admin.create_project(operator, key, f"Project {key}")
    scope = await services.auth.resolve_scope(OPERATOR, key)
    ctx = RequestContext(request_id="test", principal=OPERATOR, project_key=key, project=scope)
    tenant = Tenant(key=key, project_id=project_id)
    for role in ("reporter", "viewer"):
        issued = await services.admin.create_token(ctx, f"{role} token", role)
        tenant.tokens[role] = issued.secret
    return tenant


@pytest.fixture
async def tenant_a(services: Services) -> Tenant:
    return await make_tenant(services, "ALPHA")


@pytest.fixture
async def tenant_b(services: Services) -> Tenant:
    return await make_tenant(services, "BRAVO")


SIGN_IN_PASSWORD = "correct horse battery staple"


@dataclass
class Member:
    """A user signed in through ``POST /login``; the client that signed in carries the cookie.

    State-changing requests of the session need its CSRF token: pages take
    ``member.form(field=value)`` as form data, JSON routes take
    ``headers=member.csrf_header``.
    """

    user_id: int
    email: str
    password: str
    role: str | None
    csrf_token: str

    def form(self, **fields: str) -> dict[str, str]:
        return {"csrf_token": self.csrf_token, **fields}

    @property
    def csrf_header(self) -> dict[str, str]:
        return {"X-CSRF-Token": self.csrf_token}


class _HiddenInputs(HTMLParser):
    """Collect the values of named <input> elements of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.values: dict[str, list[str]] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        name = attributes.get("name")
        if tag == "input" and name:
            self.values.setdefault(name, []).append(attributes.get("value") or "")


def input_values(html: str, name: str) -> list[str]:
    """Return the values of every <input name=name> of an HTML page, in order."""
    parser = _HiddenInputs()
    parser.feed(html)
    return parser.values.get(name, [])


async def create_member(
    services: Services,
    tenant: Tenant | None,
    role: str | None = "viewer",
    *,
    email: str | None = None,
    password: str = SIGN_IN_PASSWORD,
) -> tuple[int, str]:
    """Create a user, with role on tenant unless tenant is None; return (user id, email)."""
    operator = RequestContext(request_id="test", principal=OPERATOR)
    email = email or f"{role or 'user'}.{uuid.uuid4().hex[:10]}@example.com"
    user_id = await services.admin.create_user(operator, email, password)
    if tenant is not None and role is not None:
        scope = await services.auth.resolve_scope(OPERATOR, tenant.key)
        ctx = RequestContext(
            request_id="test", principal=OPERATOR, project_key=tenant.key, project=scope
        )
        await services.admin.set_member(ctx, email, role)
    return user_id, email


async def sign_in(
    client: TestClient[Any, Any],
    services: Services,
    tenant: Tenant | None,
    role: str | None = "viewer",
) -> Member:
    """Create a user with role on tenant and sign client in as that user.

    Pass tenant=None for a user without memberships. Signing in again on
    the same client replaces the previous session.

    Example::

        member = await sign_in(client, services, tenant_a, role="admin")
        response = await client.post("/account/tokens", data=member.form(name="ci"))
    """
    user_id, email = await create_member(services, tenant, role)
    return await sign_in_as(client, user_id, email, SIGN_IN_PASSWORD, role)


async def sign_in_as(
    client: TestClient[Any, Any], user_id: int, email: str, password: str, role: str | None
) -> Member:
    """Sign client in through the sign-in form as an existing user."""
    response = await client.get("/login")
    assert response.status == 200, await response.text()
    [login_token] = input_values(await response.text(), "csrf_token")
    form = {"email": email, "password": password, "csrf_token": login_token}
    response = await client.post("/login", data=form, allow_redirects=False)
    assert response.status == 303, await response.text()

    response = await client.get("/account")
    assert response.status == 200, await response.text()
    tokens = set(input_values(await response.text(), "csrf_token"))
    assert len(tokens) == 1, f"expected one CSRF token on /account, found {tokens}"
    return Member(user_id, email, password, role, tokens.pop())
