"""Schema migrations through Alembic's API, on the server's own async engine."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect
from sqlalchemy.engine import Connection

from ingest_server.db.engine import Database

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


@dataclass(frozen=True)
class SchemaState:
    """State of a database's schema compared with this code's migrations."""

    current: tuple[str, ...]
    head: str
    empty: bool

    @property
    def is_current(self) -> bool:
        return self.current == (self.head,)


def alembic_config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:
        raise RuntimeError(f"no migrations found in {MIGRATIONS_DIR}")
    return head


def _inspect_state(connection: Connection) -> SchemaState:
    current = MigrationContext.configure(connection).get_current_heads()
    tables = inspect(connection).get_table_names()
    return SchemaState(current=tuple(current), head=head_revision(), empty=not tables)


async def schema_state(database: Database) -> SchemaState:
    """Read the applied revision and whether the database contains any table."""
    async with database.engine.connect() as connection:
        return await connection.run_sync(_inspect_state)


def _upgrade(connection: Connection, revision: str) -> None:
    command.upgrade(alembic_config(connection), revision)


async def upgrade(database: Database, revision: str = "head") -> SchemaState:
    """Apply every pending migration in one transaction and return the new state."""
    async with database.engine.begin() as connection:
        await connection.run_sync(_upgrade, revision)
    return await schema_state(database)
