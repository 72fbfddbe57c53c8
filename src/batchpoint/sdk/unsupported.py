"""azure-ai-ml names Batchpoint does not have: each one refused with a message naming what to use.

``ml_client.<group>.<operation>`` of an azure-ai-ml 1.35 operation that Batchpoint lacks raises
``NotSupportedError`` (an ``InputError``) saying so and what to use instead, rather than Python's
bare ``AttributeError``; so does ``from batchpoint import <entity>`` of an azure-ai-ml entity of the
areas Batchpoint covers. The full list, supported and refused, is in docs/azure-compatibility.md.
"""

from __future__ import annotations

from typing import Any

from batchpoint.exceptions import InputError


class NotSupportedError(InputError):
    """An azure-ai-ml operation or entity Batchpoint does not have (the message says what to use)."""


_NO_ARCHIVE = "assets are not archived here: list them (list(name=...)) and pick versions by number or label 'latest'"
_NO_SHARE = "there are no registries here: register the asset in each workspace's server"
_NO_VMS = "a compute here is a record with no machines to start, stop or list (a local process pool or a Ray cluster)"

#: operation group (its attribute on MLClient) -> azure-ai-ml operation -> what to use instead
OPERATIONS: dict[str, dict[str, str]] = {
    "batch_endpoints": {},
    "batch_deployments": {},
    "jobs": {
        "create_or_update": "jobs are batch endpoint jobs only: ml_client.batch_endpoints.invoke(endpoint_name=..., input=...)",
        "validate": "a job is checked when it is invoked: ml_client.batch_endpoints.invoke(...) refuses a bad one",
        "archive": "jobs are not archived here; they stay listed (ml_client.jobs.list())",
        "restore": "jobs are not archived here; they stay listed (ml_client.jobs.list())",
        "show_services": "batch jobs have no services (no Jupyter, TensorBoard or SSH); see ml_client.jobs.get(name)",
        "begin_delete": "jobs are not deleted here; they stay listed (ml_client.jobs.begin_cancel(name) stops "
                        "one that runs)",
        "update": "a job's properties are not changed after it starts; ml_client.jobs.get(name) shows it",
    },
    "data": {
        "archive": _NO_ARCHIVE, "restore": _NO_ARCHIVE, "share": _NO_SHARE,
        "import_data": "copy the data into a data store and register it: ml_client.data.create_or_update(Data(path=...))",
        "list_materialization_status": "there are no data imports here: ml_client.data.list()",
        "mount": "data assets are not mounted here: ml_client.data.get(...).path names where the files are",
    },
    "models": {
        "archive": _NO_ARCHIVE, "restore": _NO_ARCHIVE, "share": _NO_SHARE,
        "download": "a model's files are where its path says: ml_client.models.get(name, version).path "
                    "(batchpoint model show)",
        "package": "models are not packaged into images here: deploy them with "
                   "ml_client.batch_deployments.begin_create_or_update(...)",
    },
    "compute": {
        "begin_delete": "computes are kept as records: create another with ml_client.compute.begin_create_or_update",
        "begin_attach": "attach a Ray cluster as AmlCompute(type='ray', address='host:port') with "
                        "ml_client.compute.begin_create_or_update",
        "begin_update": "send the whole compute again: ml_client.compute.begin_create_or_update(AmlCompute(...))",
        "begin_start": _NO_VMS, "begin_stop": _NO_VMS, "begin_restart": _NO_VMS,
        "list_nodes": _NO_VMS, "list_sizes": _NO_VMS, "list_usage": _NO_VMS,
        "enable_sso": "there are no compute instances here: " + _NO_VMS,
    },
    "datastores": {
        "delete": "data stores are not deleted here (jobs keep reading their outputs): register another "
                  "with ml_client.datastores.create_or_update",
        "mount": "data stores are not mounted here: jobs read and write them directly",
    },
}

