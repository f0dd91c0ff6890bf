"""Reading request bodies and query strings into validated values, or clear errors."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import TypeVar

import pydantic_core
from aiohttp import web
from multidict import MultiDictProxy
from pydantic import BaseModel, ValidationError

from ingest_server.services.errors import FieldError
from ingest_server.services.ingest import describe_validation_error
from ingest_server.web.errors import RequestError
from ingest_server.web.keys import SERVICES_KEY

ModelT = TypeVar("ModelT", bound=BaseModel)

JSON_CONTENT_TYPE = "application/json"
# A JSON escape of U+0000 that is not itself an escaped backslash followed by "u0000".
ESCAPED_NUL = re.compile(rb"(?<!\\)((?:\\\\)*)\\u0000")


def replace_nul(raw: bytes) -> bytes:
    """Replace escaped NUL characters in a JSON document by U+FFFD.

    JSON allows NUL in strings and PostgreSQL text does not; replacing it in
    the document keeps both databases storing the same text, keys included.
    """
    if b"\\u0000" not in raw:
        return raw
    return ESCAPED_NUL.sub(rb"\1\\ufffd", raw)


async def read_json_bytes(request: web.Request) -> bytes:
    """Return the body of a JSON request, or raise RequestError with 415 or 413."""
    if request.content_type != JSON_CONTENT_TYPE:
        raise RequestError(
            415,
            "unsupported_media_type",
            f"unsupported content type {request.content_type!r}: "
            f"send JSON with 'Content-Type: {JSON_CONTENT_TYPE}'",
        )
    return replace_nul(await _read_limited(request))


async def read_json_body(request: web.Request, model: type[ModelT]) -> ModelT:
    """Parse the body as JSON into model; raise RequestError with 415, 413, 400 or 422."""
    return parse_json(await read_json_bytes(request), model)


def parse_json(raw: bytes, model: type[ModelT]) -> ModelT:
    """Parse raw JSON into model; raise RequestError with 400 or 422."""
    try:
        data = pydantic_core.from_json(raw)
    except ValueError as exc:
        raise RequestError(400, "invalid_json", f"request body is not valid JSON: {exc}") from exc
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        details = describe_validation_error(exc)
        first = details[0]
        where = f"field {first.field!r}" if first.field else "body"
        raise RequestError(
            422,
            "validation_error",
            f"invalid {where}: {first.message}"
            + (f" (and {len(details) - 1} more errors)" if len(details) > 1 else ""),
            details=details,
        ) from exc


async def _read_limited(request: web.Request) -> bytes:
    limit = request.app[SERVICES_KEY].settings.max_body_bytes
    if request.content_length is not None and request.content_length > limit:
        raise _too_large(request.content_length, limit)
    try:
        return await request.read()
    except web.HTTPRequestEntityTooLarge as exc:
        raise _too_large(None, limit) from exc


def _too_large(size: int | None, limit: int) -> RequestError:
    size_text = f"of {size} bytes " if size is not None else ""
    return RequestError(
        413,
        "payload_too_large",
        f"request body {size_text}is over the limit of {limit} bytes: send smaller batches",
    )


def check_query(request: web.Request, allowed: Iterable[str]) -> None:
    """Reject query parameters the route does not define, so a typo never widens a filter."""
    allowed = tuple(allowed)
    unknown = sorted(set(request.query) - set(allowed))
    if unknown:
        names = ", ".join(allowed) if allowed else "none"
        raise RequestError(
            422,
            "validation_error",
            f"unknown query parameter {unknown[0]!r}: this route accepts {names}",
            details=[FieldError(name, "unknown query parameter") for name in unknown],
        )


def query_int(request: web.Request, name: str, default: int) -> int:
    value = request.query.get(name)
    if value is None:
        return default
    try:
        return int(value)
    except ValueError as exc:
        raise RequestError(
            422,
            "validation_error",
            f"invalid {name} {value[:50]!r}: expected an integer",
            details=[FieldError(name, "expected an integer")],
        ) from exc


def query_text(request: web.Request, name: str, max_length: int = 250) -> str | None:
    value = request.query.get(name)
    if value is not None and len(value) > max_length:
        raise RequestError(
            422,
            "validation_error",
            f"invalid {name}: at most {max_length} characters",
            details=[FieldError(name, f"at most {max_length} characters")],
        )
    return value


FORM_CONTENT_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")
# Digits only, ASCII, short enough for int(): str.isdigit() also admits
# characters such as "²" that int() refuses.
NUMBER_PATTERN = re.compile(r"[0-9]{1,18}")


async def read_form_body(
    request: web.Request,
) -> MultiDictProxy[str | bytes | bytearray | web.FileField]:
    """Return the posted form, or raise a 400 when its bytes are not a readable form."""
    try:
        return await request.post()
    except (UnicodeDecodeError, ValueError) as exc:
        raise RequestError(
            400,
            "invalid_form",
            f"the form body cannot be read: {exc}; send it as UTF-8 form data",
        ) from exc


def parse_number(value: str) -> int | None:
    """Return value as a non-negative integer, or None when it is not plain ASCII digits."""
    if NUMBER_PATTERN.fullmatch(value) is None:
        return None
    return int(value)
