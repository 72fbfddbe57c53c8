"""Idempotent invoke: the same ``repeatability-request-id`` within 24 h returns the same job.

Azure's SDK has created duplicate jobs from one retried request. A client sends a key of its
choosing with each invoke (``repeatability-request-id``, or Azure's ``repeatability_request-id``
spelling; at most 128 printable characters) and sends the *same* key again when it retries:

===============================================  ===========================================
the key, for this principal                      answer
===============================================  ===========================================
unseen (or last used more than 24 h ago)         the request runs; its job is recorded
seen, same request (route and body)              the job the first request made, with the
                                                 first answer's status code (202 for invoke)
seen, another request                            409 naming the key: a key names one request
===============================================  ===========================================

Keys are per principal (two users may pick the same one) and stored in ``invoke_requests``
(migration 0006) under a unique constraint on (principal, key): of N requests racing with one key,
on SQLite or PostgreSQL, exactly one inserts its row and runs; the others read that row and wait
for its job to exist (:data:`WAIT_S`). The row is written *before* the job with the job's name
reserved in it; if the request then fails (a bad input, say) the row is removed, so the same key
with a fixed request may be sent again and a waiting repeat gets the same error by running itself.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Any

from sqlalchemy import delete, select

from batchpoint._internal.clock import as_utc, utcnow
from batchpoint._internal.ids import new_job_name
from batchpoint.exceptions import ConflictError, NotFoundError, ValidationError
from batchpoint.store.sql import SqlMetadataStore
from batchpoint.store.tables import InvokeRequestRow, JobRow

__all__ = ["HEADERS", "WINDOW", "fingerprint", "request_key", "run_once"]

#: the header, and Azure's spelling of it
HEADERS = ("repeatability-request-id", "repeatability_request-id")
WINDOW = timedelta(hours=24)
WAIT_S = 60.0  # how long a repeat waits for the job of the request it repeats
MAX_KEY = 128
ABANDONED_S = 300.0  # a key whose job does not exist this long after it was claimed is free again


def request_key(headers: Mapping[str, str]) -> str | None:
    """The idempotency key of a request, checked; None when it sends none."""
    for name in HEADERS:
        value = headers.get(name)
        if value is None:
            continue
        key = value.strip()
        if not key or len(key) > MAX_KEY or not key.isprintable():
            raise ValidationError(f"header {name} must be 1 to {MAX_KEY} printable characters (a UUID is usual), "
                                  f"not {value[:40]!r}")
        return key
    return None


def fingerprint(route: str, body: Any, *extra: str | None) -> str:
    """A hash of what a request asks for: its route, its JSON body (key order ignored), and
    ``extra`` values that change its meaning (a deployment header)."""
    text = json.dumps([route, body, *extra], sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def run_once(store: SqlMetadataStore, key: str, principal: str | None, print_: str, job_name: str | None,
             submit: Callable[[str], JobRow], describe: str = "invoke") -> tuple[JobRow, bool]:
    """Run ``submit(name)`` once per (principal, key): returns (the job, whether this call made
    it). ``job_name``: the name the request asks for (else one is made up and reserved)."""
    who = principal or ""
    deadline = time.monotonic() + WAIT_S
    while True:
        name = job_name or new_job_name()
        if _claim(store, who, key, print_, name):
            try:
                return submit(name), True
            except BaseException:
                _release(store, who, key, name)
                raise
        row = _find(store, who, key)
        if row is None:
            continue  # expired or released meanwhile: try to claim it again
        if row.fingerprint != print_:
            raise ConflictError(
                f"repeatability-request-id '{key}' was already used within 24 h for another request (another "
                f"{describe}, or other inputs or settings), which made job '{row.job_name}'; a key names one "
                "request: send a new key for a new request", details={"repeatability_request_id": key,
                                                                        "job": row.job_name})
        job = _wait_for_job(store, row, deadline)
        if job is not None:
            return job, False
        if time.monotonic() > deadline:
            raise ConflictError(f"the request with repeatability-request-id '{key}' is still being processed; "
                                "send it again in a moment", details={"repeatability_request_id": key})


def _claim(store: SqlMetadataStore, who: str, key: str, print_: str, name: str) -> bool:
    """Insert the key's row (after removing an expired one); False when another request holds it."""
    now = utcnow()
    with store.session() as s:
        s.execute(delete(InvokeRequestRow).where(InvokeRequestRow.principal_id == who,
                                                 InvokeRequestRow.request_id == key,
                                                 InvokeRequestRow.created_at < now - WINDOW))
    try:
        with store.session() as s:
            s.add(InvokeRequestRow(principal_id=who, request_id=key, fingerprint=print_, job_name=name,
                                   created_at=now))
    except ConflictError:  # the unique constraint: the key is taken
        return False
    return True


def _find(store: SqlMetadataStore, who: str, key: str) -> InvokeRequestRow | None:
    with store.session() as s:
        row = s.scalars(select(InvokeRequestRow).where(InvokeRequestRow.principal_id == who,
                                                       InvokeRequestRow.request_id == key)).first()
    if row is not None and (as_utc(row.created_at) or utcnow()) < utcnow() - WINDOW:
        return None
    return row


def _release(store: SqlMetadataStore, who: str, key: str, name: str) -> None:
    with store.session() as s:
        s.execute(delete(InvokeRequestRow).where(InvokeRequestRow.principal_id == who,
                                                 InvokeRequestRow.request_id == key,
                                                 InvokeRequestRow.job_name == name))


def _wait_for_job(store: SqlMetadataStore, row: InvokeRequestRow, deadline: float) -> JobRow | None:
    """The job of ``row`` once it exists; None when its request failed (the row is gone), was cut
    off before it made its job (a server killed mid-request: the row is removed after
    :data:`ABANDONED_S`), or time ran out."""
    while time.monotonic() < deadline:
        try:
            return store.get_job(row.job_name)
        except NotFoundError:
            pass
        if _find(store, row.principal_id, row.request_id) is None:
            return None
        if (as_utc(row.created_at) or utcnow()) < utcnow() - timedelta(seconds=ABANDONED_S):
            _release(store, row.principal_id, row.request_id, row.job_name)
            return None
        time.sleep(0.05)
    return None
