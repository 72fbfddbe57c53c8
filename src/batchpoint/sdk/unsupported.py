"""azure-ai-ml names Batchpoint does not have: each one refused with a message naming what to use.

``ml_client.<group>.<operation>`` of an azure-ai-ml 1.35 operation that Batchpoint lacks raises
``NotSupportedError`` (an ``InputError``) saying so and what to use instead, rather than Python's
bare ``AttributeError``; so does ``from batchpoint import <entity>`` of an azure-ai-ml entity of the
areas Batchpoint covers. The full list, supported and refused, is in docs/azure-compatibility.md.
"""

from __future__ import annotations

from typing import Any

from batchpoint.azure_names import ENTITIES, entity_refused
from batchpoint.exceptions import InputError

__all__ = ["ENTITIES", "OPERATIONS", "NotSupportedError", "entity_refused", "operation_refused"]


class NotSupportedError(InputError):
    """An azure-ai-ml operation or entity Batchpoint does not have (the message says what to use)."""

    code = "not_supported"


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


def operation_refused(group: str, name: str) -> Any:
    """The stand-in for azure-ai-ml operation ``name`` of ``group``, or None when it is not one."""
    hint = OPERATIONS.get(group, {}).get(name)
    if hint is None:
        return None

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise NotSupportedError(f"ml_client.{group}.{name} is not supported by Batchpoint: {hint}")

    refuse.__name__ = name
    return refuse

