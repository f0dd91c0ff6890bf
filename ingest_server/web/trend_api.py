"""API routes of this area; the route table in routes.py collects ROUTES."""

from __future__ import annotations

from ingest_server.web.routing import Route

ROUTES: tuple[Route, ...] = ()
