"""Server settings, read from the command line and ``TESTOQA_*`` environment variables."""

from __future__ import annotations

from dataclasses import dataclass

from ingest_server.db.engine import DEFAULT_DATABASE_URL

DEFAULT_MAX_BATCH_ITEMS = 1_000
DEFAULT_MAX_BODY_BYTES = 32 * 1024 * 1024
DEFAULT_WORKERS = 1
MAX_WORKERS = 64
DEFAULT_MAX_LIVE_STREAMS = 200


@dataclass(frozen=True)
class Settings:
    """Everything an operator can tune; the defaults serve one team on SQLite."""

    database_url: str = DEFAULT_DATABASE_URL
    host: str = "127.0.0.1"
    port: int = 8080
    # Executions per POST .../executions request.
    max_batch_items: int = DEFAULT_MAX_BATCH_ITEMS
    # Bytes per request body; a larger body gets 413 before it is read.
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    # Base of the report links the server returns, such as https://testoqa.example.com;
    # when unset they are built from the request's own scheme and host.
    public_url: str | None = None
    pool_size: int = 10
    # Server processes sharing the port; more than one needs PostgreSQL.
    workers: int = DEFAULT_WORKERS
    # Open live-update streams (browsers watching a running run) per process.
    max_live_streams: int = DEFAULT_MAX_LIVE_STREAMS
    # Seconds between two progress updates of one run; events in between fold into one.
    live_interval: float = 0.5
    # Seconds between keep-alive comments on an idle live stream; a closed
    # browser connection is noticed at the next one.
    live_ping_interval: float = 15.0
