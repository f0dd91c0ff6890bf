"""Run, case, project and comparison reports, and the quality gate.

Definitions every report shares (docs/reports.md explains them for users):

- pass rate: passed / (passed + failed + error), see ``summaries.pass_rate``;
- failing: a final outcome of failed or error;
- new failure: failing in a run and not failing (or absent) in the baseline,
  the previous finished run of the same branch. Without a baseline every
  failure is new.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections import Counter, defaultdict
from collections.abc import Sequence
from typing import Any, cast

from sqlalchemy.ext.asyncio import AsyncSession

from ingest_server import report_schemas as rs
from ingest_server import schemas
from ingest_server.db.engine import Database
from ingest_server.db.models import Execution, TestCase, TestRun
from ingest_server.repositories import audit as audit_repo
from ingest_server.repositories import cases as case_repo
from ingest_server.repositories import reports as report_repo
from ingest_server.repositories import results as result_repo
from ingest_server.repositories import runs as run_repo
from ingest_server.services.authz import Action
from ingest_server.services.clock import utcnow
from ingest_server.services.context import ProjectScope, RequestContext
from ingest_server.services.errors import FieldError, InvalidInput, NotFound, Unauthenticated
from ingest_server.services.runs import (
    RunListing,
    ci_out,
    list_run_page,
    load_run,
    summary_totals,
)
from ingest_server.services.summaries import pass_rate

FAILING = frozenset({"failed", "error"})
# Outcomes whose duration is not the test body's: left out of slowest lists
# and duration comparisons.
NOT_EXECUTED = frozenset({"skipped", "not_run"})
# A duration change is listed only when it is at least this many seconds and
# the ratio head / base is outside MIN_CHANGE_RATIO..1 / MIN_CHANGE_RATIO.
MIN_CHANGE_SECONDS = 0.001
MIN_CHANGE_RATIO = 0.8
DEFAULT_CASE_WINDOW = 30
MAX_CASE_WINDOW = 200
# The action that lets a principal change the gate rules: maintainers and admins.
EDIT_GATE = Action.MANAGE_TOKENS

Result = dict[str, Any]


def runs_page_url(project_key: str) -> str:
    return f"/projects/{project_key}/runs"


def run_page_url(project_key: str, run_id: uuid.UUID) -> str:
    return f"/projects/{project_key}/runs/{run_id}"


def check_window(window: int) -> int:
    if not 1 <= window <= MAX_CASE_WINDOW:
        raise InvalidInput(
            f"invalid window {window}: use a number of runs from 1 to {MAX_CASE_WINDOW}",
            details=[FieldError("window", f"must be from 1 to {MAX_CASE_WINDOW}")],
        )
    return window


def _counts(results: Sequence[Result]) -> dict[str, int]:
    counts: Counter[str] = Counter(result["outcome"] for result in results)
    counts["passed_on_rerun"] = sum(1 for result in results if result["passed_on_rerun"])
    return dict(counts)


def _outcome_counts(totals: dict[str, int]) -> rs.OutcomeCounts:
    names = ("passed", "failed", "error", "skipped", "xfailed", "xpassed", "not_run")
    values = {name: totals.get(name, 0) for name in names}
    return rs.OutcomeCounts(
        total=sum(values.values()),
        passed_on_rerun=totals.get("passed_on_rerun", 0),
        **values,
    )


def _status(run: TestRun) -> schemas.RunStatus:
    # The column only ever stores one of RUN_STATUSES.
    return cast(schemas.RunStatus, run.status)


def run_row(project_key: str, run: TestRun, totals: dict[str, int]) -> rs.RunRow:
    duration = None
    if run.finished_at is not None:
        duration = max((run.finished_at - run.started_at).total_seconds(), 0.0)
    return rs.RunRow(
        id=run.id,
        name=run.name,
        run_key=run.run_key,
        status=_status(run),
        started_at=run.started_at,
        finished_at=run.finished_at,
        duration=duration,
        exit_status=run.exit_status,
        ci=ci_out(run),
        counts=_outcome_counts(totals),
        pass_rate=pass_rate(totals),
        page_url=run_page_url(project_key, run.id),
    )


def run_ref(run: TestRun) -> rs.RunRef:
    return rs.RunRef(
        id=run.id,
        name=run.name,
        status=_status(run),
        started_at=run.started_at,
        branch=run.branch,
        commit=run.commit,
    )


def case_ref(case_id: uuid.UUID, cases: dict[uuid.UUID, TestCase]) -> rs.CaseRef:
    case = cases.get(case_id)
    if case is None:
        return rs.CaseRef(id=case_id, key=str(case_id), name=None, file=None)
    return rs.CaseRef(id=case.id, key=case.key, name=case.name, file=case.file)


def _cut(text: str | None) -> str | None:
    if text is None or len(text) <= rs.MAX_REPORT_TEXT:
        return text
    return text[: rs.MAX_REPORT_TEXT] + f"\n[cut at {rs.MAX_REPORT_TEXT} characters]"


def _first_line(text: str | None) -> str | None:
    if not text:
        return None
    return text.strip().split("\n", 1)[0][:500]


def _by_key(cases: dict[uuid.UUID, TestCase]) -> Any:
    return lambda case_id: cases[case_id].key if case_id in cases else str(case_id)


class ReportService:
    def __init__(self, database: Database) -> None:
        self._db = database

    # --- projects and runs --------------------------------------------------

    async def projects(self, ctx: RequestContext) -> rs.ProjectList:
        """List the caller's projects with each one's latest run."""
        principal = ctx.principal
        async with self._db.read() as session:
            if principal.kind == "user" and principal.user_id is not None:
                visible = await report_repo.member_projects(session, principal.user_id)
            elif principal.kind == "token" and principal.token_project_id is not None:
                project = await report_repo.get_project(session, principal.token_project_id)
                role = principal.token_role.value if principal.token_role else None
                visible = [(project, role or "")] if project is not None else []
            else:
                raise Unauthenticated("sign in, or send an API token, to list your projects")
            items = [await self._project_out(session, project, role) for project, role in visible]
        return rs.ProjectList(items=items)

    async def _project_out(self, session: AsyncSession, project: Any, role: str) -> rs.ProjectOut:
        run = await report_repo.latest_run(session, project.id)
        last = None
        if run is not None:
            totals = await self._totals(session, project.id, run)
            last = run_row(project.key, run, totals)
        return rs.ProjectOut(
            key=project.key,
            name=project.name,
            role=role or None,
            runs_url=runs_page_url(project.key),
            last_run=last,
        )

    @staticmethod
    async def _totals(session: AsyncSession, project_id: int, run: TestRun) -> dict[str, int]:
        summary = await result_repo.get_summary(session, project_id, run.id)
        if summary is not None and run.status != "running":
            return summary_totals(summary)
        totals = await run_repo.totals_by_run(session, project_id, [run.id])
        return totals.get(run.id, {})

    async def runs(
        self,
        ctx: RequestContext,
        *,
        branch: str | None,
        status: str | None,
        text: str | None,
        limit: int,
        cursor: str | None,
    ) -> rs.RunListPage:
        project = ctx.require(Action.READ_RESULTS)
        async with self._db.read() as session:
            page: RunListing = await list_run_page(
                session,
                project.id,
                branch=branch,
                status=status,
                text=text,
                limit=limit,
                cursor=cursor,
            )
        items = [run_row(project.key, run, page.totals.get(run.id, {})) for run in page.runs]
        return rs.RunListPage(items=items, next_cursor=page.next_cursor)

    # --- one run ------------------------------------------------------------

    async def run_report(self, ctx: RequestContext, run_id: uuid.UUID) -> rs.RunReport:
        """Report one run: totals, new failures, failure groups, reruns, slowest and skips."""
        project = ctx.require(Action.READ_RESULTS)
        async with self._db.read() as session:
            run = await load_run(session, project, run_id)
            summarized = (
                run.status != "running"
                and await result_repo.get_summary(session, project.id, run.id) is not None
            )
            results = await result_repo.run_results(session, project.id, run)
            pending = 0
            if run.status == "running":
                # A collected case without a result may still run: it is
                # pending, not "not run", until the run settles.
                pending = sum(1 for r in results if r["outcome"] == "not_run")
                results = [r for r in results if r["outcome"] != "not_run"]
            baseline = await report_repo.previous_finished_run(session, project.id, run)
            previous = await self._baseline_outcomes(session, baseline, results)
            report = await _RunReportBuilder(session, project, run, results).build(
                baseline, previous, summarized, pending
            )
        return report

    async def _baseline_outcomes(
        self, session: AsyncSession, baseline: TestRun | None, results: Sequence[Result]
    ) -> dict[uuid.UUID, str]:
        if baseline is None or not any(r["outcome"] in FAILING for r in results):
            return {}
        # The baseline was found through the run's own project scope.
        baseline_results = await result_repo.run_results(session, baseline.project_id, baseline)
        return {row["case_id"]: row["outcome"] for row in baseline_results}

    # --- one case -----------------------------------------------------------

    async def case_report(
        self, ctx: RequestContext, case_id: uuid.UUID, *, window: int
    ) -> rs.CaseReport:
        """Report one case over its latest ``window`` settled runs."""
        project = ctx.require(Action.READ_RESULTS)
        check_window(window)
        async with self._db.read() as session:
            case = await case_repo.get_case(session, project.id, case_id)
            if case is None:
                raise NotFound(f"case {str(case_id)!r} not found in project {project.key!r}")
            rows = await report_repo.case_results(session, project.id, case_id, limit=window)
            failed = await report_repo.last_failed_execution(session, project.id, case_id)
            failed_run = None
            if failed is not None:
                failed_run = await run_repo.get_run(session, project.id, failed.run_id)
        return _case_report(case, window, rows, failed, failed_run)

    # --- comparison ---------------------------------------------------------

    async def latest_finished(self, ctx: RequestContext, limit: int = 2) -> list[rs.RunRef]:
        """Return the project's latest finished runs, newest first: the comparison defaults."""
        project = ctx.require(Action.READ_RESULTS)
        async with self._db.read() as session:
            runs = await report_repo.latest_finished_runs(session, project.id, limit)
        return [run_ref(run) for run in runs]

    async def compare(
        self, ctx: RequestContext, base_id: uuid.UUID | None, head_id: uuid.UUID | None
    ) -> rs.Comparison:
        """Compare two runs of the project, head being the newer one as a rule.

        Without head, head is the latest finished run; without base, base is
        the finished run before head on head's branch.
        """
        project = ctx.require(Action.READ_RESULTS)
        async with self._db.read() as session:
            head = await self._head(session, project, head_id)
            base = await self._base(session, project, base_id, head)
            base_results = await result_repo.run_results(session, project.id, base)
            head_results = await result_repo.run_results(session, project.id, head)
            case_ids = [r["case_id"] for r in (*base_results, *head_results)]
            cases = await report_repo.cases_by_id(session, project.id, case_ids)
        return _compare(project.key, base, head, base_results, head_results, cases)

    @staticmethod
    async def _head(
        session: AsyncSession, project: ProjectScope, head_id: uuid.UUID | None
    ) -> TestRun:
        if head_id is not None:
            return await load_run(session, project, head_id)
        latest = await report_repo.latest_finished_runs(session, project.id, 1)
        if not latest:
            raise NotFound(f"project {project.key!r} has no finished run to compare")
        return latest[0]

    @staticmethod
    async def _base(
        session: AsyncSession, project: ProjectScope, base_id: uuid.UUID | None, head: TestRun
    ) -> TestRun:
        if base_id is not None:
            return await load_run(session, project, base_id)
        previous = await report_repo.previous_finished_run(session, project.id, head)
        if previous is None:
            raise NotFound(
                f"run {str(head.id)!r} has no earlier finished run on its branch: pass base"
            )
        return previous

    # --- quality gate -------------------------------------------------------

    async def gate_rules(self, ctx: RequestContext) -> rs.GateRules:
        project = ctx.require(Action.READ_RESULTS)
        async with self._db.read() as session:
            stored = await report_repo.get_gate(session, project.id)
        return _rules(stored)

    async def save_gate_rules(self, ctx: RequestContext, rules: rs.GateRules) -> rs.GateRules:
        """Replace the project's gate rules; needs the maintainer or admin role."""
        project = ctx.require(EDIT_GATE)
        now = utcnow()
        async with self._db.write() as session:
            await report_repo.save_gate(session, project.id, rules.model_dump(), now=now)
            await audit_repo.record(
                session,
                project.id,
                actor=ctx.principal.id,
                action="gate.update",
                target=project.key,
                request_id=ctx.request_id,
                details=rules.model_dump(),
                now=now,
            )
        return rules

    @staticmethod
    def can_edit_gate(ctx: RequestContext) -> bool:
        return ctx.project is not None and EDIT_GATE in ctx.project.actions

    async def gate_verdict(
        self, ctx: RequestContext, run_id: uuid.UUID | None = None
    ) -> rs.GateVerdict | None:
        """Judge a run, or the project's latest run, against the gate rules.

        Returns None only when run_id is None and the project has no runs.
        """
        project = ctx.require(Action.READ_RESULTS)
        async with self._db.read() as session:
            if run_id is None:
                run = await report_repo.latest_run(session, project.id)
                if run is None:
                    return None
            else:
                run = await load_run(session, project, run_id)
            rules = _rules(await report_repo.get_gate(session, project.id))
            results = await result_repo.run_results(session, project.id, run)
            baseline = await report_repo.previous_finished_run(session, project.id, run)
            previous = await self._baseline_outcomes(session, baseline, results)
        return _verdict(run, rules, results, baseline, previous)


