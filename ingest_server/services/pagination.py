"""Opaque keyset cursors: a position (timestamp, id) encoded for clients."""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import uuid

from ingest_server.services.errors import FieldError, InvalidInput

DEFAULT_LIMIT = 50
MAX_LIMIT = 500


def encode_cursor(timestamp: dt.datetime, row_id: uuid.UUID) -> str:
    raw = json.dumps([timestamp.isoformat(), str(row_id)]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> tuple[dt.datetime, uuid.UUID] | None:
    """Return the position in cursor, or raise InvalidInput naming the bad cursor."""
    if cursor is None:
        return None
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        timestamp, row_id = json.loads(base64.urlsafe_b64decode(padded.encode()))
        position = dt.datetime.fromisoformat(timestamp), uuid.UUID(row_id)
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError) as exc:
        raise InvalidInput(
            f"invalid cursor {cursor[:100]!r}: pass the next_cursor value of a previous page",
            details=[FieldError("cursor", "not a cursor returned by this server")],
        ) from exc
    if position[0].tzinfo is None:
        raise InvalidInput(
            f"invalid cursor {cursor[:100]!r}: pass the next_cursor value of a previous page",
            details=[FieldError("cursor", "not a cursor returned by this server")],
        )
    return position


def check_limit(limit: int) -> int:
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidInput(
            f"invalid limit {limit}: use a value from 1 to {MAX_LIMIT}",
            details=[FieldError("limit", f"must be from 1 to {MAX_LIMIT}")],
        )
    return limit
