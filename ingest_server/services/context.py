"""The RequestContext: who is calling, on which project, with which permissions."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from ingest_server.services.authz import Action, Role
from ingest_server.services.errors import NotFound, PermissionDenied

PrincipalKind = Literal["token", "user", "operator", "anonymous"]


@dataclass(frozen=True)
class Principal:
    """An authenticated caller. ``id`` is safe to log; it is never a secret."""

    kind: PrincipalKind
    id: str
    # A token belongs to one project; users reach projects through memberships.
    token_project_id: int | None = None
    token_role: Role | None = None
    user_id: int | None = None
    email: str | None = None
    # A personal access token acts for its user but only reads results.
    read_only: bool = False


ANONYMOUS = Principal(kind="anonymous", id="anonymous")
OPERATOR = Principal(kind="operator", id="operator")


@dataclass(frozen=True)
class ProjectScope:
    """The project a request is about, as the principal may see it."""

    id: int
    key: str
    name: str
    role: Role | None
    actions: frozenset[Action]


@dataclass(frozen=True)
class RequestContext:
    """Everything a use case needs to know about its caller, resolved before any work."""

    request_id: str
    principal: Principal
    project_key: str | None = None
    # None when the path names no project, or a project the principal may not see.
    project: ProjectScope | None = None
    base_url: str = ""
    # The signed-in browser session's CSRF token; None for token callers.
    csrf_token: str | None = None
    extra: dict[str, str] = field(default_factory=dict)

    def require(self, action: Action) -> ProjectScope:
        """Return the project in scope if the principal may perform action on it.

        A project that is missing or invisible to the principal raises NotFound
        with the same message, so callers cannot probe which keys exist.
        """
        if self.project is None:
            raise NotFound(f"project {self.project_key!r} not found")
        if action not in self.project.actions:
            if self.principal.read_only:
                raise PermissionDenied(
                    f"a personal access token only reads results; {action.value!r} on project "
                    f"{self.project.key!r} needs a project API token or a signed-in session"
                )
            role = self.project.role.value if self.project.role else "none"
            raise PermissionDenied(
                f"the role {role!r} on project {self.project.key!r} does not allow "
                f"{action.value!r}"
            )
        return self.project

    def log_fields(self) -> dict[str, str]:
        fields = {"request_id": self.request_id, "principal": self.principal.id}
        if self.project is not None:
            fields["project_id"] = str(self.project.id)
        return fields
