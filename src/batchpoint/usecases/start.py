"""The one body of every use case that starts a job (``invoke``, ``rerun``): the caller's role
assignments, idempotency under ``repeatability-request-id`` (``jobs/idempotency.py``), the submit
itself, the audit record, waking the dispatcher."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from batchpoint.jobs.idempotency import run_once
from batchpoint.store.tables import JobRow
from batchpoint.usecases.services import Services, assignments_of


@dataclass(frozen=True)
class Started:
    """A job a use case started: its row, the audit record of the request, and whether the request
    was idempotent (it sent a ``repeatability-request-id``: the answer says ``repeatability-result``)."""

    row: JobRow
    audit: dict[str, Any]
    idempotent: bool


#: ``submit(job_name, assignments)``: make the job (``job_name``: the one reserved for it, or None)
Submit = Callable[[str | None, list[Any]], JobRow]


def start_job(sv: Services, *, principal: str | None, key: str | None, fingerprint: str, job_name: str | None,
              describe: str, submit: Submit, audit: Callable[[JobRow], dict[str, Any]]) -> Started:
    """Run ``submit`` once per (principal, ``key``) when a key is sent (``job_name``: the name the
    request asks for; ``describe``: the request, named in a 409 for a key reused for another one),
    then record ``audit(row)`` and wake the dispatcher."""
    assignments = assignments_of(sv, principal)
    if key is None:
        row = submit(job_name, assignments)
    else:
        row, _ = run_once(sv.store, key, principal, fingerprint, job_name,
                          lambda reserved: submit(reserved, assignments), describe)
    sv.dispatcher.notify()
    return Started(row=row, audit=audit(row), idempotent=key is not None)
