"""A data store's and a compute's ``type`` are refused, naming the valid types, by every front door
— REST (in process, the real app), the OpenAPI schema listing them, the SDK and the CLI against the
session server — with the types taken from the storage kinds' and the engines' registries, not
from a list in ``entities`` (issue 20, self-describing plug-ins)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from batchpoint import AmlCompute, Datastore
from batchpoint.exceptions import ValidationError
from fixtures.inproc import workspace

#: fixed oracles: the shipped types, in the order the API has always listed them
DATASTORE_TYPES = "local, azure_blob, azure_data_lake_gen2, azure_data_lake_gen1, s3"
COMPUTE_TYPES = "amlcompute, local, ray"


def test_rest_refuses_an_unknown_type_naming_the_valid_ones_and_openapi_lists_them(tmp_path: Path) -> None:
    with workspace(tmp_path) as ws:
        refused = ws.owner.put("/datastores/ftpstore", json={"type": "ftp", "path": "/x"})
        assert refused.status_code == 400, refused.text
        assert f"unknown data store type 'ftp'; valid types: {DATASTORE_TYPES}" in refused.json()["error"]["message"]
        refused = ws.owner.put("/computes/k8s", json={"type": "kubernetes"})
        assert refused.status_code == 400, refused.text
        assert f"unknown compute type 'kubernetes'; valid types: {COMPUTE_TYPES}" in refused.json()["error"]["message"]
        schemas = ws.owner.get("/openapi.json").json()["components"]["schemas"]
        assert ", ".join(schemas["Datastore"]["properties"]["type"]["enum"]) == DATASTORE_TYPES
        assert ", ".join(schemas["AmlCompute"]["properties"]["type"]["enum"]) == COMPUTE_TYPES


def test_the_sdk_gets_the_servers_refusal_naming_the_valid_types(ml_client: Any) -> None:
    """A client process that loaded no registry (the SDK imports no engine) lets any type through
    (``model_construct`` here, as this test process has both registries); the server refuses it."""
    with pytest.raises(ValidationError, match=f"unknown compute type 'kubernetes'; valid types: {COMPUTE_TYPES}"):
        ml_client.compute.begin_create_or_update(AmlCompute.model_construct(name="sdk-k8s", type="kubernetes")).result()
    with pytest.raises(ValidationError, match=f"unknown data store type 'ftp'; valid types: {DATASTORE_TYPES}"):
        ml_client.datastores.create_or_update(Datastore.model_construct(name="sdkftp", type="ftp", path="/x"))
    with pytest.raises(ValueError, match=f"unknown compute type 'kubernetes'; valid types: {COMPUTE_TYPES}"):
        AmlCompute(name="sdk-k8s", type="kubernetes")  # where the registry is loaded, refused before it is sent


def test_the_cli_refuses_an_unknown_type_naming_the_valid_ones(cli_inproc: Any, tmp_path: Path) -> None:
    result = cli_inproc("compute", "create", "-n", "cli-k8s", "--type", "kubernetes", check=False)
    assert result.code != 0
    assert f"unknown compute type 'kubernetes'; valid types: {COMPUTE_TYPES}" in result.err + result.out
    spec = tmp_path / "ds.yml"
    spec.write_text("name: cliftp\ntype: ftp\npath: /x\n")
    result = cli_inproc("datastore", "create", "-f", str(spec), check=False)
    assert result.code != 0
    assert f"unknown data store type 'ftp'; valid types: {DATASTORE_TYPES}" in result.err + result.out
