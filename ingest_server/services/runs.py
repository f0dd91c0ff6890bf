"""Runs: create or join, record collected cases, finish, and read back with totals."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession

from ingest_server import schemas
from ingest_server.db.engine import Database
from ingest_server.db.models import RunSession, RunSummary, TestRun
from ingest_server.db.notify import EventBus
from ingest_server.repositories import cases as case_repo
from ingest_server.repositories import executions as execution_repo
from ingest_server.repositories import results as result_repo
from ingest_server.repositories import runs as run_repo
from ingest_server.repositories.base import AlreadyExists
from ingest_server.services.authz import Action
from ingest_server.services.clock import utcnow
from ingest_server.services.context import ProjectScope, RequestContext
from ingest_server.services.errors import Conflict, FieldError, InvalidInput, NotFound
from ingest_server.services.pagination import check_limit, decode_cursor, encode_cursor

RUN_STATUSES = ("running", "finished", "interrupted")
CREATE_ATTEMPTS = 3


def run_url(ctx: RequestContext, project_key: str, run_id: uuid.UUID) -> str:
    """Return the address of the run's report page."""
    return f"{ctx.base_url}/projects/{project_key}/runs/{run_id}"


def ci_out(run: TestRun) -> schemas.CiOut:
    """Return the run's CI metadata as the API shows it."""
    return schemas.CiOut(
        provider=run.ci_provider,
        branch=run.branch,
        commit=run.commit,
        build_url=run.build_url,
        job=run.job,
        pull_request=run.pull_request,
    )


async def load_run(session: AsyncSession, project: ProjectScope, run_id: uuid.UUID) -> TestRun:
    run = await run_repo.get_run(session, project.id, run_id)
    if run is None:
        raise NotFound(f"run {str(run_id)!r} not found in project {project.key!r}")
    return run


