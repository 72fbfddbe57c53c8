"""Acceptance (issue 4, "Guards against hostile input"): traversal and SSRF attempts through all
three interfaces are refused with a clear 4xx.

Each hostile input is one row of a table; the same row is driven through REST (httpx with the
owner's key, the body in the spec's shape), the SDK (``ml_client``) and the CLI (its ``main`` in
this process, ``fixtures/inproc_cli.py``) by ``parametrize``. Every refusal must be a 4xx (never a 500) with
``{"error": {"code", "message"}}`` naming what was wrong and what is valid; the SDK raises the
same class from ``batchpoint.exceptions``; the CLI exits 1 with one ``ERROR:`` line and no
traceback; no job and no data store is created and nothing is written outside the data store.

Also here: request bodies over the server's limits (413, with and without ``Content-Length``, no
partial upload left), YAML tags that build objects in every CLI ``create`` command, and the
server's log handlers masking secrets.
"""

from __future__ import annotations

import http.client
import json
import os
import tempfile
import textwrap
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import httpx
import pytest
import yaml

from batchpoint import BatchDeployment, BatchEndpoint, Datastore, Input, Model
from batchpoint.exceptions import BatchpointError, InputError, UnsafeInputError
from batchpoint.storage.base import StorageSpec
from batchpoint.storage.local import LocalBackend
from conftest import ServerHandle, record_secret, start_server, stop_server

ENDPOINT = "hostile-ep"
STORE = "workspaceblobstore"
INTERFACES = ("rest", "sdk", "cli")
REST_TYPES = {"uri_folder": "UriFolder", "uri_file": "UriFile"}
#: A made-up account key (base64 of 64 bytes); recorded so stop_server checks it never leaks.
FAKE_KEY = record_secret("aG9zdGlsZS1pbnB1dC10ZXN0LWtleS1ub3QtYS1yZWFsLWtleS0wMTIzNDU2Nzg5YWJjZGVmZ2hpams=")


# ---- the world the hostile inputs aim at -------------------------------------------------------


@dataclass
class World:
    root: Path  # the default data store's folder on the server's disk
    area: str  # a folder of this module's inside the data store (relative path)
    outside: Path  # a folder outside the data store, holding secret.csv
    link_dir: str  # <area>/link-out: a symlink to ``outside``
    link_file: str  # <area>/mixed/secret.csv: a symlink to outside/secret.csv
    only_links: str  # <area>/only-links: a folder holding nothing but a link out
    mixed: str  # <area>/mixed: a real file and a link out


@pytest.fixture(scope="module")
def world(ml_client, heart_model_dir, tmp_path_factory) -> Iterator[World]:
    ml_client.models.create_or_update(Model(name="hostile-model", path=str(heart_model_dir), type="mlflow_model"))
    ml_client.batch_endpoints.begin_create_or_update(BatchEndpoint(name=ENDPOINT)).result()
    ml_client.batch_deployments.begin_create_or_update(BatchDeployment(
        name="main", endpoint_name=ENDPOINT, model="azureml:hostile-model@latest"), set_default=True)
    root = Path(ml_client.datastores.get_default().path)
    outside = tmp_path_factory.mktemp("outside-the-store")
    (outside / "secret.csv").write_text("age,thal\n99,secret\n")
    area = f"hostile-{uuid.uuid4().hex[:8]}"
    (root / area / "mixed").mkdir(parents=True)
    (root / area / "only-links").mkdir()
    (root / area / "mixed" / "real.csv").write_text("age,thal\n1,normal\n")
    (root / area / "link-out").symlink_to(outside, target_is_directory=True)
    (root / area / "mixed" / "secret.csv").symlink_to(outside / "secret.csv")
    (root / area / "only-links" / "secret.csv").symlink_to(outside / "secret.csv")
    yield World(root, area, outside, f"{area}/link-out", f"{area}/mixed/secret.csv", f"{area}/only-links",
                f"{area}/mixed")
    for link in ("link-out", "mixed/secret.csv", "only-links/secret.csv"):
        (root / area / link).unlink()


