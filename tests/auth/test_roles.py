"""The role table, written down here by hand (from docs/security.md), checked against the code.

``EXPECTED`` is not derived from ``batchpoint.auth.permissions``: a permission added to or dropped
from a role in the code fails these tests until the table here (and the docs) say the same."""

from __future__ import annotations

import re

import pytest

from batchpoint.auth import permissions as perms
from batchpoint.auth import (
    ALL_PERMISSIONS,
    ROLES,
    RoleAssignment,
    authorize,
    require_known_permission,
    role_permissions,
    roles_granting,
)
from batchpoint.exceptions import BatchpointError, PermissionDeniedError, ValidationError

READS = {"workspace/read", "datastores/read", "assets/read", "models/read", "computes/read", "endpoints/read",
         "deployments/read", "jobs/read", "jobs/read_own", "roles/read"}
CONTRIBUTOR = READS | {"datastores/write", "data/write", "assets/write", "models/write", "computes/write",
                       "endpoints/write", "endpoints/invoke", "deployments/write", "jobs/outputs/read", "jobs/cancel"}
EXPECTED: dict[str, set[str]] = {
    "Owner": CONTRIBUTOR | {"datastores/secrets/read", "data/read", "roles/write", "audit/read"},
    "Contributor": CONTRIBUTOR,
    "Invoker": {"workspace/read", "endpoints/read", "endpoints/invoke", "deployments/read", "jobs/read_own"},
    "Reader": READS,
    "DataReader": {"data/read"},
    "DataWriter": {"data/read", "data/write"},
}
PERMISSIONS = sorted(set().union(*EXPECTED.values()))
CASES = [(role, perm) for role in EXPECTED for perm in PERMISSIONS]


def test_the_code_has_exactly_the_documented_roles_and_permissions() -> None:
    assert set(ROLES) == set(EXPECTED)
    assert ALL_PERMISSIONS == set(PERMISSIONS)
    for role, granted in EXPECTED.items():
        assert ROLES[role] == granted, (role, sorted(ROLES[role] ^ granted))


@pytest.mark.parametrize(("role", "permission"), CASES)
def test_workspace_assignment_grants_exactly_the_role_permissions(role: str, permission: str) -> None:
    assignment = [RoleAssignment("p1", role, "workspace")]
    expected = permission in EXPECTED[role]
    for scope in ("workspace", "endpoint:e1", "datastore:d1", "storageaccount:acct1"):
        assert authorize(assignment, permission, scope) is expected


@pytest.mark.parametrize(("role", "permission"), CASES)
def test_endpoint_assignment_grants_only_on_that_endpoint(role: str, permission: str) -> None:
    assignment = [RoleAssignment("p1", role, "endpoint:e1")]
    assert authorize(assignment, permission, "endpoint:e1") is (permission in EXPECTED[role])
    assert authorize(assignment, permission, "endpoint:e2") is False
    assert authorize(assignment, permission, "workspace") is False


def test_owner_has_everything() -> None:
    assert ROLES["Owner"] == ALL_PERMISSIONS


def test_contributor_lacks_only_owner_and_data_plane_rights() -> None:
    assert ALL_PERMISSIONS - ROLES["Contributor"] == {
        perms.ROLES_WRITE, perms.DATASTORES_SECRETS_READ, perms.AUDIT_READ, perms.DATA_READ
    }
    assert perms.DATA_WRITE in ROLES["Contributor"]  # may direct job outputs anywhere but reserved areas


def test_invoker_exact() -> None:
    assert ROLES["Invoker"] == {
        "endpoints/read", "endpoints/invoke", "deployments/read", "jobs/read_own", "workspace/read"
    }


def test_reader_is_every_read_except_secrets_data_and_audit() -> None:
    reads = {p for p in ALL_PERMISSIONS if p.endswith("/read") or p == perms.JOBS_READ_OWN}
    assert ROLES["Reader"] == reads - {"datastores/secrets/read", "data/read", "audit/read", "jobs/outputs/read"}
    assert not any(p.endswith(("/write", "/invoke", "/cancel")) for p in ROLES["Reader"])


def test_data_reader_is_only_data_read() -> None:
    assert ROLES["DataReader"] == {"data/read"}


def test_every_permission_is_granted_by_some_role_and_constants_match() -> None:
    constants = {v for k, v in vars(perms).items() if k.isupper() and isinstance(v, str)}
    assert constants == ALL_PERMISSIONS
    for permission in ALL_PERMISSIONS:
        assert roles_granting(permission)
        assert re.fullmatch(r"[a-z]+(/[a-z_]+)+", permission)


@pytest.mark.parametrize("role", [r for r in ROLES if perms.JOBS_READ in ROLES[r]])
def test_jobs_read_implies_read_own(role: str) -> None:
    assert perms.JOBS_READ_OWN in ROLES[role]


def test_roles_granting_least_privileged_first() -> None:
    assert roles_granting("data/read") == ["DataReader", "DataWriter", "Owner"]
    assert roles_granting("data/write") == ["DataWriter", "Contributor", "Owner"]
    assert roles_granting("jobs/outputs/read") == ["Contributor", "Owner"]
    assert roles_granting("endpoints/invoke")[0] == "Invoker"
    assert roles_granting("roles/write") == ["Owner"]
    assert roles_granting("models/read")[0] == "Reader"


def test_unknown_role_lists_valid_roles() -> None:
    with pytest.raises(ValidationError, match="unknown role 'Admin'.*Owner, Contributor"):
        role_permissions("Admin")
    with pytest.raises(ValidationError):
        RoleAssignment("p1", "owner", "workspace")  # case-sensitive


def test_unknown_permission_is_an_internal_error_not_a_403() -> None:
    with pytest.raises(BatchpointError, match="unknown permission 'endpoint/invoke'") as info:
        authorize([RoleAssignment("p1", "Owner")], "endpoint/invoke", "workspace")
    assert not isinstance(info.value, PermissionDeniedError)
    assert info.value.status_code == 500
    require_known_permission("jobs/cancel")


def _documented_table() -> dict[str, set[str]]:
    doc = perms.__doc__ or ""
    header = next(line for line in doc.splitlines() if line.strip().startswith("permission "))
    columns = [(m.group(), m.start()) for m in re.finditer(r"[A-Z]\w+", header)]
    table: dict[str, set[str]] = {name: set() for name, _ in columns}
    for line in doc.split(header, 1)[1].splitlines():
        match = re.match(r"\s+([a-z_]+(?:/[a-z_]+)+)\s", line)
        if not match:
            continue
        for name, start in columns:
            if line[start:start + len(name)].strip() == "x":
                table[name].add(match.group(1))
    return table


def test_module_docstring_table_matches_roles() -> None:
    table = _documented_table()
    assert set(table) == set(ROLES)
    for role, granted in table.items():
        assert granted == ROLES[role], role
