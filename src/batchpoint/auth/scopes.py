"""Where a role assignment applies, and the authorization check.

Scopes are strings:

* ``workspace`` — the whole workspace;
* ``endpoint:<name>`` — one batch endpoint (its deployments, and the jobs it ran);
* ``datastore:<name>`` — one data store (``data/read`` on it is checked before identity-based
  reads);
* ``storageaccount:<account>`` — one storage account, whichever data store or URL points at it.

Coverage rules: a ``workspace`` assignment covers every scope; any other assignment covers
exactly its own scope (same kind, same name). There is no other inheritance: an endpoint
assignment grants nothing on the workspace or on other endpoints. Names are compared exactly, as
the server stores them, except storage account names, which Azure defines as lowercase and are
lowercased here. Kinds are case-insensitive (``Endpoint:x`` is ``endpoint:x``).

A principal is allowed ``permission`` on ``scope`` if any of its assignments names a role with
that permission and covers the scope. :func:`check` raises :class:`PermissionDeniedError`
(403) naming the principal, the missing permission, the scope, and the command that grants it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from batchpoint.auth.permissions import (
    DATA_READ,
    JOBS_READ,
    JOBS_READ_OWN,
    ROLES,
    require_known_permission,
    role_permissions,
    roles_granting,
)
from batchpoint.auth.tokens import Principal
from batchpoint.exceptions import PermissionDeniedError, ValidationError

__all__ = [
    "WORKSPACE",
    "SCOPE_KINDS",
    "Scope",
    "RoleAssignment",
    "parse_scope",
    "authorize",
    "check",
    "check_data_read",
    "check_job_read",
    "missing_permission_error",
]

WORKSPACE = "workspace"
SCOPE_KINDS = ("workspace", "endpoint", "datastore", "storageaccount")
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,254}")


@dataclass(frozen=True)
class Scope:
    """A parsed scope: ``kind`` is one of :data:`SCOPE_KINDS`; ``name`` is ``""`` for workspace."""

    kind: str
    name: str = ""

    def __str__(self) -> str:
        return WORKSPACE if self.kind == WORKSPACE else f"{self.kind}:{self.name}"

    def covers(self, other: Scope) -> bool:
        """Whether an assignment at this scope applies to ``other``."""
        return self.kind == WORKSPACE or self == other


def parse_scope(scope: str | Scope) -> Scope:
    """Parse and normalise a scope string; :class:`ValidationError` with the valid forms if bad."""
    if isinstance(scope, Scope):
        return scope
    text = scope.strip() if isinstance(scope, str) else ""
    kind, sep, name = text.partition(":")
    kind = kind.lower()
    if kind == WORKSPACE and not sep:
        return Scope(WORKSPACE)
    if kind in SCOPE_KINDS[1:] and _NAME_RE.fullmatch(name):
        return Scope(kind, name.lower() if kind == "storageaccount" else name)
    raise ValidationError(
        f"invalid scope '{scope}'; use 'workspace', 'endpoint:<name>', 'datastore:<name>' or "
        "'storageaccount:<account>' (names: letters, digits, '_', '.', '-')",
        details={"scope": str(scope)},
    )


@dataclass(frozen=True)
class RoleAssignment:
    """``role`` granted to ``principal_id`` on ``scope``; validated, scope normalised."""

    principal_id: str
    role: str
    scope: str = WORKSPACE

    def __post_init__(self) -> None:
        if not self.principal_id:
            raise ValidationError("a role assignment needs a principal id")
        role_permissions(self.role)
        object.__setattr__(self, "scope", str(parse_scope(self.scope)))

    @property
    def parsed_scope(self) -> Scope:
        return parse_scope(self.scope)

    def grants(self, permission: str, scope: str | Scope) -> bool:
        """Whether this assignment alone allows ``permission`` on ``scope``."""
        return permission in ROLES[self.role] and self.parsed_scope.covers(parse_scope(scope))


def authorize(assignments: Iterable[RoleAssignment], permission: str, scope: str | Scope) -> bool:
    """Whether ``assignments`` (those of ONE principal) allow ``permission`` on ``scope``.

    The caller must pass only the calling principal's assignments; :func:`check` filters them
    itself. An unknown permission is a programming error and raises (see permissions).
    """
    require_known_permission(permission)
    target = parse_scope(scope)
    return any(a.grants(permission, target) for a in assignments)


def _principal_id(principal: Principal | str) -> str:
    return principal.id if isinstance(principal, Principal) else principal


def missing_permission_error(
    principal: Principal | str, permission: str, scope: str | Scope
) -> PermissionDeniedError:
    """The 403 to raise when ``principal`` lacks ``permission`` on ``scope``.

    The message names the least privileged role that grants the permission and the CLI command
    that assigns it on that scope.
    """
    pid = _principal_id(principal)
    where = str(parse_scope(scope))
    roles = roles_granting(permission)
    command = (
        f"batchpoint role assignment create --role {roles[0]} --assignee {pid} --scope {where}"
    )
    return PermissionDeniedError(
        f"principal '{pid}' lacks permission '{permission}' on scope '{where}'; "
        f"roles that grant it: {', '.join(roles)}. An Owner can grant it with: {command}",
        details={"principal_id": pid, "permission": permission, "scope": where, "roles": roles},
    )


def check(
    assignments: Iterable[RoleAssignment],
    principal: Principal | str,
    permission: str,
    scope: str | Scope,
) -> None:
    """Raise :class:`PermissionDeniedError` unless ``principal`` has ``permission`` on ``scope``.

    Only assignments whose ``principal_id`` is the principal's id are considered.
    """
    pid = _principal_id(principal)
    own = [a for a in assignments if a.principal_id == pid]
    if not authorize(own, permission, scope):
        raise missing_permission_error(principal, permission, scope)


def check_data_read(
    assignments: Iterable[RoleAssignment],
    principal: Principal | str,
    *,
    datastore: str | None = None,
    storage_account: str | None = None,
) -> None:
    """Before an identity-based read: ``data/read`` on the data store OR on its storage account.

    Pass whichever is known (at least one). The 403 suggests the data store scope when given.
    """
    scopes = [parse_scope(f"{kind}:{name}") for kind, name in
              (("datastore", datastore), ("storageaccount", storage_account)) if name]
    if not scopes:
        raise ValidationError("check_data_read needs a datastore or a storage_account")
    pid = _principal_id(principal)
    own = [a for a in assignments if a.principal_id == pid]
    if not any(authorize(own, DATA_READ, s) for s in scopes):
        raise missing_permission_error(principal, DATA_READ, scopes[0])


def check_job_read(
    assignments: Iterable[RoleAssignment],
    principal: Principal | str,
    job_owner_id: str,
    scope: str | Scope,
) -> None:
    """Reading a job and its outputs: ``jobs/read``, or ``jobs/read_own`` for one's own job.

    ``scope`` is the job's endpoint scope (``endpoint:<name>``) or ``workspace`` for jobs without
    one. The 403 names ``jobs/read_own`` for one's own job and ``jobs/read`` for another's.
    """
    pid = _principal_id(principal)
    own = [a for a in assignments if a.principal_id == pid]
    if authorize(own, JOBS_READ, scope):
        return
    is_owner = bool(job_owner_id) and job_owner_id == pid
    if is_owner and authorize(own, JOBS_READ_OWN, scope):
        return
    raise missing_permission_error(principal, JOBS_READ_OWN if is_owner else JOBS_READ, scope)
