"""Live run updates streamed to browsers as Server-Sent Events."""

from __future__ import annotations

from aiohttp import web


def add_routes(app: web.Application) -> None:
    """Register this module's routes."""
