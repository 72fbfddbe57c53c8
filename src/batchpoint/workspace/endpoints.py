"""Batch endpoints and their deployments: the rules beyond storing them.

* An endpoint's default deployment must exist; the first deployment of an endpoint becomes its
  default, and ``set_default`` makes any deployment the default.
* PATCH merges into what is stored, object by object at every depth (``--set
  settings.retry_settings.max_retries=2`` keeps ``timeout``); a value that is not an object
  replaces what was there.
* The default deployment of an endpoint that has others cannot be deleted (make another the
  default first); deleting the only one leaves the endpoint without a default.
* Putting, updating or deleting a deployment, and deleting an endpoint, calls ``changed`` (the
  server's hook: it stops the workers it keeps warm for that deployment, ``engines/warm.py``).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import Any

from batchpoint.entities import BatchDeployment, BatchEndpoint, Model
from batchpoint.exceptions import ConflictError, NotFoundError, ValidationError
from batchpoint.store.tables import EndpointRow
from batchpoint.workspace.service import WorkspaceService

log = logging.getLogger("batchpoint.workspace.endpoints")


def deep_merge(current: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """``changes`` laid over ``current``: objects merge key by key, at every depth."""
    merged = dict(current)
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def check_scoring_script(script: Any) -> None:
    """``code_configuration.scoring_script`` is a relative path inside the code folder (``score.py``,
    ``src/score.py``): never absolute (``/etc/passwd``, ``C:\\x``), never escaping it (``../x.py``)."""
    text = script if isinstance(script, str) else ""
    shown = (text if len(text) <= 200 else f"{text[:200]}…({len(text)} chars)").replace("\x00", "\\0")
    parts = text.replace("\\", "/").split("/")
    if (not text.strip() or "\x00" in text or text.startswith(("/", "\\", "~")) or re.match(r"^[A-Za-z]:", text)
            or ".." in parts or any(p == "" for p in parts[:-1]) or not parts[-1]):
        raise ValidationError(
            f"code_configuration.scoring_script '{shown}' must be a relative path inside the code folder, such as "
            "score.py or src/score.py: not absolute, no '..', no '\\' or NUL", details={"field": "scoring_script"})


def default_deployment_name(endpoint: EndpointRow) -> str | None:
    return (endpoint.spec.get("defaults") or {}).get("deployment_name") or None


class EndpointService:
    def __init__(self, ws: WorkspaceService, changed: Callable[[str, str | None], object] | None = None) -> None:
        self.ws = ws
        self.store = ws.store
        #: called with (endpoint, deployment) after a deployment is put, updated or deleted, and with
        #: (endpoint, None) after an endpoint is deleted: the server stops the workers it keeps warm
        #: for it (engines/warm.py release_warm)
        self.changed = changed

    def _changed(self, endpoint: str, deployment: str | None) -> None:
        if self.changed is None:
            return
        try:
            self.changed(endpoint, deployment)
        except Exception:  # noqa: BLE001 - freeing warm workers never fails the change itself
            log.warning("could not stop the warm workers of %s/%s", endpoint, deployment or "*", exc_info=True)

    # -- endpoints ---------------------------------------------------------------------------
    def put_endpoint(self, name: str, body: dict[str, Any]) -> BatchEndpoint:
        endpoint = BatchEndpoint.from_request(body, name=name)
        default = endpoint.default_deployment_name
        if default:
            self.store.get_deployment(name, default)
        return self.ws.endpoint_entity(self.store.put_endpoint(name, endpoint.spec()))

    def update_endpoint(self, name: str, changes: dict[str, Any]) -> BatchEndpoint:
        current = self.store.get_endpoint(name).spec
        return self.put_endpoint(name, deep_merge(current, changes))

    def delete_endpoint(self, name: str) -> None:
        self.store.delete_endpoint(name)
        self._changed(name, None)

    def deployment_for_invoke(self, endpoint_name: str, requested: str | None) -> str:
        """The deployment an invoke runs: the one asked for, else the endpoint's default."""
        endpoint = self.store.get_endpoint(endpoint_name)
        name = requested or default_deployment_name(endpoint)
        if not name:
            raise NotFoundError(
                f"batch endpoint '{endpoint_name}' has no default deployment; create one with "
                "'batchpoint batch-deployment create --set-default' or pass --deployment-name"
            )
        return name

    # -- deployments -------------------------------------------------------------------------
    def put_deployment(self, endpoint: str, name: str, body: dict[str, Any], set_default: bool = False,
                       caller: tuple[str | None, list[Any]] = (None, [])) -> BatchDeployment:
        """``caller``: (principal, assignments) — a code folder or inline model in a store's upload area
        or jobs' area must be one the caller could invoke on (None: the server itself)."""
        deployment = BatchDeployment.from_request(body, name=name, endpoint_name=endpoint)
        kept = self._current_sources(endpoint, name)  # unchanged paths were checked when they were set
        if deployment.code_configuration is not None:
            check_scoring_script(deployment.code_configuration.scoring_script)
            if deployment.code_configuration.code not in kept:
                self.ws.check_registration_source(deployment.code_configuration.code, *caller)
        if isinstance(deployment.model, Model) and deployment.model.path not in kept:
            self.ws.check_registration_source(deployment.model.path, *caller)
        row = self.store.put_deployment(endpoint, name, self.ws.prepare_deployment(deployment))
        self._changed(endpoint, name)
        ep = self.store.get_endpoint(endpoint)
        if set_default or not default_deployment_name(ep):
            self.store.put_endpoint(endpoint, {**ep.spec, "defaults": {"deployment_name": name}})
        return self.ws.deployment_entity(row)

    def _current_sources(self, endpoint: str, name: str) -> set[str]:
        """The code folder and inline model path the stored deployment already has (none if new)."""
        try:
            spec = self.store.get_deployment(endpoint, name).spec
        except NotFoundError:
            return set()
        model = spec.get("model")
        return {p for p in ((spec.get("code_configuration") or {}).get("code"),
                            model.get("path") if isinstance(model, dict) else None) if isinstance(p, str)}

    def update_deployment(self, endpoint: str, name: str, changes: dict[str, Any],
                          caller: tuple[str | None, list[Any]] = (None, [])) -> BatchDeployment:
        current = {k: v for k, v in self.store.get_deployment(endpoint, name).spec.items() if not k.startswith("_")}
        return self.put_deployment(endpoint, name, deep_merge(current, changes), caller=caller)

    def delete_deployment(self, endpoint: str, name: str) -> None:
        ep = self.store.get_endpoint(endpoint)
        is_default = default_deployment_name(ep) == name
        if is_default and len(self.store.list_deployments(endpoint)) > 1:
            raise ConflictError(
                f"deployment '{name}' is the default of batch endpoint '{endpoint}'; make another deployment the "
                "default first (batchpoint batch-endpoint update --set defaults.deployment_name=<name>)"
            )
        self.store.delete_deployment(endpoint, name)
        self._changed(endpoint, name)
        if is_default:
            self.store.put_endpoint(endpoint, {**ep.spec, "defaults": {}})

