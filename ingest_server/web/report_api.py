"""API routes of the run reports: projects, one run, one case, comparison and quality gate.

The route table in routes.py collects ROUTES.
"""

from __future__ import annotations

import uuid

from aiohttp import web

from ingest_server import report_schemas as rs
from ingest_server.services.authz import Action
from ingest_server.services.context import RequestContext
from ingest_server.services.errors import FieldError
from ingest_server.services.reports import DEFAULT_CASE_WINDOW, EDIT_GATE, MAX_CASE_WINDOW
from ingest_server.web.api import json_response, path_uuid
from ingest_server.web.errors import RequestError
from ingest_server.web.keys import SERVICES_KEY
from ingest_server.web.requests import check_query, query_int, read_json_body
from ingest_server.web.routing import PROJECT, QueryParam, Route

WINDOW = QueryParam(
    "window",
    {"type": "integer", "minimum": 1, "maximum": MAX_CASE_WINDOW, "default": DEFAULT_CASE_WINDOW},
    "How many of the case's latest settled runs to show.",
)
BASE = QueryParam(
    "base",
    {"type": "string", "format": "uuid"},
    "Run id of the older run; by default the finished run before head on head's branch.",
)
HEAD = QueryParam(
    "head",
    {"type": "string", "format": "uuid"},
    "Run id of the newer run; by default the project's latest finished run.",
)


def query_uuid(request: web.Request, name: str) -> uuid.UUID | None:
    """Return the query parameter name as a UUID, None if absent, or raise a 422 naming it."""
    value = request.query.get(name)
    if not value:
        return None
    try:
        return uuid.UUID(value)
    except ValueError as exc:
        raise RequestError(
            422,
            "validation_error",
            f"invalid {name} {value[:100]!r}: expected a run id (a UUID)",
            details=[FieldError(name, "expected a run id (a UUID)")],
        ) from exc


async def list_projects(request: web.Request, ctx: RequestContext) -> web.Response:
    check_query(request, ())
    return json_response(await request.app[SERVICES_KEY].reports.projects(ctx))


async def run_report(request: web.Request, ctx: RequestContext) -> web.Response:
    check_query(request, ())
    run_id = path_uuid(request, "run")
    return json_response(await request.app[SERVICES_KEY].reports.run_report(ctx, run_id))


async def case_report(request: web.Request, ctx: RequestContext) -> web.Response:
    check_query(request, ("window",))
    case_id = path_uuid(request, "case")
    window = query_int(request, "window", DEFAULT_CASE_WINDOW)
    report = await request.app[SERVICES_KEY].reports.case_report(ctx, case_id, window=window)
    return json_response(report)


async def compare_runs(request: web.Request, ctx: RequestContext) -> web.Response:
    check_query(request, ("base", "head"))
    base, head = query_uuid(request, "base"), query_uuid(request, "head")
    return json_response(await request.app[SERVICES_KEY].reports.compare(ctx, base, head))


async def get_gate(request: web.Request, ctx: RequestContext) -> web.Response:
    check_query(request, ())
    return json_response(await request.app[SERVICES_KEY].reports.gate_rules(ctx))


async def put_gate(request: web.Request, ctx: RequestContext) -> web.Response:
    check_query(request, ())
    rules = await read_json_body(request, rs.GateRules)
    return json_response(await request.app[SERVICES_KEY].reports.save_gate_rules(ctx, rules))


async def run_gate(request: web.Request, ctx: RequestContext) -> web.Response:
    check_query(request, ())
    run_id = path_uuid(request, "run")
    verdict = await request.app[SERVICES_KEY].reports.gate_verdict(ctx, run_id)
    assert verdict is not None  # a named run always gets a verdict
    return json_response(verdict)


ROUTES: tuple[Route, ...] = (
    Route(
        "GET",
        "/api/v1/projects",
        list_projects,
        "list_projects",
        "List the caller's projects with each one's latest run and its pass rate.",
        None,
        rs.ProjectList,
    ),
    Route(
        "GET",
        f"{PROJECT}/runs/{{run}}/report",
        run_report,
        "run_report",
        "Report one run: totals, new failures, failures by cause, reruns, slowest, skips.",
        Action.READ_RESULTS,
        rs.RunReport,
    ),
    Route(
        "GET",
        f"{PROJECT}/cases/{{case}}/report",
        case_report,
        "case_report",
        "Report one test case over its latest runs: outcomes, durations, last failure.",
        Action.READ_RESULTS,
        rs.CaseReport,
        query=(WINDOW,),
    ),
    Route(
        "GET",
        f"{PROJECT}/compare",
        compare_runs,
        "compare_runs",
        "Compare two runs: new failures, fixed, still failing, added, removed, durations.",
        Action.READ_RESULTS,
        rs.Comparison,
        query=(BASE, HEAD),
    ),
    Route(
        "GET",
        f"{PROJECT}/gate",
        get_gate,
        "get_gate",
        "Return the project's quality-gate rules.",
        Action.READ_RESULTS,
        rs.GateRules,
    ),
    Route(
        "PUT",
        f"{PROJECT}/gate",
        put_gate,
        "put_gate",
        "Replace the project's quality-gate rules (maintainers and admins).",
        EDIT_GATE,
        rs.GateRules,
        rs.GateRules,
    ),
    Route(
        "GET",
        f"{PROJECT}/runs/{{run}}/gate",
        run_gate,
        "run_gate",
        "Judge a run against the quality gate; 200 whether it passes or not.",
        Action.READ_RESULTS,
        rs.GateVerdict,
    ),
)
