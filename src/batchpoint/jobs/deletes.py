"""Deleting what jobs run on: an endpoint or a deployment with queued or running jobs.

A job's run needs its deployment until it ends, so a delete of an endpoint or deployment that still
has active jobs (``NotStarted``, ``Queued``, ``Preparing``, ``Running``, ``Finalizing``, ``Crashed``)
is refused with a 409 naming them (at most ten, then how many more) — or, with ``force``, those jobs
are canceled first (each keeps its partial output, as any cancel does) and then the delete goes on.
The REST routers, and any later front door, call these; they do not look for jobs themselves.
"""

from __future__ import annotations

from collections.abc import Callable

from batchpoint.exceptions import ConflictError
from batchpoint.jobs.states import ACTIVE, JobStatus
from batchpoint.store.sql import SqlMetadataStore
from batchpoint.workspace.endpoints import EndpointService

_SHOWN = 10
_NOT_ENDED = sorted(s.value for s in (*ACTIVE, JobStatus.CRASHED))


def active_jobs(store: SqlMetadataStore, endpoint: str, deployment: str | None = None) -> list[str]:
    """Names of the endpoint's (or one deployment's) jobs that have not ended, oldest first."""
    rows = store.list_jobs(endpoint=endpoint, deployment=deployment, statuses=_NOT_ENDED,
                           limit=100_000)
    return [r.name for r in reversed(rows)]


def _guard(what: str, jobs: list[str], force: bool, cancel: Callable[[str], object], retry: str) -> None:
    if not jobs:
        return
    if force:
        for name in jobs:
            cancel(name)
        return
    shown = ", ".join(jobs[:_SHOWN]) + (f" and {len(jobs) - _SHOWN} more" if len(jobs) > _SHOWN else "")
    raise ConflictError(
        f"{what} has {len(jobs)} job(s) that have not ended: {shown}. Wait for them, cancel them "
        f"(batchpoint job cancel -n <job>), or delete with --force to cancel them first ({retry})")


def delete_endpoint(store: SqlMetadataStore, endpoints: EndpointService, cancel: Callable[[str], object],
                    name: str, force: bool = False) -> None:
    store.get_endpoint(name)  # a missing endpoint is a 404, not "no jobs"
    _guard(f"batch endpoint '{name}'", active_jobs(store, name), force, cancel,
           f"batchpoint batch-endpoint delete -n {name} --force")
    endpoints.delete_endpoint(name)


def delete_deployment(store: SqlMetadataStore, endpoints: EndpointService, cancel: Callable[[str], object],
                      endpoint: str, name: str, force: bool = False) -> None:
    store.get_deployment(endpoint, name)
    _guard(f"deployment '{name}' of batch endpoint '{endpoint}'", active_jobs(store, endpoint, name), force, cancel,
           f"batchpoint batch-deployment delete -n {name} -e {endpoint} --force")
    endpoints.delete_deployment(endpoint, name)
