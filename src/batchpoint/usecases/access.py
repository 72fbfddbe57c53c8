"""Principals, their API keys, role assignments and the audit log (the writes that make a principal
or a key are ``workspace/principals.py`` ``AuthService``'s: they hash the key), and the checks of
the server's request dependencies (``server/security.py``) that read a job or the default data store."""

from __future__ import annotations

from typing import Any

from batchpoint.auth import permissions as P
from batchpoint.auth.scopes import authorize, check_job_read as _check_job_read, missing_permission_error, parse_scope
from batchpoint.exceptions import NotFoundError, ValidationError
from batchpoint.jobs import children
from batchpoint.usecases.services import Services


def list_principals(sv: Services) -> list[Any]:
    return sv.store.list_principals()


def list_keys(sv: Services, principal_id: str) -> list[Any]:
    return sv.store.list_api_keys(principal_id)


def revoke_key(sv: Services, principal_id: str, key_id: str) -> None:
    """Revoke ``principal_id``'s key ``key_id`` (a 404 when that principal has no such key)."""
    row = sv.store.find_api_key(key_id)
    if row is None or row.principal_id != principal_id:
        raise NotFoundError(f"principal '{principal_id}' has no API key '{key_id}'")
    sv.store.revoke_api_key(key_id)


def list_assignments(sv: Services, principal_id: str | None = None) -> list[Any]:
    return sv.store.list_role_assignments(principal_id)


def add_assignment(sv: Services, principal_id: str, role: str, scope: str) -> Any:
    """Give ``principal_id`` ``role`` on ``scope`` (``workspace``, ``endpoint:<name>``, ...)."""
    if role not in P.ROLES:
        raise ValidationError(f"role '{role}' is not valid; roles: {', '.join(sorted(P.ROLES))}")
    scope = str(parse_scope(scope))
    if sv.store.find_principal(principal_id) is None:
        raise NotFoundError(f"principal '{principal_id}' was not found; create it first")
    return sv.store.add_role_assignment(principal_id, role, scope)


def delete_assignment(sv: Services, assignment_id: int) -> None:
    sv.store.delete_role_assignment(assignment_id)


def audit_log(sv: Services, limit: int, principal_id: str | None = None) -> list[Any]:
    """The newest ``limit`` audit records (of ``principal_id``), newest first."""
    return sv.store.list_audit(limit=limit, principal_id=principal_id)


def record_audit(sv: Services, principal: str, method: str, path: str, status: int, details: dict[str, Any]) -> None:
    """One audit record: ``principal``'s ``method`` on ``path`` was answered ``status``."""
    sv.store.add_audit(principal, method, path, status, details)


def _job_scope(job: Any) -> str:
    return f"endpoint:{job.endpoint_name}" if job.endpoint_name else "workspace"


def check_job_read(sv: Services, principal: str, name: str, grants: list[Any] | None = None) -> Any:
    """``jobs/read`` on job ``name``'s endpoint, or ``jobs/read_own`` for a job ``principal``
    started (a child job: its parent's record); a 404 for no such job, else a 403 naming the grant.
    Returns the record it read (the route's own to show, not read again). ``grants``: ``principal``'s
    role assignments when the caller has them already."""
    job = children.job_row(sv.store, name)
    _check_job_read(sv.auth.assignments(principal) if grants is None else grants, principal, job.created_by or "",
                    _job_scope(job))
    return job


def check_job_data(sv: Services, principal: str, name: str) -> None:
    """Job ``name``'s output files and log contents: ``jobs/outputs/read`` on its endpoint, or
    ``jobs/read_own`` for a job ``principal`` started (they are data, not metadata: Readers do not
    get them)."""
    job = children.job_row(sv.store, name)  # a child job: its parent's record
    scope = _job_scope(job)
    own = sv.auth.assignments(principal)
    if authorize(own, P.JOBS_OUTPUTS_READ, scope):
        return
    if job.created_by and job.created_by == principal and authorize(own, P.JOBS_READ_OWN, scope):
        return
    raise missing_permission_error(principal, P.JOBS_OUTPUTS_READ, scope)


def check_upload(sv: Services, principal: str) -> None:
    """The upload area (``LocalUpload/`` of the default data store): ``datastores/write`` on the
    default store, or an ``endpoints/invoke`` grant on any scope (uploading a local input is part
    of invoking, so an Invoker of one endpoint may do it)."""
    own = sv.auth.assignments(principal)
    scope = f"datastore:{sv.workspace.default_datastore_name()}"
    if authorize(own, P.DATASTORES_WRITE, scope):
        return
    if any(P.ENDPOINTS_INVOKE in P.role_permissions(a.role) for a in own):
        return
    raise missing_permission_error(principal, P.DATASTORES_WRITE, scope)
