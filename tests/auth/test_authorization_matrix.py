"""Acceptance (Security 1): every route × anonymous, Reader, Invoker, Contributor, Owner, DataReader.

Two tables are written down here BY HAND, never read from the app:

* ``ROLE_TABLE`` — which permissions each role has (copied from the permission model);
* ``ROUTES`` — what each route needs: (method, path template, permission, where it applies).

The expected answer of every case is computed from those two tables and the one role assignment of
the caller (``WHO``):

* anonymous → 401;
* lacking the permission on the scope the call acts on → 403, the message naming the permission,
  and a refused change leaves its resource as it was;
* otherwise the call must SUCCEED: the exact 2xx status, on a resource the case made for it, with
  a body (and an effect) that shows it did what was asked.

``CASES`` holds one small function per route (a few routes have two variants: the Owner's job and
the Invoker's job) that creates what the call acts on and returns the :class:`Call`. The shared
resources (model, data, endpoint + deployment, a job of the Owner and one of the Invoker) are made
once per module. ``test_hand_table_matches_the_app`` walks the real app, so a new route without an
entry here fails. The lists are also checked for WHAT each role sees (jobs: only one's own unless
``jobs/read`` on the workspace). Where an invoke may write its output — role × data store location —
is the matrix of ``tests/auth/test_output_locations.py``.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import time
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from conftest import HEART_UNLABELED, deploy_heart, record_secret, wait_job

# ---- the role table, copied from the permission model (x = granted) ---------------------------

ROLE_TABLE = """
permission                 Owner  Contributor  Invoker  Reader  DataReader  DataWriter
workspace/read               x        x           x       x
datastores/read              x        x                   x
datastores/write             x        x
datastores/secrets/read      x
data/read                    x                                       x          x
data/write                   x        x                                         x
assets/read                  x        x                   x
assets/write                 x        x
models/read                  x        x                   x
models/write                 x        x
computes/read                x        x                   x
computes/write               x        x
endpoints/read               x        x           x       x
endpoints/write              x        x
endpoints/invoke             x        x           x
deployments/read             x        x           x       x
deployments/write            x        x
jobs/read                    x        x                   x
jobs/read_own                x        x           x       x
jobs/outputs/read            x        x
jobs/cancel                  x        x
roles/read                   x        x                   x
roles/write                  x
audit/read                   x
"""


def _parse_role_table(text: str) -> dict[str, set[str]]:
    """{role: permissions}: an ``x`` belongs to the column whose heading starts at or before it."""
    header, *rows = [line for line in text.splitlines() if line.strip()]
    columns = [(m.start(), m.group()) for m in re.finditer(r"\S+", header)][1:]
    grants: dict[str, set[str]] = {role: set() for _, role in columns}
    for row in rows:
        permission = row.split()[0]
        for mark in re.finditer(r"x", row[len(permission):]):
            at = mark.start() + len(permission)
            grants[[role for start, role in columns if start <= at][-1]].add(permission)
    return grants


GRANTS = _parse_role_table(ROLE_TABLE)

ENDPOINT = "matrix-ep"
DEPLOYMENT = "mlflow"  # deploy_heart's deployment name
MODEL = "heart-classifier"  # deploy_heart's model name
DATA = "matrix-data"
COMPUTE = "matrix-cpu"
STORE = "matrixstore"  # a local data store made by the module
DEFAULT_STORE = "workspaceblobstore"
HELLO_PATH, HELLO = "matrix/hello.txt", b"hello, matrix\n"

#: The callers under test: name → (role, scope of their one assignment). None is anonymous.
WHO: dict[str, tuple[str, str]] = {
    "Reader": ("Reader", "workspace"),
    "Invoker": ("Invoker", f"endpoint:{ENDPOINT}"),
    "Contributor": ("Contributor", "workspace"),
    "Owner": ("Owner", "workspace"),
    "DataReader": ("DataReader", f"datastore:{DEFAULT_STORE}"),
}
CALLERS = [None, *WHO]


def pid(who: str) -> str:
    return f"user:matrix-{who.lower()}"


def has(who: str, permission: str, scope: str | None = None) -> bool:
    """Whether ``who`` has ``permission`` on ``scope`` (None: on any scope), by the tables above."""
    role, at = WHO[who]
    return permission in GRANTS[role] and (scope is None or at == "workspace" or at == scope)


# ---- the route table, by hand --------------------------------------------------------------------
# where: "workspace" | "endpoint" (the endpoint in the URL) | "datastore" (the data store in the URL)
#   | "job" (the job's endpoint; or jobs/read_own for a job the caller started)
#   | "any" (the permission on any scope) | "upload" (datastores/write on the default data store, or
#   endpoints/invoke on any scope) | "open" (no authentication)

ROUTES: list[tuple[str, str, str | None, str]] = [
    ("GET", "/health", None, "open"),
    ("GET", "/openapi.json", None, "open"),
    ("GET", "/docs", None, "open"),
    ("GET", "/docs/oauth2-redirect", None, "open"),
    ("GET", "/redoc", None, "open"),
    ("GET", "/workspace", "workspace/read", "workspace"),
    ("GET", "/datastores", "datastores/read", "workspace"),
    ("GET", "/defaultDatastore", "datastores/read", "workspace"),
    ("GET", "/datastores/{name}", "datastores/read", "datastore"),
    ("PUT", "/datastores/{name}", "datastores/write", "datastore"),
    ("POST", "/datastores/{name}/listSecrets", "datastores/secrets/read", "datastore"),
    ("GET", "/datastores/{name}/files/{path:path}", "data/read", "datastore"),
    ("HEAD", "/datastores/{name}/files/{path:path}", "data/read", "datastore"),
    ("PUT", "/datastores/{name}/files/{path:path}", "datastores/write", "datastore"),
    ("POST", "/uploads", "datastores/write", "upload"),
    ("GET", "/uploads/{upload_id}", "datastores/write", "upload"),
    ("PUT", "/uploads/{upload_id}/files/{path:path}", "datastores/write", "upload"),
    ("POST", "/uploads/{upload_id}/commit", "datastores/write", "upload"),
    ("GET", "/data", "assets/read", "workspace"),
    ("GET", "/data/{name}", "assets/read", "workspace"),
    ("GET", "/data/{name}/versions/{version}", "assets/read", "workspace"),
    ("POST", "/data/{name}/versions", "assets/write", "workspace"),
    ("GET", "/models", "models/read", "workspace"),
    ("GET", "/models/{name}", "models/read", "workspace"),
    ("GET", "/models/{name}/versions/{version}", "models/read", "workspace"),
    ("POST", "/models/{name}/versions", "models/write", "workspace"),
    ("GET", "/environments", "assets/read", "workspace"),
    ("GET", "/environments/{name}", "assets/read", "workspace"),
    ("GET", "/environments/{name}/versions/{version}", "assets/read", "workspace"),
    ("POST", "/environments/{name}/versions", "assets/write", "workspace"),
    ("DELETE", "/environments/{name}/versions/{version}", "assets/write", "workspace"),
    ("GET", "/environment-builds", "assets/read", "workspace"),
    ("POST", "/environment-builds/prune", "assets/write", "workspace"),
    ("GET", "/computes", "computes/read", "workspace"),
    ("GET", "/computes/{name}", "computes/read", "workspace"),
    ("PUT", "/computes/{name}", "computes/write", "workspace"),
    ("GET", "/batchEndpoints", "endpoints/read", "any"),  # lists what the caller may read (an endpoint-scoped role: its endpoints)
    ("GET", "/batchEndpoints/{name}", "endpoints/read", "endpoint"),
    ("PUT", "/batchEndpoints/{name}", "endpoints/write", "endpoint"),
    ("PATCH", "/batchEndpoints/{name}", "endpoints/write", "endpoint"),
    ("DELETE", "/batchEndpoints/{name}", "endpoints/write", "endpoint"),
    ("POST", "/batchEndpoints/{name}/invoke", "endpoints/invoke", "endpoint"),
    ("GET", "/batchEndpoints/{name}/jobs", "endpoints/read", "endpoint"),
    ("GET", "/batchEndpoints/{endpoint}/deployments", "deployments/read", "endpoint"),
    ("GET", "/batchEndpoints/{endpoint}/deployments/{name}", "deployments/read", "endpoint"),
    ("PUT", "/batchEndpoints/{endpoint}/deployments/{name}", "deployments/write", "endpoint"),
    ("PATCH", "/batchEndpoints/{endpoint}/deployments/{name}", "deployments/write", "endpoint"),
    ("DELETE", "/batchEndpoints/{endpoint}/deployments/{name}", "deployments/write", "endpoint"),
    ("GET", "/batchEndpoints/{endpoint}/deployments/{name}/jobs", "deployments/read", "endpoint"),
    ("GET", "/jobs", "jobs/read_own", "any"),
    ("GET", "/jobs/{name}", "jobs/read", "job"),
    ("GET", "/jobs/{name}/events", "jobs/read", "job"),
    ("GET", "/jobs/{name}/events/stream", "jobs/read", "job"),
    ("GET", "/jobs/{name}/logs", "jobs/read", "job"),
    ("GET", "/jobs/{name}/logs/{log_name}", "jobs/outputs/read", "job"),
    ("GET", "/jobs/{name}/outputs/{output_name}", "jobs/outputs/read", "job"),
    ("GET", "/jobs/{name}/outputs/{output_name}/files/{path:path}", "jobs/outputs/read", "job"),
    ("POST", "/jobs/{name}/cancel", "jobs/cancel", "endpoint"),
    ("POST", "/jobs/{name}/rerun", "endpoints/invoke", "endpoint"),
    ("GET", "/metrics", "jobs/read", "workspace"),  # the web page (/ui) is a mount with its own checks: tests/server/test_web_ui.py
    ("GET", "/principals", "roles/read", "workspace"),
    ("POST", "/principals", "roles/write", "workspace"),
    ("GET", "/principals/{principal_id}/keys", "roles/read", "workspace"),
    ("POST", "/principals/{principal_id}/keys", "roles/write", "workspace"),
    ("DELETE", "/principals/{principal_id}/keys/{key_id}", "roles/write", "workspace"),
    ("GET", "/roleAssignments", "roles/read", "workspace"),
    ("POST", "/roleAssignments", "roles/write", "workspace"),
    ("DELETE", "/roleAssignments/{assignment_id}", "roles/write", "workspace"),
    ("GET", "/auditLog", "audit/read", "workspace"),
]
ROUTE = {(method, path): (permission, where) for method, path, permission, where in ROUTES}


@dataclass
class Call:
    """One request of a case, and what must hold afterwards."""

    method: str
    url: str
    status: int = 200  # the answer when allowed
    scope: str = "workspace"  # where the call acts: the scope the permission is checked on
    started_by: str | None = None  # job routes: who started the job
    json: Any = None
    content: bytes | None = None
    check: Callable[[httpx.Response], None] | None = None  # allowed: the body and effect are right
    intact: Callable[[], None] | None = None  # refused: nothing changed


def allowed(who: str, where: str, permission: str, call: Call) -> bool:
    if where == "open":
        return True
    if where == "any":
        return has(who, permission)
    if where == "upload":
        return has(who, "datastores/write", f"datastore:{DEFAULT_STORE}") or has(who, "endpoints/invoke")
    if where == "job" and call.started_by == who and has(who, "jobs/read_own", call.scope):
        return True
    return has(who, permission, call.scope)


# ---- the shared world ------------------------------------------------------------------------------

SECRET_FIELDS = {"account_key", "sas_token", "client_secret", "connection_string", "secret_access_key",
                 "aws_secret_access_key", "aws_session_token", "password", "token", "secrets", "key"}
_serial = itertools.count(1)


def fresh(prefix: str) -> str:
    return f"{prefix}-{next(_serial)}"


def no_secret_fields(value: Any, where: str = "body") -> None:
    """No secret-looking field anywhere in a data store body (credentials are write-only)."""
    if isinstance(value, dict):
        for key, inner in value.items():
            lowered = key.lower()
            assert lowered not in SECRET_FIELDS and "secret" not in lowered and "password" not in lowered, \
                f"{where} has a secret field '{key}'"
            no_secret_fields(inner, f"{where}.{key}")
    elif isinstance(value, list):
        for item in value:
            no_secret_fields(item, where)


class World:
    """The module's shared resources, and HTTP as any caller (``admin`` is the server's owner key)."""

    def __init__(self, server, keys: dict[str, str]) -> None:
        self.server = server
        self.keys = keys
        self.clients = {who: httpx.Client(base_url=server.url, timeout=60, headers=self._auth(who))
                        for who in [None, "admin", *WHO]}
        self.owner_job = self.invoker_job = ""
        self.logs: dict[str, str] = {}
        self.model_path = ""
        self.keyed_secret: str | None = None
        self.stores: Any = None  # a tmp folder for local data stores

    def _auth(self, who: str | None) -> dict[str, str]:
        if who is None:
            return {}
        if who == "admin":
            return self.server.auth_headers()
        return {"Authorization": f"Bearer {self.keys[who]}"}

    def call(self, who: str | None, method: str, url: str, **kw: Any) -> httpx.Response:
        return self.clients[who].request(method, url, **kw)

    def admin(self, method: str, url: str, expect: int = 200, **kw: Any) -> httpx.Response:
        response = self.call("admin", method, url, **kw)
        assert response.status_code == expect, f"setup {method} {url}: {response.status_code} {response.text}"
        return response

    def status_of(self, url: str) -> int:
        return self.call("admin", "GET", url).status_code

    def caller_of(self, response: httpx.Response) -> str:
        """The principal whose key sent ``response``'s request."""
        sent = response.request.headers["authorization"].removeprefix("Bearer ")
        return next(pid(who) for who, key in self.keys.items() if key == sent)

    def close(self) -> None:
        for client in self.clients.values():
            client.close()

    # -- things a case makes ------------------------------------------------------------------
    def endpoint(self) -> str:
        name = fresh("mx-ep")
        self.admin("PUT", f"/batchEndpoints/{name}", json={})
        return name

    def deployment(self) -> str:
        name = fresh("mx-dep")
        self.admin("PUT", f"/batchEndpoints/{ENDPOINT}/deployments/{name}", json={"model": f"azureml:{MODEL}@latest"})
        return name

    def principal(self) -> str:
        principal = f"user:{fresh('mx-p')}"
        self.admin("POST", "/principals", 201, json={"id": principal})
        return principal

    def job(self, who: str) -> str:
        response = self.call(who, "POST", f"/batchEndpoints/{ENDPOINT}/invoke", json=invoke_body())
        assert response.status_code == 202, response.text
        return response.json()["name"]

    def declare(self) -> tuple[str, str, bytes]:
        """A fresh upload (unique content), declared by the admin: (id, file name, bytes)."""
        data = f"a,b\n{next(_serial)},{os.urandom(8).hex()}\n".encode()
        name = f"mx-{hashlib.sha256(data).hexdigest()[:12]}.csv"
        body = self.admin("POST", "/uploads", json=manifest(name, data)).json()
        assert body["status"] == "Pending", body
        return body["id"], name, data


