"""Report pages: projects, runs, one run, one test case, comparison and quality gate."""

from __future__ import annotations

from aiohttp import web


def add_routes(app: web.Application) -> None:
    """Register this module's routes."""
