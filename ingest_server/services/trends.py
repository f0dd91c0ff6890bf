"""Flaky tests, slow tests and trends over many runs.

Every report reads a window of the newest runs of one branch (or of all
branches) and their materialized results, one row per case and run. The
definitions, windows and defaults are described in docs/trends.md.
"""

from __future__ import annotations

import itertools
import math
import statistics
import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from ingest_server import trend_schemas as out
from ingest_server.db.engine import Database
from ingest_server.db.models import RunSummary
from ingest_server.repositories import trends as trend_repo
from ingest_server.repositories.trends import Result, WindowRun
from ingest_server.services.authz import Action
from ingest_server.services.context import ProjectScope, RequestContext
from ingest_server.services.errors import FieldError, InvalidInput
from ingest_server.services.summaries import pass_rate

FAILING = frozenset({"failed", "error"})
# Outcomes that carry a verdict: only these count as a run the test ran in.
VERDICTS = frozenset({"passed", "failed", "error"})
# Flaky and slow tests compare finished runs only: an interrupted run stops
# tests midway, which would read as flips and as short durations.
FINISHED = ("finished",)
# A regression compares two medians; each needs at least this many samples.
MIN_REGRESSION_SAMPLES = 2
# Maximum length of a branch filter, the width of test_runs.branch.
MAX_BRANCH_LENGTH = 250


@dataclass(frozen=True)
class Bound:
    """A numeric query parameter: its name, default and allowed range, both ends included."""

    name: str
    default: float
    minimum: float
    maximum: float
    integer: bool
    description: str

    def check(self, value: float) -> None:
        """Raise InvalidInput naming this parameter and its range when value is outside it."""
        # NaN fails both comparisons, so it is rejected as well.
        if not self.minimum <= value <= self.maximum:
            raise InvalidInput(
                f"invalid {self.name} {value!r}: {self.allowed()}",
                details=[FieldError(self.name, self.allowed())],
            )

    def allowed(self) -> str:
        kind = "an integer" if self.integer else "a number"
        return f"use {kind} from {_plain(self.minimum)} to {_plain(self.maximum)}"


