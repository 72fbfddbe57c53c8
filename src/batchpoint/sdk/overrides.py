"""``batch_endpoints.invoke(params_override=[...])``: azure-ai-ml's list of one-key dicts, read into
the invoke's own arguments.

azure-ai-ml builds the batch job from these dotted keys (its ``EndpointYamlFields``). Each one
Batchpoint honours, and what it becomes:

* ``output_dataset.datastore_id`` + ``output_dataset.path``: the job's output folder,
  ``azureml://datastores/<datastore>/paths/<path>`` (the datastore as ``azureml:<datastore id>``,
  ``azureml:<name>`` or ``<name>``; both keys together);
* ``output_file_name``;
* ``mini_batch_size``, ``max_concurrency_per_instance``, ``error_threshold``, ``logging_level``,
  ``retry_settings.max_retries``, ``retry_settings.timeout``: the job's settings;
* ``compute.instance_count``: the job's ``instance_count``;
* ``job_name``, ``experiment_name``.

Values may be text, as the samples write them (``{"mini_batch_size": "20"}``). Any other key is
refused naming those; the input and the output data are arguments of their own (``input=``,
``outputs=``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from batchpoint.exceptions import InputError

#: params_override key -> the invoke setting it becomes, and whether it is a whole number
SETTINGS = {
    "mini_batch_size": ("mini_batch_size", True),
    "max_concurrency_per_instance": ("max_concurrency_per_instance", True),
    "error_threshold": ("error_threshold", True),
    "logging_level": ("logging_level", False),
    "retry_settings.max_retries": ("max_retries", True),
    "retry_settings.timeout": ("timeout", True),
    "compute.instance_count": ("instance_count", True),
}
OUTPUT_KEYS = ("output_dataset.datastore_id", "output_dataset.path", "output_file_name")
NAME_KEYS = ("job_name", "experiment_name")
SUPPORTED = (*OUTPUT_KEYS, *SETTINGS, *NAME_KEYS)
#: keys azure-ai-ml itself sets from invoke's arguments: use the argument
ARGUMENTS = {"input_data": "input= or inputs=", "dataset": "input=", "output_data": "outputs=",
             "properties": "experiment_name="}
_DATASTORE_ID = re.compile(r"(?:^|/)datastores/(?P<name>[^/]+)/?$", re.IGNORECASE)


@dataclass
class JobOverrides:
    output_path: str | None = None
    output_file_name: str | None = None
    job_name: str | None = None
    experiment_name: str | None = None
    settings: dict[str, Any] = field(default_factory=dict)


def job_overrides(params_override: list[dict[str, Any]]) -> JobOverrides:
    """Read ``params_override``; a key Batchpoint does not honour is an InputError naming those it does."""
    if not isinstance(params_override, (list, tuple)):
        raise InputError("params_override must be a list of one-key dicts, e.g. [{\"mini_batch_size\": 20}, "
                         "{\"output_file_name\": \"predictions.csv\"}]")
    flat: dict[str, Any] = {}
    for item in params_override:
        if not isinstance(item, dict):
            raise InputError(f"params_override holds {type(item).__name__} {item!r}: each entry is a dict such as "
                             "{\"mini_batch_size\": 20}")
        for key, value in item.items():
            if key in ARGUMENTS:
                raise InputError(f"params_override key '{key}' is set from invoke's own argument here: use "
                                 f"{ARGUMENTS[key]}")
            if key not in SUPPORTED:
                raise InputError(f"params_override key '{key}' is not supported; supported: {', '.join(SUPPORTED)}")
            flat[key] = value
    found = JobOverrides(output_file_name=_text(flat, "output_file_name"), job_name=_text(flat, "job_name"),
                         experiment_name=_text(flat, "experiment_name"))
    for key, (setting, whole) in SETTINGS.items():
        if key in flat:
            found.settings[setting] = _whole(key, flat[key]) if whole else _text(flat, key)
    datastore, path = flat.get("output_dataset.datastore_id"), flat.get("output_dataset.path")
    if (datastore is None) != (path is None):
        raise InputError("params_override needs output_dataset.datastore_id and output_dataset.path together "
                         "(the data store and the folder in it the output goes to)")
    if datastore is not None:
        found.output_path = f"azureml://datastores/{datastore_name(str(datastore))}/paths/{str(path).strip('/')}"
    return found


def datastore_name(datastore_id: str) -> str:
    """``azureml:<ARM id of a datastore>``, ``azureml:<name>`` or ``<name>`` -> the data store's name."""
    text = datastore_id.strip()
    text = text.removeprefix("azureml:").removeprefix("//")
    match = _DATASTORE_ID.search(text)
    if match:
        return match.group("name")
    if "/" in text or not text:
        raise InputError(f"output_dataset.datastore_id '{datastore_id}' names no data store: give "
                         "azureml:<the datastore's id> (ml_client.datastores.get_default().id) or its name")
    return text


def _text(flat: dict[str, Any], key: str) -> str | None:
    value = flat.get(key)
    return None if value is None else str(value)


def _whole(key: str, value: Any) -> int:
    try:
        if isinstance(value, bool):
            raise ValueError
        number = int(value)
        if isinstance(value, float) and number != value:
            raise ValueError
        return number
    except (TypeError, ValueError):
        raise InputError(f"params_override {key} must be a whole number, not {value!r}") from None