class RunService:
    def __init__(self, database: Database, *, events: EventBus | None = None) -> None:
        self._db = database
        # Told after collected cases and finish requests commit, for live pages.
        self._events = events

    # --- writes -------------------------------------------------------------

    async def create_or_join(
        self, ctx: RequestContext, body: schemas.RunCreate
    ) -> schemas.RunCreated:
        """Create a run, or join the one with the same client run id or run key."""
        project = ctx.require(Action.REPORT_RESULTS)
        for _ in range(CREATE_ATTEMPTS):
            try:
                async with self._db.write() as session:
                    run, created = await self._create_or_join(session, project.id, body)
                break
            except AlreadyExists:
                # The same session started concurrently (a client retry that
                # overtook its first request); the next attempt finds it.
                continue
        else:
            raise Conflict(
                f"client run id {body.client_run_id!r} is being created concurrently; retry"
            )
        return schemas.RunCreated(
            run_id=run.id,
            report_url=run_url(ctx, project.key, run.id),
            status=run.status,
            created=created,
        )

    async def _create_or_join(
        self, session: AsyncSession, project_id: int, body: schemas.RunCreate
    ) -> tuple[TestRun, bool]:
        existing = await run_repo.get_session(session, project_id, body.client_run_id)
        if existing is not None:
            # A retried request of a session that already started.
            run = await run_repo.get_run(session, project_id, existing.run_id)
            assert run is not None  # the foreign key guarantees it
            return run, False
        if body.run_key is not None:
            run = await run_repo.get_run_by_key(session, project_id, body.run_key)
            if run is None:
                try:
                    run = await run_repo.insert_run(session, project_id, **self._run_values(body))
                except AlreadyExists:
                    # Another shard created the run first; join it instead.
                    run = await run_repo.get_run_by_key(session, project_id, body.run_key)
                    assert run is not None
                else:
                    await self._add_session(session, project_id, run, body)
                    return run, True
            await self._add_session(session, project_id, run, body)
            if run.status != "running":
                # A settled run that a new shard joins is running again, and a
                # running run has no summary until it settles once more.
                await result_repo.delete_summary(session, project_id, run.id)
            self._merge_shard(run, body)
            return run, False
        run = await run_repo.insert_run(session, project_id, **self._run_values(body))
        await self._add_session(session, project_id, run, body)
        return run, True

    @staticmethod
    def _run_values(body: schemas.RunCreate) -> dict[str, Any]:
        return {
            "id": uuid.uuid4(),
            "run_key": body.run_key,
            "name": body.name,
            "status": "running",
            "started_at": body.started_at,
            "ci_provider": body.ci.provider,
            "branch": body.ci.branch,
            "commit": body.ci.commit,
            "build_url": body.ci.build_url,
            "job": body.ci.job,
            "pull_request": body.ci.pull_request,
            "environment": body.environment.model_dump(exclude_none=True),
            "collected_count": body.collected_count,
            "created_at": utcnow(),
        }

    @staticmethod
    async def _add_session(
        session: AsyncSession, project_id: int, run: TestRun, body: schemas.RunCreate
    ) -> None:
        await run_repo.insert_session(
            session,
            project_id,
            client_run_id=body.client_run_id,
            run_id=run.id,
            status="running",
            started_at=body.started_at,
            collected_count=body.collected_count,
        )

    @staticmethod
    def _merge_shard(run: TestRun, body: schemas.RunCreate) -> None:
        """Fold a joining shard into the run: it runs again and starts at the earliest start."""
        run.status = "running"
        run.finished_at = None
        run.exit_status = None
        run.started_at = min(run.started_at, body.started_at)
        if body.collected_count is not None:
            run.collected_count = max(run.collected_count or 0, body.collected_count)

    async def upsert_cases(
        self, ctx: RequestContext, run_id: uuid.UUID, body: schemas.CasesUpsert
    ) -> schemas.CasesUpserted:
        project = ctx.require(Action.REPORT_RESULTS)
        keys = [case.key for case in body.cases]
        if len(set(keys)) != len(keys):
            duplicate = next(key for key in keys if keys.count(key) > 1)
            raise InvalidInput(
                f"case key {duplicate[:200]!r} appears more than once in one request",
                details=[FieldError("cases", "each key at most once per request")],
            )
        async with self._db.write() as session:
            run = await load_run(session, project, run_id)
            rows = [case.model_dump() for case in body.cases]
            ids, created = await case_repo.upsert_cases(session, project.id, rows, now=utcnow())
            await case_repo.link_run_cases(session, project.id, run_id, list(ids.values()))
            if run.status != "running":
                # Newly collected cases of a settled run change its not-run count.
                await result_repo.summarize_run(session, project.id, run_id, now=utcnow())
        if self._events is not None:
            await self._events.publish(project.id, run_id, "cases")
        return schemas.CasesUpserted(received=len(rows), created=created)

    async def finish(
        self, ctx: RequestContext, run_id: uuid.UUID, body: schemas.RunFinish
    ) -> schemas.RunDetail:
        """Finish one session, or every session; the run ends when all its sessions have."""
        project = ctx.require(Action.REPORT_RESULTS)
        async with self._db.write() as session:
            run = await load_run(session, project, run_id)
            run_sessions = await run_repo.list_sessions(session, project.id, run_id)
            targets = self._sessions_to_finish(run_sessions, body)
            for run_session in targets:
                run_session.status = body.status
                run_session.finished_at = body.finished_at
                run_session.exit_status = body.exit_status
            self._settle_status(run, run_sessions)
            await session.flush()
            if run.status != "running":
                await result_repo.summarize_run(session, project.id, run_id, now=utcnow())
        if self._events is not None:
            await self._events.publish(project.id, run_id, "finished")
        return await self.get(ctx, run_id)

    @staticmethod
    def _sessions_to_finish(run_sessions: Any, body: schemas.RunFinish) -> list[RunSession]:
        if body.client_run_id is None:
            return [s for s in run_sessions if s.status == "running"] or list(run_sessions)
        matching = [s for s in run_sessions if s.client_run_id == body.client_run_id]
        if not matching:
            raise InvalidInput(
                f"client run id {body.client_run_id!r} is not a session of this run",
                details=[FieldError("client_run_id", "must name a session that joined this run")],
            )
        return matching

    @staticmethod
    def _settle_status(run: TestRun, run_sessions: Any) -> None:
        statuses = [s.status for s in run_sessions]
        if "running" in statuses:
            run.status = "running"
            return
        run.status = "interrupted" if "interrupted" in statuses else "finished"
        run.finished_at = max(s.finished_at for s in run_sessions if s.finished_at)
        exits = [s.exit_status for s in run_sessions if s.exit_status is not None]
        # The highest pytest exit status is the most severe of the shards' results.
        run.exit_status = max(exits) if exits else None

    # --- reads --------------------------------------------------------------

    async def get(self, ctx: RequestContext, run_id: uuid.UUID) -> schemas.RunDetail:
        project = ctx.require(Action.READ_RESULTS)
        async with self._db.read() as session:
            run = await load_run(session, project, run_id)
            stats = await run_repo.run_stats(session, project.id, run_id)
            planned = await run_repo.count_planned(session, project.id, run_id)
            not_run = await run_repo.count_not_run(session, project.id, run_id)
            run_sessions = await run_repo.list_sessions(session, project.id, run_id)
        base = self._run_out(ctx, project, run, stats.totals)
        return schemas.RunDetail(
            **base.model_dump(),
            environment=run.environment,
            collected_count=run.collected_count,
            planned=planned,
            not_run=not_run,
            attempts=stats.attempts,
            passed_on_rerun=stats.passed_on_rerun,
            sessions=len(run_sessions),
            sessions_finished=sum(s.status != "running" for s in run_sessions),
        )

    async def list(
        self,
        ctx: RequestContext,
        *,
        branch: str | None,
        status: str | None,
        limit: int,
        cursor: str | None,
        text: str | None = None,
    ) -> schemas.RunPage:
        project = ctx.require(Action.READ_RESULTS)
        async with self._db.read() as session:
            page = await list_run_page(
                session,
                project.id,
                branch=branch,
                status=status,
                text=text,
                limit=limit,
                cursor=cursor,
            )
        items = [
            self._run_out(ctx, project, run, _wire_totals(page.totals[run.id]))
            for run in page.runs
        ]
        return schemas.RunPage(items=items, next_cursor=page.next_cursor)

    async def list_executions(
        self,
        ctx: RequestContext,
        run_id: uuid.UUID,
        *,
        outcome: str | None,
        limit: int,
        cursor: str | None,
    ) -> schemas.ExecutionPage:
        project = ctx.require(Action.READ_RESULTS)
        check_limit(limit)
        if outcome is not None and outcome not in schemas.OUTCOMES:
            allowed = ", ".join(schemas.OUTCOMES)
            raise InvalidInput(
                f"invalid outcome {outcome[:50]!r}: use one of {allowed}",
                details=[FieldError("outcome", f"one of {allowed}")],
            )
        after = decode_cursor(cursor)
        async with self._db.read() as session:
            await load_run(session, project, run_id)
            rows = await execution_repo.list_executions(
                session, project.id, run_id, limit=limit + 1, outcome=outcome, after=after
            )
            page = list(rows[:limit])
            keys = await case_repo.get_case_keys(session, project.id, [e.case_id for e in page])
        next_cursor = (
            encode_cursor(page[-1].started_at, page[-1].id) if len(rows) > limit else None
        )
        items = [
            schemas.ExecutionOut.model_validate(
                {
                    **_columns(execution, schemas.ExecutionOut),
                    "case_key": keys.get(execution.case_id, ""),
                }
            )
            for execution in page
        ]
        return schemas.ExecutionPage(items=items, next_cursor=next_cursor)

    async def case_history(
        self, ctx: RequestContext, case_id: uuid.UUID, *, limit: int, cursor: str | None
    ) -> schemas.CaseHistory:
        project = ctx.require(Action.READ_RESULTS)
        check_limit(limit)
        before = decode_cursor(cursor)
        async with self._db.read() as session:
            case = await case_repo.get_case(session, project.id, case_id)
            if case is None:
                raise NotFound(f"case {str(case_id)!r} not found in project {project.key!r}")
            rows = await execution_repo.case_history(
                session, project.id, case_id, limit=limit + 1, before=before
            )
        page = list(rows[:limit])
        next_cursor = None
        if len(rows) > limit:
            last = page[-1][0]
            next_cursor = encode_cursor(last.started_at, last.id)
        items = [
            schemas.HistoryEntry(
                execution_id=execution.id,
                run_id=run.id,
                run_name=run.name,
                branch=run.branch,
                commit=run.commit,
                attempt=execution.attempt,
                outcome=execution.outcome,
                duration=execution.duration,
                started_at=execution.started_at,
            )
            for execution, run in page
        ]
        return schemas.CaseHistory(
            case=schemas.CaseOut.model_validate(_columns(case, schemas.CaseOut)),
            items=items,
            next_cursor=next_cursor,
        )

    @staticmethod
    def _run_out(
        ctx: RequestContext, project: ProjectScope, run: TestRun, totals: dict[str, int]
    ) -> schemas.RunOut:
        return schemas.RunOut(
            id=run.id,
            name=run.name,
            run_key=run.run_key,
            status=run.status,
            started_at=run.started_at,
            finished_at=run.finished_at,
            exit_status=run.exit_status,
            ci=ci_out(run),
            report_url=run_url(ctx, project.key, run.id),
            totals=schemas.Totals(**totals),
            tests=sum(totals.values()),
        )


