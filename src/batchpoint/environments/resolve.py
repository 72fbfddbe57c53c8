"""Which environment a deployment's workers run in, in the issue's order:

1. the deployment's ``environment``: inline (``{conda_file: …, image: …}``) or a registered
   environment (``azureml:name:version``, ``azureml:name@latest``, ``name:version``, ``name``);
   ``image`` is accepted and noted as not used;
2. else the MLflow model's own files: ``python_env.yaml`` (with its ``-r requirements.txt``), else
   ``requirements.txt``, else ``conda.yaml``;
3. else — or with ``env_manager: local`` — the server's own environment.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

from batchpoint.environments.assets import EnvironmentAssets
from batchpoint.environments.spec import (
    EnvironmentSpec, conda_python, mlflow_as_skinny, parse_conda, parse_python_env, parse_requirement_lines,
    python_env_python, server_spec,
)
from batchpoint.exceptions import ValidationError

MODEL_FILES = ("python_env.yaml", "requirements.txt", "conda.yaml")


def mlflow_model_root(model_dir: str | None) -> Path | None:
    """The folder holding ``MLmodel``: the model folder, or its only sub-folder (Azure's layout)."""
    if not model_dir:
        return None
    root = Path(model_dir)
    if (root / "MLmodel").is_file():
        return root
    subs = [p for p in root.iterdir() if p.is_dir()] if root.is_dir() else []
    if len(subs) == 1 and (subs[0] / "MLmodel").is_file():
        return subs[0]
    return None


def from_model(model_dir: str | None) -> EnvironmentSpec | None:
    """The MLflow model's own environment, or None when it has none (or is not an MLflow model)."""
    root = mlflow_model_root(model_dir)
    if root is None:
        return None
    for name in MODEL_FILES:
        path = root / name
        if not path.is_file():
            continue
        where = f"the model's {name}"
        text = path.read_text()
        python = None
        if name == "python_env.yaml":
            reqs, notes = parse_python_env(text, where, root)
            python = python_env_python(text)
        elif name == "requirements.txt":
            reqs, notes = parse_requirement_lines(text.splitlines(), where, root)
        else:
            reqs, notes = parse_conda(text, where)
            python = conda_python(text)
        reqs, more = mlflow_as_skinny(reqs, where)
        reqs, images = with_image_reader(reqs, root)
        return EnvironmentSpec(where, tuple(reqs), tuple(notes + more + images), from_model=True, python=python)
    return None


def takes_tensors(root: Path) -> bool:
    """Whether the MLflow model in ``root`` has a tensor input signature (``MLmodel``'s
    ``signature.inputs``: a JSON list of ``{"type": "tensor", ...}``)."""
    try:
        mlmodel = yaml.safe_load((root / "MLmodel").read_text()) or {}
        inputs = json.loads(((mlmodel.get("signature") or {}).get("inputs")) or "[]")
    except (OSError, ValueError, yaml.YAMLError, AttributeError, TypeError):
        return False
    return isinstance(inputs, list) and bool(inputs) and all(
        isinstance(item, dict) and item.get("type") == "tensor" for item in inputs)


def with_image_reader(reqs: list[str], root: Path) -> tuple[list[str], list[str]]:
    """Pillow added to a tensor-signature model's requirements: a deployment with no scoring script
    reads the image files it is given with Pillow in the model's environment
    (``scoring/readers.py``), as Azure's MLflow runtime has it. Models whose requirements name it
    already, and column-signature models (which are refused images), are left as they are."""
    if not takes_tensors(root) or any(re.match(r"(?i)pillow\b", r.strip()) for r in reqs):
        return reqs, []
    return [*reqs, "pillow"], ["pillow added: the model has a tensor signature, and image files given to an MLflow "
                               "deployment with no scoring script are read with Pillow"]


def model_requirements(model_dir: str | None) -> list[str]:
    """What the MLflow model says it needs, as written (for the ``env_manager: local`` check)."""
    root = mlflow_model_root(model_dir)
    if root is None:
        return []
    spec = from_model(model_dir)
    if spec is None:
        return []
    return [r for r in _raw_requirements(root)] or list(spec.requirements)


def _raw_requirements(root: Path) -> list[str]:
    for name in MODEL_FILES:
        path = root / name
        if path.is_file():
            text = path.read_text()
            if name == "python_env.yaml":
                return parse_python_env(text, name, root)[0]
            if name == "requirements.txt":
                return parse_requirement_lines(text.splitlines(), name, root)[0]
            return parse_conda(text, name)[0]
    return []


_REF = re.compile(r"^(?:azureml:)?(?P<name>[A-Za-z0-9][A-Za-z0-9_.-]*)(?:(?::(?P<version>[A-Za-z0-9_.-]+))|"
                  r"(?:@(?P<label>[A-Za-z0-9_.-]+)))?$")


def from_inline(env: dict[str, Any], where: str) -> EnvironmentSpec:
    notes: list[str] = []
    if env.get("image"):
        notes.append(f"{where}: image '{env['image']}' is accepted but not used: workers run in a virtual "
                     "environment built from the conda file")
    conda = env.get("conda_file")
    if conda is None:
        reqs = env.get("requirements") or env.get("pip_requirements")
        if reqs is None:
            if env.get("image"):
                return EnvironmentSpec(where, (), tuple(notes + [f"{where} has no conda_file; the server's own "
                                                                  "environment is used"]), use_server=True)
            raise ValidationError(f"{where} has neither conda_file nor requirements; give a conda file "
                                  "(dependencies with a pip section) or a list of requirements")
        if not isinstance(reqs, list):
            raise ValidationError(f"{where}: requirements must be a list of package requirements")
        lines, more = parse_requirement_lines([str(r) for r in reqs], where)
        return EnvironmentSpec(where, tuple(lines), tuple(notes + more))
    if isinstance(conda, str) and not re.search(r"[\n:]", conda):
        raise ValidationError(f"{where}: conda_file '{conda}' is a file name; send the file's content (the CLI and "
                              "the SDK read local conda files for you)")
    lines, more = parse_conda(conda, f"{where}'s conda_file")
    return EnvironmentSpec(where, tuple(lines), tuple(notes + more), python=conda_python(conda))


def from_deployment_environment(value: Any, assets: EnvironmentAssets) -> EnvironmentSpec:
    if isinstance(value, dict):
        return from_inline(value, "the deployment's inline environment")
    text = str(value).strip()
    if text.startswith("azureml://"):
        raise ValidationError(f"environment '{text}' is in an Azure ML registry, which this server cannot reach; "
                              "register its conda file here (batchpoint environment create) and refer to that")
    m = _REF.match(text)
    if not m:
        raise ValidationError(f"environment '{text}' is not a reference this server understands; use "
                              "azureml:<name>:<version>, azureml:<name>@latest or an inline environment")
    env = assets.get(m.group("name"), version=m.group("version"), label=m.group("label"))
    where = f"environment '{env.name}:{env.version}'"
    return from_inline({k: v for k, v in env.to_dict().items() if k in ("conda_file", "image")}, where)


def resolve(deployment: dict[str, Any], scorer: dict[str, Any], assets: EnvironmentAssets) -> EnvironmentSpec:
    """The environment of a job of ``deployment`` (its stored spec) with ``scorer`` (the job's plan)."""
    if deployment.get("env_manager") == "local":
        return server_spec("env_manager: local")
    if deployment.get("environment"):
        return from_deployment_environment(deployment["environment"], assets)
    model = from_model(scorer.get("model_dir"))
    if model is not None:
        return model
    return server_spec("the deployment has no environment and its model names no requirements")
