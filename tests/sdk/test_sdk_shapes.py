"""The azure-ai-ml shapes of the SDK, one by one (no server): the names Azure's batch notebooks
import, the constructors they call, the attributes they read, ``params_override``, and the clear
refusal of every azure-ai-ml 1.35 operation and entity of the covered areas that Batchpoint lacks
(checked against the installed azure-ai-ml and docs/azure-compatibility.md)."""

from __future__ import annotations

import inspect
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from pydantic import ValidationError as PydanticValidationError

import batchpoint
from batchpoint import (
    AmlCompute, BatchEndpoint, BatchRetrySettings, CodeConfiguration, Data, Input, Job, MLClient, Model,
    ModelBatchDeployment, ModelBatchDeploymentSettings, NotSupportedError, Output,
)
from batchpoint.sdk.overrides import job_overrides
from batchpoint.sdk.unsupported import ENTITIES, OPERATIONS

DOC = Path(__file__).resolve().parents[2] / "docs" / "azure-compatibility.md"

#: What the model notebooks of Azure/azureml-examples (sdk/python/endpoints/batch/deploy-models/*:
#: custom-outputs-parquet, heart-classifier-mlflow, huggingface-text-summarization, imagenet-classifier
#: (2), mnist-classifier, openai-embeddings) import, by module.
NOTEBOOK_IMPORTS = {
    "azure.ai.ml": ["MLClient", "Input"],
    "azure.ai.ml.entities": ["BatchEndpoint", "ModelBatchDeployment", "ModelBatchDeploymentSettings", "Model",
                             "AmlCompute", "Data", "BatchRetrySettings", "CodeConfiguration", "Environment"],
    "azure.ai.ml.constants": ["AssetTypes", "BatchDeploymentOutputAction"],
}
MIRRORS = {"azure.ai.ml": "batchpoint", "azure.ai.ml.entities": "batchpoint.entities",
           "azure.ai.ml.constants": "batchpoint.constants"}


@pytest.mark.parametrize("module", sorted(NOTEBOOK_IMPORTS))
def test_every_name_the_notebooks_import_is_there(module: str) -> None:
    import importlib

    mirror = importlib.import_module(MIRRORS[module])
    for name in NOTEBOOK_IMPORTS[module]:
        assert getattr(batchpoint, name) is getattr(mirror, name), name


def test_model_batch_deployment_settings_hold_instance_count() -> None:
    settings = ModelBatchDeploymentSettings(mini_batch_size=10, instance_count=2, max_concurrency_per_instance=2,
                                            output_action="append_row", output_file_name="predictions.csv",
                                            retry_settings=BatchRetrySettings(max_retries=3, timeout=300),
                                            logging_level="info", environment_variables={"A": "1"},
                                            error_threshold=-1)
    deployment = ModelBatchDeployment(name="classifier", endpoint_name="heart", model="azureml:heart:1",
                                      compute="batch-cluster", settings=settings)
    assert deployment.resources.instance_count == 2 and deployment.instance_count == 2
    assert (deployment.settings.mini_batch_size, deployment.settings.max_concurrency_per_instance) == (10, 2)
    assert deployment.settings.retry_settings.timeout == 300 and deployment.settings.environment_variables == {"A": "1"}
    spec = deployment.spec()
    assert "instance_count" not in spec["settings"] and spec["resources"]["instance_count"] == 2
    # settings left None take the deployment's defaults
    plain = ModelBatchDeployment(name="plain", endpoint_name="heart", model="azureml:heart:1",
                                 settings=ModelBatchDeploymentSettings(mini_batch_size=5))
    assert (plain.settings.mini_batch_size, plain.settings.output_file_name, plain.instance_count) == (5, "predictions.csv", 1)
    # resources given with their own instance_count win, as in azure-ai-ml
    from batchpoint import ResourceConfiguration

    both = ModelBatchDeployment(name="both", endpoint_name="heart", model="azureml:heart:1",
                                resources=ResourceConfiguration(instance_count=3),
                                settings=ModelBatchDeploymentSettings(mini_batch_size=5, instance_count=2))
    assert both.instance_count == 3


def test_model_batch_deployment_constructor_and_refusals(tmp_path: Path) -> None:
    short = ModelBatchDeployment(name="short", endpoint_name="heart", model="azureml:heart:1", code_path=tmp_path,
                                 scoring_script="batch_driver.py", tags={"k": 1}, properties={"p": True},
                                 description="d", environment="azureml:env:1")
    assert short.code_configuration == CodeConfiguration(code=str(tmp_path), scoring_script="batch_driver.py")
    assert short.tags == {"k": "1"} and short.properties == {"p": "true"}
    with pytest.raises(PydanticValidationError, match="code_path and scoring_script together"):
        ModelBatchDeployment(name="half", endpoint_name="heart", model="azureml:heart:1", code_path="code")
    with pytest.raises(PydanticValidationError, match="summary_only writes no predictions file"):
        ModelBatchDeploymentSettings(mini_batch_size=1, output_action="summary_only", output_file_name="p.csv")
    with pytest.raises(PydanticValidationError, match="instance_count"):
        ModelBatchDeploymentSettings(mini_batch_size=1, instance_count=0)


