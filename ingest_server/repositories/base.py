"""Helpers shared by the repositories: dialect-specific upserts and error translation."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, TypeVar

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

T = TypeVar("T")

# SQLite binds at most 32,766 parameters per statement; a chunk of rows times
# its columns stays well under that on both databases.
ROWS_PER_STATEMENT = 1_000


class AlreadyExists(Exception):
    """An insert hit a unique key; the message names the key."""


def dialect_name(session: AsyncSession) -> str:
    bind = session.get_bind()
    return bind.dialect.name


def upsert(session: AsyncSession, table: Any) -> Any:
    """Return an INSERT into table that supports ``on_conflict_do_*`` on this dialect."""
    if dialect_name(session) == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


def chunks(items: Sequence[T], size: int = ROWS_PER_STATEMENT) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
