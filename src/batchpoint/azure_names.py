"""azure-ai-ml entities of the areas Batchpoint covers that it does not have, each with what to
use instead: ``from batchpoint import X`` / ``from batchpoint.entities import X`` of one of them is
an ``ImportError`` saying so (docs/azure-compatibility.md). Kept apart from ``batchpoint.entities``
and ``batchpoint.sdk`` so that both can refuse the same names."""

from __future__ import annotations

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


def entity_refused(name: str) -> ImportError | None:
    """The ImportError for azure-ai-ml entity ``name`` Batchpoint lacks, or None when it is not one."""
    hint = ENTITIES.get(name)
    if hint is None:
        return None
    return ImportError(f"{name} (azure-ai-ml) is not supported by Batchpoint; instead: {hint}")
