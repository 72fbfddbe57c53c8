"""Acceptance 4: every refused input gives its clear error from the CLI (exit code 1, one
``ERROR:`` line; the CLI's ``main`` in this process, ``fixtures/inproc_cli.py``), the SDK (the class from ``batchpoint.exceptions``) and REST (4xx with
``{"error": {"code", "message"}}``) — and no job is created."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from batchpoint import Data, Input
from batchpoint.exceptions import (
    BatchpointError,
    InputError,
    NotFoundError,
    UnsafeInputError,
    UnsupportedInputError,
)
from fixtures.flows import HeartData, jobs_of, make_endpoint

ENDPOINT = "heart-refusals"
REST_TYPES = {"uri_folder": "UriFolder", "uri_file": "UriFile", "mltable": "MLTable"}


@dataclass
class Ctx:
    data: HeartData
    mltable_asset: str
    empty_folder: str  # data store path of an empty folder
    location: str


@dataclass(frozen=True)
class Refusal:
    id: str
    uri: Callable[[Ctx], str]
    error: type[BatchpointError]
    status: int
    code: str
    says: tuple[str, ...]  # what the message must name
    type: str | None = None  # input type given with it
    rest_type: str | None = None  # REST JobInputType when it differs from ``type``
    interfaces: tuple[str, ...] = ("cli", "sdk", "rest")
    extra: dict[str, Any] = field(default_factory=dict)


def _ds(ctx: Ctx, path: str) -> str:
    return f"azureml://datastores/{ctx.data.datastore.name}/paths/{path}"


REFUSALS = [
    Refusal("mltable-input-type", lambda c: c.data.folder_uri, UnsupportedInputError, 400, "unsupported_input",
            ("MLTable", "uri_folder"), type="mltable"),
    Refusal("mltable-data-asset", lambda c: f"azureml:{c.mltable_asset}@latest", UnsupportedInputError, 400,
            "unsupported_input", ("MLTable",)),
    Refusal("mltable-file", lambda c: _ds(c, f"{c.data.folder_path}/MLTable"), UnsupportedInputError, 400,
            "unsupported_input", ("MLTable",)),
    Refusal("v1-dataset-uri", lambda c: "azureml://datasets/x", UnsupportedInputError, 400, "unsupported_input",
            ("V1", "FileDataset")),
    Refusal("v1-dataset-id", lambda c: "azureml:/datasets/heart/versions/1", UnsupportedInputError, 400,
            "unsupported_input", ("V1",)),
    Refusal("v1-filedataset-input-type", lambda c: c.data.folder_uri, UnsupportedInputError, 400, "unsupported_input",
            ("V1", "FileDataset"), rest_type="FileDataset", interfaces=("rest",)),
    Refusal("unknown-datastore", lambda c: "azureml://datastores/nosuchstore/paths/heart", NotFoundError, 404,
            "not_found", ("data store", "nosuchstore")),
    Refusal("unknown-asset", lambda c: "azureml:no-such-asset@latest", NotFoundError, 404, "not_found",
            ("data asset", "no-such-asset")),
    Refusal("unknown-asset-bare", lambda c: "no-such-asset:1", NotFoundError, 404, "not_found", ("no-such-asset",)),
    Refusal("unknown-version", lambda c: f"azureml:{c.data.folder_asset.name}:999", NotFoundError, 404, "not_found",
            ("999", "known versions")),
    Refusal("unknown-label", lambda c: f"azureml:{c.data.folder_asset.name}@production", NotFoundError, 404,
            "not_found", ("production",)),
    Refusal("other-workspace", lambda c: f"azureml://locations/{c.location}/workspaces/other-ws/data/"
                                         f"{c.data.folder_asset.name}/versions/1",
            NotFoundError, 404, "not_found", ("other-ws",)),
    Refusal("missing-path", lambda c: _ds(c, "no/such/folder"), InputError, 400, "invalid_input",
            ("no/such/folder", "does not exist")),
    Refusal("empty-folder", lambda c: _ds(c, c.empty_folder), InputError, 400, "invalid_input",
            ("empty folder", "no files")),
    Refusal("dotdot-leaves-datastore", lambda c: _ds(c, "../../etc"), UnsafeInputError, 400, "unsafe_input",
            ("'..'",)),
    Refusal("dotdot-inside-path", lambda c: _ds(c, f"{c.data.folder_path}/../../../../etc/passwd"), UnsafeInputError,
            400, "unsafe_input", ("'..'",), type="uri_file"),
    Refusal("uri-file-on-folder", lambda c: c.data.folder_uri, InputError, 400, "invalid_input",
            ("uri_file", "folder", "disagrees"), type="uri_file"),
    Refusal("uri-folder-on-file", lambda c: c.data.file_uri, InputError, 400, "invalid_input",
            ("uri_folder", "file", "disagrees"), type="uri_folder"),
    Refusal("type-disagrees-with-asset", lambda c: f"azureml:{c.data.folder_asset.name}@latest", InputError, 400,
            "invalid_input", ("uri_file", "disagrees"), type="uri_file"),
    Refusal("unsupported-url-scheme", lambda c: "ftp://example.com/heart", InputError, 400, "invalid_input",
            ("ftp://",)),
    Refusal("local-path-missing", lambda c: "./no-such-local-folder", InputError, 400, "invalid_input",
            ("no-such-local-folder", "does not exist"), interfaces=("cli", "sdk")),
]
CASES = [(r, i) for r in REFUSALS for i in r.interfaces]


@pytest.fixture(scope="module")
def ctx(ml_client: Any, heart_data: HeartData, heart_model: Any, batch_cluster: Any) -> Ctx:
    make_endpoint(ml_client, ENDPOINT)
    mltable = ml_client.data.create_or_update(
        Data(name=f"heart-mltable-{uuid.uuid4().hex[:6]}", type="mltable", path=heart_data.folder_uri))
    empty = f"empty-{uuid.uuid4().hex[:8]}"
    (heart_data.datastore_root / empty).mkdir()
    return Ctx(heart_data, mltable.name, empty, ml_client.workspaces.get().location)


@pytest.mark.parametrize(("refusal", "interface"), CASES, ids=[f"{r.id}-{i}" for r, i in CASES])
def test_refused_input(refusal: Refusal, interface: str, ctx: Ctx, ml_client: Any, cli_inproc: Any, server: Any,
                       tmp_path: Path) -> None:
    uri = refusal.uri(ctx)
    before = jobs_of(ml_client, ENDPOINT)
    if interface == "cli":
        args = ["batch-endpoint", "invoke", "-n", ENDPOINT, "--input", uri]
        if refusal.type:
            args += ["--input-type", refusal.type]
        result = cli_inproc(*args, check=False, cwd=tmp_path)
        assert result.code == 1, (result.code, result.out, result.err)
        assert result.out == ""
        errors = [line for line in result.err.splitlines() if line.startswith("ERROR:")]
        assert len(errors) == 1, result.err
        assert "Traceback" not in result.err
        message = result.err
    elif interface == "sdk":
        with pytest.raises(refusal.error) as caught:
            ml_client.batch_endpoints.invoke(endpoint_name=ENDPOINT, input=Input(type=refusal.type, path=uri))
        assert type(caught.value) is refusal.error
        message = caught.value.message
    else:
        spec = {"Uri": uri}
        rest_type = refusal.rest_type or refusal.type
        if rest_type:
            spec["JobInputType"] = REST_TYPES.get(rest_type, rest_type)
        with server.rest() as rest:
            response = rest.post(f"/batchEndpoints/{ENDPOINT}/invoke", json={"properties": {"InputData": {"heart": spec}}})
        assert response.status_code == refusal.status, response.text
        assert response.headers["content-type"].startswith("application/json")
        error = response.json()["error"]
        assert error["code"] == refusal.code, error
        message = error["message"]
    for word in refusal.says:
        assert word in message, f"{word!r} not in {message!r}"
    assert jobs_of(ml_client, ENDPOINT) == before, "a refused input must not leave a job behind"


def test_rest_refuses_an_unknown_input_type(ctx: Ctx, ml_client: Any, server: Any) -> None:
    before = jobs_of(ml_client, ENDPOINT)
    body = {"properties": {"InputData": {"heart": {"JobInputType": "Literal", "Uri": ctx.data.folder_uri}}}}
    with server.rest() as rest:
        response = rest.post(f"/batchEndpoints/{ENDPOINT}/invoke", json=body)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "validation_error" and "Literal" in error["message"] and "UriFolder" in error["message"]
    assert jobs_of(ml_client, ENDPOINT) == before


def test_invoke_of_an_unknown_endpoint(ctx: Ctx, ml_client: Any, cli_inproc: Any, server: Any) -> None:
    with pytest.raises(NotFoundError, match="no-such-endpoint"):
        ml_client.batch_endpoints.invoke(endpoint_name="no-such-endpoint", input=Input(path=ctx.data.folder_uri))
    result = cli_inproc("batch-endpoint", "invoke", "-n", "no-such-endpoint", "--input", ctx.data.folder_uri, check=False)
    assert result.code == 1 and result.err.startswith("ERROR:") and "no-such-endpoint" in result.err
    with server.rest() as rest:
        response = rest.post("/batchEndpoints/no-such-endpoint/invoke",
                             json={"properties": {"InputData": {"heart": {"Uri": ctx.data.folder_uri}}}})
    assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"


@pytest.mark.parametrize(("body", "says"), [
    ({"properties": {"InputData": {"heart": {"JobInputType": "UriFolder"}}}}, "Uri"),
    ({"InputData": {"heart": {"Uri": "x"}}}, "properties"),
    ({"properties": {}}, "InputData"),
    ({"properties": {"InputData": {}}}, "InputData"),
    ({"properties": {"InputData": {"heart": {"Uri": "x"}}, "Bogus": 1}}, "Bogus"),
    ({"properties": {"InputData": {"heart": {"Uri": "x"}}, "Settings": {"gpu_count": 2}}}, "gpu_count"),
    ([1, 2], "JSON object"),
])
def test_rest_refuses_a_malformed_invoke_body(body: Any, says: str, ctx: Ctx, ml_client: Any, server: Any) -> None:
    before = jobs_of(ml_client, ENDPOINT)
    with server.rest() as rest:
        response = rest.post(f"/batchEndpoints/{ENDPOINT}/invoke", json=body)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "validation_error" and says in error["message"], error
    assert jobs_of(ml_client, ENDPOINT) == before
