"""Acceptance (Security 1): anonymous, Reader, Invoker, Contributor, Owner × every route.

The expected status is computed from the role table (``batchpoint.auth.permissions.ROLES``) and
the permission each route declares — nothing is listed by hand per case. A request that passes
authorization may still fail later (404 for a made-up name, 400 for an empty body); the test only
asserts what authorization decides: 401, 403, or "got past the check" (anything else).
"""

from __future__ import annotations

import re

import httpx
import pytest

from batchpoint.auth.permissions import ROLES
from batchpoint.server.app import create_app
from batchpoint.server.security import OPEN_PATHS
from conftest import record_secret

ROLES_UNDER_TEST = ["Reader", "Invoker", "Contributor", "Owner"]
ENDPOINT = "matrix-ep"


def _flatten(routes, prefix=""):
    """Routes of the app, looking inside included routers (FastAPI includes them lazily)."""
    for route in routes:
        inner = getattr(route, "original_router", None)
        if inner is not None:
            yield from _flatten(inner.routes, prefix + route.include_context.prefix)
        else:
            yield prefix, route


def _routes():
    """(method, path template, permission) for every route of the real app."""
    app = create_app()
    out = []
    for prefix, route in _flatten(app.routes):
        methods = getattr(route, "methods", None) or set()
        path = prefix + getattr(route, "path", "")
        if not methods or path in OPEN_PATHS:
            continue
        deps = [d.call for d in route.dependant.dependencies] if hasattr(route, "dependant") else []
        perms = [getattr(c, "permission", None) for c in deps if getattr(c, "permission", None)]
        scopes = [getattr(c, "scope_name", None) for c in deps if getattr(c, "permission", None)]
        for method in sorted(methods - {"HEAD"} if "GET" in methods else methods):
            out.append((method, path, perms[0] if perms else None, scopes[0] if scopes else None))
    return out


ROUTES = _routes()


def test_every_route_declares_a_permission():
    missing = [(m, p) for m, p, perm, _ in ROUTES if perm is None]
    assert not missing, f"routes without a declared permission: {missing}"


def _fill(path: str) -> str:
    values = {"name": ENDPOINT, "endpoint": ENDPOINT, "version": "1", "path": "LocalUpload/x/y.csv",
              "principal_id": "user:nobody", "key_id": "nokey", "assignment_id": "999999", "output_name": "score",
              "log_name": "worker-0.log"}

    def sub(match: re.Match) -> str:
        key = match.group(1).split(":")[0]
        return values.get(key, "x")

    return re.sub(r"\{([^}]+)\}", sub, path)


@pytest.fixture(scope="module")
def owner_job(ml_client, heart_model_dir):
    """A real job started by the owner, for the /jobs/{name} routes."""
    from batchpoint import BatchDeployment, BatchEndpoint, Data, Input, Model
    from conftest import HEART_UNLABELED

    ml_client.models.create_or_update(Model(name="matrix-model", path=str(heart_model_dir), type="mlflow_model"))
    data = ml_client.data.create_or_update(Data(name="matrix-data", path=str(HEART_UNLABELED), type="uri_folder"))
    ml_client.batch_endpoints.begin_create_or_update(BatchEndpoint(name="matrix-jobs")).result()
    ml_client.batch_deployments.begin_create_or_update(BatchDeployment(
        name="main", endpoint_name="matrix-jobs", model="azureml:matrix-model@latest"), set_default=True)
    job = ml_client.batch_endpoints.invoke(endpoint_name="matrix-jobs", input=Input(path=data.id))
    return ml_client.jobs.wait(job.name).name


@pytest.fixture(scope="module")
def principals(server, ml_client):
    """One principal per role (workspace scope), each with its own API key."""
    keys = {}
    for role in ROLES_UNDER_TEST:
        pid = f"user:matrix-{role.lower()}"
        ml_client.principals.create(pid)
        ml_client.role_assignments.create(pid, role, "workspace")
        keys[role] = record_secret(ml_client.principals.create_key(pid)["key"])
    return keys


def _expected(role: str | None, permission: str, path: str, scope: str | None = None) -> str:
    if role is None:
        return "401"
    granted = ROLES[role]
    if scope == "job_reader":  # someone else's job: jobs/read_own is not enough
        return "pass" if "jobs/read" in granted else "403"
    if permission in granted:
        return "pass"
    if permission == "jobs/read_own" and "jobs/read" in granted:
        return "pass"
    return "403"


@pytest.mark.parametrize("method,path,permission,scope", ROUTES, ids=[f"{m} {p}" for m, p, _, _ in ROUTES])
@pytest.mark.parametrize("role", [None, *ROLES_UNDER_TEST], ids=["anonymous", *ROLES_UNDER_TEST])
def test_route_authorization(server, principals, owner_job, role, method, path, permission, scope):
    url = _fill(path)
    if path.startswith("/jobs/{name}"):
        url = url.replace(f"/jobs/{ENDPOINT}", f"/jobs/{owner_job}")
    if "/files/" in path:
        url = url.replace(f"/datastores/{ENDPOINT}/", "/datastores/workspaceblobstore/")
    headers = {"Authorization": f"Bearer {principals[role]}"} if role else {}
    with httpx.Client(base_url=server.url, timeout=30) as http:
        response = http.request(method, url, headers=headers, json={} if method in ("POST", "PUT", "PATCH") else None)
    expected = _expected(role, permission, path, scope)
    if path.endswith("/files/{path:path}") and method in ("PUT", "HEAD") and role == "Invoker":
        expected = "pass"  # invokers upload local inputs under LocalUpload/ of the default store
    got = str(response.status_code)
    if expected == "pass":
        assert got not in ("401", "403"), f"{role} {method} {url}: {got} {response.text}"
    else:
        assert got == expected, f"{role} {method} {url}: expected {expected}, got {got} {response.text}"
        if got == "403" and method != "HEAD":
            assert permission.removesuffix("_own") in response.json()["error"]["message"]


def test_unknown_and_revoked_keys_are_401(server, ml_client):
    with httpx.Client(base_url=server.url, timeout=30) as http:
        assert http.get("/workspace", headers={"Authorization": "Bearer bpk_nope_nope"}).status_code == 401
        ml_client.principals.create("user:revoked")
        ml_client.role_assignments.create("user:revoked", "Reader")
        made = ml_client.principals.create_key("user:revoked")
        good = {"Authorization": f"Bearer {made['key']}"}
        assert http.get("/workspace", headers=good).status_code == 200
        ml_client.principals.revoke_key("user:revoked", made["key_id"])
        response = http.get("/workspace", headers=good)
        assert response.status_code == 401
        assert "revoked" in response.json()["error"]["message"]
        assert http.get("/health").status_code == 200
        assert http.get("/openapi.json").status_code == 200
