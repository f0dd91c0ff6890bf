"""SQLAlchemy models of the TestoQA schema.

The project is the tenant. Every tenant table carries ``project_id`` and it
leads every primary key, unique key and index of tenant data, so the schema
can be distributed by project without a redesign. Alembic owns the schema;
these models are what its migrations are checked against.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    Uuid,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# Audit events of instance-wide actions (a user created) have no project;
# they are stored under this project id so the table keeps one key shape.
INSTANCE_PROJECT_ID = 0


class UTCDateTime(TypeDecorator[dt.datetime]):
    """A timestamp stored in UTC and always returned timezone-aware.

    SQLite has no timestamp type and hands back naive values; PostgreSQL
    stores ``timestamptz``. Both come back as aware UTC datetimes here.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(
        self, value: dt.datetime | None, dialect: Dialect
    ) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r} cannot be stored; attach a timezone")
        return value.astimezone(dt.UTC)

    def process_result_value(
        self, value: dt.datetime | None, dialect: Dialect
    ) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC)


# JSON columns use JSONB on PostgreSQL for compact storage.
JSONType = JSON().with_variant(postgresql.JSONB(), "postgresql")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Project(Base):
    """The tenant: every test result belongs to exactly one project."""

    __tablename__ = "projects"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(String(20), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)


class User(Base):
    """A person who signs in; users are global and reach projects through memberships."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    password_hash: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    disabled_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)


class Membership(Base):
    """A user's role on one project."""

    __tablename__ = "memberships"

    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id"), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), primary_key=True)
    role: Mapped[str] = mapped_column(String(20))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)


class ApiToken(Base):
    """A project-scoped secret for CI; only the SHA-256 of the secret is stored."""

    __tablename__ = "api_tokens"

    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id"), primary_key=True)
    # A per-project sequence number; with the project key it forms the
    # public token id such as ``WEB-3``.
    number: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    name: Mapped[str] = mapped_column(String(100))
    role: Mapped[str] = mapped_column(String(20))
    secret_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)


class TestCase(Base):
    """One test's stable identity within a project."""

    __tablename__ = "test_cases"
    __test__ = False  # keep pytest from collecting this class
    __table_args__ = (UniqueConstraint("project_id", "key", name="uq_test_cases_project_key"),)

    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id"), primary_key=True)
    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    key: Mapped[str] = mapped_column(String(500))
    node_id: Mapped[str | None] = mapped_column(Text, nullable=True)
    file: Mapped[str | None] = mapped_column(String(1000), nullable=True)
    name: Mapped[str | None] = mapped_column(String(1000), nullable=True)
    line: Mapped[int | None] = mapped_column(Integer, nullable=True)
    class_name: Mapped[str | None] = mapped_column(String(1000), nullable=True)
    function: Mapped[str | None] = mapped_column(String(1000), nullable=True)
    markers: Mapped[list[str]] = mapped_column(JSONType)
    first_seen_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    last_seen_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)


class TestRun(Base):
    """One pytest session, or several shards joined by a run key."""

    __tablename__ = "test_runs"
    __test__ = False
    __table_args__ = (
        UniqueConstraint("project_id", "run_key", name="uq_test_runs_project_run_key"),
        Index("ix_test_runs_project_started", "project_id", "started_at", "id"),
        Index("ix_test_runs_project_branch_started", "project_id", "branch", "started_at"),
    )

    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id"), primary_key=True)
    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    run_key: Mapped[str | None] = mapped_column(String(200), nullable=True)
    name: Mapped[str | None] = mapped_column(String(200), nullable=True)
    status: Mapped[str] = mapped_column(String(20))
    started_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    finished_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    exit_status: Mapped[int | None] = mapped_column(Integer, nullable=True)
    ci_provider: Mapped[str | None] = mapped_column(String(50), nullable=True)
    branch: Mapped[str | None] = mapped_column(String(250), nullable=True)
    commit: Mapped[str | None] = mapped_column(String(64), nullable=True)
    build_url: Mapped[str | None] = mapped_column(String(2000), nullable=True)
    job: Mapped[str | None] = mapped_column(String(200), nullable=True)
    pull_request: Mapped[str | None] = mapped_column(String(100), nullable=True)
    environment: Mapped[dict[str, Any]] = mapped_column(JSONType)
    collected_count: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)