def _ds(path: str) -> str:
    return f"azureml://datastores/{STORE}/paths/{path}"


def _jobs(ml_client) -> set[str]:
    return {j.name for j in ml_client.jobs.list()}


def _outside_listing(w: World) -> list[str]:
    return sorted(str(p.relative_to(w.outside)) for p in w.outside.rglob("*"))


# ---- invoke: traversal, symlinks, SSRF ---------------------------------------------------------


@dataclass(frozen=True)
class Hostile:
    id: str
    uri: Callable[[World], str]
    error: type[BatchpointError]
    code: str
    says: tuple[str, ...]  # what the message must name (what was wrong, what is valid)
    status: int = 400
    type: str | None = None
    interfaces: tuple[str, ...] = INTERFACES


DOTDOT = ("'..'", "without '..'")
SSRF = ("is not allowed", "allow_private_network")
INVOKES = [
    # traversal out of the data store, in every spelling
    Hostile("dotdot", lambda w: _ds("../../etc"), UnsafeInputError, "unsafe_input", DOTDOT),
    Hostile("dotdot-deep", lambda w: _ds(f"{w.area}/../../../../etc/passwd"), UnsafeInputError, "unsafe_input",
            DOTDOT, type="uri_file"),
    Hostile("dotdot-backslash", lambda w: _ds("..\\..\\etc"), UnsafeInputError, "unsafe_input", DOTDOT),
    Hostile("dotdot-encoded", lambda w: _ds("%2e%2e/%2e%2e/etc"), UnsafeInputError, "unsafe_input",
            ("%2e%2e", "without '..'")),
    Hostile("dotdot-encoded-mixed-case", lambda w: _ds(".%2E/%2E./etc"), UnsafeInputError, "unsafe_input", DOTDOT),
    Hostile("dotdot-double-encoded", lambda w: _ds("%252e%252e/%252e%252e/etc"), UnsafeInputError, "unsafe_input",
            DOTDOT),
    Hostile("dotdot-encoded-slash", lambda w: _ds(f"{w.area}/..%2f..%2f..%2fetc"), UnsafeInputError,
            "unsafe_input", DOTDOT),
    Hostile("dotdot-long-form", lambda w: "/subscriptions/0/resourceGroups/rg/providers/Microsoft.MachineLearning"
                                          f"Services/workspaces/ws/datastores/{STORE}/paths/../../etc",
            UnsafeInputError, "unsafe_input", DOTDOT),
    Hostile("dotdot-storage-url", lambda w: "https://acct.blob.core.windows.net/c/%2e%2e/%2e%2e/etc",
            UnsafeInputError, "unsafe_input", DOTDOT),
    Hostile("nul-byte", lambda w: _ds("heart\x00/../../etc"), UnsafeInputError, "unsafe_input", ("NUL",),
            interfaces=("rest", "sdk")),  # a NUL cannot travel in a command-line argument
    # absolute paths: inside a data store path a leading '/' is the store's root, never the server's
    Hostile("absolute-in-datastore-path", lambda w: _ds("//etc/passwd"), InputError, "invalid_input",
            ("'etc/passwd' in data store", "does not exist", "relative to the root"), type="uri_file"),
    Hostile("file-url", lambda w: "file:///etc/passwd", InputError, "invalid_input",
            ("file://", "not supported", "Valid inputs")),
    Hostile("server-local-path", lambda w: "/etc/passwd", InputError, "invalid_input",
            ("local path", "cannot read the caller's disk", "azureml://datastores/"),
            interfaces=("rest",)),  # the SDK and CLI upload a local path from the caller's own disk
    # symbolic links in the data store pointing out of it
    Hostile("symlink-folder", lambda w: _ds(w.link_dir), UnsafeInputError, "unsafe_input",
            ("link-out", "outside the data store", "symbolic link", "copy the data into it")),
    Hostile("symlink-file", lambda w: _ds(w.link_file), UnsafeInputError, "unsafe_input",
            ("secret.csv", "outside the data store", "symbolic link"), type="uri_file"),
    Hostile("symlink-into-folder", lambda w: _ds(f"{w.link_dir}/secret.csv"), UnsafeInputError, "unsafe_input",
            ("outside the data store",), type="uri_file"),
    Hostile("folder-of-links-out", lambda w: _ds(w.only_links), InputError, "invalid_input",
            ("empty folder", "never followed")),
    # server-side request forgery
    Hostile("ssrf-loopback", lambda w: "https://127.0.0.1/heart/data.csv", UnsafeInputError, "unsafe_input",
            ("127.0.0.1", "loopback", *SSRF)),
    Hostile("ssrf-loopback-hex", lambda w: "http://0x7f000001/heart", UnsafeInputError, "unsafe_input",
            ("loopback", *SSRF)),
    Hostile("ssrf-metadata", lambda w: "https://169.254.169.254/latest/meta-data", UnsafeInputError, "unsafe_input",
            ("169.254.169.254", "metadata", "never contacts")),
    Hostile("ssrf-metadata-in-ipv6", lambda w: "https://[::ffff:169.254.169.254]/latest/meta-data", UnsafeInputError,
            "unsafe_input", ("metadata", "never contacts")),
    Hostile("ssrf-private", lambda w: "https://10.0.0.1/x", UnsafeInputError, "unsafe_input",
            ("10.0.0.1", "private network", *SSRF)),
    Hostile("ssrf-ipv6-loopback", lambda w: "https://[::1]/x", UnsafeInputError, "unsafe_input",
            ("::1", "loopback", *SSRF)),
    Hostile("ssrf-localhost-name", lambda w: "https://localhost/x", UnsafeInputError, "unsafe_input",
            ("'localhost' (resolves to 127.0.0.1)", "loopback", *SSRF)),
    Hostile("ssrf-azure-suffix", lambda w: "https://acct.blob.core.localhost/c/x", UnsafeInputError, "unsafe_input",
            ("acct.blob.core.localhost", "loopback")),
]
INVOKE_CASES = [(case, interface) for case in INVOKES for interface in case.interfaces]


