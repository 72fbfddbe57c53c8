"""A server killed with SIGKILL mid-job: a new server on the same home (and port) queues the job
again and it completes. Its history says what happened — ``Crashed`` (its server stopped sending
heartbeats; kept apart from ``Failed``) before the second ``Preparing`` — and ``start_time`` is the
first start. ``jobs.stream``, started before the kill, reconnects with ``Last-Event-ID`` and prints
each status once, ``[Crashed]`` included."""

from __future__ import annotations

import io
import signal
import socket
import threading
from pathlib import Path

import httpx
import pytest

from batchpoint import MLClient
from conftest import HEART_ROWS, start_server, stop_server, wait_job
from fixtures.flows import wait_until
from jobs.events_support import HEART_FILES, assert_numbered, invoke, make_event_endpoint, statuses

pytestmark = pytest.mark.timeout(240)

ENDPOINT = "crash-history"
FAST_BEAT = {"BATCHPOINT_JOBS__HEARTBEAT_INTERVAL_S": "0.5"}  # a dead server's jobs are stale after 1.5 s
HISTORY = ["Queued", "Preparing", "Running", "Crashed", "Queued", "Preparing", "Running", "Finalizing", "Completed"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_crashed_is_in_the_history_and_start_time_is_the_first(tmp_path: Path, heart_model_dir: Path) -> None:
    home = tmp_path / "home"
    env = {**FAST_BEAT, "BATCHPOINT_SERVER__PORT": str(_free_port())}
    first = start_server(home, env)
    second = None
    streamed, ended = io.StringIO(), []
    try:
        with MLClient(endpoint=first.url, home=home) as client:
            make_event_endpoint(client, ENDPOINT, heart_model_dir, tmp_path / "code",
                                slow={"environment_variables": {"SLEEP_S": "1.5"}})
            name = invoke(client, ENDPOINT, "slow")
            follower = MLClient(endpoint=first.url, home=home)  # the same URL reaches the second server
            streaming = threading.Thread(target=lambda: ended.append(follower.jobs.stream(name, out=streamed)),
                                         daemon=True)
            streaming.start()
            wait_until(lambda: client.jobs.get(name).progress.mini_batches_completed >= 1, 60, "a mini-batch scored")
            before = client.jobs.get(name)
            first.proc.send_signal(signal.SIGKILL)
            first.proc.wait(timeout=10)
        assert before.status == "Running" and before.progress.mini_batches_completed < HEART_FILES, before
        assert before.start_time is not None

        (home / "server.json").unlink(missing_ok=True)
        second = start_server(home, env)
        assert second.url == first.url
        with MLClient(endpoint=second.url, home=home) as client:
            final = wait_job(client, name, timeout=90)
            events = [e.model_dump(mode="json") for e in client.jobs.events(name)]
        assert final.status == "Completed", (final.status_message, final.error, second.log()[-3000:])
        assert (final.progress.files_completed, final.progress.rows) == (HEART_FILES, HEART_ROWS)
        assert final.start_time == before.start_time, (final.start_time, before.start_time)
        assert final.end_time is not None and final.end_time > final.start_time

        assert_numbered(events)
        assert statuses(events) == HISTORY, statuses(events)
        crashed = next(e for e in events if e["status"] == "Crashed")
        preparing = [e for e in events if e["status"] == "Preparing"]
        assert "stopped sending heartbeats" in crashed["message"] and "finished mini-batches are kept" in \
            crashed["message"], crashed
        # the server restarted on the same home and address is the same server (a stable id, shown by
        # /health): the job names it before the crash, at the crash and when it resumed
        server_id = httpx.get(f"{second.url}/health", timeout=10).json()["server"]
        assert crashed["data"]["owner"] == preparing[0]["data"]["owner"] == preparing[1]["data"]["owner"] == server_id
        assert crashed["seq"] < preparing[1]["seq"]
        assert "Failed" not in statuses(events)  # a crash is not the job's failure
        # the mini-batches finished before the kill are not scored again: the count goes up one by one
        # (other progress events, such as the end of the listing, repeat the count they saw)
        counts = [e["data"]["mini_batches_completed"] for e in events if e["type"] == "progress"]
        done = [c for i, c in enumerate(counts) if c and (i == 0 or c != counts[i - 1])]
        assert done == list(range(1, HEART_FILES + 1)), counts
        assert counts == sorted(counts), counts

        # the stream opened on the first server followed the job to its end on the second
        streaming.join(60)
        follower.close()
        lines = streamed.getvalue().splitlines()
        assert ended and ended[0].status == "Completed", streamed.getvalue()
        assert [line.split("]")[0][1:] for line in lines if line.startswith("[")] == HISTORY, streamed.getvalue()
        assert f"[Crashed] {crashed['message']}" in lines
        assert lines[-1] == f"Job {name} Completed: {HEART_FILES} files scored, 0 failed, {HEART_ROWS} rows"
    finally:
        if second is not None:
            stop_server(second)
        if first.proc.poll() is None:
            first.proc.kill()
