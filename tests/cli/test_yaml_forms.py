"""Acceptance 5 of issue 11: Azure's YAML forms accepted from a file (CLI ``-f``), as SDK objects
and as REST bodies — ``$schema`` lines, ``version: 1`` as an integer, ``tags:`` and
``properties:`` on every asset, compute ``size``/``tier``/``location``/``identity`` (both
``system_assigned`` and ``user_assigned`` with ``user_assigned_identities``), an inline ``model:
{path: ...}`` and an inline ``environment: {...}`` in a deployment. The forms are copied from Azure's
documentation and the azureml-examples batch samples (names changed). (The model YAML, the compute
with ``system_assigned`` and the inline conda environment from a file are in
``test_custom_model_outputs.py``, which runs jobs with them.)"""

from __future__ import annotations

import json
import shutil
import textwrap
import uuid
from pathlib import Path
from typing import Any

import pytest

from conftest import HEART_UNLABELED
from batchpoint import (
    AmlCompute,
    BatchDeployment,
    BatchEndpoint,
    CodeConfiguration,
    Data,
    Environment,
    IdentityConfiguration,
    ManagedIdentityConfiguration,
    Model,
)
from batchpoint.exceptions import BatchpointError

CLIENT_ID = "0b6e2a4c-3a35-4b8e-9d1e-6f1c2d3e4f5a"
UAI = ("/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg/providers/"
       "Microsoft.ManagedIdentity/userAssignedIdentities/batch-identity")
SCRIPT = "def init():\n    pass\n\n\ndef run(mini_batch):\n    return mini_batch\n"


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip())
    return path


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory, pickled_heart: Path) -> Path:
    root = tmp_path_factory.mktemp("azure-yaml")
    shutil.copytree(pickled_heart, root / "model")
    _write(root / "code" / "batch_driver.py", SCRIPT)
    return root


def _json(result: Any) -> Any:
    return json.loads(result.out)


def test_cli_files(project: Path, cli_inproc: Any) -> None:
    suffix = uuid.uuid4().hex[:6]
    data = _write(project / "data.yml", f"""
        $schema: https://azuremlschemas.azureedge.net/latest/data.schema.json
        name: heart-dataset-unlabeled-{suffix}
        version: 1
        description: An unlabeled dataset for heart classification.
        type: uri_folder
        path: {HEART_UNLABELED}
        tags:
          source: uci
          rows: 303
        properties:
          license: CC BY 4.0
    """)
    shown = _json(cli_inproc("data", "create", "-f", str(data)))
    assert (shown["version"], shown["tags"], shown["properties"]) == (
        "1", {"source": "uci", "rows": "303"}, {"license": "CC BY 4.0"})

    compute = _write(project / "compute.yml", f"""
        $schema: https://azuremlschemas.azureedge.net/latest/amlCompute.schema.json
        name: uai-cluster-{suffix}
        type: amlcompute
        size: STANDARD_DS3_v2
        tier: low_priority
        location: westeurope
        min_instances: 0
        max_instances: 2
        identity:
          type: user_assigned
          user_assigned_identities:
            - client_id: {CLIENT_ID}
              resource_id: {UAI}
        tags:
          team: scoring
    """)
    shown = _json(cli_inproc("compute", "create", "-f", str(compute)))
    assert (shown["tier"], shown["location"], shown["tags"]) == ("low_priority", "westeurope", {"team": "scoring"})
    assert shown["identity"]["user_assigned_identities"] == [{"client_id": CLIENT_ID, "resource_id": UAI}]

    endpoint = _write(project / "endpoint.yml", f"""
        $schema: https://azuremlschemas.azureedge.net/latest/batchEndpoint.schema.json
        name: yaml-ep-{suffix}
        description: A heart condition classifier for batch inference
        auth_mode: aad_token
        tags:
          owner: ml-team
        properties:
          cost-center: 1234
    """)
    shown = _json(cli_inproc("batch-endpoint", "create", "-f", str(endpoint)))
    assert (shown["tags"], shown["properties"]) == ({"owner": "ml-team"}, {"cost-center": "1234"})

    deployment = _write(project / "deployment.yml", f"""
        $schema: https://azuremlschemas.azureedge.net/latest/modelBatchDeployment.schema.json
        name: inline-model
        endpoint_name: yaml-ep-{suffix}
        type: model
        model:
          path: model
          type: custom_model
        environment:
          $schema: https://azuremlschemas.azureedge.net/latest/environment.schema.json
          image: mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu20.04:latest
          conda_file:
            name: inline-env
            dependencies:
              - python=3.11
              - pip:
                - pandas
        code_configuration:
          code: code
          scoring_script: batch_driver.py
        compute: azureml:uai-cluster-{suffix}
        resources:
          instance_count: 1
        settings:
          mini_batch_size: 10
          output_action: summary_only
        tags:
          stage: blue
        properties:
          version: 2
    """)
    shown = _json(cli_inproc("batch-deployment", "create", "-f", str(deployment)))
    assert shown["model"] == f"azureml:yaml-ep-{suffix}-inline-model:1"  # the inline model, registered
    assert (shown["tags"], shown["properties"]) == ({"stage": "blue"}, {"version": "2"})
    assert shown["environment"]["conda_file"]["name"] == "inline-env"
    model = _json(cli_inproc("model", "show", "-n", f"yaml-ep-{suffix}-inline-model", "-v", "1"))
    assert model["type"] == "custom_model" and model["path"].endswith("/model")


