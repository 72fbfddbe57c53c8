"""Acceptance (Security 3): after the whole suite, no account key, SAS signature, client secret or
API key appears in an API response body, a server log, a job log or an output file.

This module runs last (``zz_final``). It scans every file the session's servers wrote under
pytest's base temporary folder (except ``owner.key``, where the owner key is meant to be) and the
bodies of the read routes that show resources, jobs and the audit log.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from conftest import RECORDED_SECRETS
from fixtures.components import AZURITE_ACCOUNT_KEY

PATTERNS = [re.compile(rb"sig=[A-Za-z0-9%+/=]{20,}"), re.compile(rb"AccountKey=[A-Za-z0-9+/=]{20,}"),
            re.compile(rb"bpk_[A-Za-z0-9_-]{8,}_[A-Za-z0-9_-]{20,}")]
SKIP_NAMES = {"owner.key", "server.key"}


def _secrets() -> list[bytes]:
    return [s.encode() for s in {AZURITE_ACCOUNT_KEY, *RECORDED_SECRETS} if len(s) >= 8]


def _written_files(base: Path):
    for path in base.rglob("*"):
        if path.is_file() and path.name not in SKIP_NAMES and path.stat().st_size < 50 * 1024 * 1024:
            yield path


def test_no_secret_in_files_written_by_servers(tmp_path_factory: pytest.TempPathFactory):
    base = tmp_path_factory.getbasetemp()
    leaks = []
    secrets = _secrets()
    for path in _written_files(base):
        if path.suffix in (".pkl", ".db", ".db-wal", ".db-shm") and "datastores" not in path.parts:
            data = path.read_bytes()
            hits = [s for s in secrets if s in data]
        else:
            data = path.read_bytes()
            hits = [s for s in secrets if s in data] + [p.pattern for p in PATTERNS if p.search(data)]
        if hits:
            leaks.append(f"{path.relative_to(base)}: {[h[:12] for h in hits]}")
    assert not leaks, "secrets found in files:\n" + "\n".join(leaks)


def test_no_secret_in_api_responses(server):
    secrets = _secrets()
    with server.rest() as http:
        bodies = [http.get(p).content for p in ("/datastores", "/jobs?limit=1000", "/auditLog?limit=1000",
                                                  "/principals", "/roleAssignments", "/computes")]
        for job in http.get("/jobs?limit=1000").json():
            bodies.append(http.get(f"/jobs/{job['name']}").content)
        for store in http.get("/datastores").json():
            bodies.append(http.get(f"/datastores/{store['name']}").content)
    leaks = [s[:12] for body in bodies for s in secrets if s in body]
    assert not leaks, f"secrets in API responses: {leaks}"