def _plain(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


FLAKY_WINDOW = Bound("window", 20, 2, 200, True, "How many of the newest finished runs to read.")
MIN_FLIP_RATE = Bound(
    "min_flip_rate", 0.1, 0, 1, False, "List a test whose flip rate is at least this."
)
MIN_RUNS = Bound("min_runs", 3, 2, 200, True, "List flips of a test that ran in this many runs.")
# One change of outcome is a fix (failed, then passed) or a regression (passed,
# then failed), not flakiness, so by default a test needs two flips to be listed.
MIN_FLIPS = Bound(
    "min_flips", 2, 1, 200, True, "List a test that flipped at least this many times."
)
FLAKY_LIMIT = Bound("limit", 100, 1, 500, True, "At most this many tests.")
SLOW_WINDOW = Bound("window", 10, 2, 200, True, "How many of the newest finished runs to read.")
RECENT = Bound(
    "recent",
    5,
    1,
    199,
    True,
    "The newest runs of the window compared with the rest. Absent: half of the runs found, "
    "from 1 to 5.",
)
MIN_RATIO = Bound("min_ratio", 1.5, 1, 1000, False, "Flag a recent / baseline median this high.")
MIN_DELTA = Bound(
    "min_delta", 0.1, 0, 86400, False, "Flag only when the medians differ by this many seconds."
)
SLOW_LIMIT = Bound("limit", 50, 1, 500, True, "At most this many tests in each list.")
TREND_WINDOW = Bound("window", 50, 1, 500, True, "How many of the newest settled runs to read.")


@dataclass(frozen=True)
class FlakyQuery:
    # None selects the branch of the newest settled run, and "" selects all branches.
    branch: str | None = None
    window: int = int(FLAKY_WINDOW.default)
    min_flip_rate: float = MIN_FLIP_RATE.default
    min_runs: int = int(MIN_RUNS.default)
    min_flips: int = int(MIN_FLIPS.default)
    limit: int = int(FLAKY_LIMIT.default)

    def check(self) -> None:
        _check_branch(self.branch)
        FLAKY_WINDOW.check(self.window)
        MIN_FLIP_RATE.check(self.min_flip_rate)
        MIN_RUNS.check(self.min_runs)
        MIN_FLIPS.check(self.min_flips)
        FLAKY_LIMIT.check(self.limit)


@dataclass(frozen=True)
class SlowQuery:
    branch: str | None = None
    window: int = int(SLOW_WINDOW.default)
    # None splits the runs found in half, see recent_part().
    recent: int | None = None
    min_ratio: float = MIN_RATIO.default
    min_delta: float = MIN_DELTA.default
    limit: int = int(SLOW_LIMIT.default)

    def check(self) -> None:
        _check_branch(self.branch)
        SLOW_WINDOW.check(self.window)
        # recent may reach or pass the window: the baseline is then empty and
        # no test is flagged. Rejecting it would make valid values of one
        # parameter depend on another.
        if self.recent is not None:
            RECENT.check(self.recent)
        MIN_RATIO.check(self.min_ratio)
        MIN_DELTA.check(self.min_delta)
        SLOW_LIMIT.check(self.limit)


@dataclass(frozen=True)
class TrendQuery:
    branch: str | None = None
    window: int = int(TREND_WINDOW.default)

    def check(self) -> None:
        _check_branch(self.branch)
        TREND_WINDOW.check(self.window)


def _check_branch(branch: str | None) -> None:
    if branch is not None and len(branch) > MAX_BRANCH_LENGTH:
        message = f"use at most {MAX_BRANCH_LENGTH} characters"
        raise InvalidInput(f"invalid branch: {message}", details=[FieldError("branch", message)])


def recent_part(runs_found: int) -> int:
    """Return the default size of the recent part: half of the runs found, from 1 to 5.

    A fixed default larger than half of a short history would leave the
    baseline with too few runs to compare.
    """
    return max(1, min(int(RECENT.default), runs_found // 2))


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def percentile(values: Sequence[float], fraction: float) -> float:
    """Return the nearest-rank percentile of values.

    That is the smallest value with at least fraction of the values at or
    below it: for ten values, the 90th percentile is the ninth smallest.
    """
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


def flips_of(outcomes: Sequence[str]) -> int:
    """Count consecutive pairs where one outcome passed and the other failed or errored."""
    return sum(
        (before == "passed") != (after == "passed")
        for before, after in itertools.pairwise(outcomes)
    )


class TrendService:
    def __init__(self, database: Database) -> None:
        self._db = database

    async def branches(self, ctx: RequestContext) -> list[str]:
        """Return the branches of the project's recent runs, for a filter's suggestions."""
        project = ctx.require(Action.READ_RESULTS)
        async with self._db.read() as session:
            return await trend_repo.recent_branches(session, project.id)

    async def default_branch(self, ctx: RequestContext) -> str | None:
        """Return the branch a report reads without a branch filter: the newest settled run's."""
        project = ctx.require(Action.READ_RESULTS)
        async with self._db.read() as session:
            return await trend_repo.latest_branch(session, project.id)

    async def _window(
        self,
        project: ProjectScope,
        branch: str | None,
        statuses: Sequence[str],
        window: int,
    ) -> tuple[str | None, list[WindowRun]]:
        """Resolve the branch filter and return it with the window's runs, newest first."""
        async with self._db.read() as session:
            if branch is None:
                branch = await trend_repo.latest_branch(session, project.id)
            selected = branch or None
            runs = await trend_repo.window_runs(
                session, project.id, branch=selected, statuses=statuses, limit=window
            )
        return selected, runs

    async def flaky(self, ctx: RequestContext, query: FlakyQuery) -> out.FlakyReport:
        """Return the tests that flipped between passed and failed, or passed on a rerun."""
        project = ctx.require(Action.READ_RESULTS)
        query.check()
        branch, runs = await self._window(project, query.branch, FINISHED, query.window)
        run_ids = [run.id for run in runs]
        async with self._db.read() as session:
            candidates = await trend_repo.failing_cases(session, project.id, run_ids)
            rows = await trend_repo.results(session, project.id, run_ids, case_ids=candidates)
            names = await trend_repo.case_names(session, project.id, candidates)
        links = _Links(ctx, project)
        tests = _flaky_tests(query, runs, rows, names, links)
        return out.FlakyReport(
            project=project.key,
            branch=branch,
            window=query.window,
            runs=len(runs),
            min_flip_rate=query.min_flip_rate,
            min_runs=query.min_runs,
            min_flips=query.min_flips,
            limit=query.limit,
            first_run_at=runs[-1].started_at if runs else None,
            last_run_at=runs[0].started_at if runs else None,
            total=len(tests),
            tests=tests[: query.limit],
        )

    async def slow(self, ctx: RequestContext, query: SlowQuery) -> out.SlowReport:
        """Return the slowest tests by median duration and the tests that got slower."""
        project = ctx.require(Action.READ_RESULTS)
        query.check()
        branch, runs = await self._window(project, query.branch, FINISHED, query.window)
        run_ids = [run.id for run in runs]
        recent = query.recent if query.recent is not None else recent_part(len(runs))
        recent_runs = min(recent, len(runs))
        baseline_runs = len(runs) - recent_runs

        async with self._db.read() as session:
            samples = await trend_repo.passed_durations(session, project.id, run_ids)
        slowest, regressions = _slow_lists(query, recent, samples)

        shown = {case_id for case_id, _ in slowest} | {case_id for case_id, _ in regressions}
        async with self._db.read() as session:
            names = await trend_repo.case_names(session, project.id, sorted(shown))
        links = _Links(ctx, project)
        return out.SlowReport(
            project=project.key,
            branch=branch,
            window=query.window,
            runs=len(runs),
            recent=recent,
            recent_given=query.recent is not None,
            recent_runs=recent_runs,
            baseline_runs=baseline_runs,
            regressions_note=_regressions_note(recent_runs, baseline_runs),
            min_ratio=query.min_ratio,
            min_delta=query.min_delta,
            limit=query.limit,
            first_run_at=runs[-1].started_at if runs else None,
            last_run_at=runs[0].started_at if runs else None,
            slowest=[
                out.SlowTest(**links.case(case_id, names), **figures)
                for case_id, figures in slowest
            ],
            regressions=[
                out.Regression(**links.case(case_id, names), **figures)
                for case_id, figures in regressions
            ],
        )

    async def trends(self, ctx: RequestContext, query: TrendQuery) -> out.TrendReport:
        """Return pass rate, test count, failures and durations of each run of the window."""
        project = ctx.require(Action.READ_RESULTS)
        query.check()
        branch, runs = await self._window(project, query.branch, trend_repo.SETTLED, query.window)
        async with self._db.read() as session:
            found = await trend_repo.summaries(session, project.id, [run.id for run in runs])
        links = _Links(ctx, project)
        return out.TrendReport(
            project=project.key,
            branch=branch,
            window=query.window,
            runs=len(runs),
            points=[_trend_point(run, found.get(run.id), links) for run in runs],
        )


class _Links:
    """Build the page addresses that reports link to."""

    def __init__(self, ctx: RequestContext, project: ProjectScope) -> None:
        self._base = f"{ctx.base_url}/projects/{project.key}"

    def run(self, run_id: uuid.UUID) -> str:
        return f"{self._base}/runs/{run_id}"

    def case(
        self, case_id: uuid.UUID, names: dict[uuid.UUID, trend_repo.CaseName]
    ) -> dict[str, object]:
        name = names.get(case_id)
        return {
            "case_id": case_id,
            # A case without a name row falls back to its id rather than failing the report.
            "case_key": name.key if name else str(case_id),
            "case_name": name.name if name else None,
            "case_url": f"{self._base}/cases/{case_id}",
        }


def _flaky_tests(
    query: FlakyQuery,
    runs: Sequence[WindowRun],
    rows: Sequence[Result],
    names: dict[uuid.UUID, trend_repo.CaseName],
    links: _Links,
) -> list[out.FlakyTest]:
    order = {run.id: position for position, run in enumerate(reversed(runs))}
    by_run = {run.id: run for run in runs}
    by_case: dict[uuid.UUID, list[Result]] = defaultdict(list)
    for row in rows:
        by_case[row.case_id].append(row)
    tests = []
    for case_id, case_rows in by_case.items():
        case_rows.sort(key=lambda row: order[row.run_id])
        test = _flaky_test(query, case_rows, by_run, links.case(case_id, names), links)
        if test is not None:
            tests.append(test)
    tests.sort(
        key=lambda test: (
            -(test.flip_rate or 0.0),
            -test.passed_on_rerun,
            -test.flips,
            test.case_key,
        )
    )
    return tests


def _flaky_test(
    query: FlakyQuery,
    rows: Sequence[Result],
    runs: dict[uuid.UUID, WindowRun],
    case: dict[str, object],
    links: _Links,
) -> out.FlakyTest | None:
    """Return the entry of one case's results (oldest first), or None when the case is steady."""
    ran = [row for row in rows if row.outcome in VERDICTS]
    outcomes = [row.outcome for row in ran]
    flips = flips_of(outcomes)
    flip_rate = flips / (len(ran) - 1) if len(ran) > 1 else None
    reruns = sum(row.passed_on_rerun for row in rows)
    flipping = (
        flips >= query.min_flips
        and len(ran) >= query.min_runs
        and flip_rate is not None
        and flip_rate >= query.min_flip_rate
    )
    if not flipping and reruns == 0:
        return None
    evidence = _evidence(ran, rows)
    last = rows[-1]
    return out.FlakyTest(
        **case,
        flip_rate=flip_rate,
        flips=flips,
        runs_seen=len(ran),
        passed_on_rerun=reruns,
        last_outcome=last.outcome,
        last_run_id=last.run_id,
        evidence=[_evidence_entry(row, runs[row.run_id], links) for row in reversed(evidence)],
    )


def _evidence(ran: Sequence[Result], rows: Sequence[Result]) -> list[Result]:
    """Return the results on either side of each flip and those passed on a rerun, oldest first."""
    chosen: set[uuid.UUID] = set()
    for before, after in itertools.pairwise(ran):
        if (before.outcome == "passed") != (after.outcome == "passed"):
            chosen.update((before.run_id, after.run_id))
    return [row for row in rows if row.passed_on_rerun or row.run_id in chosen]


def _evidence_entry(row: Result, run: WindowRun, links: _Links) -> out.FlakyEvidence:
    return out.FlakyEvidence(
        run_id=row.run_id,
        run_url=links.run(row.run_id),
        started_at=run.started_at,
        commit=run.commit,
        outcome=row.outcome,
        attempts=row.attempts,
        passed_on_rerun=row.passed_on_rerun,
        execution_id=row.execution_id,
    )


Figures = dict[str, float | int | None]


def _regressions_note(recent_runs: int, baseline_runs: int) -> str | None:
    """Explain why no regression can be flagged, or return None when both parts are big enough."""
    if min(recent_runs, baseline_runs) >= MIN_REGRESSION_SAMPLES:
        return None
    return (
        f"Too few runs to look for regressions: the recent part has {recent_runs} and the "
        f"baseline {baseline_runs}, and each needs at least {MIN_REGRESSION_SAMPLES}. "
        "Widen the window, change recent, or wait for more runs."
    )


def _slow_lists(
    query: SlowQuery, recent: int, samples: dict[str, list[tuple[int, float]]]
) -> tuple[list[tuple[uuid.UUID, Figures]], list[tuple[uuid.UUID, Figures]]]:
    """Return the slowest tests and the regressions, each sorted and cut to the limit.

    samples maps case ids (as text) to (run age, duration) pairs, where age 0
    is the newest run of the window. Tests with a median of 0 are not listed as
    slowest: they only pad the list.
    """
    slowest: list[tuple[str, Figures]] = []
    regressions: list[tuple[str, Figures]] = []
    for case_id, case_samples in samples.items():
        durations = [duration for _, duration in case_samples]
        figures: Figures = {
            "median": median(durations),
            "p90": percentile(durations, 0.9),
            "max": max(durations),
            "runs": len(durations),
        }
        if _number(figures["median"]) > 0:
            slowest.append((case_id, figures))
        regression = _regression(query, recent, case_samples)
        if regression is not None:
            regressions.append((case_id, regression))
    slowest.sort(key=lambda item: (-_number(item[1]["median"]), item[0]))
    regressions.sort(key=lambda item: (-_number(item[1]["delta"]), item[0]))
    return (
        [(uuid.UUID(case_id), figures) for case_id, figures in slowest[: query.limit]],
        [(uuid.UUID(case_id), figures) for case_id, figures in regressions[: query.limit]],
    )


def _number(value: float | int | None) -> float:
    return float(value or 0)


def _regression(
    query: SlowQuery, recent_size: int, case_samples: Sequence[tuple[int, float]]
) -> Figures | None:
    """Return the figures of a duration regression, or None when the test did not get slower."""
    recent = [duration for age, duration in case_samples if age < recent_size]
    baseline = [duration for age, duration in case_samples if age >= recent_size]
    if len(recent) < MIN_REGRESSION_SAMPLES or len(baseline) < MIN_REGRESSION_SAMPLES:
        return None
    recent_median, baseline_median = median(recent), median(baseline)
    delta = recent_median - baseline_median
    ratio = recent_median / baseline_median if baseline_median > 0 else None
    if delta < query.min_delta or (ratio is not None and ratio < query.min_ratio):
        return None
    return {
        "recent_median": recent_median,
        "baseline_median": baseline_median,
        "ratio": ratio,
        "delta": delta,
        "recent_runs": len(recent),
        "baseline_runs": len(baseline),
    }


def _trend_point(run: WindowRun, summary: RunSummary | None, links: _Links) -> out.TrendPoint:
    wall = None
    if run.finished_at is not None:
        wall = max(0.0, (run.finished_at - run.started_at).total_seconds())
    point = out.TrendPoint(
        run_id=run.id,
        run_url=links.run(run.id),
        name=run.name,
        status=run.status,
        started_at=run.started_at,
        finished_at=run.finished_at,
        branch=run.branch,
        commit=run.commit,
        summarized=summary is not None,
        tests=None,
        passed=None,
        failed=None,
        error=None,
        skipped=None,
        xfailed=None,
        xpassed=None,
        not_run=None,
        failures=None,
        passed_on_rerun=None,
        pass_rate=None,
        wall_duration=wall,
        test_duration=None,
    )
    if summary is None:
        return point
    totals = {
        "passed": summary.passed,
        "failed": summary.failed,
        "error": summary.error,
        "skipped": summary.skipped,
        "xfailed": summary.xfailed,
        "xpassed": summary.xpassed,
        "not_run": summary.not_run,
    }
    return point.model_copy(
        update={
            **totals,
            "tests": summary.total,
            "failures": summary.failed + summary.error,
            "passed_on_rerun": summary.passed_on_rerun,
            "pass_rate": pass_rate(totals),
            "test_duration": summary.test_duration,
        }
    )