def test_azure_ai_ml_keywords_are_taken() -> None:
    """Every keyword of azure-ai-ml 1.35's ModelBatchDeployment and ModelBatchDeploymentSettings."""
    entities = pytest.importorskip("azure.ai.ml.entities")

    def keywords(cls: type) -> set[str]:
        return {n for n, p in inspect.signature(cls.__init__).parameters.items()
                if n != "self" and p.kind is not inspect.Parameter.VAR_KEYWORD}

    values = {"mini_batch_size": 2, "instance_count": 1, "max_concurrency_per_instance": 1,
              "output_action": "append_row", "output_file_name": "out.csv",
              "retry_settings": BatchRetrySettings(), "environment_variables": {}, "error_threshold": 3,
              "logging_level": "debug"}
    assert keywords(entities.ModelBatchDeploymentSettings) <= set(values)
    ModelBatchDeploymentSettings(**{k: values[k] for k in keywords(entities.ModelBatchDeploymentSettings)})
    deployment = {"name": "all-keys", "endpoint_name": "heart", "environment": "azureml:env:1", "properties": {},
                  "model": "azureml:heart:1", "description": "d", "tags": {}, "compute": "c",
                  "settings": ModelBatchDeploymentSettings(mini_batch_size=2), "resources": None,
                  "code_configuration": None, "code_path": "code", "scoring_script": "score.py"}
    assert keywords(entities.ModelBatchDeployment) <= set(deployment)
    made = ModelBatchDeployment(**{k: v for k, v in deployment.items() if v is not None})
    assert made.code_configuration.scoring_script == "score.py"


def test_endpoint_defaults_by_attribute_and_as_mapping() -> None:
    endpoint = BatchEndpoint(name="heart")
    assert endpoint.defaults.deployment_name is None
    endpoint.defaults.deployment_name = "blue"
    assert endpoint.defaults["deployment_name"] == "blue" == endpoint.default_deployment_name
    assert endpoint.spec()["defaults"] == {"deployment_name": "blue"}
    again = BatchEndpoint(**endpoint.to_dict())
    assert again.defaults.deployment_name == "blue" and dict(again.defaults) == {"deployment_name": "blue"}
    again.defaults.deployment_name = None
    assert again.spec()["defaults"] == {}
    assert BatchEndpoint(name="heart", defaults=None).defaults == {}


def test_paths_may_be_pathlib() -> None:
    folder = Path("data") / "heart"
    assert Input(path=folder, type="uri_folder").path == str(folder)
    assert Output(path=Path("out")).path == "out"
    assert Data(name="d", path=folder).path == str(folder)
    assert Model(name="m", path=folder).path == str(folder)
    assert CodeConfiguration(code=Path("code"), scoring_script="s.py").code == "code"


def test_creation_context_and_provisioning_state() -> None:
    start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    running = Job(name="j", created_at=start, updated_at=start + timedelta(seconds=5), created_by="me")
    assert running.creation_context.last_modified_at - running.creation_context.created_at == timedelta(seconds=5)
    assert running.creation_context.created_by == "me"
    ended = running.model_copy(update={"end_time": start + timedelta(seconds=9), "updated_at": start + timedelta(seconds=60)})
    assert ended.creation_context.last_modified_at == start + timedelta(seconds=9)
    assert AmlCompute(name="c").provisioning_state is None  # not created yet
    assert AmlCompute(name="c", id="/x/computes/c").provisioning_state == "Succeeded"


def test_params_override_as_the_samples_write_them() -> None:
    ds_id = ("/subscriptions/s/resourceGroups/rg/providers/Microsoft.MachineLearningServices/workspaces/ws"
             "/datastores/workspaceblobstore")
    found = job_overrides([{"output_dataset.datastore_id": f"azureml:{ds_id}"}, {"output_dataset.path": "/mnist/"},
                           {"output_file_name": "p.csv"}, {"mini_batch_size": "20"},
                           {"compute.instance_count": "5"}, {"retry_settings.max_retries": 2},
                           {"retry_settings.timeout": "30"}, {"error_threshold": "-1"}, {"logging_level": "debug"},
                           {"max_concurrency_per_instance": 2}, {"job_name": "j1"}])
    assert found.output_path == "azureml://datastores/workspaceblobstore/paths/mnist"
    assert (found.output_file_name, found.job_name) == ("p.csv", "j1")
    assert found.settings == {"mini_batch_size": 20, "instance_count": 5, "max_retries": 2, "timeout": 30,
                              "error_threshold": -1, "logging_level": "debug", "max_concurrency_per_instance": 2}
    by_name = job_overrides([{"output_dataset.datastore_id": "azureml:mystore", "output_dataset.path": "a/b"}])
    assert by_name.output_path == "azureml://datastores/mystore/paths/a/b"


