"""Sign-in, sign-out, account and project settings pages."""

from __future__ import annotations

from aiohttp import web


def add_routes(app: web.Application) -> None:
    """Register this module's routes."""
