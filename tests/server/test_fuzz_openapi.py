"""A bounded schemathesis run over the server's own OpenAPI: no request may answer 5xx, and every
answer's status and body are ones the OpenAPI declares (``server/openapi.py`` lists the error
answers every operation may give).

A few hundred generated requests (12 per operation, fixed seed), to a server of its own on loopback
with the owner's key, so the fuzzer's random deletes and grants touch no other test's data.
(Before: 31 of 39,786 generated requests answered 500 — huge ids, lone surrogates, deep JSON; each
of those has a test of its own in test_request_bounds.py, since a small run need not hit them.)
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from conftest import start_server, stop_server


def test_generated_requests_never_get_a_server_error_nor_an_undeclared_answer(tmp_path):
    handle = start_server(tmp_path / "home")
    exe = shutil.which("schemathesis", path=str(Path(sys.executable).parent)) or "schemathesis"
    try:
        key = (handle.home / "owner.key").read_text().strip()
        proc = subprocess.run(
            [exe, "run", f"{handle.url}/openapi.json", "-H", f"Authorization: Bearer {key}",
             "--max-examples", "12", "--workers", "1", "--phases", "examples,fuzzing",
             "--checks", "not_a_server_error,status_code_conformance,response_schema_conformance", "--seed", "20261201", "--no-color",
             "--request-timeout", "30"],
            capture_output=True, text=True, timeout=600, cwd=tmp_path)  # its cache folder goes there
        assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]
        assert "Server error" not in proc.stdout, proc.stdout[-6000:]
        assert "generated" in proc.stdout  # it did run cases
    finally:
        stop_server(handle)
    assert "unexpected error" not in handle.log(), handle.log()[-4000:]
