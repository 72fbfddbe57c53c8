"""REST request bodies that are not entities: the invoke body in the spec's shape.

``{"properties": {"InputData": {"<name>": {"JobInputType": "UriFolder", "Uri": "…"}}}}`` — keys
are matched without regard to case or underscores, so ``inputData``/``jobInputType``/``uri`` and
snake_case work too.
"""

from __future__ import annotations

from typing import Any

from batchpoint.exceptions import UnsupportedInputError, ValidationError
from batchpoint.jobs.submit import OVERRIDABLE, InvokeRequest
from batchpoint.uri.parse import MLTABLE_MESSAGE

INPUT_TYPES = {"urifolder": "uri_folder", "urifile": "uri_file"}
V1_TYPES = {"dataset", "filedataset", "tabulardataset", "datasetreference"}
PROPERTIES = {"inputdata", "outputdata", "deploymentname", "jobname", "outputfilename", "settings", "description",
              "experimentname"}


def _norm(key: str) -> str:
    return key.replace("_", "").replace("-", "").lower()


def _pick(mapping: dict[str, Any], *names: str) -> Any:
    wanted = {_norm(n) for n in names}
    for key, value in mapping.items():
        if _norm(key) in wanted:
            return value
    return None


def parse_invoke_body(body: Any, deployment_header: str | None = None) -> InvokeRequest:
    if not isinstance(body, dict):
        raise ValidationError("the invoke body must be a JSON object: {\"properties\": {\"InputData\": {...}}}")
    props = _pick(body, "properties")
    if not isinstance(props, dict):
        raise ValidationError("the invoke body needs a 'properties' object holding 'InputData'")
    unknown = sorted(k for k in props if _norm(k) not in PROPERTIES)
    if unknown:
        raise ValidationError(f"unknown field(s) in properties: {', '.join(unknown)}; valid: InputData, OutputData, "
                              "DeploymentName, JobName, ExperimentName, OutputFileName, Settings")
    inputs = _inputs(_pick(props, "InputData"))
    output_path, file_name = _output(_pick(props, "OutputData"))
    settings = _pick(props, "Settings") or {}
    if not isinstance(settings, dict):
        raise ValidationError("properties.Settings must be an object of deployment settings to override")
    bad = sorted(set(settings) - OVERRIDABLE)
    if bad:
        raise ValidationError(f"cannot override {', '.join(bad)}; valid: {', '.join(sorted(OVERRIDABLE))}")
    return InvokeRequest(
        inputs=inputs, deployment_name=_pick(props, "DeploymentName") or deployment_header or None,
        output_path=output_path, output_file_name=_pick(props, "OutputFileName") or file_name,
        job_name=_pick(props, "JobName"), overrides=dict(settings),
        experiment_name=_experiment(_pick(props, "ExperimentName")),
    )


def _experiment(value: Any) -> str | None:
    if value is None or (isinstance(value, str) and 1 <= len(value) <= 255 and value.strip() == value):
        return value
    raise ValidationError("properties.ExperimentName must be a name of 1 to 255 characters without surrounding spaces")


def _inputs(data: Any) -> dict[str, dict[str, Any]]:
    if not isinstance(data, dict) or not data:
        raise ValidationError("properties.InputData must map an input name to {\"JobInputType\": \"UriFolder\", \"Uri\": \"...\"}")
    out = {}
    for name, spec in data.items():
        if not isinstance(spec, dict):
            raise ValidationError(f"InputData.{name} must be an object with JobInputType and Uri")
        uri = _pick(spec, "Uri", "Path")
        if uri is None:
            raise ValidationError(f"InputData.{name} needs a 'Uri'")
        if not isinstance(uri, str) or not uri.strip():
            raise ValidationError(f"InputData.{name}.Uri must be a non-empty string (got {type(uri).__name__} "
                                  f"{str(uri)[:50]!r}), e.g. \"azureml://datastores/<name>/paths/<folder>\"")
        out[name] = {"path": uri.strip(), "type": _input_type(name, _pick(spec, "JobInputType", "Type"))}
    return out


def _input_type(name: str, raw: Any) -> str | None:
    if raw is None:
        return None
    key = _norm(str(raw))
    if key == "mltable":
        raise UnsupportedInputError(MLTABLE_MESSAGE)
    if key in V1_TYPES:
        raise UnsupportedInputError(
            f"InputData.{name}: JobInputType '{raw}' is a V1 dataset; V1 FileDatasets are deprecated and not "
            "supported: register the data as a uri_folder or uri_file data asset"
        )
    if key not in INPUT_TYPES:
        raise ValidationError(f"InputData.{name}: JobInputType '{raw}' is not valid; valid: UriFolder, UriFile")
    return INPUT_TYPES[key]


def _output(data: Any) -> tuple[str | None, str | None]:
    if not data:
        return None, None
    if not isinstance(data, dict) or len(data) != 1:
        raise ValidationError("properties.OutputData must hold one output: {\"score\": {\"Uri\": \"azureml://...\"}}")
    name, spec = next(iter(data.items()))
    if name != "score":
        raise ValidationError(f"OutputData names an output '{name}'; a batch deployment has one output, named "
                              "'score': {\"score\": {\"JobOutputType\": \"UriFolder\", \"Uri\": \"azureml://...\"}}")
    uri = _pick(spec, "Uri", "Path") if isinstance(spec, dict) else None
    if not isinstance(uri, str):
        raise ValidationError("OutputData.score needs a 'Uri' string (azureml://datastores/<name>/paths/<folder>)")
    kind = _norm(str(_pick(spec, "JobOutputType", "Type") or "urifolder"))
    if kind == "urifile":
        folder, _, file_name = uri.rstrip("/").rpartition("/")
        return folder, file_name
    return uri, None
