"""Pydantic models of the account routes: a user's personal access tokens."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from pydantic import Field, StringConstraints

from ingest_server.schemas import ResponseModel, WireModel

MAX_TOKEN_NAME_CHARS = 100


class PersonalTokenCreate(WireModel):
    name: Annotated[
        str,
        StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_TOKEN_NAME_CHARS),
    ] = Field(description="What the token is for, such as 'quality dashboard'.")


class PersonalTokenOut(ResponseModel):
    number: int = Field(description="The token's number among the user's tokens.")
    name: str
    created_at: dt.datetime
    last_used_at: dt.datetime | None = Field(
        description="When the token was last used, to the minute; null if never."
    )
    revoked_at: dt.datetime | None


class PersonalTokenList(ResponseModel):
    tokens: list[PersonalTokenOut]


class PersonalTokenCreated(ResponseModel):
    number: int
    name: str
    token: str = Field(
        description="The secret, shown in this response only: send it as 'Authorization: Bearer'."
    )