@dataclass(frozen=True)
class RunListing:
    """One page of runs with each run's totals by final outcome, not_run included."""

    runs: list[TestRun]
    totals: dict[uuid.UUID, dict[str, int]]
    next_cursor: str | None


def check_status(status: str | None) -> str | None:
    if status is not None and status not in RUN_STATUSES:
        raise InvalidInput(
            f"invalid status {status[:50]!r}: use one of {', '.join(RUN_STATUSES)}",
            details=[FieldError("status", f"one of {', '.join(RUN_STATUSES)}")],
        )
    return status


async def list_run_page(
    session: AsyncSession,
    project_id: int,
    *,
    branch: str | None,
    status: str | None,
    text: str | None,
    limit: int,
    cursor: str | None,
) -> RunListing:
    """Return a page of runs newest first, after validating the filters.

    Settled runs take their totals from the stored summaries; only running
    runs are counted from their executions.
    """
    check_limit(limit)
    check_status(status)
    before = decode_cursor(cursor)
    runs = await run_repo.list_runs(
        session,
        project_id,
        limit=limit + 1,
        branch=branch,
        status=status,
        text=text,
        before=before,
    )
    page = list(runs[:limit])
    summaries = await result_repo.summaries_by_run(session, project_id, [run.id for run in page])
    unsummarized = [run.id for run in page if run.id not in summaries]
    totals = await run_repo.totals_by_run(session, project_id, unsummarized)
    for run_id, summary in summaries.items():
        totals[run_id] = summary_totals(summary)
    next_cursor = None
    if len(runs) > limit:
        next_cursor = encode_cursor(page[-1].started_at, page[-1].id)
    return RunListing(runs=page, totals=totals, next_cursor=next_cursor)


def summary_totals(summary: RunSummary) -> dict[str, int]:
    """Return a stored summary's counts by outcome, not_run and passed_on_rerun included."""
    names = (*schemas.OUTCOMES, "not_run", "passed_on_rerun")
    return {name: getattr(summary, name) for name in names if getattr(summary, name)}


def _wire_totals(totals: dict[str, int]) -> dict[str, int]:
    """Return the counts of executed outcomes, the ones the v1 run models carry."""
    return {outcome: totals[outcome] for outcome in schemas.OUTCOMES if outcome in totals}


def _columns(row: Any, model: type[BaseModel]) -> dict[str, Any]:
    """Return the attributes of row that model declares, by name."""
    return {name: getattr(row, name) for name in model.model_fields if hasattr(row, name)}
