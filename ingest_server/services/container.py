"""The set of services one server process uses, built around one Database."""

from __future__ import annotations

from ingest_server.config import Settings
from ingest_server.db.engine import Database
from ingest_server.db.migrate import SchemaState, schema_state
from ingest_server.db.notify import create_bus
from ingest_server.services.admin import AdminService
from ingest_server.services.auth import AuthService
from ingest_server.services.ingest import IngestService
from ingest_server.services.live import LiveService
from ingest_server.services.reports import ReportService
from ingest_server.services.runs import RunService
from ingest_server.services.sessions import SessionService
from ingest_server.services.summaries import SummaryService
from ingest_server.services.trends import TrendService


class Services:
    """Every use case of the server; the web layer and the CLI reach the database only here."""

    def __init__(self, settings: Settings, database: Database | None = None) -> None:
        self.settings = settings
        self.database = database or Database(settings.database_url, pool_size=settings.pool_size)
        self.auth = AuthService(self.database)
        self.admin = AdminService(self.database)
        # Run events for live pages: LISTEN/NOTIFY on PostgreSQL, memory on SQLite.
        self.bus = create_bus(self.database)
        self.runs = RunService(self.database, events=self.bus)
        self.ingest = IngestService(
            self.database, max_batch_items=settings.max_batch_items, events=self.bus
        )
        self.sessions = SessionService(self.database)
        self.summaries = SummaryService(self.database)
        self.reports = ReportService(self.database)
        self.trends = TrendService(self.database)
        self.live = LiveService(
            self.database,
            self.bus,
            interval=settings.live_interval,
            max_streams=settings.max_live_streams,
        )

    async def schema_state(self) -> SchemaState:
        return await schema_state(self.database)

    def pool_status(self) -> dict[str, int]:
        return self.database.pool_status()

    async def close(self) -> None:
        await self.live.close()
        await self.database.dispose()
