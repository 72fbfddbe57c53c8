"""The reads the front doors show: endpoints, deployments, jobs, assets, computes, data stores,
servers and the health of the metadata store. Resources come back as entities (secrets left out);
jobs as their rows, which ``jobs/views.job_entity`` shows (a front door asks it with or without
server paths)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from sqlalchemy import select

from batchpoint.entities import AmlCompute, BatchDeployment, BatchEndpoint, Datastore, Job
from batchpoint.environments.assets import EnvironmentAssets
from batchpoint.jobs import children
from batchpoint.jobs.views import job_entity
from batchpoint.store.tables import JobRow, ServerRow
from batchpoint.usecases.services import Services

# ---- endpoints and deployments -------------------------------------------------------------------


def list_endpoints(sv: Services, shown: Callable[[str], bool] | None = None) -> list[BatchEndpoint]:
    """Every endpoint (those whose name ``shown`` accepts), by name."""
    return [sv.workspace.endpoint_entity(r) for r in sv.store.list_endpoints() if shown is None or shown(r.name)]


def get_endpoint(sv: Services, name: str) -> BatchEndpoint:
    return sv.workspace.endpoint_entity(sv.store.get_endpoint(name))


def list_deployments(sv: Services, endpoint: str) -> list[BatchDeployment]:
    """The endpoint's deployments (a 404 when the endpoint does not exist)."""
    sv.store.get_endpoint(endpoint)
    return [sv.workspace.deployment_entity(r) for r in sv.store.list_deployments(endpoint)]


def get_deployment(sv: Services, endpoint: str, name: str) -> BatchDeployment:
    return sv.workspace.deployment_entity(sv.store.get_deployment(endpoint, name))


# ---- jobs -----------------------------------------------------------------------------------------


def list_jobs(sv: Services, *, endpoint: str | None = None, deployment: str | None = None,
              created_by: str | None = None, limit: int = 100, offset: int = 0,
              statuses: Iterable[str] | None = None) -> list[JobRow]:
    """Jobs, newest first: of an endpoint (and deployment), started by ``created_by``, in ``statuses``."""
    return sv.store.list_jobs(endpoint=endpoint, deployment=deployment, created_by=created_by, limit=limit,
                              offset=offset, statuses=statuses)


def endpoint_jobs(sv: Services, endpoint: str, created_by: str | None, limit: int, offset: int = 0) -> list[JobRow]:
    """The endpoint's jobs (a 404 when the endpoint does not exist)."""
    sv.store.get_endpoint(endpoint)
    return sv.store.list_jobs(endpoint=endpoint, created_by=created_by, limit=limit, offset=offset)


def deployment_jobs(sv: Services, endpoint: str, deployment: str, created_by: str | None, limit: int,
                    offset: int = 0) -> list[JobRow]:
    """The deployment's jobs (a 404 when the deployment does not exist)."""
    sv.store.get_deployment(endpoint, deployment)
    return sv.store.list_jobs(endpoint=endpoint, deployment=deployment, created_by=created_by, limit=limit,
                              offset=offset)


def show(sv: Services, row: JobRow, *, with_failures: bool = True, server_paths: bool = False) -> Job:
    """The job as clients see it (``server_paths``: where data is on the server's disk, Owners only)."""
    return job_entity(sv.workspace, row, with_failures=with_failures, server_paths=server_paths)


def get_job(sv: Services, name: str) -> JobRow:
    """Job ``name``'s row (a batchscoring step's name is not a job: 404)."""
    return sv.store.get_job(name)


def job_or_parent(sv: Services, name: str) -> JobRow:
    """The row of job ``name``, or of the job whose batchscoring step ``name`` is."""
    return children.job_row(sv.store, name)


def show_job(sv: Services, name: str, server_paths: bool = False, row: JobRow | None = None) -> Job:
    """Job ``name`` with its recent failures, or its batchscoring step (a view of the same job).
    ``row``: the record ``children.job_row`` gives for ``name``, when the caller read it already
    (the read permission's check did)."""
    row = children.job_row(sv.store, name) if row is None else row
    shown = show(sv, row, server_paths=server_paths)
    return children.child_entity(shown) if children.is_child_name(name) else shown


