"""Acceptance 2: the same job started with every workspace input spelling, through the CLI, the
SDK and the REST body; each spelling × interface is its own test.

All jobs are invoked first (module fixture), then each test waits for its own, so the server runs
them side by side.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import pytest

from conftest import HEART_ROWS, HEART_UNLABELED, wait_job
from batchpoint import AssetTypes, Input
from fixtures.flows import HEART_FILE, HEART_FILE_ROWS, HeartData, jobs_of, make_endpoint

ENDPOINT = "heart-spellings"
REST_TYPES = {AssetTypes.URI_FOLDER: "UriFolder", AssetTypes.URI_FILE: "UriFile"}


@dataclass
class Ctx:
    data: HeartData
    datastore_id: str
    location: str
    workspace: str
    subscription: str
    resource_group: str
    storage_account_id: str


@dataclass(frozen=True)
class Spelling:
    id: str
    make: Callable[[Ctx], str]
    type: str = AssetTypes.URI_FOLDER
    rows: int = HEART_ROWS
    local: bool = False


def _asset(ctx: Ctx) -> Any:
    return ctx.data.folder_asset


SPELLINGS = [
    Spelling("datastore-short", lambda c: f"azureml://datastores/{c.data.datastore.name}/paths/{c.data.folder_path}"),
    Spelling("datastore-azureml-colon-slash",
             lambda c: f"azureml:/datastores/{c.data.datastore.name}/paths/{c.data.folder_path}"),
    Spelling("datastore-id", lambda c: f"{c.datastore_id}/paths/{c.data.folder_path}"),
    Spelling("datastore-workspace-uri",
             lambda c: f"azureml://subscriptions/{c.subscription}/resourcegroups/{c.resource_group}/workspaces/"
                       f"{c.workspace}/datastores/{c.data.datastore.name}/paths/{c.data.folder_path}"),
    Spelling("storage-account-id", lambda c: f"{c.storage_account_id}/paths/{c.data.folder_path}"),
    Spelling("asset-azureml-latest", lambda c: f"azureml:{_asset(c).name}@latest"),
    Spelling("asset-azureml-slash-latest", lambda c: f"azureml:/{_asset(c).name}@latest"),
    Spelling("asset-bare-latest", lambda c: f"{_asset(c).name}@latest"),
    Spelling("asset-azureml-version", lambda c: f"azureml:{_asset(c).name}:{_asset(c).version}"),
    Spelling("asset-bare-version", lambda c: f"{_asset(c).name}:{_asset(c).version}"),
    Spelling("asset-id", lambda c: _asset(c).id),
    Spelling("asset-location-version", lambda c: f"azureml://locations/{c.location}/workspaces/{c.workspace}"
                                                 f"/data/{_asset(c).name}/versions/{_asset(c).version}"),
    Spelling("asset-location-label", lambda c: f"azureml://locations/{c.location}/workspaces/{c.workspace}"
                                               f"/data/{_asset(c).name}/versions/labels/latest"),
    Spelling("datastore-file", lambda c: f"azureml://datastores/{c.data.datastore.name}/paths/{c.data.file_path}",
             type=AssetTypes.URI_FILE, rows=HEART_FILE_ROWS),
    Spelling("asset-file", lambda c: f"azureml:{c.data.file_asset.name}@latest",
             type=AssetTypes.URI_FILE, rows=HEART_FILE_ROWS),
    Spelling("local-folder", lambda c: str(HEART_UNLABELED), local=True),
    Spelling("local-file", lambda c: str(HEART_FILE), type=AssetTypes.URI_FILE, rows=HEART_FILE_ROWS, local=True),
]
INTERFACES = ["cli", "sdk", "rest"]
CASES = [(s, i) for s in SPELLINGS for i in INTERFACES if not (s.local and i == "rest")]


def _rest_body(path: str, input_type: str, camel: bool = False) -> dict[str, Any]:
    if camel:
        return {"properties": {"inputData": {"heart": {"jobInputType": REST_TYPES[input_type], "uri": path}}}}
    return {"properties": {"InputData": {"heart": {"JobInputType": REST_TYPES[input_type], "Uri": path}}}}


@pytest.fixture(scope="module")
def ctx(ml_client: Any, heart_data: HeartData, heart_model: Any, batch_cluster: Any) -> Ctx:
    make_endpoint(ml_client, ENDPOINT, mini_batch_size=10)
    ws = ml_client.workspaces.get()
    return Ctx(heart_data, heart_data.datastore.id, ws.location, ws.name, ws.subscription_id, ws.resource_group,
               ws.storage_account)


@pytest.fixture(scope="module")
def started(ctx: Ctx, ml_client: Any, cli_inproc: Any, server: Any) -> dict[str, Any]:
    """Invoke every case at once; maps a case id to its job name (or the exception it raised)."""

    def start(case: tuple[Spelling, str]) -> str:
        spelling, interface = case
        path = spelling.make(ctx)
        if interface == "cli":
            cwd = None
            if spelling.local:  # a path relative to the working directory, as a user types it
                cwd = HEART_UNLABELED.parent
                path = "./" + str(HEART_UNLABELED.relative_to(cwd) if spelling.type == "uri_folder"
                                  else HEART_FILE.relative_to(cwd))
            result = cli_inproc("batch-endpoint", "invoke", "-n", ENDPOINT, "--input", path, "--input-type", spelling.type,
                         "--query", "name", "-o", "tsv", cwd=cwd)
            return result.out.strip()
        if interface == "sdk":
            job = ml_client.batch_endpoints.invoke(endpoint_name=ENDPOINT, input=Input(type=spelling.type, path=path))
            return job.name
        with server.rest() as rest:
            response = rest.post(f"/batchEndpoints/{ENDPOINT}/invoke", json=_rest_body(path, spelling.type))
        assert response.status_code == 202, response.text
        return response.json()["name"]

    def safe(case: tuple[Spelling, str]) -> Any:
        try:
            return start(case)
        except Exception as exc:  # noqa: BLE001 - reported by the case's own test
            return exc

    # the CLI runs in this process (fixtures/inproc_cli.py), which sets the process's environment and
    # working directory for each call: its cases one at a time, the SDK and REST ones beside each other
    names = {n: safe(case) for n, case in enumerate(CASES) if case[1] == "cli"}
    others = [n for n, case in enumerate(CASES) if case[1] != "cli"]
    with ThreadPoolExecutor(max_workers=6) as pool:
        names.update(zip(others, pool.map(lambda n: safe(CASES[n]), others), strict=True))
    return {f"{s.id}-{i}": names[n] for n, (s, i) in enumerate(CASES)}


@pytest.mark.parametrize(("spelling", "interface"), CASES, ids=[f"{s.id}-{i}" for s, i in CASES])
def test_spelling_completes(spelling: Spelling, interface: str, started: dict[str, Any], ctx: Ctx,
                            ml_client: Any) -> None:
    name = started[f"{spelling.id}-{interface}"]
    if isinstance(name, Exception):
        raise name
    job = wait_job(ml_client, name)
    assert job.status == "Completed", (job.status_message, job.error)
    assert job.progress.rows == spelling.rows
    (recorded,) = job.inputs.values()
    assert recorded["type"] == spelling.type
    if spelling.local:  # uploaded by the CLI / SDK to the default data store first
        assert recorded["path"].startswith(f"azureml://datastores/{ctx.data.datastore.name}/paths/LocalUpload/")
    else:
        assert recorded["path"] == spelling.make(ctx)


def test_rest_camel_case_body(ctx: Ctx, ml_client: Any, server: Any) -> None:
    path = f"azureml:{ctx.data.folder_asset.name}@latest"
    with server.rest() as rest:
        response = rest.post(f"/batchEndpoints/{ENDPOINT}/invoke", json=_rest_body(path, "uri_folder", camel=True))
    assert response.status_code == 202, response.text
    job = wait_job(ml_client, response.json()["name"])
    assert job.status == "Completed", job.status_message
    assert job.progress.rows == HEART_ROWS


@pytest.mark.parametrize("spelling", [s for s in SPELLINGS if s.local], ids=lambda s: s.id)
def test_rest_refuses_local_path(spelling: Spelling, ctx: Ctx, ml_client: Any, server: Any) -> None:
    before = jobs_of(ml_client, ENDPOINT)
    with server.rest() as rest:
        response = rest.post(f"/batchEndpoints/{ENDPOINT}/invoke", json=_rest_body(spelling.make(ctx), spelling.type))
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_input"
    assert "local path" in error["message"] and "cannot read" in error["message"]
    assert jobs_of(ml_client, ENDPOINT) == before
