"""TestoQA ingest server: stores pytest results per project and serves reports."""

from __future__ import annotations

__version__ = "0.1.0"
