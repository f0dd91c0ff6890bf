"""Report pages over many runs: flaky tests, slow tests and trends."""

from __future__ import annotations

import urllib.parse
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

from aiohttp import web
from markupsafe import Markup

from ingest_server import trend_schemas as out
from ingest_server.services import trends
from ingest_server.services.authz import Action
from ingest_server.services.errors import InvalidInput
from ingest_server.web import trend_api
from ingest_server.web.charts import line_chart, run_labels
from ingest_server.web.errors import RequestError
from ingest_server.web.keys import SERVICES_KEY, get_context
from ingest_server.web.templating import render

# Form labels of the numeric filters, by query parameter name.
LABELS = {
    "window": "Window (runs)",
    "min_flip_rate": "Minimum flip rate (0 to 1)",
    "min_runs": "Minimum runs",
    "min_flips": "Minimum flips",
    "recent": "Recent runs",
    "min_ratio": "Minimum ratio",
    "min_delta": "Minimum delta (s)",
    "limit": "Tests shown",
}


def add_routes(app: web.Application) -> None:
    """Register this module's routes."""
    app.router.add_get("/projects/{key}/flaky", flaky_page, name="flaky_page")
    app.router.add_get("/projects/{key}/slow", slow_page, name="slow_page")
    app.router.add_get("/projects/{key}/trends", trends_page, name="trends_page")


async def flaky_page(request: web.Request) -> web.Response:
    return await _report_page(
        request,
        "trends/flaky.html",
        trend_api.FLAKY_BOUNDS,
        lambda ctx: request.app[SERVICES_KEY].trends.flaky(ctx, trend_api.flaky_query(request)),
    )


async def slow_page(request: web.Request) -> web.Response:
    return await _report_page(
        request,
        "trends/slow.html",
        trend_api.SLOW_BOUNDS,
        lambda ctx: request.app[SERVICES_KEY].trends.slow(ctx, trend_api.slow_query(request)),
    )


async def trends_page(request: web.Request) -> web.Response:
    return await _report_page(
        request,
        "trends/trends.html",
        trend_api.TREND_BOUNDS,
        lambda ctx: request.app[SERVICES_KEY].trends.trends(ctx, trend_api.trend_query(request)),
        charts=_trend_charts,
    )


async def _report_page(
    request: web.Request,
    template: str,
    bounds: tuple[trends.Bound, ...],
    load: Callable[[Any], Awaitable[Any]],
    charts: Callable[[Any], dict[str, Markup]] | None = None,
) -> web.Response:
    """Render a report with its filter form, or the form with the error for bad filters."""
    ctx = get_context(request)
    # A project the caller may not see is a 404 before the query is looked at.
    project = ctx.require(Action.READ_RESULTS)
    service = request.app[SERVICES_KEY].trends
    branches = await service.branches(ctx)
    context: dict[str, Any] = {
        "project_key": project.key,
        "bounds": {bound.name: bound for bound in bounds},
        "labels": LABELS,
        "branches": branches,
        "report": None,
        "error": None,
        "charts": {},
    }
    try:
        trend_api.check_query_names(request, bounds)
        report = await load(ctx)
    except (InvalidInput, RequestError) as exc:
        context["error"] = exc.message
        # Without a branch in the address the report would have read the default
        # branch, so the form shows that rather than an empty box (all branches).
        default_branch = await service.default_branch(ctx)
        context["form"] = _form_values(request.query, bounds, default_branch)
        return render(request, template, context, status=422)
    context["report"] = report
    context["form"] = _form_values(request.query, bounds, report.branch)
    context["csv_url"] = _csv_url(request, project.key, context["form"])
    if charts is not None:
        context["charts"] = charts(report)
    return render(request, template, context)


def _form_values(
    query: Mapping[str, str], bounds: Iterable[trends.Bound], branch: str | None
) -> dict[str, str]:
    """Return the filter form's values: what was sent, else the value the report used."""
    values = {
        bound.name: query.get(bound.name, _plain_number(bound.default, bound.integer))
        for bound in bounds
    }
    if "recent" in values:
        # A blank recent field lets the report pick half of the runs it finds.
        values["recent"] = query.get("recent", "")
    values["branch"] = query.get("branch", branch or "")
    return values


def _plain_number(value: float, integer: bool) -> str:
    return str(int(value)) if integer else f"{value:g}"


def _csv_url(request: web.Request, key: str, form: Mapping[str, str]) -> str:
    # The resolved branch goes into the link, so the export contains the rows shown.
    name = request.path.rsplit("/", 1)[-1]
    query = urllib.parse.urlencode({**form, "format": "csv"})
    return f"/api/v1/projects/{key}/{name}?{query}"


def _trend_charts(report: out.TrendReport) -> dict[str, Markup]:
    points = list(reversed(report.points))
    labels = run_labels([point.started_at for point in points])

    def percent(value: float | None) -> float | None:
        return None if value is None else round(value * 100, 2)

    return {
        "pass_rate": line_chart(
            "Pass rate per run",
            labels,
            {"pass rate": [percent(point.pass_rate) for point in points]},
            "%",
            y_range=(0, 100),
        ),
        "counts": line_chart(
            "Tests and failures per run",
            labels,
            {
                "tests": [_float(point.tests) for point in points],
                "failures (failed + error)": [_float(point.failures) for point in points],
            },
            "tests",
        ),
        "durations": line_chart(
            "Duration per run",
            labels,
            {
                "wall clock": [point.wall_duration for point in points],
                "sum of test durations": [point.test_duration for point in points],
            },
            "seconds",
        ),
    }


def _float(value: int | None) -> float | None:
    return None if value is None else float(value)
