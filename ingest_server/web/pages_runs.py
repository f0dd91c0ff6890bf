"""Report pages: projects, runs, one run, one test case, comparison and quality gate."""

from __future__ import annotations

from urllib.parse import urlencode

from aiohttp import web
from markupsafe import Markup

from ingest_server import report_schemas as rs
from ingest_server.services.clock import utcnow
from ingest_server.services.errors import FieldError, InvalidInput
from ingest_server.services.pagination import DEFAULT_LIMIT
from ingest_server.services.reports import DEFAULT_CASE_WINDOW, EDIT_GATE
from ingest_server.services.runs import RUN_STATUSES
from ingest_server.web.api import path_uuid
from ingest_server.web.charts import line_chart, run_labels
from ingest_server.web.keys import SERVICES_KEY, get_context
from ingest_server.web.report_api import query_uuid
from ingest_server.web.requests import (
    check_query,
    parse_number,
    query_int,
    query_text,
    read_form_body,
)
from ingest_server.web.templating import render

SAFE_LINK_SCHEMES = ("http://", "https://")


def safe_link(url: str | None) -> str | None:
    """Return url if a browser may follow it from a page (http or https only), else None."""
    if url and url.lower().startswith(SAFE_LINK_SCHEMES):
        return url
    return None


async def projects_page(request: web.Request) -> web.Response:
    check_query(request, ())
    ctx = get_context(request)
    projects = await request.app[SERVICES_KEY].reports.projects(ctx)
    return render(request, "projects/list.html", {"projects": projects.items})


async def project_home(request: web.Request) -> web.Response:
    key = request.match_info["key"]
    raise web.HTTPSeeOther(f"/projects/{key}/runs")


async def runs_page(request: web.Request) -> web.Response:
    check_query(request, ("branch", "status", "q", "cursor"))
    ctx = get_context(request)
    filters = {
        "branch": query_text(request, "branch") or None,
        "status": query_text(request, "status") or None,
        "q": query_text(request, "q", 200) or None,
    }
    page = await request.app[SERVICES_KEY].reports.runs(
        ctx,
        branch=filters["branch"],
        status=filters["status"],
        text=filters["q"],
        limit=DEFAULT_LIMIT,
        cursor=query_text(request, "cursor", 1000) or None,
    )
    active = {name: value for name, value in filters.items() if value}
    next_url = None
    if page.next_cursor is not None:
        next_url = "?" + urlencode({**active, "cursor": page.next_cursor})
    csv_query = urlencode({**active, "format": "csv"})
    return render(
        request,
        "runs/list.html",
        {
            "runs": page.items,
            "filters": filters,
            "statuses": RUN_STATUSES,
            "next_url": next_url,
            "csv_url": f"/api/v1/projects/{ctx.project_key}/runs?{csv_query}",
            "safe_link": safe_link,
        },
    )


async def run_page(request: web.Request) -> web.Response:
    check_query(request, ())
    ctx = get_context(request)
    run_id = path_uuid(request, "run")
    report = await request.app[SERVICES_KEY].reports.run_report(ctx, run_id)
    totals = report.run.counts.model_dump()
    return render(
        request,
        "runs/detail.html",
        {
            "report": report,
            "running": report.run.status == "running",
            # The static sections of a running run are a snapshot taken now.
            "rendered_at": utcnow(),
            "environment": {
                name: value
                for name, value in report.environment.items()
                if value not in (None, "", {}, [])
            },
            # The live-progress partial reads run, totals and project_key.
            "run": {
                "id": report.run.id,
                "status": report.run.status,
                "collected_count": report.collected_count,
            },
            "totals": totals,
            "project_key": ctx.project_key,
            "safe_link": safe_link,
        },
    )


async def case_page(request: web.Request) -> web.Response:
    check_query(request, ("window",))
    ctx = get_context(request)
    case_id = path_uuid(request, "case")
    window = query_int(request, "window", DEFAULT_CASE_WINDOW)
    report = await request.app[SERVICES_KEY].reports.case_report(ctx, case_id, window=window)
    return render(
        request, "cases/detail.html", {"report": report, "chart": _duration_chart(report)}
    )


def _duration_chart(report: rs.CaseReport) -> Markup | None:
    history = list(reversed(report.history))
    if len(history) < 2:
        return None
    labels = run_labels([entry.run.started_at for entry in history])
    # The table's duration filter writes anything under a second in ms, so
    # a chart of sub-second values uses ms too.
    longest = max((entry.duration or 0.0 for entry in history), default=0.0)
    scale, unit = (1000.0, "milliseconds") if longest < 1 else (1.0, "seconds")
    values = [None if entry.duration is None else entry.duration * scale for entry in history]
    return line_chart(f"Duration of {report.case.key}", labels, {"duration": values}, unit)


