"""``MLClient``: the SDK's entry point, shaped like ``azure.ai.ml.MLClient``."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from batchpoint.entities import AmlCompute, BatchDeployment, BatchEndpoint, Data, Datastore, Environment, Job, Model
from batchpoint.exceptions import InputError
from batchpoint.sdk.local_server import ensure_local_server
from batchpoint.sdk.operations import (
    AuditOperations,
    PrincipalOperations,
    RoleAssignmentOperations,
    BatchDeploymentOperations,
    BatchEndpointOperations,
    ComputeOperations,
    DataOperations,
    DatastoreOperations,
    JobOperations,
    ModelOperations,
    Poller,
    WorkspaceOperations,
)
from batchpoint.sdk.environments import EnvironmentOperations
from batchpoint.sdk.transport import Transport
from batchpoint.sdk.unsupported import NotSupportedError


class MLClient:
    """Talk to a Batchpoint server.

    ``MLClient()`` uses ``BATCHPOINT_SERVER_URL`` when set, else the embedded local server under
    ``BATCHPOINT_HOME`` (started on first use). ``credential`` is any object with
    ``get_token(scope)`` (azure-identity credentials have that shape); with none, ``BATCHPOINT_API_KEY``
    or the local owner key in ``<home>/owner.key`` is sent. ``subscription_id``,
    ``resource_group_name`` and ``workspace_name`` are accepted for azure-ai-ml compatibility.
    """

    def __init__(self, credential: Any = None, subscription_id: str | None = None,
                 resource_group_name: str | None = None, workspace_name: str | None = None,
                 *, endpoint: str | None = None, home: str | Path | None = None, timeout: float = 120.0) -> None:
        home_path = Path(home or os.environ.get("BATCHPOINT_HOME") or Path.home() / ".batchpoint").expanduser()
        url = endpoint or os.environ.get("BATCHPOINT_SERVER_URL")
        if not url:
            url = ensure_local_server(home_path)
        self.base_url = url
        self.subscription_id, self.resource_group_name, self.workspace_name = subscription_id, resource_group_name, workspace_name
        self._transport = Transport(url, credential=credential or _default_credential(home_path), timeout=timeout)
        t = self._transport
        self.workspaces = WorkspaceOperations(t, self)
        self.datastores = DatastoreOperations(t, self)
        self.data = DataOperations(t, self)
        self.models = ModelOperations(t, self)
        self.environments = EnvironmentOperations(t, self)
        self.compute = ComputeOperations(t, self)
        self.batch_endpoints = BatchEndpointOperations(t, self)
        self.batch_deployments = BatchDeploymentOperations(t, self)
        self.jobs = JobOperations(t, self)
        self.principals = PrincipalOperations(t, self)
        self.role_assignments = RoleAssignmentOperations(t, self)
        self.audit = AuditOperations(t, self)

    @classmethod
    def from_config(cls, credential: Any = None, *, path: str | Path | None = None, file_name: str | None = None,
                    **kwargs: Any) -> MLClient:
        """azure-ai-ml's ``MLClient.from_config``: the workspace names come from a ``config.json``
        (``subscription_id``, ``resource_group``, ``workspace_name``) found at ``path``, or in the
        current folder or one above it (also under ``.azureml/``), when there is one. The server is
        chosen as by ``MLClient()`` (``BATCHPOINT_SERVER_URL``, else the local one); no config file
        is needed, since a server is one workspace."""
        config = _find_config(Path(path) if path else None, file_name)
        return cls(credential, config.get("subscription_id"), config.get("resource_group"),
                   config.get("workspace_name"), **kwargs)

    def begin_create_or_update(self, entity: Any, **kwargs: Any) -> Poller:
        """azure-ai-ml's ``MLClient.begin_create_or_update``: an ``AmlCompute``, a ``BatchEndpoint`` or
        a ``BatchDeployment``/``ModelBatchDeployment``, sent to its operation group; returns a poller
        (``.result()``). Models, data, environments and data stores: ``create_or_update``."""
        group = _group_of(entity, _BEGIN)
        if group is None:
            raise NotSupportedError(f"MLClient.begin_create_or_update takes {_names(_BEGIN)}, not "
                                    f"{type(entity).__name__}" + _instead(entity))
        return getattr(self, group).begin_create_or_update(entity, **kwargs)

    def create_or_update(self, entity: Any, **kwargs: Any) -> Any:
        """azure-ai-ml's ``MLClient.create_or_update``: a ``Model``, ``Data``, ``Environment`` or
        ``Datastore`` (and, returning the result at once, what ``begin_create_or_update`` takes)."""
        group = _group_of(entity, _PLAIN)
        if group is not None:
            return getattr(self, group).create_or_update(entity, **kwargs)
        if _group_of(entity, _BEGIN) is not None:
            return self.begin_create_or_update(entity, **kwargs).result()
        raise NotSupportedError(f"MLClient.create_or_update takes {_names(_PLAIN + _BEGIN)}, not "
                                f"{type(entity).__name__}" + _instead(entity))

    def close(self) -> None:
        self._transport.close()

    def __enter__(self) -> MLClient:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


_BEGIN: list[tuple[type, str]] = [(AmlCompute, "compute"), (BatchEndpoint, "batch_endpoints"),
                                  (BatchDeployment, "batch_deployments")]
_PLAIN: list[tuple[type, str]] = [(Model, "models"), (Data, "data"), (Environment, "environments"),
                                  (Datastore, "datastores")]


def _group_of(entity: Any, table: list[tuple[type, str]]) -> str | None:
    return next((group for kind, group in table if isinstance(entity, kind)), None)


def _names(table: list[tuple[type, str]]) -> str:
    return ", ".join(kind.__name__ for kind, _ in table)


def _instead(entity: Any) -> str:
    if isinstance(entity, Job) or "Job" in type(entity).__name__:
        return "; jobs are started with ml_client.batch_endpoints.invoke(endpoint_name=..., input=...)"
    return ""


def _find_config(path: Path | None, file_name: str | None) -> dict[str, Any]:
    """The first config.json (or ``file_name``) at ``path`` / in the current folder or above."""
    names = [file_name or "config.json"]
    if path is not None and path.is_file():
        candidates = [path]
    else:
        start = (path or Path.cwd()).resolve()
        folders = [start] if path is not None else [start, *start.parents]
        candidates = [folder / sub / name for folder in folders for sub in ("", ".azureml") for name in names]
    for candidate in candidates:
        if candidate.is_file():
            try:
                found = json.loads(candidate.read_text())
            except ValueError as exc:
                raise InputError(f"{candidate} is not valid JSON: {exc}") from exc
            if not isinstance(found, dict):
                raise InputError(f"{candidate} must be a JSON object (subscription_id, resource_group, workspace_name)")
            return found
    if path is not None:
        raise InputError(f"no {names[0]} at {path}: give the folder or file holding it, or leave path out")
    return {}


class StaticKeyCredential:
    """A credential that always returns the same API key (``get_token`` shape)."""

    def __init__(self, key: str) -> None:
        self._key = key

    def get_token(self, *scopes: str, **kwargs: Any) -> Any:
        from types import SimpleNamespace

        return SimpleNamespace(token=self._key, expires_on=2**31)

    def __repr__(self) -> str:
        return "StaticKeyCredential(***)"


def _default_credential(home: Path) -> StaticKeyCredential | None:
    key = os.environ.get("BATCHPOINT_API_KEY")
    if not key:
        path = home / "owner.key"
        if path.is_file():
            key = path.read_text().strip()
    return StaticKeyCredential(key) if key else None
