"""Live progress of running runs for browsers."""

from __future__ import annotations

from ingest_server.db.engine import Database


class LiveService:
    def __init__(self, database: Database) -> None:
        self._db = database