def invoke_body() -> dict[str, Any]:
    return {"properties": {"InputData": {"heart": {"JobInputType": "UriFolder", "Uri": f"azureml:{DATA}@latest"}}}}


def manifest(name: str, data: bytes) -> dict[str, Any]:
    return {"name": name, "type": "uri_file",
            "files": [{"path": name, "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}]}


def _keyed_store(world: World) -> None:
    """With the suite's Azurite running: a data store holding an account key, so 'no secret in
    GET /datastores' is checked against a real secret (running this file alone: skipped)."""
    blob_url = os.environ.get("BATCHPOINT_TEST_AZURITE_BLOB_URL")
    connection = os.environ.get("BATCHPOINT_TEST_AZURITE_CONNECTION_STRING")
    if not (blob_url and connection):
        return
    from azure.core.exceptions import ResourceExistsError
    from azure.storage.blob import BlobServiceClient

    from fixtures.components import AZURITE_ACCOUNT_KEY, AZURITE_ACCOUNT_NAME

    with BlobServiceClient.from_connection_string(connection) as service:
        try:
            service.create_container("matrix-keyed")
        except ResourceExistsError:
            pass
    world.admin("PUT", "/datastores/matrixkeyed", json={
        "type": "azure_blob", "account_name": AZURITE_ACCOUNT_NAME, "container_name": "matrix-keyed",
        "blob_endpoint_url": blob_url, "allow_private_network": True,
        "credentials": {"account_key": AZURITE_ACCOUNT_KEY}})
    world.keyed_secret = AZURITE_ACCOUNT_KEY


@pytest.fixture(scope="module")
def world(server, ml_client, heart_model_dir, tmp_path_factory):
    from batchpoint import AmlCompute, Data

    keys = {}
    for who, (role, scope) in WHO.items():
        ml_client.principals.create(pid(who))
        ml_client.role_assignments.create(pid(who), role, scope)
        keys[who] = record_secret(ml_client.principals.create_key(pid(who))["key"])
    w = World(server, keys)
    assert w.admin("GET", "/defaultDatastore").json()["name"] == DEFAULT_STORE
    deploy_heart(ml_client, ENDPOINT, heart_model_dir)
    ml_client.data.create_or_update(Data(name=DATA, path=str(HEART_UNLABELED), type="uri_folder"))
    ml_client.compute.begin_create_or_update(AmlCompute(name=COMPUTE, max_instances=1)).result()
    w.stores = tmp_path_factory.mktemp("matrix-stores")
    w.admin("PUT", f"/datastores/{STORE}", json={"type": "local", "path": str(w.stores / STORE)})
    w.admin("PUT", f"/datastores/{DEFAULT_STORE}/files/{HELLO_PATH}", content=HELLO)
    _keyed_store(w)
    # the model's files in a plain folder of the store: the registered model's own path is the admin's
    # upload, which a Contributor may not register again (no data/read; docs/security.md, the upload area)
    for file in sorted(p for p in heart_model_dir.rglob("*") if p.is_file()):
        rel = file.relative_to(heart_model_dir).as_posix()
        w.admin("PUT", f"/datastores/{DEFAULT_STORE}/files/matrix/heart-model/{rel}", content=file.read_bytes())
    w.model_path = f"azureml://datastores/{DEFAULT_STORE}/paths/matrix/heart-model"
    w.owner_job, w.invoker_job = w.job("Owner"), w.job("Invoker")
    for job in (w.owner_job, w.invoker_job):
        assert wait_job(ml_client, job).status == "Completed"
        logs = w.admin("GET", f"/jobs/{job}/logs").json()["logs"]
        assert logs, f"job {job} wrote no logs"
        w.logs[job] = logs[0]["name"]
    yield w
    w.close()


# ---- one case per route (and per job, for the job routes) ------------------------------------------

CaseFn = Callable[[World], Call]
CASES: dict[tuple[str, str, str], CaseFn] = {}


def case(method: str, path: str, *variants: str) -> Callable[[CaseFn], CaseFn]:
    def register(fn: CaseFn) -> CaseFn:
        for variant in variants or ("",):
            CASES[(method, path, variant)] = fn if not variant else (lambda w, v=variant: fn(w, v))
        return fn
    return register


def body_is(**expected: Any) -> Callable[[httpx.Response], None]:
    def check(response: httpx.Response) -> None:
        body = response.json()
        for key, value in expected.items():
            assert body.get(key) == value, f"{key}: {body.get(key)!r} != {value!r} in {body}"
    return check


def lists(key: str, *wanted: str) -> Callable[[httpx.Response], None]:
    """A list body holding (at least) the items whose ``key`` is one of ``wanted``."""
    def check(response: httpx.Response) -> None:
        got = {item[key] for item in response.json()}
        assert set(wanted) <= got, f"missing {set(wanted) - got} in {sorted(got)}"
    return check


def gone(w: World, url: str) -> Callable[[Any], None]:
    return lambda *_: assert_status(w, url, 404)


def still_there(w: World, url: str) -> Callable[[], None]:
    return lambda: assert_status(w, url, 200)


def assert_status(w: World, url: str, status: int) -> None:
    got = w.status_of(url)
    assert got == status, f"GET {url} (admin) is {got}, expected {status}"


def both(*checks: Callable[[httpx.Response], None]) -> Callable[[httpx.Response], None]:
    def check(response: httpx.Response) -> None:
        for fn in checks:
            fn(response)
    return check


def text_has(word: str) -> Callable[[httpx.Response], None]:
    def check(response: httpx.Response) -> None:
        assert word in response.text.lower(), response.text[:300]
    return check


# open routes
case("GET", "/health")(lambda w: Call("GET", "/health", check=body_is(status="ok")))
case("GET", "/openapi.json")(lambda w: Call("GET", "/openapi.json", check=text_has('"/batchendpoints"')))
case("GET", "/docs")(lambda w: Call("GET", "/docs", check=text_has("swagger")))
case("GET", "/docs/oauth2-redirect")(lambda w: Call("GET", "/docs/oauth2-redirect", check=text_has("oauth2")))
case("GET", "/redoc")(lambda w: Call("GET", "/redoc", check=text_has("redoc")))


# workspace and data stores
@case("GET", "/workspace")
def _(w):
    return Call("GET", "/workspace", check=body_is(default_datastore=DEFAULT_STORE))


@case("GET", "/datastores")
def _(w):
    def check(r):
        lists("name", DEFAULT_STORE, STORE, *(["matrixkeyed"] if w.keyed_secret else []))(r)
        no_secret_fields(r.json())
        assert not w.keyed_secret or w.keyed_secret not in r.text
    return Call("GET", "/datastores", check=check)


@case("GET", "/defaultDatastore")
def _(w):
    return Call("GET", "/defaultDatastore", check=both(body_is(name=DEFAULT_STORE), lambda r: no_secret_fields(r.json())))


@case("GET", "/datastores/{name}")
def _(w):
    return Call("GET", f"/datastores/{STORE}", scope=f"datastore:{STORE}",
                check=both(body_is(name=STORE, type="local"), lambda r: no_secret_fields(r.json())))


@case("PUT", "/datastores/{name}")
def _(w):
    name = fresh("mxstore")
    return Call("PUT", f"/datastores/{name}", scope=f"datastore:{name}",
                json={"type": "local", "path": str(w.stores / name)},
                check=both(body_is(name=name, type="local"), lambda r: assert_status(w, f"/datastores/{name}", 200)),
                intact=gone(w, f"/datastores/{name}"))


@case("POST", "/datastores/{name}/listSecrets")
def _(w):
    return Call("POST", f"/datastores/{STORE}/listSecrets", scope=f"datastore:{STORE}",
                check=body_is(credential_kind="none", secrets={}))


@case("GET", "/datastores/{name}/files/{path:path}")
def _(w):
    def check(r):
        assert r.content == HELLO
    return Call("GET", f"/datastores/{DEFAULT_STORE}/files/{HELLO_PATH}", scope=f"datastore:{DEFAULT_STORE}",
                check=check)


@case("HEAD", "/datastores/{name}/files/{path:path}")
def _(w):
    return Call("HEAD", f"/datastores/{DEFAULT_STORE}/files/{HELLO_PATH}", scope=f"datastore:{DEFAULT_STORE}")


@case("PUT", "/datastores/{name}/files/{path:path}")
def _(w):
    path = f"matrix/{fresh('put')}.txt"
    data = f"written {path}\n".encode()
    url = f"/datastores/{DEFAULT_STORE}/files/{path}"

    def check(r):
        assert r.json()["size"] == len(data)
        assert w.admin("GET", url).content == data
    return Call("PUT", url, scope=f"datastore:{DEFAULT_STORE}", content=data, check=check,
                intact=lambda: assert_status(w, url, 404))


# uploads (always into the default data store)
@case("POST", "/uploads")
def _(w):
    data = f"x,y\n{fresh('declare')},{os.urandom(8).hex()}\n".encode()
    name = f"mx-{hashlib.sha256(data).hexdigest()[:12]}.csv"

    def check(r):
        body = r.json()
        assert re.fullmatch(r"[0-9a-f]{32}", body["id"]), body
        assert (body["datastore"], body["type"], body["status"], body["missing"]) == \
            (DEFAULT_STORE, "uri_file", "Pending", [name]), body
        assert body["path"] == f"azureml://datastores/{DEFAULT_STORE}/paths/LocalUpload/{body['id']}/{name}", body
    return Call("POST", "/uploads", json=manifest(name, data), check=check)


@case("GET", "/uploads/{upload_id}")
def _(w):
    uid, name, _ = w.declare()
    return Call("GET", f"/uploads/{uid}", check=body_is(id=uid, status="Pending", missing=[name]))


@case("PUT", "/uploads/{upload_id}/files/{path:path}")
def _(w):
    uid, name, data = w.declare()

    def missing(expected):
        return lambda *_: assert_missing(w, uid, expected)
    return Call("PUT", f"/uploads/{uid}/files/{name}", content=data,
                check=both(body_is(path=name, size=len(data)), missing([])), intact=missing([name]))


def assert_missing(w: World, uid: str, expected: list[str]) -> None:
    assert w.admin("GET", f"/uploads/{uid}").json()["missing"] == expected


@case("POST", "/uploads/{upload_id}/commit")
def _(w):
    uid, name, data = w.declare()
    w.admin("PUT", f"/uploads/{uid}/files/{name}", content=data)

    def status(expected):
        return lambda *_: body_is(status=expected)(w.admin("GET", f"/uploads/{uid}"))
    return Call("POST", f"/uploads/{uid}/commit", check=both(body_is(id=uid, status="Completed", missing=[]),
                                                            status("Completed")),
                intact=status("Pending"))


# data assets and models
case("GET", "/data")(lambda w: Call("GET", "/data", check=lists("name", DATA)))
case("GET", "/data/{name}")(lambda w: Call("GET", f"/data/{DATA}", check=body_is(name=DATA, type="uri_folder")))
case("GET", "/data/{name}/versions/{version}")(
    lambda w: Call("GET", f"/data/{DATA}/versions/1", check=body_is(name=DATA, version="1")))


@case("POST", "/data/{name}/versions")
def _(w):
    name = fresh("mx-data")
    return Call("POST", f"/data/{name}/versions", 201, json={
        "type": "uri_file", "path": f"azureml://datastores/{DEFAULT_STORE}/paths/{HELLO_PATH}"},
        check=both(body_is(name=name, version="1"), lambda r: assert_status(w, f"/data/{name}", 200)),
        intact=gone(w, f"/data/{name}"))


# registered environments (docs/environments.md): as data assets
ENV_BODY = {"conda_file": {"dependencies": [{"pip": ["six==1.16.0"]}]}}


def _env(w, name: str = "mx-env") -> str:
    if w.status_of(f"/environments/{name}") == 404:
        w.admin("POST", f"/environments/{name}/versions", 201, json={**ENV_BODY, "version": "1"})
    return name


case("GET", "/environments")(lambda w: Call("GET", "/environments", check=lists("name", _env(w))))
case("GET", "/environments/{name}")(lambda w: Call("GET", f"/environments/{_env(w)}", check=body_is(name="mx-env")))
case("GET", "/environments/{name}/versions/{version}")(
    lambda w: Call("GET", f"/environments/{_env(w)}/versions/1", check=body_is(name="mx-env", version="1")))


@case("POST", "/environments/{name}/versions")
def _(w):
    name = fresh("mx-env")
    return Call("POST", f"/environments/{name}/versions", 201, json=ENV_BODY,
                check=both(body_is(name=name, version="1"), lambda r: assert_status(w, f"/environments/{name}", 200)),
                intact=gone(w, f"/environments/{name}"))


@case("DELETE", "/environments/{name}/versions/{version}")
def _(w):
    name = _env(w, fresh("mx-env"))
    return Call("DELETE", f"/environments/{name}/versions/1", 204, check=gone(w, f"/environments/{name}"),
                intact=still_there(w, f"/environments/{name}"))


def _no_builds(response: httpx.Response) -> None:
    """The builds listed (the session's other tests may have built some): each says what it is."""
    assert isinstance(response.json(), list) and all("hash" in b for b in response.json()), response.json()


case("GET", "/environment-builds")(lambda w: Call("GET", "/environment-builds", check=_no_builds))
case("POST", "/environment-builds/prune")(
    lambda w: Call("POST", "/environment-builds/prune?older_than_days=36500", check=body_is(removed=[])))


case("GET", "/models")(lambda w: Call("GET", "/models", check=lists("name", MODEL)))
case("GET", "/models/{name}")(lambda w: Call("GET", f"/models/{MODEL}", check=body_is(name=MODEL, type="mlflow_model")))
case("GET", "/models/{name}/versions/{version}")(
    lambda w: Call("GET", f"/models/{MODEL}/versions/1", check=body_is(name=MODEL, version="1")))


@case("POST", "/models/{name}/versions")
def _(w):
    name = fresh("mx-model")
    return Call("POST", f"/models/{name}/versions", 201, json={"type": "mlflow_model", "path": w.model_path},
                check=both(body_is(name=name, version="1"), lambda r: assert_status(w, f"/models/{name}", 200)),
                intact=gone(w, f"/models/{name}"))


# computes
case("GET", "/computes")(lambda w: Call("GET", "/computes", check=lists("name", COMPUTE)))
case("GET", "/computes/{name}")(lambda w: Call("GET", f"/computes/{COMPUTE}", check=body_is(name=COMPUTE)))


@case("PUT", "/computes/{name}")
def _(w):
    name = fresh("mx-cpu")
    return Call("PUT", f"/computes/{name}", json={"type": "amlcompute", "max_instances": 2},
                check=both(body_is(name=name, max_instances=2), lambda r: assert_status(w, f"/computes/{name}", 200)),
                intact=gone(w, f"/computes/{name}"))


# batch endpoints
EP_SCOPE = f"endpoint:{ENDPOINT}"
case("GET", "/batchEndpoints")(lambda w: Call("GET", "/batchEndpoints", check=lists("name", ENDPOINT)))
case("GET", "/batchEndpoints/{name}")(
    lambda w: Call("GET", f"/batchEndpoints/{ENDPOINT}", scope=EP_SCOPE, check=body_is(name=ENDPOINT)))


@case("PUT", "/batchEndpoints/{name}")
def _(w):
    name = fresh("mx-ep")
    return Call("PUT", f"/batchEndpoints/{name}", scope=f"endpoint:{name}", json={"description": "made"},
                check=both(body_is(name=name, description="made"), lambda r: assert_status(w, f"/batchEndpoints/{name}", 200)),
                intact=gone(w, f"/batchEndpoints/{name}"))


@case("PATCH", "/batchEndpoints/{name}")
def _(w):
    text = fresh("patched")  # on the test endpoint itself: the Invoker's own scope

    def description_is(expected):
        return lambda *_: body_is(description=expected)(w.admin("GET", f"/batchEndpoints/{ENDPOINT}"))
    before = w.admin("GET", f"/batchEndpoints/{ENDPOINT}").json().get("description")
    return Call("PATCH", f"/batchEndpoints/{ENDPOINT}", scope=EP_SCOPE, json={"description": text},
                check=both(body_is(name=ENDPOINT, description=text), description_is(text)),
                intact=description_is(before))


@case("DELETE", "/batchEndpoints/{name}")
def _(w):
    name = w.endpoint()
    return Call("DELETE", f"/batchEndpoints/{name}", 204, scope=f"endpoint:{name}",
                check=gone(w, f"/batchEndpoints/{name}"), intact=still_there(w, f"/batchEndpoints/{name}"))


@case("POST", "/batchEndpoints/{name}/invoke")
def _(w):
    def check(r):
        body = r.json()
        assert body["endpoint_name"] == ENDPOINT and body["deployment_name"] == DEPLOYMENT, body
        assert body["created_by"] == w.caller_of(r), body
        assert_status(w, f"/jobs/{body['name']}", 200)
    return Call("POST", f"/batchEndpoints/{ENDPOINT}/invoke", 202, scope=EP_SCOPE, json=invoke_body(), check=check)


def job_list(r: httpx.Response) -> None:
    assert isinstance(r.json(), list) and all("name" in job and "status" in job for job in r.json())


case("GET", "/batchEndpoints/{name}/jobs")(
    lambda w: Call("GET", f"/batchEndpoints/{ENDPOINT}/jobs", scope=EP_SCOPE, check=job_list))

# deployments
DEP_URL = f"/batchEndpoints/{ENDPOINT}/deployments"
case("GET", "/batchEndpoints/{endpoint}/deployments")(
    lambda w: Call("GET", DEP_URL, scope=EP_SCOPE, check=lists("name", DEPLOYMENT)))
case("GET", "/batchEndpoints/{endpoint}/deployments/{name}")(
    lambda w: Call("GET", f"{DEP_URL}/{DEPLOYMENT}", scope=EP_SCOPE,
                   check=body_is(name=DEPLOYMENT, endpoint_name=ENDPOINT)))
case("GET", "/batchEndpoints/{endpoint}/deployments/{name}/jobs")(
    lambda w: Call("GET", f"{DEP_URL}/{DEPLOYMENT}/jobs", scope=EP_SCOPE, check=job_list))


@case("PUT", "/batchEndpoints/{endpoint}/deployments/{name}")
def _(w):
    name = fresh("mx-dep")
    return Call("PUT", f"{DEP_URL}/{name}", scope=EP_SCOPE, json={"model": f"azureml:{MODEL}@latest"},
                check=both(body_is(name=name, endpoint_name=ENDPOINT), lambda r: assert_status(w, f"{DEP_URL}/{name}", 200)),
                intact=gone(w, f"{DEP_URL}/{name}"))


@case("PATCH", "/batchEndpoints/{endpoint}/deployments/{name}")
def _(w):
    name = w.deployment()

    def description_is(expected):
        return lambda *_: body_is(description=expected)(w.admin("GET", f"{DEP_URL}/{name}"))
    return Call("PATCH", f"{DEP_URL}/{name}", scope=EP_SCOPE, json={"description": "patched"},
                check=both(body_is(name=name, description="patched"), description_is("patched")),
                intact=description_is(None))


@case("DELETE", "/batchEndpoints/{endpoint}/deployments/{name}")
def _(w):
    name = w.deployment()
    return Call("DELETE", f"{DEP_URL}/{name}", 204, scope=EP_SCOPE,
                check=gone(w, f"{DEP_URL}/{name}"), intact=still_there(w, f"{DEP_URL}/{name}"))


# jobs: the read routes act on the Owner's job and on the Invoker's job
JOBS = ("owner-job", "invoker-job")


def the_job(w: World, variant: str) -> tuple[str, str]:
    return (w.owner_job, "Owner") if variant == "owner-job" else (w.invoker_job, "Invoker")


case("GET", "/jobs")(lambda w: Call("GET", "/jobs", check=job_list))
case("GET", "/metrics")(lambda w: Call("GET", "/metrics", check=text_has("batchpoint_jobs{status=")))


@case("GET", "/jobs/{name}", *JOBS)
def _(w, variant):
    job, by = the_job(w, variant)
    return Call("GET", f"/jobs/{job}", scope=EP_SCOPE, started_by=by,
                check=body_is(name=job, status="Completed", created_by=pid(by)))


@case("GET", "/jobs/{name}/events", *JOBS)
def _(w, variant):
    job, by = the_job(w, variant)

    def check(r):
        events = r.json()
        assert [e["seq"] for e in events] == list(range(1, len(events) + 1)), events
        assert [e["status"] for e in events if e["type"] == "status"][-1] == "Completed", events
    return Call("GET", f"/jobs/{job}/events", scope=EP_SCOPE, started_by=by, check=check)


@case("GET", "/jobs/{name}/events/stream", *JOBS)
def _(w, variant):
    job, by = the_job(w, variant)

    def check(r):  # the job has ended: the stream sends its history and closes
        assert r.headers["content-type"].startswith("text/event-stream"), r.headers
        assert r.text.rstrip().endswith("}") and '"status":"Completed"' in r.text, r.text[-500:]
    return Call("GET", f"/jobs/{job}/events/stream", scope=EP_SCOPE, started_by=by, check=check)


@case("GET", "/jobs/{name}/logs", *JOBS)
def _(w, variant):
    job, by = the_job(w, variant)

    def check(r):
        assert w.logs[job] in [log["name"] for log in r.json()["logs"]]
    return Call("GET", f"/jobs/{job}/logs", scope=EP_SCOPE, started_by=by, check=check)


@case("GET", "/jobs/{name}/logs/{log_name}", *JOBS)
def _(w, variant):
    job, by = the_job(w, variant)

    def check(r):
        assert int(r.headers["X-Next-Offset"]) == len(r.content)
    return Call("GET", f"/jobs/{job}/logs/{w.logs[job]}", scope=EP_SCOPE, started_by=by, check=check)


@case("GET", "/jobs/{name}/outputs/{output_name}", *JOBS)
def _(w, variant):
    job, by = the_job(w, variant)

    def check(r):
        assert r.json()["name"] == "score" and "predictions.csv" in r.json()["files"], r.json()
    return Call("GET", f"/jobs/{job}/outputs/score", scope=EP_SCOPE, started_by=by, check=check)


@case("GET", "/jobs/{name}/outputs/{output_name}/files/{path:path}", *JOBS)
def _(w, variant):
    job, by = the_job(w, variant)

    def check(r):
        assert len(r.content.decode().splitlines()) >= 300  # a prediction per heart row
    return Call("GET", f"/jobs/{job}/outputs/score/files/predictions.csv", scope=EP_SCOPE, started_by=by,
                check=check)


@case("POST", "/jobs/{name}/cancel")
def _(w):
    job = w.job("Invoker")  # the Invoker's own job: invoking does not give jobs/cancel

    def check(r):
        body = r.json()
        assert body["name"] == job and body["status"] in ("Canceled", "Completed"), body

    def not_canceled():
        assert w.admin("GET", f"/jobs/{job}").json()["status"] != "Canceled", f"a refused call canceled {job}"
    return Call("POST", f"/jobs/{job}/cancel", scope=EP_SCOPE, check=check, intact=not_canceled)


@case("POST", "/jobs/{name}/rerun")
def _(w):
    job = w.job("Invoker")
    deadline = time.monotonic() + 180  # a finished job (a rerun of a running one is a 409)
    while w.admin("GET", f"/jobs/{job}").json()["status"] not in ("Completed", "Failed", "Canceled"):
        assert time.monotonic() < deadline, f"job {job} did not finish"
        time.sleep(0.5)

    def check(r):
        body = r.json()
        assert r.status_code == 202 and body["name"] != job, body

    def no_new_job():
        jobs = w.admin("GET", "/jobs").json()
        reruns = [j["name"] for j in jobs if f"rerun of job '{job}'" in (j.get("status_message") or "")]
        assert not reruns, f"a refused call made a rerun of {job}: {reruns}"
    return Call("POST", f"/jobs/{job}/rerun", status=202, scope=EP_SCOPE, json={"failed_only": False}, check=check,
                intact=no_new_job)


# principals, keys, role assignments, audit
case("GET", "/principals")(lambda w: Call("GET", "/principals", check=lists("id", *map(pid, WHO))))


@case("POST", "/principals")
def _(w):
    principal = f"user:{fresh('mx-new')}"

    def listed(expected):
        return lambda *_: assert_equal(principal in {p["id"] for p in w.admin("GET", "/principals").json()}, expected)
    return Call("POST", "/principals", 201, json={"id": principal}, check=both(body_is(id=principal), listed(True)),
                intact=listed(False))


def assert_equal(found: Any, expected: Any) -> None:
    assert found == expected, f"{found!r} != {expected!r}"


@case("GET", "/principals/{principal_id}/keys")
def _(w):
    def check(r):
        keys = r.json()
        assert keys and all(k["principal_id"] == pid("Reader") and "key" not in k for k in keys), keys
    return Call("GET", f"/principals/{pid('Reader')}/keys", check=check)


@case("POST", "/principals/{principal_id}/keys")
def _(w):
    principal = w.principal()

    def count(expected):
        return lambda *_: assert_equal(len(w.admin("GET", f"/principals/{principal}/keys").json()), expected)

    def check(r):
        assert r.json()["key"].startswith("bpk_") and r.json()["principal_id"] == principal
    return Call("POST", f"/principals/{principal}/keys", 201, json={}, check=both(check, count(1)), intact=count(0))


@case("DELETE", "/principals/{principal_id}/keys/{key_id}")
def _(w):
    principal = w.principal()
    made = w.admin("POST", f"/principals/{principal}/keys", 201, json={}).json()
    record_secret(made["key"])

    def revoked(expected):
        def check(*_):
            keys = w.admin("GET", f"/principals/{principal}/keys").json()
            assert [k["revoked_at"] is not None for k in keys] == [expected], keys
        return check
    return Call("DELETE", f"/principals/{principal}/keys/{made['key_id']}", 204, check=revoked(True),
                intact=revoked(False))


@case("GET", "/roleAssignments")
def _(w):
    def check(r):
        assert {"principal_id": pid("Invoker"), "role": "Invoker", "scope": EP_SCOPE} in \
            [{k: a[k] for k in ("principal_id", "role", "scope")} for a in r.json()]
    return Call("GET", "/roleAssignments", check=check)


def assignments_of(w: World, principal: str) -> list[dict[str, Any]]:
    return w.admin("GET", "/roleAssignments", params={"principal_id": principal}).json()


@case("POST", "/roleAssignments")
def _(w):
    principal = w.principal()

    def count(expected):
        return lambda *_: assert_equal(len(assignments_of(w, principal)), expected)
    return Call("POST", "/roleAssignments", 201, json={"principal_id": principal, "role": "Reader", "scope": "workspace"},
                check=both(body_is(principal_id=principal, role="Reader", scope="workspace"), count(1)),
                intact=count(0))


@case("DELETE", "/roleAssignments/{assignment_id}")
def _(w):
    principal = w.principal()  # never the Owner's own assignment: the last workspace Owner stays
    made = w.admin("POST", "/roleAssignments", 201, json={"principal_id": principal, "role": "Reader"}).json()

    def count(expected):
        return lambda *_: assert_equal(len(assignments_of(w, principal)), expected)
    return Call("DELETE", f"/roleAssignments/{made['id']}", 204, check=count(0), intact=count(1))


@case("GET", "/auditLog")
def _(w):
    def check(r):
        assert w.owner_job in [entry["details"].get("job") for entry in r.json()], "the Owner's invoke is not audited"
    return Call("GET", f"/auditLog?limit=1000&principal_id={pid('Owner')}", check=check)


# ---- the tests --------------------------------------------------------------------------------------

def test_role_table_reads_as_written():
    assert GRANTS["Owner"] == {row.split()[0] for row in ROLE_TABLE.strip().splitlines()[1:]}
    assert GRANTS["DataReader"] == {"data/read"} and GRANTS["DataWriter"] == {"data/read", "data/write"}
    assert GRANTS["Invoker"] == {"workspace/read", "endpoints/read", "endpoints/invoke", "deployments/read",
                                 "jobs/read_own"}
    assert "jobs/outputs/read" not in GRANTS["Reader"] and "roles/write" not in GRANTS["Contributor"]


def _flatten(routes, prefix=""):
    """Routes of the app, looking inside included routers (FastAPI includes them lazily)."""
    for route in routes:
        inner = getattr(route, "original_router", None)
        if inner is not None:
            yield from _flatten(inner.routes, prefix + route.include_context.prefix)
        else:
            yield prefix, route


def test_hand_table_matches_the_app():
    """Every route of the real app has an entry in ROUTES and a case, and vice versa."""
    from batchpoint.server.app import create_app

    app_routes = set()
    for prefix, route in _flatten(create_app().routes):
        if (prefix + route.path).startswith(("/_arm/", "/_blob/", "/metadata/", "/azure/")):
            continue  # the Azure-shaped API: its own hand table in tests/server/azure_api/test_arm_routes.py
        methods = set(getattr(route, "methods", None) or ())
        if "GET" in methods:
            methods.discard("HEAD")  # answered by the GET route itself
        app_routes |= {(method, prefix + route.path) for method in methods}
    table = set(ROUTE)
    assert not app_routes - table, f"routes with no entry in the hand table: {sorted(app_routes - table)}"
    assert not table - app_routes, f"hand-table entries the app does not have: {sorted(table - app_routes)}"
    assert {(m, p) for m, p, _ in CASES} == table, "every route needs a case (and every case a route)"


CASE_IDS = sorted(CASES, key=lambda key: (list(ROUTE).index(key[:2]), key[2]))


@pytest.mark.parametrize("key", CASE_IDS, ids=[f"{m} {p}" + (f" [{v}]" if v else "") for m, p, v in CASE_IDS])
@pytest.mark.parametrize("who", CALLERS, ids=["anonymous", *WHO])
def test_route(world, who, key):
    method, path, _ = key
    permission, where = ROUTE[(method, path)]
    call = CASES[key](world)
    response = world.call(who, call.method, call.url, json=call.json, content=call.content)
    if method == "POST" and path.endswith("/keys") and response.status_code < 300:
        record_secret(response.json()["key"])
    said = f"{who or 'anonymous'} {call.method} {call.url}: {response.status_code} {response.text[:500]}"

    if where != "open" and who is None:
        assert response.status_code == 401, said
    elif allowed(who or "", where, permission or "", call):
        assert response.status_code == call.status, f"{said} (expected {call.status}: allowed)"
        if call.check:
            call.check(response)
    else:
        assert response.status_code == 403, f"{said} (expected 403: lacks {permission} on {call.scope})"
        if method != "HEAD":
            message = response.json()["error"]["message"]
            assert f"'{permission}'" in message, f"the 403 does not name '{permission}': {message}"
    if response.status_code >= 400 and call.intact:
        call.intact()


JOB_LISTS = {
    "GET /jobs": "/jobs",
    "GET /batchEndpoints/{name}/jobs": f"/batchEndpoints/{ENDPOINT}/jobs",
    "GET /batchEndpoints/{endpoint}/deployments/{name}/jobs": f"{DEP_URL}/{DEPLOYMENT}/jobs",
}


@pytest.mark.parametrize("url", JOB_LISTS.values(), ids=JOB_LISTS.keys())
@pytest.mark.parametrize("who", ["Reader", "Invoker", "Contributor", "Owner"])
def test_job_lists_show_each_caller_what_it_may_read(world, who, url):
    """jobs/read on the workspace: every job; otherwise exactly one's own."""
    mine = world.call(who, "GET", url, params={"limit": 1000})
    assert mine.status_code == 200, mine.text
    seen = {job["name"]: job["created_by"] for job in mine.json()}
    everything = {job["name"]: job["created_by"] for job in world.admin("GET", url, params={"limit": 1000}).json()}
    assert world.owner_job in everything and world.invoker_job in everything
    if has(who, "jobs/read", "workspace"):
        assert seen == everything, f"{who} should see every job of {url}"
    else:
        assert seen == {n: by for n, by in everything.items() if by == pid(who)}, \
            f"{who} should see exactly its own jobs of {url}, saw {seen}"
        assert world.owner_job not in seen


@pytest.mark.parametrize("who", list(WHO))
def test_the_upload_area_is_never_written_by_path(world, who):
    """PUT /datastores/<default>/files/LocalUpload/...: refused even for those who may write the store."""
    url = f"/datastores/{DEFAULT_STORE}/files/LocalUpload/{'0' * 32}/{fresh('sneak')}.csv"
    response = world.call(who, "PUT", url, content=b"a,b\n1,2\n")
    expected = 409 if has(who, "datastores/write", f"datastore:{DEFAULT_STORE}") else 403
    assert response.status_code == expected, response.text
    assert_status(world, url, 404)


# ---- issue 18: what an invoke may read and set, role by role (§2, §4) --------------------------------

def _completed_upload(w: World) -> str:
    """A completed upload of the admin's (not any caller's): its azureml:// path."""
    uid, name, data = w.declare()
    w.admin("PUT", f"/uploads/{uid}/files/{name}", content=data)
    return w.admin("POST", f"/uploads/{uid}/commit").json()["path"]


def _invoke_on(uri: str, **properties: Any) -> dict[str, Any]:
    return {"properties": {"InputData": {"heart": {"JobInputType": "UriFolder", "Uri": uri}}, **properties}}


SYSTEM_AREAS = ("LocalUpload", "another's upload", "azureml (jobs' area)")


@pytest.mark.parametrize("area", SYSTEM_AREAS)
@pytest.mark.parametrize("who", list(WHO))
def test_invoke_on_a_stores_system_areas_needs_data_read(world, who, area):
    """The upload area's root, another principal's upload and the jobs' area are inputs only with
    data/read on the store (docs/security.md, "The upload area"); refused ones leave no job."""
    base = f"azureml://datastores/{DEFAULT_STORE}/paths"
    uri = {"LocalUpload": f"{base}/LocalUpload", "another's upload": _completed_upload(world),
           "azureml (jobs' area)": f"{base}/azureml/{world.owner_job}"}[area]
    jobs_before = len(world.admin("GET", "/jobs", params={"limit": 1000}).json())
    response = world.call(who, "POST", f"/batchEndpoints/{ENDPOINT}/invoke", json=_invoke_on(uri))
    said = f"{who} invoke on {area}: {response.status_code} {response.text[:300]}"
    if not has(who, "endpoints/invoke", EP_SCOPE):
        assert response.status_code == 403 and "'endpoints/invoke'" in response.text, said
    elif has(who, "data/read", f"datastore:{DEFAULT_STORE}"):
        assert response.status_code != 403, said  # past the check (the folder may still be refused as an input)
        return
    else:
        assert response.status_code == 403 and "'data/read'" in response.text, said
    assert len(world.admin("GET", "/jobs", params={"limit": 1000}).json()) == jobs_before


@pytest.mark.parametrize("variable", ["HTTP_PROXY", "no_proxy", "REQUESTS_CA_BUNDLE", "AZURE_CLIENT_ID", "PYTHONPATH",
                                      "LD_PRELOAD"])
@pytest.mark.parametrize("who", list(WHO))
def test_invoke_may_not_set_reserved_variables(world, who, variable):
    """For every role that may invoke (Owner too): 400 naming the variable; others 403 as before."""
    body = {"properties": {**invoke_body()["properties"],
                           "Settings": {"environment_variables": {variable: "http://127.0.0.1:18999"}}}}
    response = world.call(who, "POST", f"/batchEndpoints/{ENDPOINT}/invoke", json=body)
    if has(who, "endpoints/invoke", EP_SCOPE):
        assert response.status_code == 400, response.text
        assert f"environment variable {variable} cannot be set at invoke" in response.json()["error"]["message"]
    else:
        assert response.status_code == 403, response.text


def test_unknown_and_revoked_keys_are_401(server, ml_client):
    with httpx.Client(base_url=server.url, timeout=30) as http:
        assert http.get("/workspace", headers={"Authorization": "Bearer bpk_nope_nope"}).status_code == 401
        ml_client.principals.create("user:revoked")
        ml_client.role_assignments.create("user:revoked", "Reader")
        made = ml_client.principals.create_key("user:revoked")
        good = {"Authorization": f"Bearer {record_secret(made['key'])}"}
        assert http.get("/workspace", headers=good).status_code == 200
        ml_client.principals.revoke_key("user:revoked", made["key_id"])
        response = http.get("/workspace", headers=good)
        assert response.status_code == 401
        assert "revoked" in response.json()["error"]["message"]
        assert http.get("/health").status_code == 200
        assert http.get("/openapi.json").status_code == 200
