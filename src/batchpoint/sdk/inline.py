"""A deployment's inline ``model:`` and ``environment:``, as azure-ai-ml sends them.

* ``model: {path: ./model, type: custom_model}`` (a ``Model`` without a name): a local path is
  uploaded here; the server registers it under a name of its own (``<endpoint>-<deployment>``,
  the next version) when it stores the deployment.
* ``environment: {conda_file: ./conda.yaml, image: ...}``: a ``conda_file`` that is a local file is
  read here and sent as its content (azure-ai-ml's ``Environment`` does the same); the server keeps
  the environment with the deployment for the environment builder. ``image`` is kept, not used.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from batchpoint.entities import Model
from batchpoint.exceptions import InputError


def inline_model(group: Any, model: Model) -> dict[str, Any]:
    path, _ = group._upload_if_local(model.path)
    return {**model.spec(), "path": path}


def inline_environment(environment: dict[str, Any]) -> dict[str, Any]:
    conda = environment.get("conda_file")
    if not isinstance(conda, str):
        return environment
    file = Path(conda).expanduser()
    if not file.is_file():
        raise InputError(f"environment conda_file '{conda}' is not a file (relative paths are read from "
                         f"{Path.cwd()}, or from the YAML file's folder with -f)")
    try:
        content = yaml.safe_load(file.read_text())
    except yaml.YAMLError as exc:
        raise InputError(f"environment conda_file '{conda}' is not valid YAML: {exc}") from exc
    if not isinstance(content, dict):
        raise InputError(f"environment conda_file '{conda}' must be a conda environment mapping "
                         "(name, channels, dependencies)")
    return {**environment, "conda_file": content}
