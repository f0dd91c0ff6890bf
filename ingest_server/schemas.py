"""Pydantic models of the v1 wire format: what clients send and what the server returns.

The plugin does not import this module; a contract test validates every
payload the plugin produces against these models instead.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
)

# Limits of single values, documented in docs/api.md.
MAX_MESSAGE_CHARS = 262_144
MAX_TRACEBACK_CHARS = 1_048_576
MAX_CAPTURE_CHARS = 1_048_576
MAX_CASES_PER_REQUEST = 5_000
MAX_METADATA_ENTRIES = 50

Outcome = Literal["passed", "failed", "error", "skipped", "xfailed", "xpassed"]
OUTCOMES: tuple[Outcome, ...] = ("passed", "failed", "error", "skipped", "xfailed", "xpassed")
Phase = Literal["setup", "call", "teardown"]
RunStatus = Literal["running", "finished", "interrupted"]


def _to_utc(value: dt.datetime) -> dt.datetime:
    """Return value in UTC, or raise ValueError when UTC cannot represent it."""
    try:
        return value.astimezone(dt.UTC)
    except OverflowError:
        raise ValueError(
            "timestamp is out of range once converted to UTC: use years 1 to 9999 in UTC"
        ) from None


# A timestamp with a time zone, stored and returned in UTC.
UtcTimestamp = Annotated[AwareDatetime, AfterValidator(_to_utc)]
ShortText = Annotated[str, StringConstraints(max_length=200)]
ClientId = Annotated[
    str, StringConstraints(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9._:-]+$")
]
CaseKey = Annotated[str, StringConstraints(min_length=1, max_length=500)]
MetadataKey = Annotated[str, StringConstraints(min_length=1, max_length=100)]
MetadataValue = Annotated[str, StringConstraints(max_length=1000)]
Marker = Annotated[str, StringConstraints(min_length=1, max_length=200)]


class WireModel(BaseModel):
    """Base of every request model: unknown fields are errors, not silently dropped."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)


