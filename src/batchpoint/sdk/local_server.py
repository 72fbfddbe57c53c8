"""Find — or start — the embedded local server under ``BATCHPOINT_HOME``.

With no server URL configured, the CLI and SDK use a server bound to 127.0.0.1 that they start
once in the background (it keeps running, so jobs go on after the CLI exits). Its address is in
``<home>/server.json``; its log in ``<home>/server.log``.
"""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

from batchpoint.exceptions import ServerUnavailableError


def _alive(url: str) -> bool:
    try:
        return httpx.get(f"{url}/health", timeout=2.0).status_code == 200
    except httpx.HTTPError:
        return False


def _read_url(info: Path) -> str | None:
    try:
        return json.loads(info.read_text())["url"]
    except (OSError, ValueError, KeyError):
        return None


def ensure_local_server(home: Path, timeout: float = 60.0) -> str:
    """The URL of a healthy local server for ``home``, starting one if needed."""
    home.mkdir(parents=True, exist_ok=True)
    info = home / "server.json"
    url = _read_url(info)
    if url and _alive(url):
        return url
    with open(home / "server.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        url = _read_url(info)
        if url and _alive(url):
            return url
        info.unlink(missing_ok=True)
        return _start(home, info, timeout)


def _start(home: Path, info: Path, timeout: float) -> str:
    log_path = home / "server.log"
    env = {**os.environ, "BATCHPOINT_HOME": str(home)}
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "batchpoint.server", "--home", str(home)],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env, start_new_session=True,
        )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        url = _read_url(info)
        if url and _alive(url):
            return url
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    tail = log_path.read_text(errors="replace")[-2000:] if log_path.exists() else ""
    raise ServerUnavailableError(f"the local Batchpoint server did not start (log: {log_path}):\n{tail}")


def stop_local_server(home: Path, timeout: float = 15.0) -> bool:
    info = home / "server.json"
    try:
        pid = json.loads(info.read_text())["pid"]
    except (OSError, ValueError, KeyError):
        return False
    try:
        os.kill(pid, 15)
    except ProcessLookupError:
        info.unlink(missing_ok=True)
        return False
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.1)
    os.kill(pid, 9)
    return True
