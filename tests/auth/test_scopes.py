"""Scopes, assignments, and the 403 messages."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from batchpoint.auth import (
    Principal,
    RoleAssignment,
    Scope,
    authorize,
    check,
    check_data_read,
    check_job_read,
    missing_permission_error,
    parse_scope,
)
from batchpoint.exceptions import PermissionDeniedError, ValidationError

ALICE = Principal("alice", "user", "Alice")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("workspace", Scope("workspace")),
        ("  Workspace ", Scope("workspace")),
        ("endpoint:score-1", Scope("endpoint", "score-1")),
        ("Endpoint:Score", Scope("endpoint", "Score")),
        ("datastore:workspaceblobstore", Scope("datastore", "workspaceblobstore")),
        ("storageaccount:MyAcct", Scope("storageaccount", "myacct")),
    ],
)
def test_parse_scope(text: str, expected: Scope) -> None:
    assert parse_scope(text) == expected
    assert parse_scope(str(expected)) == expected


@pytest.mark.parametrize(
    "text",
    ["", "workspace:x", "endpoint:", "endpoint", "endpoint:a/b", "endpoint:../x", "job:x",
     "datastore:-x", "endpoint:a b", "storageaccount:" + "a" * 300],
)
def test_parse_scope_rejects(text: str) -> None:
    with pytest.raises(ValidationError, match="invalid scope.*endpoint:<name>"):
        parse_scope(text)


@given(st.sampled_from(["endpoint", "datastore", "storageaccount"]),
       st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,30}", fullmatch=True))
def test_parse_scope_roundtrip(kind: str, name: str) -> None:
    scope = parse_scope(f"{kind}:{name}")
    assert parse_scope(str(scope)) == scope
    assert scope.kind == kind


def test_assignment_normalises_and_validates() -> None:
    assert RoleAssignment("p", "Reader", "Endpoint:e").scope == "endpoint:e"
    assert RoleAssignment("p", "Reader").scope == "workspace"
    assert RoleAssignment("p", "Reader", "endpoint:e").parsed_scope == Scope("endpoint", "e")
    with pytest.raises(ValidationError):
        RoleAssignment("", "Reader")
    with pytest.raises(ValidationError):
        RoleAssignment("p", "Reader", "everything")


def test_coverage_is_exact_except_workspace() -> None:
    ws = Scope("workspace")
    assert ws.covers(Scope("endpoint", "a")) and ws.covers(ws)
    assert not Scope("endpoint", "a").covers(Scope("endpoint", "b"))
    assert not Scope("endpoint", "a").covers(ws)
    assert not Scope("datastore", "a").covers(Scope("storageaccount", "a"))
    assert not Scope("storageaccount", "a").covers(Scope("datastore", "a"))


def test_check_raises_403_naming_principal_permission_scope_and_fix() -> None:
    with pytest.raises(PermissionDeniedError) as info:
        check([RoleAssignment("alice", "Reader")], ALICE, "endpoints/invoke", "endpoint:score")
    err = info.value
    assert err.status_code == 403 and err.code == "permission_denied"
    assert "'alice'" in err.message and "'endpoints/invoke'" in err.message
    assert "'endpoint:score'" in err.message
    assert ("batchpoint role assignment create --role Invoker --assignee alice "
            "--scope endpoint:score") in err.message
    assert err.details == {"principal_id": "alice", "permission": "endpoints/invoke",
                           "scope": "endpoint:score", "roles": ["Invoker", "Contributor", "Owner"]}


def test_check_passes_and_ignores_other_principals_assignments() -> None:
    everyone = [RoleAssignment("bob", "Owner"), RoleAssignment("alice", "Invoker", "endpoint:e")]
    check(everyone, ALICE, "endpoints/invoke", "endpoint:e")
    check(everyone, "bob", "roles/write", "workspace")
    with pytest.raises(PermissionDeniedError, match="'alice' lacks permission 'roles/write'"):
        check(everyone, ALICE, "roles/write", "workspace")
    with pytest.raises(PermissionDeniedError):
        check(everyone, ALICE, "endpoints/invoke", "endpoint:other")


def test_authorize_with_no_assignments_is_false() -> None:
    assert authorize([], "workspace/read", "workspace") is False


def test_missing_permission_error_accepts_ids() -> None:
    err = missing_permission_error("sp-1", "audit/read", "workspace")
    assert isinstance(err, PermissionDeniedError)
    assert "--role Owner --assignee sp-1 --scope workspace" in err.message


def test_check_data_read_datastore_or_account() -> None:
    on_store = [RoleAssignment("alice", "DataReader", "datastore:raw")]
    on_account = [RoleAssignment("alice", "DataReader", "storageaccount:acct")]
    check_data_read(on_store, ALICE, datastore="raw", storage_account="acct")
    check_data_read(on_account, ALICE, datastore="raw", storage_account="ACCT")
    check_data_read(on_account, ALICE, storage_account="acct")
    check_data_read([RoleAssignment("alice", "Owner")], ALICE, datastore="raw")
    with pytest.raises(PermissionDeniedError, match="--role DataReader --assignee alice "
                                                    "--scope datastore:raw"):
        check_data_read([RoleAssignment("alice", "Contributor")], ALICE, datastore="raw",
                        storage_account="acct")
    with pytest.raises(PermissionDeniedError, match="scope storageaccount:other"):
        check_data_read(on_account, ALICE, storage_account="other")
    with pytest.raises(ValidationError):
        check_data_read(on_store, ALICE)


def test_check_job_read() -> None:
    invoker = [RoleAssignment("alice", "Invoker", "endpoint:e")]
    check_job_read(invoker, ALICE, "alice", "endpoint:e")
    with pytest.raises(PermissionDeniedError, match="'jobs/read' on scope 'endpoint:e'"):
        check_job_read(invoker, ALICE, "bob", "endpoint:e")
    check_job_read([RoleAssignment("alice", "Reader")], ALICE, "bob", "endpoint:e")
    with pytest.raises(PermissionDeniedError, match="'jobs/read_own'"):
        check_job_read([], ALICE, "alice", "endpoint:e")
    with pytest.raises(PermissionDeniedError, match="'jobs/read'"):
        check_job_read(invoker, ALICE, "", "endpoint:e")
