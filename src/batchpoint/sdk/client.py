"""``MLClient``: the SDK's entry point, shaped like ``azure.ai.ml.MLClient``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

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
    WorkspaceOperations,
)
from batchpoint.sdk.environments import EnvironmentOperations
from batchpoint.sdk.transport import Transport


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

    def close(self) -> None:
        self._transport.close()

    def __enter__(self) -> MLClient:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


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
