"""Handlers of the v1 JSON API: read the request, call one service, write the response."""

from __future__ import annotations

import uuid
from typing import Any

from aiohttp import web
from pydantic import BaseModel, TypeAdapter, ValidationError

from ingest_server import report_schemas, schemas
from ingest_server.logs import ingest_logger
from ingest_server.services.context import RequestContext
from ingest_server.services.errors import NotFound
from ingest_server.services.pagination import DEFAULT_LIMIT
from ingest_server.web.exports import csv_response, wants_csv
from ingest_server.web.keys import METRICS_KEY, SERVICES_KEY
from ingest_server.web.requests import (
    check_query,
    parse_json,
    query_int,
    query_text,
    read_json_body,
    read_json_bytes,
)

# A spreadsheet runs a cell that starts with one of these as a formula.

_valid_batch: TypeAdapter[schemas.ValidExecutionBatch] = TypeAdapter(schemas.ValidExecutionBatch)


def json_response(model: BaseModel, status: int = 200) -> web.Response:
    return web.Response(
        status=status, body=model.model_dump_json().encode(), content_type="application/json"
    )


def path_uuid(request: web.Request, name: str) -> uuid.UUID:
    """Return the path parameter name as a UUID; any other value is an unknown id."""
    value = request.match_info[name]
    try:
        return uuid.UUID(value)
    except ValueError as exc:
        raise NotFound(f"{name} {value[:100]!r} not found: {name} ids are UUIDs") from exc


async def create_run(request: web.Request, ctx: RequestContext) -> web.Response:
    check_query(request, ())
    body = await read_json_body(request, schemas.RunCreate)
    result = await request.app[SERVICES_KEY].runs.create_or_join(ctx, body)
    ingest_logger.info(
        "run %s %s by session %s",
        result.run_id,
        "created" if result.created else "joined",
        body.client_run_id,
    )
    return json_response(result, status=201 if result.created else 200)


async def upsert_cases(request: web.Request, ctx: RequestContext) -> web.Response:
    check_query(request, ())
    run_id = path_uuid(request, "run")
    body = await read_json_body(request, schemas.CasesUpsert)
    result = await request.app[SERVICES_KEY].runs.upsert_cases(ctx, run_id, body)
    return json_response(result)


async def post_executions(request: web.Request, ctx: RequestContext) -> web.Response:
    check_query(request, ())
    run_id = path_uuid(request, "run")
    raw = await read_json_bytes(request)
    items: list[Any]
    try:
        # One pass of pydantic's JSON parser validates a clean batch, by far
        # the common case; a batch with invalid items is sorted item by item.
        items = list(_valid_batch.validate_json(raw).executions)
    except ValidationError:
        items = parse_json(raw, schemas.ExecutionBatch).executions
    result = await request.app[SERVICES_KEY].ingest.ingest(ctx, run_id, items)
    metrics = request.app[METRICS_KEY]
    metrics.batch_size.observe(len(items))
    metrics.executions.labels("accepted").inc(result.accepted)
    metrics.executions.labels("duplicate").inc(result.duplicate)
    metrics.executions.labels("rejected").inc(result.rejected)
    ingest_logger.info(
        "batch for run %s: %d accepted, %d duplicate, %d rejected",
        run_id,
        result.accepted,
        result.duplicate,
        result.rejected,
    )
    return json_response(result)


async def finish_run(request: web.Request, ctx: RequestContext) -> web.Response:
    check_query(request, ())
    run_id = path_uuid(request, "run")
    body = await read_json_body(request, schemas.RunFinish)
    result = await request.app[SERVICES_KEY].runs.finish(ctx, run_id, body)
    ingest_logger.info("run %s is %s after a finish request", run_id, result.status)
    return json_response(result)


async def list_runs(request: web.Request, ctx: RequestContext) -> web.Response:
    check_query(request, ("branch", "status", "q", "limit", "cursor", "format"))
    branch = query_text(request, "branch")
    status = query_text(request, "status")
    text = query_text(request, "q", 200)
    limit = query_int(request, "limit", DEFAULT_LIMIT)
    cursor = query_text(request, "cursor", 1000)
    services = request.app[SERVICES_KEY]
    if wants_csv(request):
        rows = await services.reports.runs(
            ctx, branch=branch, status=status, text=text, limit=limit, cursor=cursor
        )
        return runs_csv(request, rows)
    page = await services.runs.list(
        ctx, branch=branch, status=status, text=text, limit=limit, cursor=cursor
    )
    return json_response(page)


async def get_run(request: web.Request, ctx: RequestContext) -> web.Response:
    check_query(request, ())
    run_id = path_uuid(request, "run")
    return json_response(await request.app[SERVICES_KEY].runs.get(ctx, run_id))


async def list_executions(request: web.Request, ctx: RequestContext) -> web.Response:
    check_query(request, ("outcome", "limit", "cursor"))
    run_id = path_uuid(request, "run")
    page = await request.app[SERVICES_KEY].runs.list_executions(
        ctx,
        run_id,
        outcome=query_text(request, "outcome"),
        limit=query_int(request, "limit", DEFAULT_LIMIT),
        cursor=query_text(request, "cursor", 1000),
    )
    return json_response(page)


async def case_history(request: web.Request, ctx: RequestContext) -> web.Response:
    check_query(request, ("limit", "cursor"))
    case_id = path_uuid(request, "case")
    history = await request.app[SERVICES_KEY].runs.case_history(
        ctx,
        case_id,
        limit=query_int(request, "limit", DEFAULT_LIMIT),
        cursor=query_text(request, "cursor", 1000),
    )
    return json_response(history)


RUN_CSV_HEADER = (
    "id",
    "name",
    "run_key",
    "status",
    "started_at",
    "finished_at",
    "duration_seconds",
    "branch",
    "commit",
    "build_url",
    "total",
    "passed",
    "failed",
    "error",
    "skipped",
    "xfailed",
    "xpassed",
    "not_run",
    "passed_on_rerun",
    "pass_rate",
)


def runs_csv(request: web.Request, page: report_schemas.RunListPage) -> web.Response:
    """Return a page of the runs list as CSV; the next page's URL is in the Link header."""
    rows = [
        (
            run.id,
            run.name,
            run.run_key,
            run.status,
            run.started_at.isoformat(),
            run.finished_at.isoformat() if run.finished_at else None,
            run.duration,
            run.ci.branch,
            run.ci.commit,
            run.ci.build_url,
            run.counts.total,
            run.counts.passed,
            run.counts.failed,
            run.counts.error,
            run.counts.skipped,
            run.counts.xfailed,
            run.counts.xpassed,
            run.counts.not_run,
            run.counts.passed_on_rerun,
            run.pass_rate,
        )
        for run in page.items
    ]
    next_url = None
    if page.next_cursor is not None:
        next_url = str(request.rel_url.update_query(cursor=page.next_cursor))
    return csv_response("runs.csv", RUN_CSV_HEADER, rows, next_url)
