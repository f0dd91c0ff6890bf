"""create the initial schema

Revision ID: 0001
Revises:
Create Date: 2026-12-04 21:07:23.150609
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "audit_events",
        sa.Column("project_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("action", sa.String(length=50), nullable=False),
        sa.Column("target", sa.String(length=400), nullable=False),
        sa.Column("request_id", sa.String(length=64), nullable=True),
        sa.Column(
            "details",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("project_id", "id", name=op.f("pk_audit_events")),
    )
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.create_index(
            "ix_audit_events_project_created", ["project_id", "created_at"], unique=False
        )

    op.create_table(
        "projects",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("key", sa.String(length=20), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_projects")),
        sa.UniqueConstraint("key", name=op.f("uq_projects_key")),
    )
    op.create_table(
        "users",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("password_hash", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("disabled_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_users")),
        sa.UniqueConstraint("email", name=op.f("uq_users_email")),
    )
    op.create_table(
        "api_tokens",
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("number", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("role", sa.String(length=20), nullable=False),
        sa.Column("secret_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["project_id"], ["projects.id"], name=op.f("fk_api_tokens_project_id_projects")
        ),
        sa.PrimaryKeyConstraint("project_id", "number", name=op.f("pk_api_tokens")),
    )
    op.create_table(
        "memberships",
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("role", sa.String(length=20), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["project_id"], ["projects.id"], name=op.f("fk_memberships_project_id_projects")
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_memberships_user_id_users")
        ),
        sa.PrimaryKeyConstraint("project_id", "user_id", name=op.f("pk_memberships")),
    )
    op.create_table(
        "test_cases",
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("key", sa.String(length=500), nullable=False),
        sa.Column("node_id", sa.Text(), nullable=True),
        sa.Column("file", sa.String(length=1000), nullable=True),
        sa.Column("name", sa.String(length=1000), nullable=True),
        sa.Column("line", sa.Integer(), nullable=True),
        sa.Column("class_name", sa.String(length=1000), nullable=True),
        sa.Column("function", sa.String(length=1000), nullable=True),
        sa.Column(
            "markers",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("first_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["project_id"], ["projects.id"], name=op.f("fk_test_cases_project_id_projects")
        ),
        sa.PrimaryKeyConstraint("project_id", "id", name=op.f("pk_test_cases")),
        sa.UniqueConstraint("project_id", "key", name="uq_test_cases_project_key"),
    )
    op.create_table(
        "test_runs",
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("run_key", sa.String(length=200), nullable=True),
        sa.Column("name", sa.String(length=200), nullable=True),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("exit_status", sa.Integer(), nullable=True),
        sa.Column("ci_provider", sa.String(length=50), nullable=True),
        sa.Column("branch", sa.String(length=250), nullable=True),
        sa.Column("commit", sa.String(length=64), nullable=True),
        sa.Column("build_url", sa.String(length=2000), nullable=True),
        sa.Column("job", sa.String(length=200), nullable=True),
        sa.Column("pull_request", sa.String(length=100), nullable=True),
        sa.Column(
            "environment",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("collected_count", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["project_id"], ["projects.id"], name=op.f("fk_test_runs_project_id_projects")
        ),
        sa.PrimaryKeyConstraint("project_id", "id", name=op.f("pk_test_runs")),
        sa.UniqueConstraint("project_id", "run_key", name="uq_test_runs_project_run_key"),
    )
    with op.batch_alter_table("test_runs", schema=None) as batch_op:
        batch_op.create_index(
            "ix_test_runs_project_branch_started",
            ["project_id", "branch", "started_at"],
            unique=False,
        )
        batch_op.create_index(
            "ix_test_runs_project_started", ["project_id", "started_at", "id"], unique=False
        )

    op.create_table(
        "executions",
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("run_id", sa.Uuid(), nullable=False),
        sa.Column("case_id", sa.Uuid(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("outcome", sa.String(length=10), nullable=False),
        sa.Column("phase", sa.String(length=10), nullable=False),
        sa.Column("duration", sa.Float(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("worker", sa.String(length=50), nullable=True),
        sa.Column("message", sa.Text(), nullable=True),
        sa.Column("traceback", sa.Text(), nullable=True),
        sa.Column("stdout", sa.Text(), nullable=True),
        sa.Column("stderr", sa.Text(), nullable=True),
        sa.Column("log", sa.Text(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column(
            "parameters",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "phases",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["project_id", "case_id"],
            ["test_cases.project_id", "test_cases.id"],
            name=op.f("fk_executions_project_id_test_cases"),
        ),
        sa.ForeignKeyConstraint(
            ["project_id", "run_id"],
            ["test_runs.project_id", "test_runs.id"],
            name=op.f("fk_executions_project_id_test_runs"),
        ),
        sa.ForeignKeyConstraint(
            ["project_id"], ["projects.id"], name=op.f("fk_executions_project_id_projects")
        ),
        sa.PrimaryKeyConstraint("project_id", "id", name=op.f("pk_executions")),
    )
    with op.batch_alter_table("executions", schema=None) as batch_op:
        batch_op.create_index(
            "ix_executions_project_case_started",
            ["project_id", "case_id", "started_at"],
            unique=False,
        )
        batch_op.create_index(
            "ix_executions_project_run_case",
            ["project_id", "run_id", "case_id", "attempt"],
            unique=False,
        )

    op.create_table(
        "run_cases",
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Uuid(), nullable=False),
        sa.Column("case_id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["project_id", "case_id"],
            ["test_cases.project_id", "test_cases.id"],
            name=op.f("fk_run_cases_project_id_test_cases"),
        ),
        sa.ForeignKeyConstraint(
            ["project_id", "run_id"],
            ["test_runs.project_id", "test_runs.id"],
            name=op.f("fk_run_cases_project_id_test_runs"),
        ),
        sa.ForeignKeyConstraint(
            ["project_id"], ["projects.id"], name=op.f("fk_run_cases_project_id_projects")
        ),
        sa.PrimaryKeyConstraint("project_id", "run_id", "case_id", name=op.f("pk_run_cases")),
    )
    op.create_table(
        "run_sessions",
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("client_run_id", sa.String(length=100), nullable=False),
        sa.Column("run_id", sa.Uuid(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("exit_status", sa.Integer(), nullable=True),
        sa.Column("collected_count", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["project_id", "run_id"],
            ["test_runs.project_id", "test_runs.id"],
            name=op.f("fk_run_sessions_project_id_test_runs"),
        ),
        sa.ForeignKeyConstraint(
            ["project_id"], ["projects.id"], name=op.f("fk_run_sessions_project_id_projects")
        ),
        sa.PrimaryKeyConstraint("project_id", "client_run_id", name=op.f("pk_run_sessions")),
    )
    with op.batch_alter_table("run_sessions", schema=None) as batch_op:
        batch_op.create_index(
            "ix_run_sessions_project_run", ["project_id", "run_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("run_sessions", schema=None) as batch_op:
        batch_op.drop_index("ix_run_sessions_project_run")

    op.drop_table("run_sessions")
    op.drop_table("run_cases")
    with op.batch_alter_table("executions", schema=None) as batch_op:
        batch_op.drop_index("ix_executions_project_run_case")
        batch_op.drop_index("ix_executions_project_case_started")

    op.drop_table("executions")
    with op.batch_alter_table("test_runs", schema=None) as batch_op:
        batch_op.drop_index("ix_test_runs_project_started")
        batch_op.drop_index("ix_test_runs_project_branch_started")

    op.drop_table("test_runs")
    op.drop_table("test_cases")
    op.drop_table("memberships")
    op.drop_table("api_tokens")
    op.drop_table("users")
    op.drop_table("projects")
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.drop_index("ix_audit_events_project_created")

    op.drop_table("audit_events")
