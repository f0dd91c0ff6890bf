"""Run summaries and per-case run results, materialized from executions."""

from __future__ import annotations

from ingest_server.db.engine import Database


class SummaryService:
    def __init__(self, database: Database) -> None:
        self._db = database