def _rules(stored: dict[str, Any] | None) -> rs.GateRules:
    if not stored:
        return rs.GateRules()
    # Rules stored by an older version may lack newer keys; defaults fill them.
    known = {name: value for name, value in stored.items() if name in rs.GateRules.model_fields}
    return rs.GateRules.model_validate(known)


def new_failure_ids(results: Sequence[Result], previous: dict[uuid.UUID, str]) -> list[uuid.UUID]:
    """Return the failing cases that did not fail in the baseline (all when previous is empty)."""
    return [
        r["case_id"]
        for r in results
        if r["outcome"] in FAILING and previous.get(r["case_id"]) not in FAILING
    ]


class _RunReportBuilder:
    """Assemble one run's report from its result rows and the few executions it shows."""

    def __init__(
        self,
        session: AsyncSession,
        project: ProjectScope,
        run: TestRun,
        results: Sequence[Result],
    ) -> None:
        self.session = session
        self.project = project
        self.run = run
        self.results = results

    async def build(
        self,
        baseline: TestRun | None,
        previous: dict[uuid.UUID, str],
        summarized: bool,
        pending: int,
    ) -> rs.RunReport:
        failing = [r for r in self.results if r["outcome"] in FAILING]
        new_ids = set(new_failure_ids(self.results, previous))
        groups = self._groups(failing)
        examples = [members[0]["execution_id"] for members in groups.values()]
        skipped = [r for r in self.results if r["outcome"] in ("skipped", "xfailed")]
        skipped = skipped[: rs.MAX_LISTED]
        executions = await report_repo.executions_by_id(
            self.session,
            self.project.id,
            [e for e in (*examples, *(r["execution_id"] for r in failing)) if e is not None],
        )
        reasons = await report_repo.reasons_by_execution(
            self.session, self.project.id, [r["execution_id"] for r in skipped]
        )
        cases = await report_repo.cases_by_id(
            self.session, self.project.id, [r["case_id"] for r in self.results]
        )
        order = _by_key(cases)
        new_rows = sorted(
            (r for r in failing if r["case_id"] in new_ids), key=lambda r: order(r["case_id"])
        )
        return rs.RunReport(
            run=run_row(self.project.key, self.run, _counts(self.results)),
            environment=self.run.environment or {},
            collected_count=self.run.collected_count,
            pending=pending,
            summarized=summarized,
            baseline=run_ref(baseline) if baseline is not None else None,
            new_failure_count=len(new_rows),
            new_failures=[
                self._new_failure(r, previous, cases, executions)
                for r in new_rows[: rs.MAX_LISTED]
            ],
            failure_groups=[
                self._group(members, cases, executions, order) for members in groups.values()
            ][: rs.MAX_LISTED],
            passed_on_rerun=self._reruns(cases, order),
            slowest=self._slowest(cases),
            skipped=sorted(
                (
                    rs.ReasonCase(
                        case=case_ref(r["case_id"], cases),
                        outcome=r["outcome"],
                        reason=reasons.get(r["execution_id"]),
                    )
                    for r in skipped
                ),
                key=lambda item: item.case.key,
            ),
            not_run=sorted(
                (case_ref(r["case_id"], cases) for r in self.results if r["outcome"] == "not_run"),
                key=lambda ref: ref.key,
            )[: rs.MAX_LISTED],
        )

    @staticmethod
    def _groups(failing: Sequence[Result]) -> dict[tuple[str, str], list[Result]]:
        groups: dict[tuple[str, str], list[Result]] = defaultdict(list)
        for r in failing:
            groups[(r["exception_type"] or "", r["fingerprint"] or "")].append(r)
        ordered = sorted(groups.items(), key=lambda item: (-len(item[1]), item[0]))
        return dict(ordered)

    @staticmethod
    def _new_failure(
        r: Result,
        previous: dict[uuid.UUID, str],
        cases: dict[uuid.UUID, TestCase],
        executions: dict[uuid.UUID, Execution],
    ) -> rs.NewFailure:
        execution = executions.get(r["execution_id"])
        return rs.NewFailure(
            case=case_ref(r["case_id"], cases),
            outcome=r["outcome"],
            previous_outcome=previous.get(r["case_id"]),
            exception_type=r["exception_type"],
            message=_first_line(execution.message) if execution else None,
        )

    @staticmethod
    def _group(
        members: list[Result],
        cases: dict[uuid.UUID, TestCase],
        executions: dict[uuid.UUID, Execution],
        order: Any,
    ) -> rs.FailureGroup:
        members = sorted(members, key=lambda r: order(r["case_id"]))
        example = executions.get(members[0]["execution_id"])
        return rs.FailureGroup(
            fingerprint=members[0]["fingerprint"],
            exception_type=members[0]["exception_type"],
            message=_first_line(example.message) if example else None,
            count=len(members),
            tests=[case_ref(r["case_id"], cases) for r in members[: rs.MAX_GROUP_TESTS]],
            execution_id=example.id if example else None,
            traceback=_cut(example.traceback) if example else None,
        )

    def _reruns(self, cases: dict[uuid.UUID, TestCase], order: Any) -> list[rs.RerunCase]:
        rows = sorted(
            (r for r in self.results if r["passed_on_rerun"]), key=lambda r: order(r["case_id"])
        )
        return [
            rs.RerunCase(
                case=case_ref(r["case_id"], cases), attempts=r["attempts"], duration=r["duration"]
            )
            for r in rows[: rs.MAX_LISTED]
        ]

    def _slowest(self, cases: dict[uuid.UUID, TestCase]) -> list[rs.SlowCase]:
        timed = [
            r
            for r in self.results
            if r["outcome"] not in NOT_EXECUTED and r["duration"] is not None and r["duration"] > 0
        ]
        timed.sort(key=lambda r: (-r["duration"], str(r["case_id"])))
        return [
            rs.SlowCase(
                case=case_ref(r["case_id"], cases), outcome=r["outcome"], duration=r["duration"]
            )
            for r in timed[: rs.SLOWEST_LISTED]
        ]


