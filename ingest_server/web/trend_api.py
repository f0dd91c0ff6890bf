"""JSON and CSV routes of the reports over many runs: flaky tests, slow tests and trends.

The query parsing here is shared with the HTML pages in pages_trends.py, so
a page and its JSON twin accept the same parameters with the same errors.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from aiohttp import web

from ingest_server import trend_schemas as out
from ingest_server.services import trends
from ingest_server.services.authz import Action
from ingest_server.services.context import RequestContext
from ingest_server.services.errors import FieldError
from ingest_server.web.api import json_response
from ingest_server.web.errors import RequestError
from ingest_server.web.exports import csv_response, wants_csv
from ingest_server.web.keys import SERVICES_KEY
from ingest_server.web.requests import check_query, query_text
from ingest_server.web.routing import PROJECT, QueryParam, Route

FLAKY_BOUNDS = (
    trends.FLAKY_WINDOW,
    trends.MIN_FLIP_RATE,
    trends.MIN_RUNS,
    trends.MIN_FLIPS,
    trends.FLAKY_LIMIT,
)
SLOW_BOUNDS = (
    trends.SLOW_WINDOW,
    trends.RECENT,
    trends.MIN_RATIO,
    trends.MIN_DELTA,
    trends.SLOW_LIMIT,
)
TREND_BOUNDS = (trends.TREND_WINDOW,)


def query_number(request: web.Request, bound: trends.Bound) -> float:
    """Return the query parameter bound.name as a number, or its default when absent.

    The service checks the range. This rejects only a value that is not a
    number, and its message names the range so the caller learns both at once.
    """
    value = request.query.get(bound.name)
    if value is None:
        return bound.default
    try:
        return int(value) if bound.integer else float(value)
    except ValueError as exc:
        raise RequestError(
            422,
            "validation_error",
            f"invalid {bound.name} {value[:50]!r}: {bound.allowed()}",
            details=[FieldError(bound.name, bound.allowed())],
        ) from exc


def query_branch(request: web.Request) -> str | None:
    """Return the branch filter: None when absent (the default branch), "" for all branches."""
    return query_text(request, "branch", trends.MAX_BRANCH_LENGTH)


def flaky_query(request: web.Request) -> trends.FlakyQuery:
    return trends.FlakyQuery(
        branch=query_branch(request),
        window=int(query_number(request, trends.FLAKY_WINDOW)),
        min_flip_rate=query_number(request, trends.MIN_FLIP_RATE),
        min_runs=int(query_number(request, trends.MIN_RUNS)),
        min_flips=int(query_number(request, trends.MIN_FLIPS)),
        limit=int(query_number(request, trends.FLAKY_LIMIT)),
    )


def slow_query(request: web.Request) -> trends.SlowQuery:
    return trends.SlowQuery(
        branch=query_branch(request),
        window=int(query_number(request, trends.SLOW_WINDOW)),
        recent=_query_recent(request),
        min_ratio=query_number(request, trends.MIN_RATIO),
        min_delta=query_number(request, trends.MIN_DELTA),
        limit=int(query_number(request, trends.SLOW_LIMIT)),
    )


def _query_recent(request: web.Request) -> int | None:
    # Absent or empty (the page's blank field), the service splits the runs it finds in half.
    if request.query.get("recent", "") == "":
        return None
    return int(query_number(request, trends.RECENT))


def trend_query(request: web.Request) -> trends.TrendQuery:
    return trends.TrendQuery(
        branch=query_branch(request),
        window=int(query_number(request, trends.TREND_WINDOW)),
    )


def parameter_names(bounds: Iterable[trends.Bound]) -> tuple[str, ...]:
    return ("branch", *(bound.name for bound in bounds))


def check_query_names(request: web.Request, bounds: Iterable[trends.Bound], *extra: str) -> None:
    """Reject query parameters other than the branch, the bounds' names and extra."""
    check_query(request, (*parameter_names(bounds), *extra))


FLAKY_HEADER = (
    "case_key",
    "case_name",
    "case_id",
    "flip_rate",
    "flips",
    "runs_seen",
    "passed_on_rerun",
    "last_outcome",
    "last_run_id",
    "evidence_run_ids",
)


def flaky_rows(report: out.FlakyReport) -> Iterable[Sequence[object]]:
    for test in report.tests:
        yield (
            test.case_key,
            test.case_name,
            test.case_id,
            test.flip_rate,
            test.flips,
            test.runs_seen,
            test.passed_on_rerun,
            test.last_outcome,
            test.last_run_id,
            " ".join(str(item.run_id) for item in test.evidence),
        )