def test_cli_refuses_an_identity_it_cannot_map(project: Path, cli_inproc: Any) -> None:
    compute = _write(project / "bad-compute.yml", f"""
        name: no-client-id
        type: amlcompute
        identity:
          type: user_assigned
          user_assigned_identities:
            - resource_id: {UAI}
    """)
    result = cli_inproc("compute", "create", "-f", str(compute), check=False)
    assert result.code != 0 and "needs its client_id" in result.err, result.err
    assert "Traceback" not in result.err
    typo = _write(project / "typo.yml", "name: typo-cluster\ntype: amlcompute\ntier: cheap\n")
    result = cli_inproc("compute", "create", "-f", str(typo), check=False)
    assert result.code != 0 and "tier" in result.err and "low_priority" in result.err, result.err


def test_sdk_objects(project: Path, ml_client: Any) -> None:
    suffix = uuid.uuid4().hex[:6]
    data = ml_client.data.create_or_update(Data(name=f"heart-sdk-{suffix}", version=1, path=str(HEART_UNLABELED),
                                                tags={"n": 4}, properties={"split": "test"}))
    assert (data.version, data.tags, data.properties) == ("1", {"n": "4"}, {"split": "test"})
    model = ml_client.models.create_or_update(Model(name=f"heart-pkl-{suffix}", version=1, type="custom_model",
                                                    path=str(project / "model"), properties={"algo": "gbm"}))
    assert (model.version, model.properties) == ("1", {"algo": "gbm"})
    compute = ml_client.compute.begin_create_or_update(AmlCompute(
        name=f"sdk-cluster-{suffix}", size="STANDARD_DS3_v2", tier="dedicated", location="eastus", max_instances=2,
        identity=IdentityConfiguration(type="user_assigned", user_assigned_identities=[
            ManagedIdentityConfiguration(client_id=CLIENT_ID, resource_id=UAI)]))).result()
    assert compute.identity.type == "user_assigned" and compute.tier == "dedicated"
    ml_client.batch_endpoints.begin_create_or_update(BatchEndpoint(
        name=f"sdk-ep-{suffix}", tags={"a": "b"}, properties={"c": "d"})).result()
    deployment = ml_client.batch_deployments.begin_create_or_update(BatchDeployment(
        name="inline", endpoint_name=f"sdk-ep-{suffix}", model=Model(path=str(project / "model")),
        environment={"image": "mcr.microsoft.com/azureml/minimal-ubuntu22.04-py311-cpu-inference:latest",
                     "conda_file": {"dependencies": ["python=3.11", {"pip": ["pandas"]}]}},
        code_configuration=CodeConfiguration(code=str(project / "code"), scoring_script="batch_driver.py"),
        compute=f"azureml:sdk-cluster-{suffix}", properties={"p": 1}, tags={"t": True})).result()
    assert deployment.model == f"azureml:sdk-ep-{suffix}-inline:1"
    assert (deployment.properties, deployment.tags) == ({"p": "1"}, {"t": "true"})
    # azure-ai-ml's Environment object inline (no name): its conda file is read here and kept with the deployment
    conda = _write(project / "sdk-env" / "conda.yaml", "name: sdk-inline\ndependencies:\n  - python=3.11\n  - pip:\n"
                   "    - pandas\n")
    with_env = ml_client.batch_deployments.begin_create_or_update(BatchDeployment(
        name="inline-env-object", endpoint_name=f"sdk-ep-{suffix}", model=Model(path=str(project / "model")),
        environment=Environment(conda_file=str(conda), image="mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu20.04"),
        code_configuration=CodeConfiguration(code=str(project / "code"), scoring_script="batch_driver.py"))).result()
    assert with_env.environment["conda_file"]["name"] == "sdk-inline", with_env.environment
    assert with_env.environment["image"].startswith("mcr.microsoft.com/")
    named = BatchDeployment(name="named-env", endpoint_name="x-ep", model="azureml:m:1",
                            environment=Environment(name="sklearn-env", version="3"))
    assert named.environment == "azureml:sklearn-env:3"  # a registered one, by reference
    with pytest.raises(BatchpointError, match="needs a name"):
        ml_client.models.create_or_update(Model(path=str(project / "model")))