class ResponseModel(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --- runs -----------------------------------------------------------------


class CiMetadata(WireModel):
    provider: Annotated[str, StringConstraints(max_length=50)] | None = None
    branch: Annotated[str, StringConstraints(max_length=250)] | None = None
    commit: Annotated[str, StringConstraints(max_length=64)] | None = None
    build_url: Annotated[str, StringConstraints(max_length=2000)] | None = None
    job: ShortText | None = None
    pull_request: Annotated[str, StringConstraints(max_length=100)] | None = None


class Environment(WireModel):
    python: Annotated[str, StringConstraints(max_length=50)] | None = None
    platform: ShortText | None = None
    pytest: Annotated[str, StringConstraints(max_length=50)] | None = None
    plugin: Annotated[str, StringConstraints(max_length=50)] | None = None
    host: Annotated[str, StringConstraints(max_length=255)] | None = None
    metadata: dict[MetadataKey, MetadataValue] = Field(
        default_factory=dict, max_length=MAX_METADATA_ENTRIES
    )


class RunCreate(WireModel):
    """Start a run, or join the run that has the same client run id or run key."""

    client_run_id: ClientId = Field(description="Id of this pytest session, made by the client.")
    run_key: Annotated[str, StringConstraints(min_length=1, max_length=200)] | None = Field(
        default=None, description="Sessions (shards) with the same run key join one run."
    )
    name: ShortText | None = None
    started_at: UtcTimestamp
    ci: CiMetadata = Field(default_factory=CiMetadata)
    environment: Environment = Field(default_factory=Environment)
    collected_count: Annotated[int, Field(ge=0, le=10_000_000)] | None = None


class RunCreated(ResponseModel):
    run_id: uuid.UUID
    report_url: str = Field(description="The run's report page, for people.")
    status: RunStatus
    created: bool = Field(description="False when the request joined an existing run.")


class RunFinish(WireModel):
    status: Literal["finished", "interrupted"]
    finished_at: UtcTimestamp
    exit_status: Annotated[int, Field(ge=-1000, le=1000)] | None = None
    client_run_id: ClientId | None = Field(
        default=None,
        description="The session that finished; the run finishes when all its sessions have.",
    )


class Totals(ResponseModel):
    passed: int = 0
    failed: int = 0
    error: int = 0
    skipped: int = 0
    xfailed: int = 0
    xpassed: int = 0


class CiOut(ResponseModel):
    provider: str | None
    branch: str | None
    commit: str | None
    build_url: str | None
    job: str | None
    pull_request: str | None


class RunOut(ResponseModel):
    id: uuid.UUID
    name: str | None
    run_key: str | None
    status: RunStatus
    started_at: dt.datetime
    finished_at: dt.datetime | None
    exit_status: int | None
    ci: CiOut
    report_url: str
    totals: Totals
    tests: int = Field(description="Distinct test cases with at least one execution.")


class RunDetail(RunOut):
    environment: dict[str, Any]
    collected_count: int | None
    planned: int = Field(description="Distinct test cases the run's sessions collected.")
    not_run: int = Field(
        description="Collected cases with no execution, such as tests left when a worker "
        "crashed or the session was interrupted."
    )
    attempts: int = Field(description="Executions stored, reruns included.")
    passed_on_rerun: int = Field(description="Tests whose last attempt passed after a failure.")
    sessions: int
    sessions_finished: int


class RunPage(ResponseModel):
    items: list[RunOut]
    next_cursor: str | None


# --- cases ----------------------------------------------------------------


class CaseIn(WireModel):
    key: CaseKey
    node_id: Annotated[str, StringConstraints(max_length=4000)] | None = None
    file: Annotated[str, StringConstraints(max_length=1000)] | None = None
    name: Annotated[str, StringConstraints(max_length=1000)] | None = None
    line: Annotated[int, Field(ge=0)] | None = None
    class_name: Annotated[str, StringConstraints(max_length=1000)] | None = None
    function: Annotated[str, StringConstraints(max_length=1000)] | None = None
    markers: list[Marker] = Field(default_factory=list, max_length=100)


class CasesUpsert(WireModel):
    cases: list[CaseIn] = Field(min_length=1, max_length=MAX_CASES_PER_REQUEST)


class CasesUpserted(ResponseModel):
    received: int
    created: int


class CaseOut(ResponseModel):
    id: uuid.UUID
    key: str
    node_id: str | None
    file: str | None
    name: str | None
    line: int | None
    class_name: str | None
    function: str | None
    markers: list[str]
    first_seen_at: dt.datetime
    last_seen_at: dt.datetime


# --- executions -----------------------------------------------------------


class PhaseResult(WireModel):
    outcome: Literal["passed", "failed", "skipped"]
    duration: Annotated[float, Field(ge=0, le=10_000_000, allow_inf_nan=False)] = 0.0


class ExecutionIn(WireModel):
    id: uuid.UUID = Field(description="Made by the client; a repeated id is a duplicate.")
    case_key: CaseKey
    node_id: Annotated[str, StringConstraints(max_length=4000)] | None = None
    attempt: Annotated[int, Field(ge=1, le=1000)] = 1
    outcome: Outcome
    phase: Phase
    duration: Annotated[float, Field(ge=0, le=10_000_000, allow_inf_nan=False)]
    started_at: UtcTimestamp
    finished_at: UtcTimestamp | None = None
    worker: Annotated[str, StringConstraints(max_length=50)] | None = None
    message: Annotated[str, StringConstraints(max_length=MAX_MESSAGE_CHARS)] | None = None
    traceback: Annotated[str, StringConstraints(max_length=MAX_TRACEBACK_CHARS)] | None = None
    stdout: Annotated[str, StringConstraints(max_length=MAX_CAPTURE_CHARS)] | None = None
    stderr: Annotated[str, StringConstraints(max_length=MAX_CAPTURE_CHARS)] | None = None
    log: Annotated[str, StringConstraints(max_length=MAX_CAPTURE_CHARS)] | None = None
    reason: Annotated[str, StringConstraints(max_length=4000)] | None = None
    parameters: dict[MetadataKey, MetadataValue] = Field(default_factory=dict, max_length=100)
    phases: dict[Phase, PhaseResult] = Field(default_factory=dict)


class ExecutionBatch(WireModel):
    """A batch of executions; each item is validated on its own."""

    executions: list[Any] = Field(
        min_length=1, description="Items as ExecutionIn; an invalid item is rejected alone."
    )


class ValidExecutionBatch(WireModel):
    """A batch whose items all validate: the fast path of a batch request."""

    executions: list[ExecutionIn] = Field(min_length=1)


class RejectedItem(ResponseModel):
    index: int
    id: str | None
    message: str


class BatchResult(ResponseModel):
    accepted: int
    duplicate: int
    rejected: int
    rejected_items: list[RejectedItem]


class ExecutionOut(ResponseModel):
    id: uuid.UUID
    run_id: uuid.UUID
    case_id: uuid.UUID
    case_key: str
    attempt: int
    outcome: Outcome
    phase: Phase
    duration: float
    started_at: dt.datetime
    finished_at: dt.datetime | None
    worker: str | None
    message: str | None
    traceback: str | None
    stdout: str | None
    stderr: str | None
    log: str | None
    reason: str | None
    parameters: dict[str, str]
    phases: dict[str, Any]


class ExecutionPage(ResponseModel):
    items: list[ExecutionOut]
    next_cursor: str | None


class HistoryEntry(ResponseModel):
    execution_id: uuid.UUID
    run_id: uuid.UUID
    run_name: str | None
    branch: str | None
    commit: str | None
    attempt: int
    outcome: Outcome
    duration: float
    started_at: dt.datetime


class CaseHistory(ResponseModel):
    case: CaseOut
    items: list[HistoryEntry]
    next_cursor: str | None


# --- errors ---------------------------------------------------------------


class ErrorDetail(ResponseModel):
    field: str | None
    message: str


class ErrorBody(ResponseModel):
    code: str
    message: str
    request_id: str
    details: list[ErrorDetail] = Field(default_factory=list)


class ErrorEnvelope(ResponseModel):
    error: ErrorBody
