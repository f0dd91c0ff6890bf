"""Generate a project history for the report benchmark and load it into a database.

The history is what a CI pipeline of a mid-sized suite leaves behind:

* 2,000 test cases in 80 modules, some parametrized, some in classes. Most
  exist from the first run. About 100 are added later and about 30 removed,
  so two runs far apart differ in their sets of tests.
* Runs every two hours or so on three branches (``main``, ``develop`` and
  ``feature/checkout-v2``), each branch with its own commits. About a third
  of the runs test the same commit as the branch's previous run, as a CI
  retry does. About 1% of the runs are interrupted halfway; the last run is
  still running, with part of its collected tests executed.
* Every failure is rerun up to twice, as ``pytest --reruns 2`` does. Flaky
  tests fail some attempts and then pass, broken tests fail all three
  attempts for a stretch of runs, a few tests error in a fixture's setup
  for a stretch, and healthy tests fail very rarely.
* Failures come from a handful of causes. Each cause's message varies in
  numbers, quoted strings, paths and addresses, so grouping by a normalized
  fingerprint folds them into a few groups.
* Skips and xfails carry reasons. Most tests take milliseconds, about 20
  take seconds, and about 20 become four times slower partway through.

Generation runs until the requested number of executions is reached, so the
number of runs follows from it (about 2,000 executions per run). A seed
makes the history, ids included, the same on every call.

Rows go straight to the driver, like the server's own ingest path:
``sqlite3`` ``executemany`` on SQLite and asyncpg ``copy_records_to_table``
on PostgreSQL. The schema, the project, the tokens and the user come from
the server's CLI, and the run summaries from the server's own summary code.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import random
import sqlite3
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg

from ingest_server.repositories.executions import INSERT_COLUMNS as EXECUTION_COLUMNS

# Bumped whenever the generated history changes, so a cached database made
# by an older generator is not reused.
GENERATOR_VERSION = 1

CASE_COLUMNS = (
    "project_id",
    "id",
    "key",
    "node_id",
    "file",
    "name",
    "line",
    "class_name",
    "function",
    "markers",
    "first_seen_at",
    "last_seen_at",
)
RUN_COLUMNS = (
    "project_id",
    "id",
    "run_key",
    "name",
    "status",
    "started_at",
    "finished_at",
    "exit_status",
    "ci_provider",
    "branch",
    "commit",
    "build_url",
    "job",
    "pull_request",
    "environment",
    "collected_count",
    "created_at",
)
SESSION_COLUMNS = (
    "project_id",
    "client_run_id",
    "run_id",
    "status",
    "started_at",
    "finished_at",
    "exit_status",
    "collected_count",
)
RUN_CASE_COLUMNS = ("project_id", "run_id", "case_id")
JSON_COLUMNS = frozenset({"markers", "environment", "parameters", "phases"})
# SQLAlchemy stores a SQLite DATETIME as this text, in UTC, and a UUID as 32 hex digits.
SQLITE_DATETIME_FORMAT = "%Y-%m-%d %H:%M:%S.%f"

MODULES = 80
TESTS_PER_MODULE = 25
ADDED_CASES = 100
REMOVED_CASES = 30
RERUNS = 2
HISTORY_START = dt.datetime(2026, 6, 1, 6, 0, tzinfo=dt.UTC)
RUN_INTERVAL = dt.timedelta(hours=2)
BRANCHES = {"main": 0.6, "develop": 0.25, "feature/checkout-v2": 0.15}
INTERRUPTED_SHARE = 0.01
# pytest-xdist workers of the simulated CI job; wall time is the sum of
# durations divided by this.
WORKERS = 4

AREAS = ("api", "billing", "checkout", "search", "accounts", "storage", "sync", "reports")
TOPICS = (
    "orders",
    "invoices",
    "refunds",
    "sessions",
    "tokens",
    "uploads",
    "exports",
    "webhooks",
    "cache",
    "pricing",
)
SKIP_REASONS = (
    "requires PostgreSQL 16",
    "not supported on Windows",
    "needs network access",
    "S3 credentials not configured",
)
XFAIL_REASONS = ("known bug: totals round half up", "upstream issue in the CSV writer")
# Kinds of case and how many of the 2,000 have them; the rest are healthy.
KIND_COUNTS = {
    "flaky": 50,
    "broken": 40,
    "setup_error": 12,
    "skip": 60,
    "xfail": 20,
    "slow": 20,
    "regression": 20,
}


@dataclass(frozen=True)
class Shape:
    """The size and seed of a generated history."""

    executions: int
    seed: int = 20260601

    def manifest(self) -> dict[str, Any]:
        return {"generator": GENERATOR_VERSION, **dataclasses.asdict(self)}


@dataclass
class CaseProfile:
    """One test case and how it behaves over the history."""

    id: uuid.UUID
    key: str
    file: str
    function: str
    class_name: str | None
    line: int
    markers: list[str]
    parameters: dict[str, str]
    kind: str
    base_duration: float
    # Run indexes: the case is collected from first_run until before removed_at.
    first_run: int = 0
    removed_at: int | None = None
    # For broken and setup_error cases: the failing stretch of run indexes and its cause.
    window: tuple[int, int] = (0, 0)
    cause: str = ""
    # Only broken on this branch, if set.
    window_branch: str | None = None
    # Chance that one attempt of a flaky case fails.
    flake_rate: float = 0.0
    # For regressions: the run index from which the case is four times slower.
    slower_from: int | None = None
    reason: str | None = None

    def collected_in(self, run_index: int) -> bool:
        if run_index < self.first_run:
            return False
        return self.removed_at is None or run_index < self.removed_at

    def row(self, project_id: int) -> tuple[Any, ...]:
        first_seen = HISTORY_START + RUN_INTERVAL * self.first_run
        return (
            project_id,
            self.id,
            self.key,
            self.key,
            self.file,
            self.key.split("::", 1)[1],
            self.line,
            self.class_name,
            self.function,
            self.markers,
            first_seen,
            first_seen,
        )


@dataclass
class RunData:
    """Rows of one run: the run, its session, its collected cases and its executions."""

    index: int
    run: dict[str, Any]
    session: dict[str, Any]
    case_ids: list[uuid.UUID]
    executions: list[tuple[Any, ...]]

    @property
    def id(self) -> uuid.UUID:
        value: uuid.UUID = self.run["id"]
        return value

    @property
    def settled(self) -> bool:
        return bool(self.run["status"] != "running")


# --- failure messages -------------------------------------------------------


def _assertion_message(rng: random.Random) -> str:
    expected, actual = rng.randint(1, 50), rng.randint(51, 999)
    return (
        f"AssertionError: assert {actual} == {expected}\n"
        f" +  where {actual} = <Response [200]>.json()['total']"
    )


def _key_error_message(rng: random.Random) -> str:
    return f"KeyError: 'order-{uuid.UUID(int=rng.getrandbits(128), version=4)}'"


def _timeout_message(rng: random.Random) -> str:
    return (
        f"TimeoutError: request to http://127.0.0.1:{rng.randint(30000, 60000)}"
        f"/api/orders/{rng.randint(1, 99999)} timed out after {rng.uniform(5, 30):.1f} s"
    )


def _missing_file_message(rng: random.Random) -> str:
    session, test = rng.randint(1, 900), rng.randint(0, 9)
    return (
        "FileNotFoundError: [Errno 2] No such file or directory: "
        f"'/tmp/pytest-of-ci/pytest-{session}/test_export_{test}0/report.csv'"
    )


def _integrity_message(rng: random.Random) -> str:
    return (
        "sqlalchemy.exc.IntegrityError: (psycopg.errors.UniqueViolation) duplicate key "
        f'value violates unique constraint "uq_invoices_number"\n'
        f"DETAIL:  Key (number)=(INV-{rng.randint(1000, 99999)}) already exists."
    )


def _refused_message(rng: random.Random) -> str:
    return (
        "ConnectionRefusedError: [Errno 111] Connect call failed "
        f"('127.0.0.1', {rng.randint(30000, 60000)})"
    )


def _flaky_message(rng: random.Random) -> str:
    return (
        f"AssertionError: expected 3 events within 0.5 s, got {rng.randint(0, 2)}\n"
        f"assert {rng.randint(0, 2)} == 3"
    )


def _object_message(rng: random.Random) -> str:
    return (
        "AttributeError: 'NoneType' object has no attribute 'customer' "
        f"(order <Order object at 0x{rng.getrandbits(48):012x}>)"
    )


CAUSES = {
    "assertion": _assertion_message,
    "key_error": _key_error_message,
    "timeout": _timeout_message,
    "missing_file": _missing_file_message,
    "integrity": _integrity_message,
    "attribute": _object_message,
    "refused": _refused_message,
    "flaky": _flaky_message,
}
BROKEN_CAUSES = ("assertion", "key_error", "timeout", "missing_file", "integrity", "attribute")


def _traceback(rng: random.Random, case: CaseProfile, message: str) -> str:
    """Return a pytest-style long traceback of a few frames ending in message."""
    lines = [
        f"{case.file}:{case.line}: in {case.function}",
        f"    response = client.post('/api/{rng.choice(TOPICS)}', json=payload)",
    ]
    for depth in range(rng.randint(1, 4)):
        module = rng.choice(("service", "repository", "handlers", "models"))
        lines += [
            "",
            f"src/shop/{module}.py:{rng.randint(20, 900)}: in handle_{depth}",
            f"    result = await self._backend.call(request, attempt={depth})",
        ]
    lines += ["", f">       assert body['total'] == {rng.randint(1, 99)}"]
    lines += [f"E       {line}" for line in message.splitlines()]
    return "\n".join(lines)


def _captured_output(rng: random.Random, lines: int) -> str:
    return "\n".join(
        f"INFO shop.{rng.choice(TOPICS)}: processed {rng.randint(1, 10_000)} records "
        f"in {rng.random():.3f} s"
        for _ in range(lines)
    )


# --- cases ------------------------------------------------------------------


def make_cases(rng: random.Random, runs_estimate: int) -> list[CaseProfile]:
    """Return the suite's cases, each with the behaviour it shows over the history."""
    cases: list[CaseProfile] = []
    for module in range(MODULES):
        area = AREAS[module % len(AREAS)]
        file = f"tests/{area}/test_{TOPICS[module % len(TOPICS)]}_{module:02d}.py"
        class_name = (
            f"Test{TOPICS[(module + 3) % len(TOPICS)].title()}" if module % 3 == 0 else None
        )
        for number in range(TESTS_PER_MODULE):
            function = f"test_{rng.choice(TOPICS)}_{number:02d}"
            name = f"{class_name}::{function}" if class_name else function
            parameters: dict[str, str] = {}
            if number % 5 == 0:
                parameters = {"backend": rng.choice(("sqlite", "postgres")), "size": str(number)}
                name = f"{name}[{parameters['backend']}-{parameters['size']}]"
            cases.append(
                CaseProfile(
                    id=uuid.UUID(int=rng.getrandbits(128), version=4),
                    key=f"{file}::{name}",
                    file=file,
                    function=function,
                    class_name=class_name,
                    line=10 + number * 12,
                    markers=["integration"] if module % 4 == 0 else [],
                    parameters=parameters,
                    kind="healthy",
                    base_duration=round(min(rng.lognormvariate(-4.0, 1.1), 2.0), 6),
                )
            )
    _assign_kinds(rng, cases, runs_estimate)
    _add_and_remove(rng, cases, runs_estimate)
    return cases


