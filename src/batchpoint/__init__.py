"""Batchpoint: self-hosted batch endpoints.

The public API has azure-ai-ml's shape::

    from batchpoint import MLClient, Input, Data, AssetTypes
    ml_client = MLClient()                      # a local server under ~/.batchpoint, started on demand
    job = ml_client.batch_endpoints.invoke(endpoint_name="heart", input=Input(type=AssetTypes.URI_FOLDER, path="data/"))

Every name azure-ai-ml's batch samples import from ``azure.ai.ml``, ``azure.ai.ml.entities`` and
``azure.ai.ml.constants`` is here (and in ``batchpoint.entities`` / ``batchpoint.constants``); an
azure-ai-ml entity Batchpoint does not have is refused on import, naming what to use instead
(docs/azure-compatibility.md).
"""

from typing import Any

from batchpoint._version import __version__
from batchpoint.entities import (  # noqa: E402
    AmlCompute,
    AssetTypes,
    BatchDeployment,
    BatchDeploymentSettings,
    BatchDeploymentOutputAction,
    BatchEndpoint,
    BatchEndpointDefaults,
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
    ModelBatchDeploymentSettings,
    Output,
    ResourceConfiguration,
    SystemData,
)
from batchpoint.constants import BatchDeploymentType, InputOutputModes  # noqa: E402
from batchpoint.exceptions import BatchpointError  # noqa: E402
from batchpoint.sdk.client import MLClient  # noqa: E402
from batchpoint.azure_names import entity_refused  # noqa: E402
from batchpoint.sdk.unsupported import NotSupportedError  # noqa: E402

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
    "ModelBatchDeploymentSettings",
    "BatchDeploymentSettings",
    "ResourceConfiguration",
    "BatchEndpointDefaults",
    "SystemData",
    "BatchDeploymentOutputAction",
    "BatchDeploymentType",
    "InputOutputModes",
    "BatchRetrySettings",
    "CodeConfiguration",
    "Job",
    "BatchpointError",
    "NotSupportedError",
]


def __getattr__(name: str) -> Any:
    """An azure-ai-ml entity Batchpoint does not have: an ImportError naming what to use instead."""
    refused = entity_refused(name)
    if refused is not None:
        raise refused
    raise AttributeError(f"module 'batchpoint' has no attribute '{name}'")
