"""The server's named loggers, and the request fields every line carries.

Loggers: ``testoqa.access`` (one line per request), ``testoqa.ingest``
(batches and runs), ``testoqa.auth`` (authentication failures, audit),
``testoqa.database`` (connections, migrations) and ``testoqa.server``
(start and stop). Lines never contain a token, password or cookie.
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
import time
from typing import Any, Literal

access_logger = logging.getLogger("testoqa.access")
ingest_logger = logging.getLogger("testoqa.ingest")
auth_logger = logging.getLogger("testoqa.auth")
database_logger = logging.getLogger("testoqa.database")
server_logger = logging.getLogger("testoqa.server")

# Fields of the request being served, set by the web layer's middleware.
request_fields: contextvars.ContextVar[tuple[tuple[str, str], ...]] = contextvars.ContextVar(
    "testoqa_request_fields", default=()
)

LogFormat = Literal["text", "json"]
FIELD_NAMES = ("request_id", "project_id", "principal")


class RequestFieldsFilter(logging.Filter):
    """Copy the current request's fields onto each record, "-" where unknown."""

    def filter(self, record: logging.LogRecord) -> bool:
        fields = dict(request_fields.get())
        for name in FIELD_NAMES:
            if not hasattr(record, name):
                setattr(record, name, fields.get(name, "-"))
        return True


class JSONFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": self.formatTime(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in FIELD_NAMES:
            line[name] = getattr(record, name, "-")
        if record.exc_info:
            line["traceback"] = self.formatException(record.exc_info)
        return json.dumps(line)


TEXT_FORMAT = (
    "%(asctime)s %(levelname)s %(name)s request_id=%(request_id)s "
    "project_id=%(project_id)s principal=%(principal)s %(message)s"
)


def configure_logging(level: str = "INFO", log_format: LogFormat = "text") -> None:
    """Send the ``testoqa`` loggers to standard error in the chosen format."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RequestFieldsFilter())
    formatter = JSONFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT)
    handler.setFormatter(formatter)
    root = logging.getLogger("testoqa")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False


class RateLimitedCounter:
    """Log the first event of each window in full and fold the rest into one count.

    Failed authentications can arrive by the thousand from a misconfigured
    CI job; this keeps the log readable and shows the rate.
    """

    def __init__(self, logger: logging.Logger, window_seconds: float = 60.0) -> None:
        self._logger = logger
        self._window = window_seconds
        self._window_start = float("-inf")
        self._suppressed = 0

    def record(self, message: str, *args: object) -> None:
        now = time.monotonic()
        if now - self._window_start < self._window:
            self._suppressed += 1
            return
        if self._suppressed:
            self._logger.warning(
                "%d more authentication failures in the previous %.0f s were not logged",
                self._suppressed,
                self._window,
            )
        self._window_start = now
        self._suppressed = 0
        self._logger.warning(message, *args)