def _assign_kinds(rng: random.Random, cases: list[CaseProfile], runs: int) -> None:
    chosen = rng.sample(range(len(cases)), sum(KIND_COUNTS.values()))
    position = 0
    for kind, count in KIND_COUNTS.items():
        for index in chosen[position : position + count]:
            _give_kind(rng, cases[index], kind, runs)
        position += count


def _give_kind(rng: random.Random, case: CaseProfile, kind: str, runs: int) -> None:
    case.kind = kind
    if kind == "flaky":
        case.flake_rate = rng.uniform(0.05, 0.35)
    elif kind in ("broken", "setup_error"):
        start = rng.randrange(max(1, runs))
        case.window = (start, start + rng.randint(3, max(4, runs // 8)))
        case.cause = "refused" if kind == "setup_error" else rng.choice(BROKEN_CAUSES)
        case.window_branch = "feature/checkout-v2" if rng.random() < 0.25 else None
    elif kind == "skip":
        case.reason = rng.choice(SKIP_REASONS)
    elif kind == "xfail":
        case.reason = rng.choice(XFAIL_REASONS)
    elif kind == "slow":
        case.base_duration = round(rng.uniform(3.0, 20.0), 3)
    elif kind == "regression":
        case.base_duration = round(rng.uniform(0.05, 0.5), 4)
        case.slower_from = rng.randrange(runs // 2, max(runs // 2 + 1, runs))


def _add_and_remove(rng: random.Random, cases: list[CaseProfile], runs: int) -> None:
    healthy = [case for case in cases if case.kind == "healthy"]
    picked = rng.sample(healthy, ADDED_CASES + REMOVED_CASES)
    for case in picked[:ADDED_CASES]:
        case.first_run = rng.randrange(1, max(2, runs))
    for case in picked[ADDED_CASES:]:
        case.removed_at = rng.randrange(1, max(2, runs))


# --- runs -------------------------------------------------------------------


@dataclass
class Timeline:
    """Branch heads as the history advances."""

    rng: random.Random
    commits: dict[str, str] = dataclasses.field(default_factory=dict)

    def next_commit(self, branch: str) -> str:
        # A CI retry tests the same commit again; otherwise the branch moved on.
        if branch not in self.commits or self.rng.random() < 0.65:
            self.commits[branch] = f"{self.rng.getrandbits(160):040x}"
        return self.commits[branch]


def _phases(outcome: str, phase: str, duration: float) -> dict[str, dict[str, Any]]:
    """Return the per-phase results pytest reports for an outcome decided in phase."""
    decided = {"passed": "passed", "xpassed": "passed", "skipped": "skipped"}.get(
        outcome, "failed"
    )
    if phase == "setup":
        return {"setup": {"outcome": decided, "duration": duration}}
    return {
        "setup": {"outcome": "passed", "duration": 0.0004},
        "call": {"outcome": decided, "duration": duration},
        "teardown": {"outcome": "passed", "duration": 0.0002},
    }


@dataclass
class RunBuilder:
    """Build the executions of one run, attempt by attempt, on a shared clock."""

    rng: random.Random
    project_id: int
    run_id: uuid.UUID
    index: int
    branch: str
    clock: dt.datetime
    rows: list[tuple[Any, ...]] = dataclasses.field(default_factory=list)

    def run_case(self, case: CaseProfile) -> str:
        """Add the case's attempts; return its final outcome."""
        for attempt in range(1, RERUNS + 2):
            outcome, phase, cause = self._attempt(case)
            self._add(case, attempt, outcome, phase, cause)
            if outcome not in ("failed", "error"):
                return outcome
        return outcome

    def _attempt(self, case: CaseProfile) -> tuple[str, str, str | None]:
        """Return outcome, deciding phase and failure cause of one attempt."""
        rng = self.rng
        if case.kind == "skip":
            return "skipped", "setup", None
        if case.kind == "xfail":
            return ("xpassed", "call", None) if rng.random() < 0.05 else ("xfailed", "call", None)
        if case.kind == "setup_error" and self._in_window(case):
            return "error", "setup", case.cause
        if case.kind == "broken" and self._in_window(case):
            return "failed", "call", case.cause
        if case.kind == "flaky" and rng.random() < case.flake_rate:
            return "failed", "call", "flaky"
        if rng.random() < 0.0004:
            return "failed", "call", rng.choice(BROKEN_CAUSES)
        return "passed", "call", None

    def _in_window(self, case: CaseProfile) -> bool:
        start, end = case.window
        if not start <= self.index < end:
            return False
        return case.window_branch is None or case.window_branch == self.branch

    def _duration(self, case: CaseProfile, outcome: str, cause: str | None) -> float:
        if outcome == "skipped":
            return 0.0002
        duration = case.base_duration * self.rng.lognormvariate(0.0, 0.15)
        if case.slower_from is not None and self.index >= case.slower_from:
            duration *= 4
        if cause == "timeout":
            duration += 5.0
        return round(duration, 6)

    def _add(
        self, case: CaseProfile, attempt: int, outcome: str, phase: str, cause: str | None
    ) -> None:
        rng = self.rng
        duration = self._duration(case, outcome, cause)
        started_at = self.clock
        finished_at = started_at + dt.timedelta(seconds=duration)
        self.clock += dt.timedelta(seconds=duration / WORKERS + 0.001)
        message = traceback = stdout = reason = None
        if cause is not None:
            message = CAUSES[cause](rng)
            traceback = _traceback(rng, case, message)
            stdout = _captured_output(rng, rng.randint(1, 12)) if rng.random() < 0.4 else None
        elif outcome in ("skipped", "xfailed", "xpassed"):
            reason = case.reason
            if outcome == "xfailed":
                message = "AssertionError: assert 10.5 == 10.0"
        self.rows.append(
            (
                self.project_id,
                uuid.UUID(int=rng.getrandbits(128), version=4),
                self.run_id,
                case.id,
                attempt,
                outcome,
                phase,
                duration,
                started_at,
                finished_at,
                f"gw{rng.randrange(WORKERS)}",
                message,
                traceback,
                stdout,
                None,
                None,
                reason,
                case.parameters,
                _phases(outcome, phase, duration),
                finished_at + dt.timedelta(seconds=rng.uniform(0.05, 2.0)),
            )
        )


def generate(
    shape: Shape, project_id: int, cases: Sequence[CaseProfile], rng: random.Random
) -> Iterator[RunData]:
    """Yield runs oldest first until the history contains shape.executions executions."""
    timeline = Timeline(rng)
    total = 0
    index = 0
    while True:
        run = _make_run(project_id, cases, rng, timeline, index, shape.executions - total)
        total += len(run.executions)
        index += 1
        yield run
        if not run.settled:
            return


def _make_run(
    project_id: int,
    cases: Sequence[CaseProfile],
    rng: random.Random,
    timeline: Timeline,
    index: int,
    remaining: int,
) -> RunData:
    branch = rng.choices(list(BRANCHES), weights=list(BRANCHES.values()))[0]
    commit = timeline.next_commit(branch)
    started_at = HISTORY_START + RUN_INTERVAL * index + dt.timedelta(minutes=rng.uniform(0, 20))
    run_id = uuid.UUID(int=rng.getrandbits(128), version=4)
    collected = [case for case in cases if case.collected_in(index)]
    rng.shuffle(collected)
    # The last run, sized by what is left to generate, is still running; a
    # few others were interrupted halfway.
    last = remaining < len(collected) * 1.5
    status = "running" if last else "finished"
    executed = collected
    if last:
        executed = collected[: max(1, min(len(collected) * 3 // 4, remaining))]
    elif rng.random() < INTERRUPTED_SHARE:
        status = "interrupted"
        executed = collected[: len(collected) // 2]

    builder = RunBuilder(rng, project_id, run_id, index, branch, started_at)
    finals = [builder.run_case(case) for case in executed]
    failed = any(outcome in ("failed", "error") for outcome in finals)
    finished_at = None if status == "running" else builder.clock + dt.timedelta(seconds=3)
    # pytest exits with 1 when tests failed and 2 when it was interrupted.
    exit_status = None
    if status == "interrupted":
        exit_status = 2
    elif status == "finished":
        exit_status = int(failed)
    number = 18_000 + index
    client_run_id = f"ci-{number}"
    run = {
        "project_id": project_id,
        "id": run_id,
        "run_key": f"pipeline-{number}",
        "name": f"CI #{number} ({branch})",
        "status": status,
        "started_at": started_at,
        "finished_at": finished_at,
        "exit_status": exit_status,
        "ci_provider": "github-actions",
        "branch": branch,
        "commit": commit,
        "build_url": f"https://ci.example.com/shop/actions/runs/{number}",
        "job": "tests",
        "pull_request": str(400 + index // 6) if branch.startswith("feature/") else None,
        "environment": {
            "python": "3.12.7",
            "platform": "Linux-6.8.0-x86_64-with-glibc2.39",
            "pytest": "8.3.3",
            "plugin": "0.1.0",
            "host": f"runner-{rng.randrange(12):02d}",
        },
        "collected_count": len(collected),
        "created_at": started_at,
    }
    session = {
        "project_id": project_id,
        "client_run_id": client_run_id,
        "run_id": run_id,
        "status": status,
        "started_at": started_at,
        "finished_at": finished_at,
        "exit_status": exit_status,
        "collected_count": len(collected),
    }
    case_ids = sorted(case.id for case in collected)
    return RunData(index, run, session, case_ids, builder.rows)


# --- loading ----------------------------------------------------------------


def _sqlite_value(value: Any, column: str) -> Any:
    """Encode a value as SQLAlchemy stores it on SQLite."""
    if column in JSON_COLUMNS:
        return json.dumps(value)
    if isinstance(value, uuid.UUID):
        return value.hex
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).strftime(SQLITE_DATETIME_FORMAT)
    return value


def _sqlite_rows(rows: Sequence[tuple[Any, ...]], columns: Sequence[str]) -> list[tuple[Any, ...]]:
    return [
        tuple(_sqlite_value(value, column) for value, column in zip(row, columns, strict=True))
        for row in rows
    ]


def _insert_sql(table: str, columns: Sequence[str]) -> str:
    # Quoted, because "commit" is an SQL keyword.
    names = ", ".join(f'"{column}"' for column in columns)
    return f"INSERT INTO {table} ({names}) VALUES ({', '.join('?' * len(columns))})"


def _run_tables(run: RunData) -> list[tuple[str, Sequence[str], list[tuple[Any, ...]]]]:
    """Return (table, columns, rows) of one run, parents first."""
    return [
        ("test_runs", RUN_COLUMNS, [tuple(run.run[c] for c in RUN_COLUMNS)]),
        ("run_sessions", SESSION_COLUMNS, [tuple(run.session[c] for c in SESSION_COLUMNS)]),
        (
            "run_cases",
            RUN_CASE_COLUMNS,
            [(run.run["project_id"], run.id, case_id) for case_id in run.case_ids],
        ),
        ("executions", EXECUTION_COLUMNS, run.executions),
    ]


@dataclass
class LoadResult:
    """The loaded runs and row counts, for the summary step and the report."""

    runs: list[RunData]
    executions: int
    run_cases: int

    @property
    def settled_run_ids(self) -> list[uuid.UUID]:
        return [run.id for run in self.runs if run.settled]


def _strip(run: RunData) -> RunData:
    """Drop the bulky rows of a loaded run, keeping what picking endpoints needs."""
    return RunData(run.index, run.run, run.session, [], [])


def load_sqlite(path: Path, project_id: int, shape: Shape) -> LoadResult:
    """Insert the generated history into the migrated SQLite database at path."""
    rng = random.Random(shape.seed)
    cases = make_cases(rng, runs_estimate=shape.executions // 2000)
    connection = sqlite3.connect(path, isolation_level=None)
    try:
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA foreign_keys=ON")
        # The load is rebuilt from the seed if it is lost, so it need not survive a crash.
        connection.execute("PRAGMA synchronous=OFF")
        connection.execute("BEGIN")
        connection.executemany(
            _insert_sql("test_cases", CASE_COLUMNS),
            _sqlite_rows([case.row(project_id) for case in cases], CASE_COLUMNS),
        )
        loaded = []
        executions = run_cases = 0
        for run in generate(shape, project_id, cases, rng):
            for table, columns, rows in _run_tables(run):
                connection.executemany(_insert_sql(table, columns), _sqlite_rows(rows, columns))
            executions += len(run.executions)
            run_cases += len(run.case_ids)
            loaded.append(_strip(run))
            if run.index % 25 == 24:
                connection.execute("COMMIT")
                connection.execute("BEGIN")
        connection.execute("COMMIT")
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        connection.close()
    return LoadResult(loaded, executions, run_cases)


def _postgres_rows(
    rows: Sequence[tuple[Any, ...]], columns: Sequence[str]
) -> list[tuple[Any, ...]]:
    """Encode the JSON columns as text, which asyncpg's binary COPY takes for JSONB."""
    positions = [index for index, column in enumerate(columns) if column in JSON_COLUMNS]
    if not positions:
        return list(rows)
    encoded = []
    for row in rows:
        values = list(row)
        for index in positions:
            values[index] = json.dumps(values[index])
        encoded.append(tuple(values))
    return encoded


async def load_postgres(
    connection: asyncpg.Connection, project_id: int, shape: Shape
) -> LoadResult:
    """Copy the generated history into the migrated PostgreSQL database."""
    rng = random.Random(shape.seed)
    cases = make_cases(rng, runs_estimate=shape.executions // 2000)
    await connection.copy_records_to_table(
        "test_cases",
        records=_postgres_rows([case.row(project_id) for case in cases], CASE_COLUMNS),
        columns=CASE_COLUMNS,
    )
    loaded = []
    executions = run_cases = 0
    for run in generate(shape, project_id, cases, rng):
        async with connection.transaction():
            for table, columns, rows in _run_tables(run):
                await connection.copy_records_to_table(
                    table, records=_postgres_rows(rows, columns), columns=columns
                )
        executions += len(run.executions)
        run_cases += len(run.case_ids)
        loaded.append(_strip(run))
    return LoadResult(loaded, executions, run_cases)
