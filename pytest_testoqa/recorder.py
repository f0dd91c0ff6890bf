"""The Recorder: the plugin object whose methods are pytest hooks.

One Recorder runs in each pytest process that reports. Without xdist (or
with ``-n 0``) that is the only process. Under xdist every worker reports
the tests it runs and the cases it collected, and the controller reports
the run's start and finish plus any report no worker produced (a crashed
worker's test). Each process spools and sends its own events, so no
execution is sent twice and none depends on another process surviving.
"""

from __future__ import annotations

import copy
import datetime as dt
import platform
import socket
import time
import uuid
from collections.abc import Generator
from dataclasses import dataclass, field
from typing import Any

import pytest

from pytest_testoqa import __version__, executions
from pytest_testoqa.client import ApiClient
from pytest_testoqa.identity import cap_key, case_key, describe, parameters
from pytest_testoqa.sender import Sender
from pytest_testoqa.settings import Settings
from pytest_testoqa.spool import SpoolHeader, SpoolWriter

CASES_PER_EVENT = 1_000
MIN_CONTROLLER_FLUSH = 1.0
CRASH_PHASE = "???"  # xdist's phase name for the report of a crashed worker's test


@dataclass
class ProcessStats:
    """Delivery figures of one process; workers pass theirs to the controller as plain data."""

    accepted: int = 0
    duplicate: int = 0
    rejected: int = 0
    pending: int = 0
    spool_files: list[str] = field(default_factory=list)
    fatal: str | None = None
    fatal_status: int | None = None
    error: str | None = None
    report_url: str | None = None
    problems: list[str] = field(default_factory=list)
    rejection: str | None = None
    # Wall time at which the first worker began its final flush.
    flush_started: float | None = None

    def merge(self, other: dict[str, Any]) -> None:
        self.accepted += int(other.get("accepted", 0))
        self.duplicate += int(other.get("duplicate", 0))
        self.rejected += int(other.get("rejected", 0))
        self.pending += int(other.get("pending", 0))
        self.spool_files += list(other.get("spool_files", []))
        self.fatal = self.fatal or other.get("fatal")
        self.fatal_status = self.fatal_status or other.get("fatal_status")
        self.error = self.error or other.get("error")
        self.report_url = self.report_url or other.get("report_url")
        self.rejection = self.rejection or other.get("rejection")
        started = other.get("flush_started")
        if started is not None:
            self.flush_started = min(started, self.flush_started or started)
        for problem in other.get("problems", []):
            if problem not in self.problems:
                self.problems.append(problem)


@dataclass(frozen=True)
class RunIdentity:
    """Identity of the run, shared by every process of a session and passed to xdist workers."""

    client_run_id: str
    run_body: dict[str, Any]


