"""Pydantic models of the report JSON: projects, runs, one run, one case, comparison and gate.

Pass rates are ratios from 0 to 1 (passed / (passed + failed + error)). A
pass rate is null when a run has none of those outcomes. The gate's
``min_pass_rate`` is a percentage from 0 to 100, as people write it.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from ingest_server.schemas import CaseOut, CiOut, RunStatus

# Maximum lengths of the lists a report returns. The counts next to a list
# (new_failure_count, a failure group's count, a comparison's counts) cover
# every item, listed or not. failure_groups and passed_on_rerun have no such count.
MAX_LISTED = 500
MAX_GROUP_TESTS = 50
SLOWEST_LISTED = 20
# Tracebacks and captured output are cut to this many characters in reports.
MAX_REPORT_TEXT = 50_000


class ReportModel(BaseModel):
    model_config = ConfigDict(extra="forbid")


class OutcomeCounts(ReportModel):
    """Tests of a run by final outcome; ``total`` includes not-run tests."""

    total: int = 0
    passed: int = 0
    failed: int = 0
    error: int = 0
    skipped: int = 0
    xfailed: int = 0
    xpassed: int = 0
    not_run: int = 0
    passed_on_rerun: int = 0


class RunRow(ReportModel):
    """A run as the runs list and the projects page show it."""

    id: uuid.UUID
    name: str | None
    run_key: str | None
    status: RunStatus
    started_at: dt.datetime
    finished_at: dt.datetime | None
    duration: float | None = Field(description="finished_at - started_at in seconds.")
    exit_status: int | None
    ci: CiOut
    counts: OutcomeCounts
    pass_rate: float | None = Field(description="passed / (passed + failed + error), 0 to 1.")
    page_url: str


class RunListPage(ReportModel):
    items: list[RunRow]
    next_cursor: str | None


class ProjectOut(ReportModel):
    key: str
    name: str
    role: str | None
    runs_url: str
    last_run: RunRow | None


class ProjectList(ReportModel):
    items: list[ProjectOut]


class CaseRef(ReportModel):
    id: uuid.UUID
    key: str
    name: str | None
    file: str | None


class RunRef(ReportModel):
    id: uuid.UUID
    name: str | None
    status: RunStatus
    started_at: dt.datetime
    branch: str | None
    commit: str | None


class NewFailure(ReportModel):
    case: CaseRef
    outcome: str
    previous_outcome: str | None = Field(
        description="Outcome in the baseline run; null if absent."
    )
    exception_type: str | None
    message: str | None


class FailureGroup(ReportModel):
    """Failing tests that share a cause: the same exception type and message fingerprint."""

    fingerprint: str | None
    exception_type: str | None
    message: str | None = Field(description="The first line of one example's message.")
    count: int
    tests: list[CaseRef] = Field(description=f"At most {MAX_GROUP_TESTS} of the tests.")
    execution_id: uuid.UUID | None = Field(description="The example whose traceback is shown.")
    traceback: str | None


class RerunCase(ReportModel):
    case: CaseRef
    attempts: int
    duration: float | None


class SlowCase(ReportModel):
    case: CaseRef
    outcome: str
    duration: float


class ReasonCase(ReportModel):
    case: CaseRef
    outcome: str
    reason: str | None


class RunReport(ReportModel):
    run: RunRow
    environment: dict[str, Any]
    collected_count: int | None
    pending: int = Field(
        default=0,
        description="Collected tests of a running run with no result yet; they are not "
        "counted as not_run until the run settles. Always 0 for a settled run.",
    )
    summarized: bool = Field(
        description="True when read from the stored summary of a settled run."
    )
    baseline: RunRef | None = Field(
        description="The previous finished run of the same branch, which new failures are "
        "compared with; null when there is none and every failure counts as new."
    )
    new_failure_count: int
    new_failures: list[NewFailure]
    failure_groups: list[FailureGroup]
    passed_on_rerun: list[RerunCase]
    slowest: list[SlowCase]
    skipped: list[ReasonCase] = Field(description="Skipped and xfailed tests with reasons.")
    not_run: list[CaseRef]


class CaseHistoryEntry(ReportModel):
    run: RunRef
    outcome: str
    attempts: int
    passed_on_rerun: bool
    duration: float | None
    execution_id: uuid.UUID | None


class BranchUse(ReportModel):
    branch: str | None
    runs: int
    last_started_at: dt.datetime


class FailureDetail(ReportModel):
    execution_id: uuid.UUID
    run_id: uuid.UUID
    run: RunRef | None = Field(default=None, description="The run of the failed attempt.")
    outcome: str
    attempt: int
    started_at: dt.datetime
    message: str | None
    traceback: str | None
    stdout: str | None
    stderr: str | None
    log: str | None


class CaseReport(ReportModel):
    case: CaseOut
    window: int
    history: list[CaseHistoryEntry] = Field(description="Newest first, settled runs only.")
    counts: dict[str, int]
    pass_rate: float | None
    last_failure: FailureDetail | None
    branches: list[BranchUse]


class CaseChange(ReportModel):
    case: CaseRef
    base_outcome: str | None
    head_outcome: str | None


class DurationChange(ReportModel):
    case: CaseRef
    base_duration: float
    head_duration: float
    change: float = Field(description="head_duration - base_duration in seconds.")
    ratio: float | None = Field(description="head_duration / base_duration; null if base is 0.")


class Comparison(ReportModel):
    base: RunRow
    head: RunRow
    counts: dict[str, int] = Field(description="Size of each category before lists are cut.")
    new_failures: list[CaseChange]
    fixed: list[CaseChange]
    still_failing: list[CaseChange]
    added: list[CaseChange]
    removed: list[CaseChange]
    slower: list[DurationChange]
    faster: list[DurationChange]


class GateRules(ReportModel):
    """A project's quality-gate rules; a null threshold turns its rule off."""

    no_new_failures: bool = True
    min_pass_rate: float | None = Field(default=None, ge=0, le=100, allow_inf_nan=False)
    max_failed: int | None = Field(default=None, ge=0, le=1_000_000)


class GateRuleResult(ReportModel):
    rule: str
    threshold: bool | float | int
    actual: float | int | None
    passed: bool
    detail: str


class GateVerdict(ReportModel):
    run_id: uuid.UUID
    run: RunRef | None = Field(default=None, description="The judged run.")
    run_status: RunStatus
    passed: bool
    reason: str | None = Field(description="Why the run fails regardless of its rules, if so.")
    baseline: RunRef | None
    rules: list[GateRuleResult]