def child_jobs(sv: Services, parent: str, created_by: str | None, offset: int, server_paths: bool) -> list[Job]:
    """The child jobs of ``parent`` (its one batchscoring step; none on a page after the first, for a
    job the caller may not list, or when ``parent`` is itself a step)."""
    row = children.job_row(sv.store, parent)
    seen = offset == 0 and (created_by is None or row.created_by == created_by) and not children.is_child_name(parent)
    return [children.child_entity(show(sv, row, with_failures=False, server_paths=server_paths))] if seen else []


def progress_events(sv: Services, name: str, limit: int = 50_000) -> list[Any]:
    """Job ``name``'s progress events, oldest first."""
    return sv.store.list_job_events(name, 0, limit, types=("progress",))


def failures_per_mini_batch(sv: Services, name: str, limit: int = 100_000) -> dict[int, int]:
    """How many final failures each mini-batch of job ``name`` recorded."""
    counts: dict[int, int] = {}
    for failure in sv.store.list_failures(name, limit=limit):
        counts[failure.mini_batch] = counts.get(failure.mini_batch, 0) + 1
    return counts


# ---- assets, computes, data stores, environments ---------------------------------------------------


def list_assets(sv: Services, collection: str, name: str | None = None) -> list[Any]:
    """The versions of data assets (``collection`` ``data``) or models (``models``), as entities."""
    entity = _asset_entity(sv, collection)
    return [entity(r) for r in sv.store.list_assets(collection, name)]


def get_asset(sv: Services, collection: str, name: str, version: str | None = None,
              label: str | None = None) -> Any:
    """One version (or the one ``label`` names) of a data asset or a model."""
    return _asset_entity(sv, collection)(sv.store.get_asset(collection, name, version=version, label=label))


def _asset_entity(sv: Services, collection: str) -> Callable[[Any], Any]:
    return sv.workspace.data_entity if collection == "data" else sv.workspace.model_entity


def list_computes(sv: Services, kind: str | None = None) -> list[AmlCompute]:
    """Every compute (of type ``kind``)."""
    return [sv.workspace.compute_entity(r) for r in sv.store.list_computes()
            if kind is None or r.spec.get("type") == kind]


def get_compute(sv: Services, name: str) -> AmlCompute:
    return sv.workspace.compute_entity(sv.store.get_compute(name))


def list_datastores(sv: Services) -> list[Datastore]:
    return [sv.workspace.datastore_entity(r) for r in sv.store.list_datastores()]


def get_datastore(sv: Services, name: str) -> Datastore:
    return sv.workspace.datastore_entity(sv.store.get_datastore(name))


def default_datastore(sv: Services) -> Datastore:
    return sv.workspace.datastore_entity(sv.store.get_default_datastore())


def environments(sv: Services) -> EnvironmentAssets:
    """Registered environments and the builds of deployments' environments."""
    return EnvironmentAssets(sv.settings, sv.store)


# ---- the servers of the workspace, the store's health ------------------------------------------------


def servers(sv: Services) -> list[ServerRow]:
    """The servers that ran in this workspace (``server/instance.py`` records them), newest first."""
    with sv.store.session() as s:
        return list(s.scalars(select(ServerRow).order_by(ServerRow.started_at.desc())))


def running_jobs_per_server(sv: Services) -> dict[str, int]:
    """How many jobs each server runs now (Preparing, Running, Finalizing)."""
    running: dict[str, int] = {}
    for row in sv.store.list_jobs(statuses=("Preparing", "Running", "Finalizing"), limit=10_000):
        running[row.owner] = running.get(row.owner, 0) + 1
    return running


def write_problem(sv: Services) -> str | None:
    """Why the metadata store cannot take writes now, or None when it can (``GET /health``)."""
    return sv.store.write_problem()