class Recorder:
    def __init__(
        self, config: pytest.Config, settings: Settings, identity: RunIdentity, process: str
    ) -> None:
        self.config = config
        self.settings = settings
        self.identity = identity
        self.process = process
        self.is_worker = hasattr(config, "workerinput")
        self.worker_id = config.workerinput["workerid"] if self.is_worker else None  # type: ignore[attr-defined]
        self._attempts: dict[str, executions.Attempt] = {}
        self.stats = ProcessStats()
        self.writer: SpoolWriter | None = None
        self.sender: Sender | None = None
        self.send_cases = True

    # --- lifecycle ------------------------------------------------------------

    def start(self) -> None:
        directory = self.settings.spool_dir / self.identity.client_run_id
        header = SpoolHeader(self.settings.url, self.settings.project, self.identity.client_run_id)
        self.writer = SpoolWriter(directory, self.process, header)
        client = ApiClient(
            self.settings.url, self.settings.project, self.settings.token, self.settings.timeout
        )
        self.sender = Sender(client, self.writer)
        self.sender.start()
        self._emit("run", self.identity.run_body)

    def _emit(self, kind: str, body: dict[str, Any]) -> None:
        assert self.writer is not None
        assert self.sender is not None
        self.sender.submit(self.writer.append(kind, body))

    @pytest.hookimpl(trylast=True)
    def pytest_sessionstart(self, session: pytest.Session) -> None:
        self.start()

    @pytest.hookimpl(trylast=True)
    def pytest_collection_finish(self, session: pytest.Session) -> None:
        if self.process == "controller":
            return  # the workers collect and send the cases
        cases: list[dict[str, Any]] = []
        owners: dict[str, str] = {}
        for item in session.items:
            if self.config.hook.pytest_testoqa_exclude(item=item):
                item.stash[CASE_KEY] = None
                continue
            if not self.send_cases:
                item.stash[CASE_KEY] = case_key(item)
                continue
            case = describe(item, self.stats.problems)
            item.stash[CASE_KEY] = case["key"]
            owner = owners.setdefault(case["key"], item.nodeid)
            if owner != item.nodeid:
                self.stats.problems.append(
                    f"{item.nodeid}: case key {case['key']!r} is also the key of {owner}; "
                    "both tests are reported as one case"
                )
                continue
            cases.append(case)
            if len(cases) == CASES_PER_EVENT:
                self._emit("cases", {"cases": cases})
                cases = []
        if cases:
            self._emit("cases", {"cases": cases})

    @pytest.hookimpl(trylast=True)
    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        """Record a module or class skipped at collection, which pytest counts as a skip.

        Under xdist only the controller records it, because every worker
        collects the same module and xdist forwards the skip to the controller once.
        """
        if not report.skipped or self.is_worker or self.writer is None:
            return
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else ""
        key = cap_key(report.nodeid)
        self._emit("cases", {"cases": [{"key": key, "node_id": report.nodeid, "markers": []}]})
        self._emit("execution", executions.collection_skip(report, key, str(reason)))

    # --- reports --------------------------------------------------------------

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(
        self, item: pytest.Item, call: pytest.CallInfo[None]
    ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
        report = yield
        if CASE_KEY not in item.stash:
            # An item collected after collection finished, such as by a plugin.
            excluded = bool(self.config.hook.pytest_testoqa_exclude(item=item))
            item.stash[CASE_KEY] = None if excluded else case_key(item, self.stats.problems)
        # Plain attributes travel with the report to the xdist controller,
        # which skips the reports that carry them because a worker recorded them.
        report.testoqa_case = item.stash[CASE_KEY]  # type: ignore[attr-defined]
        if call.when == "setup":
            report.testoqa_params = parameters(item)  # type: ignore[attr-defined]
        return report

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if self.process == "controller":
            if not hasattr(report, "testoqa_case"):
                self._record_crash(report)
            return
        key = getattr(report, "testoqa_case", None)
        if key is None:
            return  # excluded by pytest_testoqa_exclude, or not a test of ours
        number = int(getattr(report, "rerun", 0)) + 1
        attempt = self._attempts.get(report.nodeid)
        if attempt is None or attempt.number != number or report.when in attempt.reports:
            attempt = executions.Attempt(report.nodeid, number)
            self._attempts[report.nodeid] = attempt
        attempt.reports[report.when] = report
        if report.when == "setup":
            attempt.params = getattr(report, "testoqa_params", {})
        if report.when == "teardown":
            del self._attempts[report.nodeid]
            self._record(attempt, key, report)

    def _record(self, attempt: executions.Attempt, key: str, report: pytest.TestReport) -> None:
        payload = executions.build(
            attempt,
            key,
            self.worker_id,
            attempt.params,
            capture_limit=self.settings.capture_limit,
            patterns=self.settings.redact,
        )
        edited = self.config.hook.pytest_testoqa_execution(execution=payload, report=report)
        if edited is False:
            return
        if isinstance(edited, dict):
            payload = edited
        self._emit("execution", payload)

    def _record_crash(self, report: pytest.TestReport) -> None:
        """Record a report xdist made for a test whose worker died."""
        if report.when != CRASH_PHASE:
            return
        node = getattr(report, "node", None)
        worker = getattr(getattr(node, "gateway", None), "id", None)
        attempt = executions.Attempt(report.nodeid, 1)
        # A copy, because later plugins must still see xdist's own report.
        crash = copy.copy(report)
        crash.when = "call"
        attempt.reports["call"] = crash
        payload = executions.build(
            attempt,
            report.nodeid,
            worker,
            {},
            capture_limit=self.settings.capture_limit,
            patterns=self.settings.redact,
        )
        self._emit("execution", payload)

    # --- end of session ---------------------------------------------------------

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        if self.writer is None or self.sender is None:
            return
        if not self.is_worker:
            status = "interrupted" if exitstatus == pytest.ExitCode.INTERRUPTED else "finished"
            self._emit(
                "finish",
                {
                    "status": status,
                    "finished_at": dt.datetime.now(dt.UTC).isoformat(),
                    "exit_status": int(exitstatus),
                    "client_run_id": self.identity.client_run_id,
                },
            )
        self.sender.close(self._flush_timeout())
        self._collect_stats()
        if self.is_worker:
            self.config.workeroutput["testoqa"] = self.stats.__dict__  # type: ignore[attr-defined]
        if self.settings.strict and self.undelivered and session.exitstatus == 0:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def _collect_stats(self) -> None:
        assert self.writer is not None
        assert self.sender is not None
        delivery = self.sender.delivery.stats
        self.stats.accepted += delivery.accepted
        self.stats.duplicate += delivery.duplicate
        self.stats.rejected += delivery.rejected
        self.stats.report_url = self.stats.report_url or delivery.report_url
        if delivery.rejected_messages:
            self.stats.rejection = self.stats.rejection or delivery.rejected_messages[0]
        if delivery.fatal is not None:
            self.stats.fatal = delivery.fatal.message
            self.stats.fatal_status = delivery.fatal.status
        elif delivery.last_error is not None and (delivery.gave_up or self.writer.pending):
            self.stats.error = delivery.last_error.message
        self.stats.pending += self.writer.close()
        if self.writer.path.exists():
            self.stats.spool_files.append(str(self.writer.path))

    def _flush_timeout(self) -> float:
        """Return how long this process may wait for delivery at the end of the session.

        The deadline is for the whole session: under xdist the workers flush
        first, and the controller gets what they left of it, but at least a
        second (or the whole deadline, if shorter) to send the run's finish.
        """
        deadline = self.settings.flush_deadline
        if self.is_worker:
            self.stats.flush_started = time.time()
            return deadline
        if self.stats.flush_started is None:
            return deadline
        left = deadline - (time.time() - self.stats.flush_started)
        return max(left, min(MIN_CONTROLLER_FLUSH, deadline))

    @property
    def undelivered(self) -> bool:
        return bool(self.stats.spool_files or self.stats.fatal)

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if self.is_worker:
            return
        from pytest_testoqa.summary import write_summary

        write_summary(terminalreporter, self.stats, self.settings)


CASE_KEY = pytest.StashKey[str | None]()


def new_identity(config: pytest.Config, settings: Settings, ci: Any) -> RunIdentity:
    """Describe the run this session starts; the client run id is new for every session."""
    client_run_id = uuid.uuid4().hex
    metadata: dict[str, str] = {}
    for result in config.hook.pytest_testoqa_run_metadata(config=config):
        if isinstance(result, dict):
            metadata.update({str(k)[:100]: str(v)[:1000] for k, v in result.items()})
    body: dict[str, Any] = {
        "client_run_id": client_run_id,
        "started_at": dt.datetime.now(dt.UTC).isoformat(),
        "ci": ci.payload(),
        "environment": {
            "python": platform.python_version(),
            "platform": platform.platform()[:200],
            "pytest": pytest.__version__,
            "plugin": __version__,
            "host": socket.gethostname()[:255],
            "metadata": dict(list(metadata.items())[:50]),
        },
    }
    if settings.run_name:
        body["name"] = settings.run_name[:200]
    if settings.run_key:
        body["run_key"] = settings.run_key[:200]
    return RunIdentity(client_run_id, body)
