"""Principals, their API keys, role assignments and the audit log (the writes that make a principal
or a key are ``AuthService``'s: they hash the key)."""

from __future__ import annotations

from typing import Any

from batchpoint.auth import permissions as P
from batchpoint.auth.scopes import parse_scope
from batchpoint.exceptions import NotFoundError, ValidationError
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