def _case_report(
    case: TestCase,
    window: int,
    rows: Sequence[tuple[Any, TestRun]],
    failed: Execution | None,
    failed_run: TestRun | None = None,
) -> rs.CaseReport:
    history = [
        rs.CaseHistoryEntry(
            run=run_ref(run),
            outcome=result.outcome,
            attempts=result.attempts,
            passed_on_rerun=result.passed_on_rerun,
            duration=result.duration,
            execution_id=result.execution_id,
        )
        for result, run in rows
    ]
    counts = dict(Counter(entry.outcome for entry in history))
    branches: dict[str | None, rs.BranchUse] = {}
    for entry in history:
        use = branches.get(entry.run.branch)
        if use is None:
            branches[entry.run.branch] = rs.BranchUse(
                branch=entry.run.branch, runs=1, last_started_at=entry.run.started_at
            )
        else:
            use.runs += 1
    last_failure = None
    if failed is not None:
        last_failure = rs.FailureDetail(
            execution_id=failed.id,
            run_id=failed.run_id,
            run=run_ref(failed_run) if failed_run is not None else None,
            outcome=failed.outcome,
            attempt=failed.attempt,
            started_at=failed.started_at,
            message=_cut(failed.message),
            traceback=_cut(failed.traceback),
            stdout=_cut(failed.stdout),
            stderr=_cut(failed.stderr),
            log=_cut(failed.log),
        )
    return rs.CaseReport(
        case=schemas.CaseOut.model_validate(
            {name: getattr(case, name) for name in schemas.CaseOut.model_fields}
        ),
        window=window,
        history=history,
        counts=counts,
        pass_rate=pass_rate(counts),
        last_failure=last_failure,
        branches=sorted(branches.values(), key=lambda use: use.last_started_at, reverse=True),
    )