class RunSession(Base):
    """One pytest session (a shard) that reports into a run, by its client run id."""

    __tablename__ = "run_sessions"
    __table_args__ = (
        ForeignKeyConstraint(["project_id", "run_id"], ["test_runs.project_id", "test_runs.id"]),
        Index("ix_run_sessions_project_run", "project_id", "run_id"),
    )

    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id"), primary_key=True)
    client_run_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    run_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    status: Mapped[str] = mapped_column(String(20))
    started_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    finished_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    exit_status: Mapped[int | None] = mapped_column(Integer, nullable=True)
    collected_count: Mapped[int | None] = mapped_column(Integer, nullable=True)


class RunCase(Base):
    """A test case that a run collected and so plans to execute."""

    __tablename__ = "run_cases"
    __table_args__ = (
        ForeignKeyConstraint(["project_id", "run_id"], ["test_runs.project_id", "test_runs.id"]),
        ForeignKeyConstraint(
            ["project_id", "case_id"], ["test_cases.project_id", "test_cases.id"]
        ),
    )

    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id"), primary_key=True)
    run_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    case_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)


class Execution(Base):
    """One attempt of one test case in one run; its id is generated by the client."""

    __tablename__ = "executions"
    __table_args__ = (
        ForeignKeyConstraint(["project_id", "run_id"], ["test_runs.project_id", "test_runs.id"]),
        ForeignKeyConstraint(
            ["project_id", "case_id"], ["test_cases.project_id", "test_cases.id"]
        ),
        Index("ix_executions_project_run_case", "project_id", "run_id", "case_id", "attempt"),
        Index("ix_executions_project_case_started", "project_id", "case_id", "started_at"),
    )

    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id"), primary_key=True)
    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    run_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    case_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    attempt: Mapped[int] = mapped_column(Integer)
    outcome: Mapped[str] = mapped_column(String(10))
    phase: Mapped[str] = mapped_column(String(10))
    duration: Mapped[float] = mapped_column(Float)
    started_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    finished_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    worker: Mapped[str | None] = mapped_column(String(50), nullable=True)
    message: Mapped[str | None] = mapped_column(Text, nullable=True)
    traceback: Mapped[str | None] = mapped_column(Text, nullable=True)
    stdout: Mapped[str | None] = mapped_column(Text, nullable=True)
    stderr: Mapped[str | None] = mapped_column(Text, nullable=True)
    log: Mapped[str | None] = mapped_column(Text, nullable=True)
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    parameters: Mapped[dict[str, Any]] = mapped_column(JSONType)
    phases: Mapped[dict[str, Any]] = mapped_column(JSONType)
    received_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)


class AuditEvent(Base):
    """A security-relevant action: project, member and token changes."""

    __tablename__ = "audit_events"
    __table_args__ = (Index("ix_audit_events_project_created", "project_id", "created_at"),)

    # No foreign key: the trail must outlive what it describes, and
    # instance-wide events use INSTANCE_PROJECT_ID.
    project_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    actor: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(50))
    target: Mapped[str] = mapped_column(String(400))
    request_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    details: Mapped[dict[str, Any]] = mapped_column(JSONType)


class UserSession(Base):
    """A signed-in browser: only the SHA-256 of the cookie value is stored."""

    __tablename__ = "user_sessions"
    __table_args__ = (Index("ix_user_sessions_user", "user_id"),)

    id_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    # The synchronizer token every state-changing form of this session carries.
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    last_seen_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    address: Mapped[str | None] = mapped_column(String(100), nullable=True)
    user_agent: Mapped[str | None] = mapped_column(String(300), nullable=True)