def _check_cli_refusal(result, says: tuple[str, ...]) -> None:
    assert result.code == 1, (result.code, result.out, result.err)
    assert result.out == ""
    assert "Traceback" not in result.err, result.err
    errors = [line for line in result.err.splitlines() if line.startswith("ERROR:")]
    assert len(errors) == 1, result.err
    for word in says:
        assert word in result.err, f"{word!r} not in {result.err!r}"


def _check_rest_refusal(response: httpx.Response, status: int, code: str, says: tuple[str, ...]) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json"), response.headers
    error = response.json()["error"]
    assert error["code"] == code, error
    assert "Traceback" not in error["message"]
    for word in says:
        assert word in error["message"], f"{word!r} not in {error['message']!r}"


@pytest.mark.parametrize(("case", "interface"), INVOKE_CASES, ids=[f"{c.id}-{i}" for c, i in INVOKE_CASES])
def test_hostile_invoke_input_is_refused(case: Hostile, interface: str, world: World, server: ServerHandle,
                                         ml_client, cli_inproc, tmp_path: Path) -> None:
    uri = case.uri(world)
    before, outside_before = _jobs(ml_client), _outside_listing(world)
    if interface == "rest":
        spec: dict[str, Any] = {"JobInputType": REST_TYPES[case.type or "uri_folder"], "Uri": uri}
        with server.rest() as rest:
            response = rest.post(f"/batchEndpoints/{ENDPOINT}/invoke",
                                 json={"properties": {"InputData": {"input_data": spec}}})
        _check_rest_refusal(response, case.status, case.code, case.says)
    elif interface == "sdk":
        with pytest.raises(case.error) as caught:
            ml_client.batch_endpoints.invoke(endpoint_name=ENDPOINT, input=Input(type=case.type, path=uri))
        assert type(caught.value) is case.error, caught.value
        assert caught.value.status_code == case.status
        for word in case.says:
            assert word in caught.value.message, f"{word!r} not in {caught.value.message!r}"
    else:
        args = ["batch-endpoint", "invoke", "--name", ENDPOINT, "--input", uri]
        if case.type:
            args += ["--input-type", case.type]
        _check_cli_refusal(cli_inproc(*args, check=False, cwd=tmp_path), case.says)
    assert _jobs(ml_client) == before, "a refused input must not leave a job behind"
    assert _outside_listing(world) == outside_before