def _compare(
    project_key: str,
    base: TestRun,
    head: TestRun,
    base_results: Sequence[Result],
    head_results: Sequence[Result],
    cases: dict[uuid.UUID, TestCase],
) -> rs.Comparison:
    before = {r["case_id"]: r for r in base_results if r["outcome"] != "not_run"}
    after = {r["case_id"]: r for r in head_results if r["outcome"] != "not_run"}
    order = _by_key(cases)
    categories: dict[str, list[uuid.UUID]] = {
        "new_failures": [],
        "fixed": [],
        "still_failing": [],
        "added": [],
        "removed": [],
    }
    for case_id in sorted(set(before) | set(after), key=order):
        old = before[case_id]["outcome"] if case_id in before else None
        new = after[case_id]["outcome"] if case_id in after else None
        if old is None:
            categories["added"].append(case_id)
        if new is None:
            categories["removed"].append(case_id)
        if new in FAILING and old not in FAILING:
            categories["new_failures"].append(case_id)
        elif new in FAILING and old in FAILING:
            categories["still_failing"].append(case_id)
        elif old in FAILING and new == "passed":
            categories["fixed"].append(case_id)

    def change(case_id: uuid.UUID) -> rs.CaseChange:
        return rs.CaseChange(
            case=case_ref(case_id, cases),
            base_outcome=before[case_id]["outcome"] if case_id in before else None,
            head_outcome=after[case_id]["outcome"] if case_id in after else None,
        )

    listed = {name: [change(c) for c in ids[: rs.MAX_LISTED]] for name, ids in categories.items()}
    slower, faster = _duration_changes(before, after, cases)
    return rs.Comparison(
        base=run_row(project_key, base, _counts(base_results)),
        head=run_row(project_key, head, _counts(head_results)),
        counts={name: len(ids) for name, ids in categories.items()},
        slower=slower,
        faster=faster,
        **listed,
    )


