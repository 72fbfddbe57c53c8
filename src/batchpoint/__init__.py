"""Batchpoint: self-hosted batch endpoints.

The public API has azure-ai-ml's shape::

    from batchpoint import MLClient, Input, Data, AssetTypes
    ml_client = MLClient()                      # a local server under ~/.batchpoint, started on demand
    job = ml_client.batch_endpoints.invoke(endpoint_name="heart", input=Input(type=AssetTypes.URI_FOLDER, path="data/"))
"""

from batchpoint._version import __version__
from batchpoint.entities import (  # noqa: E402
    AmlCompute,
    AssetTypes,
    BatchDeployment,
    BatchDeploymentOutputAction,
    BatchEndpoint,
    BatchRetrySettings,
    CodeConfiguration,
    Data,
    Datastore,
    Environment,
    IdentityConfiguration,
    Input,
    Job,
    ManagedIdentityConfiguration,
    Model,
    ModelBatchDeployment,
    Output,
)
from batchpoint.exceptions import BatchpointError  # noqa: E402
from batchpoint.sdk.client import MLClient  # noqa: E402

__all__ = [
    "__version__",
    "MLClient",
    "Input",
    "Output",
    "Data",
    "Datastore",
    "Model",
    "Environment",
    "AmlCompute",
    "IdentityConfiguration",
    "ManagedIdentityConfiguration",
    "AssetTypes",
    "BatchEndpoint",
    "BatchDeployment",
    "ModelBatchDeployment",
    "BatchDeploymentOutputAction",
    "BatchRetrySettings",
    "CodeConfiguration",
    "Job",
    "BatchpointError",
]