async def compare_page(request: web.Request) -> web.Response:
    check_query(request, ("base", "head"))
    ctx = get_context(request)
    reports = request.app[SERVICES_KEY].reports
    base, head = query_uuid(request, "base"), query_uuid(request, "head")
    recent = await reports.runs(
        ctx, branch=None, status="finished", text=None, limit=DEFAULT_LIMIT, cursor=None
    )
    comparison = None
    if base is not None and head is not None:
        comparison = await reports.compare(ctx, base, head)
    defaults = [run.id for run in recent.items[:2]]
    return render(
        request,
        "compare/compare.html",
        {
            "comparison": comparison,
            "recent": recent.items,
            # Not "base": the layout uses that name for the project's URL prefix.
            "base_run": base or (defaults[1] if len(defaults) > 1 else None),
            "head_run": head or (defaults[0] if defaults else None),
        },
    )


async def gate_page(request: web.Request) -> web.Response:
    check_query(request, ("saved",))
    return await _render_gate(request, saved=request.query.get("saved") == "1")


async def _render_gate(
    request: web.Request,
    *,
    saved: bool = False,
    error: str | None = None,
    form: dict[str, str] | None = None,
    status: int = 200,
) -> web.Response:
    ctx = get_context(request)
    reports = request.app[SERVICES_KEY].reports
    rules = await reports.gate_rules(ctx)
    verdict = await reports.gate_verdict(ctx)
    if form is None:
        form = {
            "no_new_failures": "on" if rules.no_new_failures else "",
            "min_pass_rate": "" if rules.min_pass_rate is None else f"{rules.min_pass_rate:g}",
            "max_failed": "" if rules.max_failed is None else str(rules.max_failed),
        }
    return render(
        request,
        "gate/gate.html",
        {
            "rules": rules,
            "verdict": verdict,
            "can_edit": reports.can_edit_gate(ctx),
            "saved": saved,
            "error": error,
            "form": form,
        },
        status=status,
    )


def parse_gate_form(form: dict[str, str]) -> rs.GateRules:
    """Return the rules a gate form submits, or raise InvalidInput naming the bad field."""
    pass_rate_text = form.get("min_pass_rate", "").strip()
    max_failed_text = form.get("max_failed", "").strip()
    min_pass_rate = max_failed = None
    if pass_rate_text:
        try:
            min_pass_rate = float(pass_rate_text)
        except ValueError:
            min_pass_rate = -1.0
        if not 0 <= min_pass_rate <= 100:
            raise InvalidInput(
                f"invalid minimum pass rate {pass_rate_text[:20]!r}: use a number from 0 to 100, "
                "or leave it empty to turn the rule off",
                details=[FieldError("min_pass_rate", "a number from 0 to 100, or empty")],
            )
    if max_failed_text:
        parsed = parse_number(max_failed_text)
        if parsed is None or parsed > 1_000_000:
            raise InvalidInput(
                f"invalid maximum of failed tests {max_failed_text[:20]!r}: use a whole number "
                "from 0 to 1000000, or leave it empty to turn the rule off",
                details=[FieldError("max_failed", "a whole number from 0 to 1000000, or empty")],
            )
        max_failed = parsed
    return rs.GateRules(
        no_new_failures=form.get("no_new_failures") == "on",
        min_pass_rate=min_pass_rate,
        max_failed=max_failed,
    )


async def save_gate(request: web.Request) -> web.Response:
    check_query(request, ())
    ctx = get_context(request)
    # Authorize before validating, so a viewer learns nothing from the form's errors.
    ctx.require(EDIT_GATE)
    posted = await read_form_body(request)
    form = {
        name: str(posted.get(name, ""))
        for name in ("no_new_failures", "min_pass_rate", "max_failed")
    }
    try:
        rules = parse_gate_form(form)
    except InvalidInput as exc:
        return await _render_gate(request, error=exc.message, form=form, status=422)
    await request.app[SERVICES_KEY].reports.save_gate_rules(ctx, rules)
    raise web.HTTPSeeOther(f"/projects/{ctx.project_key}/gate?saved=1")


def add_routes(app: web.Application) -> None:
    """Register this module's routes."""
    app.router.add_get("/projects", projects_page, name="projects_page")
    app.router.add_get("/projects/{key}", project_home, name="project_home")
    app.router.add_get("/projects/{key}/runs", runs_page, name="runs_page")
    app.router.add_get("/projects/{key}/runs/{run}", run_page, name="run_page")
    app.router.add_get("/projects/{key}/cases/{case}", case_page, name="case_page")
    app.router.add_get("/projects/{key}/compare", compare_page, name="compare_page")
    app.router.add_get("/projects/{key}/gate", gate_page, name="gate_page")
    app.router.add_post("/projects/{key}/gate", save_gate, name="save_gate")