class PersonalToken(Base):
    """A user's own secret for reading the JSON reports of the user's projects."""

    __tablename__ = "personal_tokens"

    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), primary_key=True)
    number: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    name: Mapped[str] = mapped_column(String(100))
    secret_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    last_used_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)


class SignInFailure(Base):
    """One failed sign-in, counted per account and per address to rate-limit guessing.

    Kept in the database rather than process memory so that every server
    process reads the same counts.
    """

    __tablename__ = "sign_in_failures"
    __table_args__ = (Index("ix_sign_in_failures_subject", "scope", "subject", "failed_at"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    # "account" (subject is the lower-cased email) or "address" (the client address).
    scope: Mapped[str] = mapped_column(String(20))
    subject: Mapped[str] = mapped_column(String(320))
    failed_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)


class ProjectSettings(Base):
    """Per-project report settings: quality-gate rules and report windows."""

    __tablename__ = "project_settings"

    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id"), primary_key=True)
    gate: Mapped[dict[str, Any]] = mapped_column(JSONType)
    reports: Mapped[dict[str, Any]] = mapped_column(JSONType)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)


class RunSummary(Base):
    """A run's totals, computed from its executions when the run settles.

    Reports over many runs (trends, the runs list, the projects page) read
    these rows instead of scanning executions. The rows are rebuilt from the
    executions whenever results of a settled run change.
    """

    __tablename__ = "run_summaries"
    __table_args__ = (
        ForeignKeyConstraint(["project_id", "run_id"], ["test_runs.project_id", "test_runs.id"]),
    )

    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id"), primary_key=True)
    run_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    total: Mapped[int] = mapped_column(Integer)
    passed: Mapped[int] = mapped_column(Integer)
    failed: Mapped[int] = mapped_column(Integer)
    error: Mapped[int] = mapped_column(Integer)
    skipped: Mapped[int] = mapped_column(Integer)
    xfailed: Mapped[int] = mapped_column(Integer)
    xpassed: Mapped[int] = mapped_column(Integer)
    not_run: Mapped[int] = mapped_column(Integer)
    passed_on_rerun: Mapped[int] = mapped_column(Integer)
    # Sum of the final attempts' durations, in seconds.
    test_duration: Mapped[float] = mapped_column(Float)
    summarized_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)


class RunResult(Base):
    """The final result of one test case in one run, with what reports need of it.

    Materialized from the run's executions (the last attempt decides) when
    the run settles, so reports over many runs read one row per case and run.
    """

    __tablename__ = "run_results"
    __table_args__ = (
        ForeignKeyConstraint(["project_id", "run_id"], ["test_runs.project_id", "test_runs.id"]),
        ForeignKeyConstraint(
            ["project_id", "case_id"], ["test_cases.project_id", "test_cases.id"]
        ),
        Index("ix_run_results_project_case_started", "project_id", "case_id", "run_started_at"),
    )

    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id"), primary_key=True)
    run_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    case_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    # The final attempt's outcome, or "not_run" for a collected case without executions.
    outcome: Mapped[str] = mapped_column(String(10))
    attempts: Mapped[int] = mapped_column(Integer)
    passed_on_rerun: Mapped[bool] = mapped_column(Boolean)
    # The final attempt's duration and id, the evidence reports link to.
    duration: Mapped[float | None] = mapped_column(Float, nullable=True)
    execution_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, nullable=True)
    exception_type: Mapped[str | None] = mapped_column(String(200), nullable=True)
    fingerprint: Mapped[str | None] = mapped_column(String(32), nullable=True)
    # Copied from the run so a case's history is one index range.
    run_started_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    branch: Mapped[str | None] = mapped_column(String(250), nullable=True)


__all__ = [
    "INSTANCE_PROJECT_ID",
    "ApiToken",
    "AuditEvent",
    "Base",
    "Execution",
    "Membership",
    "PersonalToken",
    "Project",
    "ProjectSettings",
    "RunCase",
    "RunResult",
    "RunSession",
    "RunSummary",
    "SignInFailure",
    "TestCase",
    "TestRun",
    "User",
    "UserSession",
]