def _duration_changes(
    before: dict[uuid.UUID, Result],
    after: dict[uuid.UUID, Result],
    cases: dict[uuid.UUID, TestCase],
) -> tuple[list[rs.DurationChange], list[rs.DurationChange]]:
    # Plain tuples first: a run has thousands of tests and only the largest
    # changes are listed, so models are built for those alone.
    changes: list[tuple[float, str, uuid.UUID, float, float]] = []
    for case_id in set(before) & set(after):
        if {before[case_id]["outcome"], after[case_id]["outcome"]} & NOT_EXECUTED:
            continue
        old, new = before[case_id]["duration"], after[case_id]["duration"]
        if old is None or new is None or not _real_change(old, new):
            continue
        changes.append((new - old, _case_key(case_id, cases), case_id, old, new))
    # Both lists put the largest absolute change first.
    slower = sorted((c for c in changes if c[0] > 0), key=lambda c: (-c[0], c[1]))
    faster = sorted((c for c in changes if c[0] < 0), key=lambda c: (c[0], c[1]))
    return (
        [_duration_change(change, cases) for change in slower[: rs.SLOWEST_LISTED]],
        [_duration_change(change, cases) for change in faster[: rs.SLOWEST_LISTED]],
    )


def _case_key(case_id: uuid.UUID, cases: dict[uuid.UUID, TestCase]) -> str:
    case = cases.get(case_id)
    return case.key if case is not None else str(case_id)


