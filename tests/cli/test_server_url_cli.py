"""`batchpoint server status|start` report the server the CLI talks to (issue 23 §2): with
BATCHPOINT_SERVER_URL set that server (its id, from /health), never a local one under
BATCHPOINT_HOME; nothing is started."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

CLI = str(Path(sys.executable).parent / "batchpoint")


def _run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([CLI, *args], capture_output=True, text=True, env=env, timeout=120)


def test_server_status_and_start_use_batchpoint_server_url(server: Any, tmp_path: Path) -> None:
    empty_home = tmp_path / "no-server-here"
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("BATCHPOINT_")},
           "BATCHPOINT_HOME": str(empty_home), "BATCHPOINT_SERVER_URL": server.url}
    with server.rest() as http:
        server_id = http.get("/health").json()["server"]
    status = _run(env, "server", "status")
    assert status.returncode == 0, status.stderr
    assert f"running at {server.url} (server {server_id}) (BATCHPOINT_SERVER_URL)" in status.stdout, status.stdout
    started = _run(env, "server", "start")
    assert started.returncode == 0 and started.stdout.strip() == server.url, (started.stdout, started.stderr)
    assert "no local server was started" in started.stderr
    assert not (empty_home / "server.json").exists()  # nothing was started under BATCHPOINT_HOME

    gone = {**env, "BATCHPOINT_SERVER_URL": "http://127.0.0.1:9"}  # the discard port: nothing answers
    assert "not running at http://127.0.0.1:9 (BATCHPOINT_SERVER_URL)" in _run(gone, "server", "status").stdout
    refused = _run(gone, "server", "start")
    assert refused.returncode == 1 and "no Batchpoint server answers at http://127.0.0.1:9" in refused.stderr
    assert not (empty_home / "server.json").exists()
