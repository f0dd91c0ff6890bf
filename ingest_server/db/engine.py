"""The database handle: engine, sessions and per-dialect connection settings."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.exc import ArgumentError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.pool import ConnectionPoolEntry

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///testoqa.db"
SUPPORTED_DRIVERS = ("sqlite+aiosqlite", "postgresql+asyncpg")

# A write transaction on SQLite waits this long for a lock held by another
# process (the CLI next to a running server) before failing.
SQLITE_BUSY_TIMEOUT_MS = 10_000


class DatabaseURLError(ValueError):
    """Raised for a database URL with an unsupported or malformed scheme."""


def validate_database_url(url: str) -> str:
    """Return the URL unchanged if its driver is supported, else raise DatabaseURLError."""
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise DatabaseURLError(
            f"invalid database URL {url!r}: expected a URL such as "
            "'sqlite+aiosqlite:///testoqa.db' or 'postgresql+asyncpg://user@host/db'"
        ) from exc
    if parsed.drivername not in SUPPORTED_DRIVERS:
        raise DatabaseURLError(
            f"unsupported database driver {parsed.drivername!r} in the database URL: "
            f"use one of {', '.join(SUPPORTED_DRIVERS)}"
        )
    return url


def _configure_sqlite(engine: AsyncEngine) -> None:
    """Turn on WAL, foreign keys and explicit transaction control on every SQLite connection."""

    @event.listens_for(engine.sync_engine, "connect")
    def on_connect(dbapi_connection: DBAPIConnection, record: ConnectionPoolEntry) -> None:
        # pysqlite's own implicit BEGIN would defeat the BEGIN IMMEDIATE below.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        # FULL keeps an acknowledged batch through a power loss, not only a crash.
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def on_begin(connection: Any) -> None:
        # A write transaction takes the lock up front, so two writers queue on
        # busy_timeout instead of failing when a read lock is upgraded.
        if connection.get_execution_options().get("testoqa_write"):
            connection.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            connection.exec_driver_sql("BEGIN")


class Database:
    """Own the engine and hand out sessions, one transaction per unit of work."""

    def __init__(self, url: str, *, pool_size: int = 10, echo: bool = False) -> None:
        self.url = validate_database_url(url)
        self.dialect = make_url(url).get_backend_name()
        engine_args: dict[str, Any] = {"echo": echo}
        if self.dialect == "postgresql":
            engine_args.update(pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True)
        self.engine = create_async_engine(url, **engine_args)
        if self.dialect == "sqlite":
            _configure_sqlite(self.engine)
        self._write_engine = self.engine.execution_options(testoqa_write=True)
        self._read_sessions = async_sessionmaker(self.engine, expire_on_commit=False)
        self._write_sessions = async_sessionmaker(self._write_engine, expire_on_commit=False)
        # SQLite takes one writer at a time; queueing writers of this process
        # here keeps them off the busy-wait loop.
        self._sqlite_write_lock = asyncio.Lock() if self.dialect == "sqlite" else None

    @property
    def is_sqlite(self) -> bool:
        return self.dialect == "sqlite"

    @contextlib.asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncSession]:
        """Open a read-only unit of work."""
        async with self._read_sessions() as session, session.begin():
            yield session

    @contextlib.asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncSession]:
        """Open a unit of work that commits on success and rolls back on any error."""
        lock = self._sqlite_write_lock or contextlib.nullcontext()
        async with lock, self._write_sessions() as session, session.begin():
            yield session

    def pool_status(self) -> dict[str, int]:
        """Return the connection pool's checked-out and idle connection counts."""
        pool = self.engine.sync_engine.pool
        checked_out = getattr(pool, "checkedout", None)
        idle = getattr(pool, "checkedin", None)
        return {
            "in_use": int(checked_out()) if callable(checked_out) else 0,
            "idle": int(idle()) if callable(idle) else 0,
        }

    async def dispose(self) -> None:
        await self.engine.dispose()