@pytest.mark.parametrize(("override", "says"), [
    ([{"compute.instance_type": "GPU"}], "not supported; supported: output_dataset.datastore_id"),
    ([{"input_data": {}}], "use input= or inputs="),
    ([{"output_data": {}}], "use outputs="),
    ([{"output_dataset.datastore_id": "azureml:ds"}], "together"),
    ([{"mini_batch_size": 2.5}], "whole number"),
    ([{"mini_batch_size": True}], "whole number"),
    ([{"output_dataset.datastore_id": "azureml:/subscriptions/x", "output_dataset.path": "p"}], "names no data store"),
    (["mini_batch_size=2"], "each entry is a dict"),
    ({"mini_batch_size": 2}, "must be a list"),
])
def test_params_override_refusals_name_what_is_valid(override: object, says: str) -> None:
    with pytest.raises(batchpoint.exceptions.InputError, match=says):
        job_overrides(override)  # type: ignore[arg-type]


def test_mlclient_create_or_update_dispatch_and_refusals(tmp_path: Path) -> None:
    client = MLClient(endpoint="http://127.0.0.1:9", home=tmp_path)  # nothing is sent for a refusal
    with pytest.raises(NotSupportedError, match="begin_create_or_update takes AmlCompute, BatchEndpoint, "
                                                "BatchDeployment, not Model"):
        client.begin_create_or_update(Model(name="m", path="x"))
    with pytest.raises(NotSupportedError, match="batch_endpoints.invoke"):
        client.create_or_update(Job(name="j"))
    with pytest.raises(NotSupportedError, match="not str"):
        client.create_or_update("heart")
    client.close()


def test_from_config_reads_the_workspace_names(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / ".azureml").mkdir()
    (tmp_path / ".azureml" / "config.json").write_text(
        '{"subscription_id": "sub", "resource_group": "rg", "workspace_name": "ws"}')
    nested = tmp_path / "a" / "b"
    nested.mkdir(parents=True)
    monkeypatch.chdir(nested)
    client = MLClient.from_config(None, endpoint="http://127.0.0.1:9", home=tmp_path)
    assert (client.subscription_id, client.resource_group_name, client.workspace_name) == ("sub", "rg", "ws")
    client.close()
    with pytest.raises(batchpoint.exceptions.InputError, match="no config.json at"):
        MLClient.from_config(None, path=nested, endpoint="http://127.0.0.1:9", home=tmp_path)


def test_every_azure_operation_is_there_or_refused(tmp_path: Path) -> None:
    """Each public operation of azure-ai-ml 1.35's operation groups for the covered areas is a method
    here, or a NotSupportedError naming what to use; each refused one is listed in the docs."""
    operations = pytest.importorskip("azure.ai.ml.operations")
    groups = {"batch_endpoints": operations.BatchEndpointOperations,
              "batch_deployments": operations.BatchDeploymentOperations, "jobs": operations.JobOperations,
              "data": operations.DataOperations, "models": operations.ModelOperations,
              "compute": operations.ComputeOperations, "datastores": operations.DatastoreOperations}
    doc = DOC.read_text()
    client = MLClient(endpoint="http://127.0.0.1:9", home=tmp_path)
    for group, azure_class in groups.items():
        ours = getattr(client, group)
        for name, member in inspect.getmembers(azure_class):
            if name.startswith("_") or not callable(member):
                continue
            if name in OPERATIONS[group]:
                with pytest.raises(NotSupportedError, match=f"ml_client.{group}.{name} is not supported"):
                    getattr(ours, name)()
                assert f"`{group}.{name}`" in doc, f"{group}.{name} refused but not listed in the docs"
            else:
                assert callable(getattr(type(ours), name, None)), f"{group}.{name} is neither there nor refused"
                assert f"`{group}.{name}`" in doc, f"{group}.{name} supported but not listed in the docs"
    with pytest.raises(AttributeError):
        client.jobs.no_such_operation  # noqa: B018 - not an azure-ai-ml name: Python's own error
    client.close()


def test_azure_entities_not_here_are_refused_on_import() -> None:
    for name, hint in ENTITIES.items():
        for module in ("batchpoint", "batchpoint.entities"):
            with pytest.raises(ImportError, match=f"{name} \\(azure-ai-ml\\) is not supported by Batchpoint; instead: "):
                exec(f"from {module} import {name}", {})
        assert f"`{name}`" in DOC.read_text(), f"{name} is refused but not listed in the docs"
    for module in ("batchpoint", "batchpoint.entities"):
        with pytest.raises(ImportError, match="cannot import name"):
            exec(f"from {module} import NoSuchThing", {})
    assert not hasattr(batchpoint.entities, "NoSuchThing")
