"""TestoQA's pytest plugin: reports every test execution to a TestoQA ingest server."""

from __future__ import annotations

__version__ = "0.1.0"