SLOW_HEADER = (
    "list",
    "case_key",
    "case_name",
    "case_id",
    "median",
    "p90",
    "max",
    "runs",
    "recent_median",
    "baseline_median",
    "ratio",
    "delta",
    "recent_runs",
    "baseline_runs",
)


def slow_rows(report: out.SlowReport) -> Iterable[Sequence[object]]:
    for test in report.slowest:
        yield (
            "slowest",
            test.case_key,
            test.case_name,
            test.case_id,
            test.median,
            test.p90,
            test.max,
            test.runs,
            *([None] * 6),
        )
    for item in report.regressions:
        yield (
            "regression",
            item.case_key,
            item.case_name,
            item.case_id,
            *([None] * 4),
            item.recent_median,
            item.baseline_median,
            item.ratio,
            item.delta,
            item.recent_runs,
            item.baseline_runs,
        )


TREND_HEADER = (
    "run_id",
    "started_at",
    "status",
    "branch",
    "commit",
    "tests",
    "passed",
    "failures",
    "pass_rate",
    "wall_duration",
    "test_duration",
)


def trend_rows(report: out.TrendReport) -> Iterable[Sequence[object]]:
    for point in report.points:
        yield (
            point.run_id,
            point.started_at.isoformat(),
            point.status,
            point.branch,
            point.commit,
            point.tests,
            point.passed,
            point.failures,
            point.pass_rate,
            point.wall_duration,
            point.test_duration,
        )


async def get_flaky(request: web.Request, ctx: RequestContext) -> web.Response:
    check_query_names(request, FLAKY_BOUNDS, "format")
    as_csv = wants_csv(request)
    report = await request.app[SERVICES_KEY].trends.flaky(ctx, flaky_query(request))
    if as_csv:
        return csv_response(f"{report.project}-flaky.csv", FLAKY_HEADER, flaky_rows(report))
    return json_response(report)


async def get_slow(request: web.Request, ctx: RequestContext) -> web.Response:
    check_query_names(request, SLOW_BOUNDS, "format")
    as_csv = wants_csv(request)
    report = await request.app[SERVICES_KEY].trends.slow(ctx, slow_query(request))
    if as_csv:
        return csv_response(f"{report.project}-slow.csv", SLOW_HEADER, slow_rows(report))
    return json_response(report)


async def get_trends(request: web.Request, ctx: RequestContext) -> web.Response:
    check_query_names(request, TREND_BOUNDS, "format")
    as_csv = wants_csv(request)
    report = await request.app[SERVICES_KEY].trends.trends(ctx, trend_query(request))
    if as_csv:
        return csv_response(f"{report.project}-trends.csv", TREND_HEADER, trend_rows(report))
    return json_response(report)


BRANCH = QueryParam(
    "branch",
    {"type": "string", "maxLength": trends.MAX_BRANCH_LENGTH},
    "Only runs of this branch. Absent: the branch of the newest settled run. Empty: all branches.",
)


def _query_params(bounds: Iterable[trends.Bound]) -> tuple[QueryParam, ...]:
    params = [BRANCH]
    for bound in bounds:
        convert = int if bound.integer else float
        schema: dict[str, object] = {
            "type": "integer" if bound.integer else "number",
            "minimum": convert(bound.minimum),
            "maximum": convert(bound.maximum),
        }
        # recent has no fixed default: it depends on the runs found.
        if bound is not trends.RECENT:
            schema["default"] = convert(bound.default)
        params.append(QueryParam(bound.name, schema, bound.description))
    return tuple(params)


ROUTES: tuple[Route, ...] = (
    Route(
        "GET",
        f"{PROJECT}/flaky",
        get_flaky,
        "flaky_tests",
        "List tests whose outcome flipped between passed and failed, or that passed on a rerun.",
        Action.READ_RESULTS,
        out.FlakyReport,
        query=_query_params(FLAKY_BOUNDS),
        csv=True,
    ),
    Route(
        "GET",
        f"{PROJECT}/slow",
        get_slow,
        "slow_tests",
        "List the slowest tests by median duration, and the tests that got slower.",
        Action.READ_RESULTS,
        out.SlowReport,
        query=_query_params(SLOW_BOUNDS),
        csv=True,
    ),
    Route(
        "GET",
        f"{PROJECT}/trends",
        get_trends,
        "trends",
        "Return pass rate, test count, failures and durations of each recent run.",
        Action.READ_RESULTS,
        out.TrendReport,
        query=_query_params(TREND_BOUNDS),
        csv=True,
    ),
)
