"""``ml_client.environments``: registered environments, in azure-ai-ml's shape, and the builds.

``create_or_update(Environment(name=..., version=..., conda_file="conda.yaml" or a dict,
image=...))``; ``get(name, version=None, label=None)`` (with ``build``: what was built for it —
path, size, packages, last use); ``list(name=None)``; ``delete(name, version)``;
``list_builds()`` and ``prune(older_than_days=None)`` for the built environments.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import quote

import yaml

from batchpoint.entities import Environment
from batchpoint.exceptions import InputError


def read_conda_file(path: str) -> dict[str, Any]:
    """A local conda file's content (azure-ai-ml's ``Environment(conda_file=path)`` reads it too)."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise InputError(f"conda_file '{path}' is not a file (a relative path is read from {Path.cwd()}, or from "
                         "the YAML file's folder with -f)")
    try:
        content = yaml.safe_load(file.read_text())
    except yaml.YAMLError as exc:
        raise InputError(f"conda_file '{path}' is not valid YAML: {exc}") from exc
    if not isinstance(content, dict):
        raise InputError(f"conda_file '{path}' must be a conda environment (a mapping with name, channels, "
                         "dependencies)")
    return content


class EnvironmentOperations:
    def __init__(self, transport: Any, client: Any) -> None:
        self._t = transport
        self._client = client

    def create_or_update(self, environment: Environment) -> Environment:
        if not environment.name:
            raise InputError("Environment(...) needs a name to be registered (name='sklearn-1-1')")
        body = environment.spec()
        if isinstance(body.get("conda_file"), str):
            body["conda_file"] = read_conda_file(body["conda_file"])
        return Environment(**self._t.json("POST", f"/environments/{quote(environment.name)}/versions", json=body))

    def get(self, name: str, version: str | None = None, label: str | None = None) -> Environment:
        if version is not None:
            return Environment(**self._t.json("GET", f"/environments/{quote(name)}/versions/{quote(str(version))}"))
        params = {"label": label} if label else {}
        return Environment(**self._t.json("GET", f"/environments/{quote(name)}", params=params))

    def list(self, name: str | None = None) -> list[Environment]:
        params = {"name": name} if name else {}
        return [Environment(**e) for e in self._t.json("GET", "/environments", params=params)]

    def delete(self, name: str, version: str) -> None:
        self._t.request("DELETE", f"/environments/{quote(name)}/versions/{quote(str(version))}")

    archive = delete

    def list_builds(self) -> list[dict[str, Any]]:
        return self._t.json("GET", "/environment-builds")

    def prune(self, older_than_days: float | None = None) -> list[dict[str, Any]]:
        params = {"older_than_days": older_than_days} if older_than_days is not None else {}
        return self._t.json("POST", "/environment-builds/prune", params=params)["removed"]
