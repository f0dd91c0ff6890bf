"""Flaky tests, slow tests and trends over many runs."""

from __future__ import annotations

from ingest_server.db.engine import Database


class TrendService:
    def __init__(self, database: Database) -> None:
        self._db = database
