"""JSON routes of the caller's own account: personal access tokens."""

from __future__ import annotations

from aiohttp import web
from pydantic import BaseModel

from ingest_server import account_schemas
from ingest_server.services.auth import PersonalTokenInfo, require_signed_in_user
from ingest_server.services.context import RequestContext
from ingest_server.services.errors import NotFound
from ingest_server.web.keys import SERVICES_KEY
from ingest_server.web.requests import check_query, parse_number, read_json_body
from ingest_server.web.routing import Route

ACCOUNT = "/api/v1/account"
MAX_NUMBER = 10**10


def _token_out(token: PersonalTokenInfo) -> account_schemas.PersonalTokenOut:
    return account_schemas.PersonalTokenOut(
        number=token.number,
        name=token.name,
        created_at=token.created_at,
        last_used_at=token.last_used_at,
        revoked_at=token.revoked_at,
    )


def _json(model: BaseModel, status: int = 200) -> web.Response:
    return web.Response(
        status=status, body=model.model_dump_json().encode(), content_type="application/json"
    )


def _number(request: web.Request) -> int:
    value = request.match_info["number"]
    number = parse_number(value)
    if number is None or not 0 < number < MAX_NUMBER:
        raise NotFound(f"personal access token {value[:20]!r} not found: use its number")
    return number


async def list_tokens(request: web.Request, ctx: RequestContext) -> web.Response:
    check_query(request, ())
    tokens = await request.app[SERVICES_KEY].auth.list_personal_tokens(ctx)
    return _json(account_schemas.PersonalTokenList(tokens=[_token_out(t) for t in tokens]))


async def create_token(request: web.Request, ctx: RequestContext) -> web.Response:
    # The caller is checked before the body, so a bad body never hides a 401 or 403.
    require_signed_in_user(ctx)
    check_query(request, ())
    body = await read_json_body(request, account_schemas.PersonalTokenCreate)
    issued = await request.app[SERVICES_KEY].auth.create_personal_token(ctx, body.name)
    number = int(issued.token_id.rsplit("-", 1)[1])
    created = account_schemas.PersonalTokenCreated(
        number=number, name=body.name, token=issued.secret
    )
    return _json(created, status=201)


async def revoke_token(request: web.Request, ctx: RequestContext) -> web.Response:
    check_query(request, ())
    number = _number(request)
    auth = request.app[SERVICES_KEY].auth
    await auth.revoke_personal_token(ctx, number)
    for token in await auth.list_personal_tokens(ctx):
        if token.number == number:
            return _json(_token_out(token))
    raise NotFound(f"personal access token {number} not found")


ROUTES: tuple[Route, ...] = (
    Route(
        "GET",
        f"{ACCOUNT}/tokens",
        list_tokens,
        "list_personal_tokens",
        "List the caller's personal access tokens, without their secrets.",
        None,
        account_schemas.PersonalTokenList,
    ),
    Route(
        "POST",
        f"{ACCOUNT}/tokens",
        create_token,
        "create_personal_token",
        "Create a personal access token; the response is the only time it is shown.",
        None,
        account_schemas.PersonalTokenCreated,
        account_schemas.PersonalTokenCreate,
        status=201,
    ),
    Route(
        "DELETE",
        f"{ACCOUNT}/tokens/{{number}}",
        revoke_token,
        "revoke_personal_token",
        "Revoke one of the caller's personal access tokens; revoking twice is not an error.",
        None,
        account_schemas.PersonalTokenOut,
    ),
)