def test_rest_bodies(project: Path, ml_client: Any, server: Any) -> None:
    suffix = uuid.uuid4().hex[:6]
    uploaded = ml_client.models.create_or_update(Model(name=f"rest-src-{suffix}", path=str(project / "model")))
    with server.rest() as rest:
        made = rest.put(f"/computes/rest-cluster-{suffix}", json={
            "$schema": "https://azuremlschemas.azureedge.net/latest/amlCompute.schema.json",
            "name": f"rest-cluster-{suffix}", "type": "amlcompute", "size": "STANDARD_DS3_v2", "tier": "low_priority",
            "location": "westeurope", "max_instances": 1, "identity": {"type": "system_assigned"}})
        assert made.status_code == 200, made.text
        made = rest.post(f"/models/rest-model-{suffix}/versions", json={
            "$schema": "https://azuremlschemas.azureedge.net/latest/model.schema.json",
            "version": 1, "type": "custom_model", "path": uploaded.path, "tags": {"k": 1}, "properties": {"p": "v"}})
        assert made.status_code == 201, made.text
        assert (made.json()["version"], made.json()["tags"], made.json()["properties"]) == ("1", {"k": "1"}, {"p": "v"})
        made = rest.put(f"/batchEndpoints/rest-ep-{suffix}", json={"name": f"rest-ep-{suffix}", "properties": {"x": "y"}})
        assert made.status_code == 200, made.text
        made = rest.put(f"/batchEndpoints/rest-ep-{suffix}/deployments/inline", json={
            "$schema": "https://azuremlschemas.azureedge.net/latest/modelBatchDeployment.schema.json",
            "name": "inline", "endpoint_name": f"rest-ep-{suffix}", "type": "model",
            "model": {"path": uploaded.path, "type": "custom_model"},
            "environment": {"conda_file": {"dependencies": [{"pip": ["pandas"]}]}},
            "code_configuration": {"code": _code_path(ml_client, project), "scoring_script": "batch_driver.py"},
            "compute": f"rest-cluster-{suffix}", "tags": {"t": "1"}})
        assert made.status_code == 200, made.text
        assert made.json()["model"] == f"azureml:rest-ep-{suffix}-inline:1"
        bad = rest.put(f"/computes/rest-bad-{suffix}", json={
            "name": f"rest-bad-{suffix}", "identity": {"type": "user_assigned", "user_assigned_identities": []}})
        assert bad.status_code == 400 and "exactly one entry" in bad.text, bad.text


def _code_path(ml_client: Any, project: Path) -> str:
    """The code folder uploaded once (what the SDK does for a local ``code``)."""
    return ml_client.data.create_or_update(Data(name=f"code-{uuid.uuid4().hex[:6]}", path=str(project / "code"))).path
