"""Response models of the reports over many runs: flaky tests, slow tests and trends."""

from __future__ import annotations

import datetime as dt
import uuid

from pydantic import Field

from ingest_server.schemas import ResponseModel


class FlakyEvidence(ResponseModel):
    run_id: uuid.UUID
    run_url: str = Field(description="The run's report page.")
    started_at: dt.datetime
    commit: str | None
    outcome: str = Field(description="The final outcome of the test in this run.")
    attempts: int
    passed_on_rerun: bool
    execution_id: uuid.UUID | None = Field(description="The final attempt's execution.")


class FlakyTest(ResponseModel):
    case_id: uuid.UUID
    case_key: str
    case_name: str | None
    case_url: str = Field(description="The test case's page.")
    flip_rate: float | None = Field(
        description="flips / (runs_seen - 1); null when the test ran in fewer than 2 runs."
    )
    flips: int = Field(
        description="Consecutive runs in which the final outcome changed between passed "
        "and failed or error."
    )
    runs_seen: int = Field(description="Runs of the window with a passed, failed or error result.")
    passed_on_rerun: int = Field(description="Runs in which the test passed only on a rerun.")
    last_outcome: str
    last_run_id: uuid.UUID
    evidence: list[FlakyEvidence] = Field(
        description="Only the runs on either side of each flip and the runs passed on a "
        "rerun, newest first; runs_seen counts every run with a verdict."
    )


class FlakyReport(ResponseModel):
    project: str
    branch: str | None = Field(description="The branch read; null for all branches.")
    window: int = Field(description="The number of finished runs requested.")
    runs: int = Field(description="The number of finished runs read (at most window).")
    min_flip_rate: float = Field(description="A fraction from 0 to 1, such as 0.1 for 10 %.")
    min_runs: int
    min_flips: int = Field(description="Flips a test needs to be listed for flipping.")
    limit: int
    first_run_at: dt.datetime | None
    last_run_at: dt.datetime | None
    total: int = Field(description="Flaky tests found before the limit was applied.")
    tests: list[FlakyTest]


class SlowTest(ResponseModel):
    case_id: uuid.UUID
    case_key: str
    case_name: str | None
    case_url: str
    median: float = Field(description="Median duration in seconds of the passed runs.")
    p90: float = Field(description="90th percentile (nearest rank) in seconds.")
    max: float
    runs: int = Field(description="Runs of the window in which the test passed.")


class Regression(ResponseModel):
    case_id: uuid.UUID
    case_key: str
    case_name: str | None
    case_url: str
    recent_median: float = Field(description="Median duration over the recent runs, in seconds.")
    baseline_median: float = Field(
        description="Median duration over the earlier runs of the window, in seconds."
    )
    ratio: float | None = Field(
        description="recent_median / baseline_median; null when the baseline is 0."
    )
    delta: float = Field(description="recent_median - baseline_median, in seconds.")
    recent_runs: int
    baseline_runs: int


class SlowReport(ResponseModel):
    project: str
    branch: str | None = Field(description="The branch read; null for all branches.")
    window: int
    runs: int = Field(description="The number of finished runs read (at most window).")
    recent: int = Field(
        description="The newest runs of the window that form the recent part: the value "
        "requested, or half of the runs found (1 to 5) when none was requested."
    )
    recent_given: bool = Field(description="False when recent took its default.")
    recent_runs: int = Field(description="Runs read that form the recent part.")
    baseline_runs: int = Field(description="Runs read that form the baseline.")
    regressions_note: str | None = Field(
        description="Why no regression can be flagged, when either part has fewer than 2 "
        "runs; null otherwise."
    )
    min_ratio: float
    min_delta: float
    limit: int
    first_run_at: dt.datetime | None
    last_run_at: dt.datetime | None
    slowest: list[SlowTest]
    regressions: list[Regression]


class TrendPoint(ResponseModel):
    run_id: uuid.UUID
    run_url: str
    name: str | None
    status: str
    started_at: dt.datetime
    finished_at: dt.datetime | None
    branch: str | None
    commit: str | None
    summarized: bool = Field(
        description="False when the run has no summary yet; its counts are then null."
    )
    tests: int | None = Field(description="Test cases with a result, not-run ones included.")
    passed: int | None
    failed: int | None
    error: int | None
    skipped: int | None
    xfailed: int | None
    xpassed: int | None
    not_run: int | None
    failures: int | None = Field(description="failed + error.")
    passed_on_rerun: int | None
    pass_rate: float | None = Field(
        description="passed / (passed + failed + error); null without such tests."
    )
    wall_duration: float | None = Field(
        description="finished_at - started_at in seconds; null while unknown."
    )
    test_duration: float | None = Field(
        description="The sum of the final attempts' durations in seconds."
    )


class TrendReport(ResponseModel):
    project: str
    branch: str | None = Field(description="The branch read; null for all branches.")
    window: int
    runs: int
    points: list[TrendPoint] = Field(description="One entry per settled run, newest first.")
