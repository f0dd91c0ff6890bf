"""Roles, actions and the table that grants one to the other."""

from __future__ import annotations

import enum


class Role(enum.StrEnum):
    """A principal's role on one project, from least to most trusted."""

    VIEWER = "viewer"
    REPORTER = "reporter"
    MAINTAINER = "maintainer"
    ADMIN = "admin"


class Action(enum.StrEnum):
    """Something a principal may do inside one project."""

    READ_RESULTS = "read_results"
    REPORT_RESULTS = "report_results"
    MANAGE_TOKENS = "manage_tokens"
    MANAGE_MEMBERS = "manage_members"
    READ_AUDIT = "read_audit"


ROLE_ACTIONS: dict[Role, frozenset[Action]] = {
    Role.VIEWER: frozenset({Action.READ_RESULTS}),
    Role.REPORTER: frozenset({Action.READ_RESULTS, Action.REPORT_RESULTS}),
    Role.MAINTAINER: frozenset({Action.READ_RESULTS, Action.REPORT_RESULTS, Action.MANAGE_TOKENS}),
    Role.ADMIN: frozenset(Action),
}

# API tokens act for CI and scripts; they never administer a project.
TOKEN_ROLES: tuple[Role, ...] = (Role.REPORTER, Role.VIEWER)


def actions_for(role: Role) -> frozenset[Action]:
    return ROLE_ACTIONS[role]


def parse_role(value: str, allowed: tuple[Role, ...] = tuple(Role)) -> Role:
    """Return the Role named by value, or raise ValueError naming the allowed roles."""
    names = [role.value for role in allowed]
    if value not in names:
        raise ValueError(f"invalid role {value!r}: use one of {', '.join(names)}")
    return Role(value)