def test_links_out_of_the_store_are_never_listed_or_served(world: World, server: ServerHandle) -> None:
    """A folder holding a real file and a link out: the listing a job scores holds only the real
    file, and the download route refuses the link (the secret's bytes never leave the server)."""
    backend = LocalBackend(StorageSpec("local", {"path": str(world.root)}))
    assert [f.path for f in backend.iter_files(world.mixed)] == [f"{world.mixed}/real.csv"]
    with server.rest() as rest:
        for path in (world.link_file, f"{world.link_dir}/secret.csv"):
            response = rest.get(f"/datastores/{STORE}/files/{path}")
            _check_rest_refusal(response, 400, "unsafe_input", ("outside the data store",))
            assert b"secret" not in response.content.replace(b"secret.csv", b"")


# ---- the file routes: traversal in the URL path ------------------------------------------------


def _raw_request(server: ServerHandle, method: str, path: str, body: bytes | None = None) -> tuple[int, dict, bytes]:
    """A request whose path is sent byte for byte (httpx would collapse '..' segments first)."""
    parts = urlsplit(server.url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        conn.request(method, path, body=body, headers=server.auth_headers())
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


FILE_TRAVERSALS = [
    ("dotdot", "LocalUpload/../../{name}"),
    ("dotdot-deep", "LocalUpload/" + "../" * 16 + "tmp/{name}"),  # past the filesystem's root, to /tmp
    ("encoded", "LocalUpload/%2e%2e/%2e%2e/{name}"),
    ("encoded-mixed-case", "LocalUpload/.%2E/%2E./{name}"),
    ("double-encoded", "LocalUpload/%252e%252e/%252e%252e/{name}"),
    ("encoded-slash", "LocalUpload/..%2f..%2f{name}"),
    ("backslash", "LocalUpload/..%5c..%5c{name}"),
]


@pytest.mark.parametrize("method", ["PUT", "GET", "HEAD"])
@pytest.mark.parametrize(("spelling", "template"), FILE_TRAVERSALS, ids=[s for s, _ in FILE_TRAVERSALS])
def test_file_routes_refuse_traversal(spelling: str, template: str, method: str, world: World,
                                      server: ServerHandle) -> None:
    name = f"escaped-{uuid.uuid4().hex[:8]}"
    # For GET, a decoy file where each spelling would land if it were followed.
    decoys = [server.home / "datastores" / name, Path("/tmp") / name] if method == "GET" else []
    for decoy in decoys:
        decoy.write_text("decoy-secret")
    try:
        path = f"/datastores/{STORE}/files/" + template.format(name=name)
        status, _, body = _raw_request(server, method, path, b"pwned" if method == "PUT" else None)
    finally:
        for decoy in decoys:
            decoy.unlink()
    assert status == 400, (status, body[:500])
    if method != "HEAD":
        error = json.loads(body)["error"]
        assert error["code"] == "unsafe_input" and "'..'" in error["message"], error
    assert b"decoy-secret" not in body
    if method == "PUT":
        beside = [p / name for p in (server.home.parent, Path("/tmp")) if (p / name).exists()]
        written = [*server.home.rglob(name), *beside]
        assert not written, f"the upload was written: {written}"


def test_upload_through_a_link_out_of_the_store_is_refused(world: World, server: ServerHandle) -> None:
    with server.rest() as rest:
        response = rest.put(f"/datastores/{STORE}/files/{world.link_dir}/planted.csv", content=b"a,b\n")
    _check_rest_refusal(response, 400, "unsafe_input", ("outside the data store",))
    assert not (world.outside / "planted.csv").exists()


def test_an_absolute_upload_path_lands_inside_the_store(world: World, server: ServerHandle) -> None:
    """A leading '/' in a file path means the data store's root, never the server's disk."""
    target = world.outside / f"abs-{uuid.uuid4().hex[:8]}.csv"
    with server.rest() as rest:
        response = rest.put(f"/datastores/{STORE}/files/{quote(str(target))}", content=b"a,b\n")
        assert response.status_code == 200, response.text
        inside = str(target).lstrip("/")
        assert response.json()["path"] == _ds(inside)
    assert not target.exists()
    assert (world.root / inside).read_bytes() == b"a,b\n"
    (world.root / inside).unlink()


# ---- data stores whose endpoints point at internal addresses -----------------------------------


@dataclass(frozen=True)
class HostileStore:
    id: str
    spec: dict[str, Any]
    says: tuple[str, ...]


def _blob(**extra: Any) -> dict[str, Any]:
    return {"type": "azure_blob", "account_name": "devstoreaccount1", "container_name": "heart",
            "credentials": {"account_key": FAKE_KEY}, **extra}


STORES = [
    HostileStore("blob-endpoint-metadata", _blob(blob_endpoint_url="http://169.254.169.254/devstoreaccount1"),
                 ("169.254.169.254", "metadata", "never contacts")),
    HostileStore("blob-endpoint-metadata-even-if-private-allowed",
                 _blob(blob_endpoint_url="http://169.254.169.254/devstoreaccount1", allow_private_network=True),
                 ("169.254.169.254", "metadata", "never contacts")),
    HostileStore("blob-endpoint-private", _blob(blob_endpoint_url="http://10.0.0.1:10000/devstoreaccount1"),
                 ("10.0.0.1", "private network", "allow_private_network: true")),
    HostileStore("blob-endpoint-localhost", _blob(blob_endpoint_url="http://localhost:10000/devstoreaccount1"),
                 ("localhost", "loopback", "allow_private_network: true")),
    HostileStore("endpoint-suffix-loopback", _blob(endpoint="localhost"),
                 ("devstoreaccount1.blob.localhost", "loopback", "allow_private_network: true")),
    HostileStore("connection-string-metadata", {
        "type": "azure_blob", "account_name": "devstoreaccount1", "container_name": "heart",
        "credentials": {"connection_string": "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
                                             f"AccountKey={FAKE_KEY};BlobEndpoint=http://169.254.169.254/x;"}},
        ("169.254.169.254", "metadata", "never contacts")),
    HostileStore("authority-url-metadata", _blob(credentials={
        "tenant_id": "t", "client_id": "c", "client_secret": FAKE_KEY, "authority_url": "http://169.254.169.254/"}),
        ("169.254.169.254", "metadata")),
    HostileStore("s3-endpoint-loopback", {"type": "s3", "bucket": "heart", "endpoint_url": "http://127.0.0.1:9000",
                                          "credentials": {"aws_access_key_id": "AKIAHOSTILE",
                                                          "aws_secret_access_key": FAKE_KEY}},
                 ("127.0.0.1", "loopback", "allow_private_network: true")),
]
STORE_CASES = [(case, interface) for case in STORES for interface in INTERFACES]


@pytest.mark.parametrize(("case", "interface"), STORE_CASES, ids=[f"{c.id}-{i}" for c, i in STORE_CASES])
def test_datastore_pointing_at_internal_addresses_is_refused(case: HostileStore, interface: str,
                                                             server: ServerHandle, ml_client, cli_inproc) -> None:
    name = f"hostile{uuid.uuid4().hex[:8]}"
    says = (*case.says, "is not allowed")
    if interface == "rest":
        with server.rest() as rest:
            response = rest.put(f"/datastores/{name}", json=case.spec)
        _check_rest_refusal(response, 400, "unsafe_input", says)
        assert FAKE_KEY not in response.text
    elif interface == "sdk":
        with pytest.raises(UnsafeInputError) as caught:
            ml_client.datastores.create_or_update(Datastore(name=name, **case.spec))
        for word in says:
            assert word in caught.value.message, f"{word!r} not in {caught.value.message!r}"
    else:
        # outside pytest's temporary folder: stop_server scans server homes for secrets
        with tempfile.TemporaryDirectory() as folder:
            spec = Path(folder) / "datastore.yml"
            spec.write_text(yaml.safe_dump({"name": name, **case.spec}))
            result = cli_inproc("datastore", "create", "--file", str(spec), check=False)
        _check_cli_refusal(result, says)
        assert FAKE_KEY not in result.err
    with server.rest() as rest:
        assert rest.get(f"/datastores/{name}").status_code == 404, "a refused data store must not be saved"


# ---- YAML that tries to build objects ----------------------------------------------------------

PAYLOAD = '!!python/object/apply:os.system ["touch {marker}"]'
CREATE_COMMANDS = {
    "batch-endpoint": "name: hostile-yaml\ndescription: {payload}\n",
    "batch-deployment": "name: hostile-yaml\nendpoint_name: " + ENDPOINT + "\nmodel: {payload}\n",
    "model": "name: hostile-yaml\npath: {payload}\ntype: mlflow_model\n",
    "data": "name: hostile-yaml\ntype: uri_folder\npath: {payload}\n",
    "datastore": "name: hostileyaml\ntype: local\npath: {payload}\n",
    "compute": "name: hostile-yaml\ntype: amlcompute\nsize: {payload}\n",
}


@pytest.mark.parametrize("group", sorted(CREATE_COMMANDS))
def test_yaml_tags_are_refused_by_every_create_command(group: str, cli_inproc, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    spec = tmp_path / f"{group}.yml"
    spec.write_text(CREATE_COMMANDS[group].format(payload=PAYLOAD.format(marker=marker)))
    result = cli_inproc(group, "create", "--file", str(spec), check=False)
    _check_cli_refusal(result, (str(spec), "tags that build objects are refused"))
    assert not marker.exists(), "the YAML tag ran a command"
    name = "hostileyaml" if group == "datastore" else "hostile-yaml"
    show = [group, "show", "-n", name] + (["-e", ENDPOINT] if group == "batch-deployment" else [])
    assert cli_inproc(*show, check=False).code == 1, "nothing may be created"


def test_yaml_tags_in_set_values_are_refused(cli_inproc, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    result = cli_inproc("batch-endpoint", "create", "--name", "hostile-set",
                 "--set", f"description={PAYLOAD.format(marker=marker)}", check=False)
    _check_cli_refusal(result, ("--set", "tags that build objects are refused"))
    assert not marker.exists()
    assert cli_inproc("batch-endpoint", "show", "-n", "hostile-set", check=False).code == 1


# ---- oversized bodies, and the server's logs ---------------------------------------------------

SMALL_REQUEST = 4096
SMALL_UPLOAD = 8192
SITECUSTOMIZE = '''
import os
_spec = os.environ.pop("BP_TEST_LOG_TRIGGER", None)  # popped: worker processes do not inherit it
if _spec:
    import json, logging, threading, time

    def _log_when_asked():
        trigger, done = _spec.split(os.pathsep)
        while not os.path.exists(trigger):
            time.sleep(0.05)
        time.sleep(0.05)
        lines = json.loads(open(trigger).read())
        os.unlink(trigger)
        for name, line in lines["plain"]:
            logging.getLogger(name).warning("%s", line)
        try:
            raise RuntimeError(lines["exception"])
        except RuntimeError:
            logging.getLogger("batchpoint.server").exception("request failed: %s", lines["argument"])
        for handler in logging.getLogger().handlers + logging.getLogger("uvicorn").handlers:
            handler.flush()
        open(done, "w").close()

    threading.Thread(target=_log_when_asked, name="log-trigger", daemon=True).start()
'''


@dataclass
class SmallServer:
    handle: ServerHandle
    trigger: Path
    done: Path


@pytest.fixture(scope="module")
def small_server(tmp_path_factory) -> Iterator[SmallServer]:
    """A server of its own with small body limits, and a hook that logs lines on request through
    the server process's own logging (the handlers ``python -m batchpoint.server`` configured)."""
    hooks = tmp_path_factory.mktemp("log-hook")
    (hooks / "sitecustomize.py").write_text(textwrap.dedent(SITECUSTOMIZE))
    trigger, done = hooks / "trigger.json", hooks / "done"
    path = os.pathsep.join(p for p in (str(hooks), os.environ.get("PYTHONPATH", "")) if p)
    handle = start_server(tmp_path_factory.mktemp("bp-small"), {
        "BATCHPOINT_SERVER__MAX_REQUEST_BYTES": str(SMALL_REQUEST),
        "BATCHPOINT_SERVER__MAX_UPLOAD_BYTES": str(SMALL_UPLOAD),
        "PYTHONPATH": path, "BP_TEST_LOG_TRIGGER": f"{trigger}{os.pathsep}{done}"})
    yield SmallServer(handle, trigger, done)
    stop_server(handle)


def _body_of(size: int) -> bytes:
    """A valid invoke body of about ``size`` bytes."""
    pad = "x" * max(0, size - 120)
    return json.dumps({"properties": {"InputData": {"input_data": {
        "JobInputType": "UriFolder", "Uri": _ds("heart")}}, "JobName": f"j{pad}"}}).encode()


def _chunks(data: bytes, size: int = 1000) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start:start + size]


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_oversized_request_body_is_413(framing: str, small_server: SmallServer) -> None:
    body = _body_of(3 * SMALL_REQUEST)
    with small_server.handle.rest() as rest:
        content = body if framing == "content-length" else _chunks(body)
        response = rest.post(f"/batchEndpoints/{ENDPOINT}/invoke", content=content,
                             headers={"content-type": "application/json"})
        assert ("content-length" in response.request.headers) == (framing == "content-length")
        says = (f"limit of {SMALL_REQUEST} bytes", "max_request_bytes")
        if framing == "content-length":
            says += (f"of {len(body)} bytes",)
        _check_rest_refusal(response, 413, "payload_too_large", says)
        assert rest.get("/jobs").json() == []


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_body_under_the_limit_reaches_the_route(framing: str, small_server: SmallServer) -> None:
    """The limit replays what it counted: a small chunked body is read by the route as sent."""
    name = f"small-{framing}"
    body = json.dumps({"description": "x" * 1000}).encode()
    with small_server.handle.rest() as rest:
        content = body if framing == "content-length" else _chunks(body, 100)
        response = rest.put(f"/batchEndpoints/{name}", content=content, headers={"content-type": "application/json"})
        assert response.status_code == 200, response.text
        assert rest.get(f"/batchEndpoints/{name}").json()["description"] == "x" * 1000


def test_oversized_body_of_an_anonymous_caller_is_401_first(small_server: SmallServer) -> None:
    with httpx.Client(base_url=small_server.handle.url, timeout=30) as anonymous:
        response = anonymous.post(f"/batchEndpoints/{ENDPOINT}/invoke", content=_body_of(3 * SMALL_REQUEST))
    assert response.status_code == 401


def test_upload_area_takes_files_above_the_request_limit_up_to_the_upload_limit(small_server: SmallServer) -> None:
    """Files sent through the upload area stream: bigger than max_request_bytes is fine, up to
    max_upload_bytes per file; above it the declaration itself is refused (413)."""
    import hashlib

    data = b"x" * (2 * SMALL_REQUEST)  # above the request limit, below the upload limit
    files = [{"path": "big.csv", "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}]
    with small_server.handle.rest() as rest:
        upload = rest.post("/uploads", json={"name": "big-ok", "type": "uri_folder", "files": files}).json()
        sent = rest.put(f"/uploads/{upload['id']}/files/big.csv", content=data)
        assert sent.status_code == 200, sent.text
        assert rest.post(f"/uploads/{upload['id']}/commit").json()["status"] == "Completed"
        huge = [{"path": "huge.csv", "size": SMALL_UPLOAD + 1, "sha256": "0" * 64}]
        refused = rest.post("/uploads", json={"name": "too-big", "type": "uri_folder", "files": huge})
        _check_rest_refusal(refused, 413, "payload_too_large", ("huge.csv", f"limit of {SMALL_UPLOAD} bytes"))


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_oversized_upload_is_413_and_leaves_nothing(framing: str, small_server: SmallServer) -> None:
    handle = small_server.handle
    folder = f"incoming/big-{framing}-{uuid.uuid4().hex[:6]}"
    data = b"0123456789" * (SMALL_UPLOAD // 10 + 500)
    with handle.rest() as rest:
        root = Path(rest.get("/defaultDatastore").json()["path"])
        before = sorted(root.rglob("*"))
        content = data if framing == "content-length" else _chunks(data, 1024)
        response = rest.put(f"/datastores/{STORE}/files/{folder}/part-0.csv", content=content)
        _check_rest_refusal(response, 413, "payload_too_large",
                            (f"{folder}/part-0.csv", f"limit of {SMALL_UPLOAD} bytes", "max_upload_bytes",
                             "nothing was written"))
        assert rest.head(f"/datastores/{STORE}/files/{folder}/part-0.csv").status_code == 404
        assert sorted(root.rglob("*")) == before, "a refused upload left files or folders behind"
        ok = rest.put(f"/datastores/{STORE}/files/{folder}-ok/part-0.csv", content=data[:SMALL_UPLOAD])
        assert ok.status_code == 200, ok.text  # exactly the limit is allowed


def test_server_logs_mask_secrets(small_server: SmallServer) -> None:
    """Secrets logged through the server's own loggers (batchpoint's, uvicorn's, the storage SDK's,
    in a message, an argument and a traceback) reach server.log masked."""
    handle = small_server.handle
    owner_key = (handle.home / "owner.key").read_text().strip()
    sas_sig = record_secret("sv2024hostileSIGNATUREvalue0123456789abcdefABCDEF%3D")
    lines = {
        "plain": [
            ["batchpoint.server", f"reading DefaultEndpointsProtocol=https;AccountName=acct;AccountKey={FAKE_KEY};"],
            ["uvicorn.error", f"request with Authorization: Bearer {owner_key}"],
            ["uvicorn", f"GET https://acct.blob.core.windows.net/c/x.csv?sv=2024-01-01&sig={sas_sig}"],
            ["azure.core.pipeline.policies.http_logging_policy", f"account_key={FAKE_KEY}"],
        ],
        "exception": f"connection failed for https://acct.blob.core.windows.net/c?sig={sas_sig}",
        "argument": f"x-api-key {owner_key}",
    }
    small_server.trigger.write_text(json.dumps(lines))
    try:
        deadline = time.monotonic() + 30
        while not small_server.done.exists():
            assert time.monotonic() < deadline, "the server process did not log the lines"
            time.sleep(0.05)
    finally:
        if small_server.trigger.exists():
            small_server.trigger.unlink()
    log = handle.log()
    key_id = owner_key.split("_")[1]
    key_secret = owner_key[len(f"bpk_{key_id}_"):]
    for secret in (FAKE_KEY, owner_key, sas_sig, key_secret):
        assert secret not in log, f"secret {secret[:8]}… in server.log"
    for masked in ("AccountKey=***", "Bearer ***", "sig=***", "account_key=***", f"bpk_{key_id}_***",
                   "RuntimeError: connection failed for", "Traceback"):
        assert masked in log, f"{masked!r} not in server.log:\n{log[-3000:]}"