def _duration_change(
    change: tuple[float, str, uuid.UUID, float, float], cases: dict[uuid.UUID, TestCase]
) -> rs.DurationChange:
    delta, _, case_id, old, new = change
    return rs.DurationChange(
        case=case_ref(case_id, cases),
        base_duration=old,
        head_duration=new,
        change=delta,
        ratio=new / old if old > 0 else None,
    )


def _real_change(old: float, new: float) -> bool:
    """Tell whether a duration change is large in seconds and in ratio, not timer noise."""
    if abs(new - old) < MIN_CHANGE_SECONDS:
        return False
    if old <= 0:
        return True
    return not MIN_CHANGE_RATIO < new / old < 1 / MIN_CHANGE_RATIO


def run_label(run: TestRun) -> str:
    """Return a run's name, or its short id and start time when it has no name."""
    if run.name:
        return run.name
    started = run.started_at.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return f"{str(run.id)[:8]} ({started})"


def _verdict(
    run: TestRun,
    rules: rs.GateRules,
    results: Sequence[Result],
    baseline: TestRun | None,
    previous: dict[uuid.UUID, str],
) -> rs.GateVerdict:
    counts = _counts(results)
    checks: list[rs.GateRuleResult] = []
    if rules.no_new_failures:
        new = len(new_failure_ids(results, previous))
        against = (
            f"compared with run {run_label(baseline)} on the same branch"
            if baseline is not None
            else "with no earlier finished run on this branch, every failure is new"
        )
        checks.append(
            rs.GateRuleResult(
                rule="no_new_failures",
                threshold=True,
                actual=new,
                passed=new == 0,
                detail=f"{new} new failures, {against}",
            )
        )
    if rules.min_pass_rate is not None:
        rate = pass_rate(counts)
        actual = None if rate is None else round(rate * 100, 2)
        checks.append(
            rs.GateRuleResult(
                rule="min_pass_rate",
                threshold=rules.min_pass_rate,
                actual=actual,
                passed=actual is not None and actual >= rules.min_pass_rate,
                detail=(
                    f"pass rate {actual} % against a minimum of {rules.min_pass_rate} %"
                    if actual is not None
                    else "no passed, failed or error tests, so no pass rate"
                ),
            )
        )
    if rules.max_failed is not None:
        failed = counts.get("failed", 0) + counts.get("error", 0)
        checks.append(
            rs.GateRuleResult(
                rule="max_failed",
                threshold=rules.max_failed,
                actual=failed,
                passed=failed <= rules.max_failed,
                detail=f"{failed} failed or error tests against a maximum of {rules.max_failed}",
            )
        )
    reason = None
    if run.status == "running":
        reason = "the run is still running: ask again once it has finished"
    elif run.status == "interrupted":
        reason = "the run was interrupted, so some tests may not have run"
    return rs.GateVerdict(
        run_id=run.id,
        run=run_ref(run),
        run_status=_status(run),
        passed=reason is None and all(check.passed for check in checks),
        reason=reason,
        baseline=run_ref(baseline) if baseline is not None else None,
        rules=checks,
    )
