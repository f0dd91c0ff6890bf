"""Turning pytest's phase reports into one Execution payload per attempt."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass, field
from typing import Any

import pytest

from pytest_testoqa.capture import bound, redact
from pytest_testoqa.identity import clean_text

MAX_MESSAGE = 64 * 1024
MAX_TRACEBACK = 256 * 1024
MAX_REASON = 4000
SKIP_PREFIX = "Skipped: "


@dataclass
class Attempt:
    """The phase reports of one attempt of one test, as they arrive."""

    nodeid: str
    number: int
    reports: dict[str, pytest.TestReport] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)


def _timestamp(seconds: float | None) -> str | None:
    if seconds is None:
        return None
    return dt.datetime.fromtimestamp(seconds, dt.UTC).isoformat()


def _phase_outcome(report: pytest.TestReport) -> str:
    # pytest-rerunfailures marks a failed phase of a retried attempt "rerun".
    outcome: str = report.outcome
    return "failed" if outcome == "rerun" else outcome


def final_outcome(reports: dict[str, pytest.TestReport]) -> tuple[str, str]:
    """Return (outcome, deciding phase) of an attempt from its phase reports."""
    setup, call, teardown = reports.get("setup"), reports.get("call"), reports.get("teardown")
    if setup is not None and _phase_outcome(setup) == "failed":
        return "error", "setup"
    if setup is not None and setup.skipped:
        return ("xfailed" if hasattr(setup, "wasxfail") else "skipped"), "setup"
    outcome, phase = "passed", "call"
    if call is not None:
        outcome = _call_outcome(call)
    if teardown is not None and _phase_outcome(teardown) == "failed" and outcome != "failed":
        return "error", "teardown"
    return outcome, phase


def _call_outcome(call: pytest.TestReport) -> str:
    if _phase_outcome(call) == "failed":
        return "failed"  # a strict xpass arrives here as a failure
    if call.skipped:
        return "xfailed" if hasattr(call, "wasxfail") else "skipped"
    return "xpassed" if hasattr(call, "wasxfail") else "passed"


def _reason(reports: dict[str, pytest.TestReport], outcome: str) -> str | None:
    for report in reports.values():
        if outcome in ("xfailed", "xpassed") and hasattr(report, "wasxfail"):
            return str(report.wasxfail)[:MAX_REASON] or None
        if outcome == "skipped" and report.skipped and isinstance(report.longrepr, tuple):
            text = str(report.longrepr[2])
            return text.removeprefix(SKIP_PREFIX)[:MAX_REASON]
    return None


def _failure(reports: dict[str, pytest.TestReport], phase: str) -> pytest.TestReport | None:
    report = reports.get(phase)
    if report is not None and _phase_outcome(report) == "failed":
        return report
    return None


def _message(report: pytest.TestReport) -> str:
    crash = getattr(report.longrepr, "reprcrash", None)
    if crash is not None and getattr(crash, "message", None):
        return str(crash.message)
    text = report.longreprtext
    return text.strip().splitlines()[-1] if text.strip() else ""


def build(
    attempt: Attempt,
    case_key: str,
    worker: str | None,
    parameters: dict[str, str],
    *,
    capture_limit: int,
    patterns: tuple[Any, ...],
) -> dict[str, Any]:
    """Return the Execution payload of a finished attempt."""
    reports = attempt.reports
    outcome, phase = final_outcome(reports)
    first = reports.get("setup") or next(iter(reports.values()))
    last = reports.get("teardown") or list(reports.values())[-1]
    failed = _failure(reports, phase) or _failure(reports, "teardown")

    def text(value: str | None, limit: int) -> str | None:
        return bound(redact(value, patterns), limit) if value else None

    return {
        "id": str(uuid.uuid4()),
        "case_key": case_key,
        "node_id": clean_text(attempt.nodeid)[:4000],
        "attempt": attempt.number,
        "outcome": outcome,
        "phase": phase,
        "duration": round(sum(r.duration for r in reports.values()), 6),
        "started_at": _timestamp(getattr(first, "start", None)) or _now(),
        "finished_at": _timestamp(getattr(last, "stop", None)),
        "worker": worker,
        "message": text(_message(failed), MAX_MESSAGE) if failed else None,
        "traceback": text(failed.longreprtext, MAX_TRACEBACK) if failed else None,
        "stdout": text(last.capstdout, capture_limit),
        "stderr": text(last.capstderr, capture_limit),
        "log": text(last.caplog, capture_limit),
        "reason": text(_reason(reports, outcome), MAX_REASON),
        "parameters": {name: redact(value, patterns) or "" for name, value in parameters.items()},
        "phases": {
            name: {"outcome": _phase_outcome(r), "duration": round(r.duration, 6)}
            for name, r in reports.items()
            if name in ("setup", "call", "teardown")
        },
    }


def collection_skip(report: pytest.CollectReport, case_key: str, reason: str) -> dict[str, Any]:
    """Return the execution of a module or class that pytest skipped while collecting it."""
    return {
        "id": str(uuid.uuid4()),
        "case_key": case_key,
        "node_id": clean_text(report.nodeid)[:4000],
        "attempt": 1,
        "outcome": "skipped",
        "phase": "setup",
        "duration": 0.0,
        "started_at": _now(),
        "reason": clean_text(reason.removeprefix(SKIP_PREFIX))[:MAX_REASON] or None,
    }


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat()
