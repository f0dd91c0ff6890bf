"""Jinja2 set-up for the report pages: one environment, auto-escaping, shared filters."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import aiohttp_jinja2
import jinja2
from aiohttp import web

from ingest_server.web.keys import get_context

STATIC_DIR = Path(__file__).parent / "static"
# Shown where a value is unknown, such as the duration of a run in progress.
MISSING = "\N{EN DASH}"


def setup_templates(app: web.Application) -> None:
    """Install the template environment and the static files on app."""
    env = aiohttp_jinja2.setup(
        app,
        loader=jinja2.PackageLoader("ingest_server.web", "templates"),
        # Every template escapes by default, whatever its file name: test
        # names, messages and output come from the tests under report.
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["duration"] = format_duration
    env.filters["when"] = format_timestamp
    env.filters["percent"] = format_percent
    env.filters["run_label"] = format_run_label
    env.filters["yes_no"] = format_yes_no
    static = app.router.add_static("/static", STATIC_DIR, name="static", append_version=True)
    env.globals["static"] = lambda name: str(static.url_for(filename=name))


def _page_context(request: web.Request) -> dict[str, Any]:
    # aiohttp-jinja2's context-processor middleware is not used: it stores
    # plain string keys on the request, which aiohttp warns about.
    try:
        ctx = get_context(request)
    except KeyError:
        ctx = None
    return {"ctx": ctx, "request_path": request.path_qs}


def render(
    request: web.Request, template: str, context: dict[str, Any], status: int = 200
) -> web.Response:
    """Render template with context; the layout also receives ctx and the request path."""
    response = aiohttp_jinja2.render_template(
        template, request, {**_page_context(request), **context}, status=status
    )
    response.headers["Cache-Control"] = "no-store"
    return response


def format_duration(seconds: float | None) -> str:
    """Return a duration such as '0.31 ms', '4.2 ms', '850 ms', '12.4 s' or '3 min 05 s'.

    Below 1 ms it keeps two decimals and below 10 ms one, so a fast test does
    not read as 0 ms.
    """
    if seconds is None:
        return MISSING
    if seconds == 0:
        return "0 ms"
    milliseconds = seconds * 1000
    if milliseconds < 0.01:
        return "< 0.01 ms"
    if milliseconds < 1:
        return f"{milliseconds:.2f} ms"
    if milliseconds < 10:
        return f"{milliseconds:.1f} ms"
    if seconds < 1:
        return f"{milliseconds:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {rest:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def format_timestamp(value: dt.datetime | str | None) -> str:
    """Return a UTC timestamp to the minute, such as '2026-12-04 21:07 UTC'.

    value may also be an ISO 8601 string, as some services return them.
    """
    if value is None:
        return MISSING
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    return value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


def format_percent(value: float | None) -> str:
    """Return a ratio between 0 and 1 as a percentage with one decimal, such as '97.5 %'."""
    if value is None:
        return MISSING
    return f"{value * 100:.1f} %"


def format_run_label(run: Any) -> str:
    """Return a run's name, or else its short id and start time.

    An unnamed run reads like '48de4600 (2026-12-05 00:42 UTC)'. run is any
    object with id, name and started_at, such as a RunRef or RunRow.
    """
    if run is None:
        return MISSING
    if run.name:
        return str(run.name)
    return f"{str(run.id)[:8]} ({format_timestamp(run.started_at)})"


def format_yes_no(value: object) -> object:
    """Return 'yes' or 'no' for a bool and any other value unchanged."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    return value
