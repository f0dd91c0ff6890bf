"""Run summaries and per-case run results, materialized from executions.

The summaries are rebuilt inside the transaction that settles a run
(``RunService.finish``) and inside the transaction that stores executions
or collected cases for a run that has settled already. ``SummaryService``
rebuilds them on demand, for backfills and benchmarks.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping

from ingest_server.db.engine import Database
from ingest_server.repositories import projects as project_repo
from ingest_server.repositories import results as result_repo
from ingest_server.services.clock import utcnow
from ingest_server.services.context import RequestContext
from ingest_server.services.errors import NotFound

# Settled runs summarized per read transaction by a backfill.
BACKFILL_BATCH = 200

# Outcomes that count towards the pass rate's denominator.
VERDICT_OUTCOMES = ("passed", "failed", "error")


def pass_rate(totals: Mapping[str, int]) -> float | None:
    """Return passed / (passed + failed + error) between 0 and 1, or None without such tests.

    Skipped, xfailed, xpassed and not-run tests count neither way: they
    carry no pass or fail verdict of their own. Every report uses this one
    definition.
    """
    counted = sum(totals.get(outcome, 0) for outcome in VERDICT_OUTCOMES)
    if counted == 0:
        return None
    return totals.get("passed", 0) / counted


class SummaryService:
    def __init__(self, database: Database) -> None:
        self._db = database

    async def summarize(self, project_id: int, run_id: uuid.UUID) -> None:
        """Rebuild one run's summary and results, whatever its status.

        This is an operator's tool (backfills, benchmarks): it takes no
        RequestContext and so must never be reachable from a request.
        """
        async with self._db.write() as session:
            await result_repo.summarize_run(session, project_id, run_id, now=utcnow())

    async def backfill(self, ctx: RequestContext) -> int:
        """Summarize every settled run that has no summary; return how many were summarized.

        Runs that settled before the summaries existed (an upgraded
        database) are otherwise missing from the reports over many runs.
        Each run is summarized in its own transaction, so a long backfill
        never holds the write lock for long.
        """
        if ctx.principal.kind != "operator":
            raise NotFound("summarizing runs is only available to the server's operator")
        async with self._db.read() as session:
            project_ids = await project_repo.list_project_ids(session)
        count = 0
        for project_id in project_ids:
            while True:
                async with self._db.read() as session:
                    run_ids = await result_repo.unsummarized_runs(
                        session, project_id, BACKFILL_BATCH
                    )
                for run_id in run_ids:
                    await self.summarize(project_id, run_id)
                count += len(run_ids)
                if len(run_ids) < BACKFILL_BATCH:
                    break
        return count
