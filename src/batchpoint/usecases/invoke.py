"""Invoke a batch endpoint: a new job, queued (docs/architecture.md, "A walk of one invoke").

The front door parses its body into an :class:`~batchpoint.jobs.submit.InvokeRequest` (the native
route as the spec's body, the Azure-shaped one from ARM's camelCase) and calls :func:`invoke`."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from batchpoint.jobs.idempotency import fingerprint
from batchpoint.jobs.submit import InvokeRequest, submit_job
from batchpoint.store.tables import JobRow
from batchpoint.usecases.services import Services
from batchpoint.usecases.start import Started, start_job


def invoke(sv: Services, endpoint: str, request: InvokeRequest, *, principal: str | None, key: str | None = None,
           body: Any = None, deployment_header: str | None = None) -> Started:
    """Start a job on ``endpoint`` (its default deployment, or the one the request names): checked,
    its inputs resolved and pinned (``jobs/submit.py``), idempotent under ``key`` (``body`` and
    ``deployment_header`` are what the request asked, as it sent them: a repeat must send the same)."""

    def submit(job_name: str | None, assignments: list[Any]) -> JobRow:
        return submit_job(sv.workspace, endpoint, replace(request, job_name=job_name), principal, assignments)

    return start_job(sv, principal=principal, key=key, job_name=request.job_name, describe="invoke",
                     fingerprint=fingerprint(f"invoke {endpoint}", body, deployment_header),
                     submit=submit, audit=lambda row: invoke_audit(endpoint, row))


def invoke_audit(endpoint: str, row: JobRow) -> dict[str, Any]:
    """The audit record of an invoke: where, which job, and each input's path and credential kind."""
    return {"action": "invoke", "endpoint": endpoint, "deployment": row.deployment_name, "job": row.name,
            "inputs": {k: {"path": v["path"], "type": v["type"], "credential_kind": v["credential_kind"]}
                       for k, v in row.inputs.items()}}
