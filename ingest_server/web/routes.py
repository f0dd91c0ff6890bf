"""The API route table: ingest routes here, report and account routes from their modules."""

from __future__ import annotations

from aiohttp import web

from ingest_server import schemas
from ingest_server.services.authz import Action
from ingest_server.web import account_api, api, report_api, trend_api
from ingest_server.web.routing import CURSOR, LIMIT, PROJECT, QueryParam, Route, bind

INGEST_ROUTES: tuple[Route, ...] = (
    Route(
        "POST",
        f"{PROJECT}/runs",
        api.create_run,
        "create_run",
        "Create a run, or join the run with the same client run id or run key.",
        Action.REPORT_RESULTS,
        schemas.RunCreated,
        schemas.RunCreate,
        status=201,
        extra_statuses=(200,),
    ),
    Route(
        "GET",
        f"{PROJECT}/runs",
        api.list_runs,
        "list_runs",
        "List the project's runs, newest first.",
        Action.READ_RESULTS,
        schemas.RunPage,
        query=(
            QueryParam("branch", {"type": "string"}, "Only runs of this branch."),
            QueryParam(
                "status",
                {"enum": ["running", "finished", "interrupted"]},
                "Only runs with this status.",
            ),
            QueryParam(
                "q",
                {"type": "string", "maxLength": 200},
                "Only runs whose name, run key, branch or commit contains this text.",
            ),
            LIMIT,
            CURSOR,
        ),
        csv=True,
    ),
    Route(
        "GET",
        f"{PROJECT}/runs/{{run}}",
        api.get_run,
        "get_run",
        "Return a run with totals by final outcome, computed by the server.",
        Action.READ_RESULTS,
        schemas.RunDetail,
    ),
    Route(
        "PUT",
        f"{PROJECT}/runs/{{run}}/cases",
        api.upsert_cases,
        "upsert_cases",
        "Create or update the test cases the run collected.",
        Action.REPORT_RESULTS,
        schemas.CasesUpserted,
        schemas.CasesUpsert,
    ),
    Route(
        "POST",
        f"{PROJECT}/runs/{{run}}/executions",
        api.post_executions,
        "post_executions",
        "Store a batch of executions; repeated ids are duplicates, never second rows.",
        Action.REPORT_RESULTS,
        schemas.BatchResult,
        schemas.ExecutionBatch,
    ),
    Route(
        "GET",
        f"{PROJECT}/runs/{{run}}/executions",
        api.list_executions,
        "list_executions",
        "List a run's executions in start order.",
        Action.READ_RESULTS,
        schemas.ExecutionPage,
        query=(
            QueryParam(
                "outcome", {"enum": list(schemas.OUTCOMES)}, "Only executions with this outcome."
            ),
            LIMIT,
            CURSOR,
        ),
    ),
    Route(
        "POST",
        f"{PROJECT}/runs/{{run}}/finish",
        api.finish_run,
        "finish_run",
        "Finish a session of the run, or all of them.",
        Action.REPORT_RESULTS,
        schemas.RunDetail,
        schemas.RunFinish,
    ),
    Route(
        "GET",
        f"{PROJECT}/cases/{{case}}/history",
        api.case_history,
        "case_history",
        "Return a test case and its executions, newest first.",
        Action.READ_RESULTS,
        schemas.CaseHistory,
        query=(LIMIT, CURSOR),
    ),
)

API_ROUTES: tuple[Route, ...] = (
    INGEST_ROUTES + report_api.ROUTES + trend_api.ROUTES + account_api.ROUTES
)


def add_api_routes(app: web.Application) -> None:
    for route in API_ROUTES:
        app.router.add_route(route.method, route.path, bind(route), name=route.name)