#: azure-ai-ml entities of the covered areas that Batchpoint does not have -> what to use instead
ENTITIES: dict[str, str] = {
    "PipelineComponentBatchDeployment": "Batchpoint has model batch deployments only: ModelBatchDeployment",
    "BatchJob": "ml_client.batch_endpoints.invoke(...) returns a Job; ml_client.jobs.get(name)",
    "PipelineJob": "jobs are batch endpoint jobs only: ml_client.batch_endpoints.invoke(...)",
    "CommandJob": "jobs are batch endpoint jobs only: ml_client.batch_endpoints.invoke(...)",
    "SweepJob": "jobs are batch endpoint jobs only: ml_client.batch_endpoints.invoke(...)",
    "SparkJob": "jobs are batch endpoint jobs only: ml_client.batch_endpoints.invoke(...)",
    "ComputeInstance": "AmlCompute (a local process pool) or AmlCompute(type='ray', address=...)",
    "KubernetesCompute": "AmlCompute (a local process pool) or AmlCompute(type='ray', address=...)",
    "VirtualMachineCompute": "AmlCompute (a local process pool) or AmlCompute(type='ray', address=...)",
    "SynapseSparkCompute": "AmlCompute (a local process pool) or AmlCompute(type='ray', address=...)",
    "ServerlessSparkCompute": "AmlCompute (a local process pool) or AmlCompute(type='ray', address=...)",
    "AzureBlobDatastore": "Datastore(name=..., type='azure_blob', account_name=..., container_name=..., "
                          "credentials={...})",
    "AzureDataLakeGen2Datastore": "Datastore(name=..., type='azure_data_lake_gen2', account_name=..., "
                                  "filesystem=..., credentials={...})",
    "AzureDataLakeGen1Datastore": "Datastore(name=..., type='azure_data_lake_gen1', store_name=..., credentials={...})",
    "AzureFileDatastore": "Azure Files is not a data store kind here: azure_blob, azure_data_lake_gen2, "
                          "azure_data_lake_gen1, s3 or local (Datastore(type=...))",
    "OneLakeDatastore": "OneLake is not a data store kind here: azure_blob, azure_data_lake_gen2, "
                        "azure_data_lake_gen1, s3 or local (Datastore(type=...))",
    "AccountKeyConfiguration": "Datastore(credentials={'account_key': ...})",
    "SasTokenConfiguration": "Datastore(credentials={'sas_token': ...})",
    "ServicePrincipalConfiguration": "Datastore(credentials={'tenant_id': ..., 'client_id': ..., 'client_secret': ...})",
    "CertificateConfiguration": "a service principal with a secret: Datastore(credentials={'tenant_id': ..., "
                                "'client_id': ..., 'client_secret': ...})",
    "NoneCredentialConfiguration": "Datastore(...) with no credentials (identity-based access)",
    "DataImport": "copy the data into a data store and register it: Data(path=...)",
    "UnsupportedCompute": "AmlCompute (a local process pool) or AmlCompute(type='ray', address=...)",
    "AmlComputeSshSettings": "there are no compute nodes to reach by SSH here",
    "AmlComputeNodeInfo": "there are no compute nodes here: a compute is a local process pool or a Ray cluster",
    "ModelPackage": "models are not packaged into images here: ModelBatchDeployment(model=...)",
    "load_batch_endpoint": "the CLI reads the YAML: batchpoint batch-endpoint create -f <file>",
    "load_batch_deployment": "the CLI reads the YAML: batchpoint batch-deployment create -f <file>",
    "load_compute": "the CLI reads the YAML: batchpoint compute create -f <file>",
    "load_data": "the CLI reads the YAML: batchpoint data create -f <file>",
    "load_datastore": "the CLI reads the YAML: batchpoint datastore create -f <file>",
    "load_model": "the CLI reads the YAML: batchpoint model create -f <file>",
    "load_environment": "the CLI reads the YAML: batchpoint environment create -f <file>",
    "load_job": "jobs are batch endpoint jobs only: ml_client.batch_endpoints.invoke(...)",
    "OnlineEndpoint": "Batchpoint has batch endpoints only: BatchEndpoint",
    "ManagedOnlineEndpoint": "Batchpoint has batch endpoints only: BatchEndpoint",
    "KubernetesOnlineEndpoint": "Batchpoint has batch endpoints only: BatchEndpoint",
    "ManagedOnlineDeployment": "Batchpoint has batch deployments only: ModelBatchDeployment",
    "KubernetesOnlineDeployment": "Batchpoint has batch deployments only: ModelBatchDeployment",
}


def operation_refused(group: str, name: str) -> Any:
    """The stand-in for azure-ai-ml operation ``name`` of ``group``, or None when it is not one."""
    hint = OPERATIONS.get(group, {}).get(name)
    if hint is None:
        return None

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise NotSupportedError(f"ml_client.{group}.{name} is not supported by Batchpoint: {hint}")

    refuse.__name__ = name
    return refuse


def entity_refused(name: str) -> ImportError | None:
    hint = ENTITIES.get(name)
    if hint is None:
        return None
    return ImportError(f"{name} (azure-ai-ml) is not supported by Batchpoint; instead: {hint}")
