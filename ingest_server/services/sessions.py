"""Sign-in sessions, CSRF tokens, sign-in rate limits and personal access tokens."""

from __future__ import annotations

from ingest_server.db.engine import Database


class SessionService:
    def __init__(self, database: Database) -> None:
        self._db = database
