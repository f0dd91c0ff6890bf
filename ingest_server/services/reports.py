"""Run, case, project and comparison reports, and the quality gate."""

from __future__ import annotations

from ingest_server.db.engine import Database


class ReportService:
    def __init__(self, database: Database) -> None:
        self._db = database
