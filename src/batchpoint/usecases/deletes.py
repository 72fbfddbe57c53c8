"""Delete an endpoint or a deployment: refused with a 409 naming its queued or running jobs, or
with ``force`` those canceled first (``jobs/deletes.py`` holds the rule)."""

from __future__ import annotations

from batchpoint.jobs import deletes
from batchpoint.usecases.services import Services


def delete_endpoint(sv: Services, name: str, force: bool = False) -> None:
    deletes.delete_endpoint(sv.store, sv.endpoints, sv.dispatcher.cancel, name, force)


def delete_deployment(sv: Services, endpoint: str, name: str, force: bool = False) -> None:
    deletes.delete_deployment(sv.store, sv.endpoints, sv.dispatcher.cancel, endpoint, name, force)
