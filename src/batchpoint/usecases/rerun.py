"""Rerun a finished job: a new job over its files, all of them or only those that did not succeed
(``jobs/rerun.py`` says which files, how, and where its output goes; docs/faults.md)."""

from __future__ import annotations

import json
from typing import Any

from batchpoint.exceptions import ValidationError
from batchpoint.jobs import children
from batchpoint.jobs.idempotency import fingerprint
from batchpoint.jobs.rerun import rerun_job
from batchpoint.store.tables import JobRow
from batchpoint.usecases.services import Services
from batchpoint.usecases.start import Started, start_job


def parse_rerun_body(name: str, raw: bytes) -> tuple[dict[str, Any], bool]:
    """The rerun request of job ``name``: ``{"failed_only": true|false}`` (an empty body: false).
    Returns (the body as sent, failed_only). A child job's name is refused first, naming its parent."""
    children.refuse_step(name, "rerun")
    body = json_object(raw)
    unknown = sorted(set(body) - {"failed_only"})
    if unknown or not isinstance(body.get("failed_only", False), bool):
        raise ValidationError("the rerun body is {\"failed_only\": true|false} (default false)"
                              + (f"; unknown: {', '.join(unknown)}" if unknown else ""))
    return body, bool(body.get("failed_only", False))


def json_object(raw: bytes) -> dict[str, Any]:
    """A request body that is a JSON object, or empty (``{}``)."""
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except ValueError as exc:
        raise ValidationError(f"the request body is not valid JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise ValidationError("the request body must be a JSON object")
    return body


def rerun(sv: Services, name: str, *, failed_only: bool, principal: str | None, key: str | None = None,
          body: Any = None) -> Started:
    """Start a new job over the files of job ``name`` (idempotent under ``key`` as invoke is)."""

    def submit(job_name: str | None, assignments: list[Any]) -> JobRow:
        return rerun_job(sv.workspace, name, failed_only=failed_only, created_by=principal, assignments=assignments,
                         job_name=job_name)

    return start_job(sv, principal=principal, key=key, job_name=None, describe="rerun",
                     fingerprint=fingerprint(f"rerun {name}", body), submit=submit,
                     audit=lambda row: {"action": "rerun", "job": row.name, "of": name, "failed_only": failed_only})
