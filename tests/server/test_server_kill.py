"""SIGKILL the server mid-job (acceptance 2): its workers end themselves within a few seconds
(they watch their server: ``worker/watchdog.py``) — so a restarted server never has the same
scoring code running twice at once — and a server started again on the same home resumes the job:
``Crashed`` in its history, Completed, every input row exactly once with the model's predictions,
and the mini-batches finished before the kill were not scored again (counted from the side-effect
file the scoring script appends to)."""

from __future__ import annotations

import json
import signal
import socket
import time
from pathlib import Path

import pytest

from batchpoint import MLClient
from conftest import start_server, stop_server
from fixtures.faults import (
    alive, assert_resumed_without_rescoring, finish_job, heart_copies, invoke, make_endpoint, pids, traces_of,
)
from fixtures.flows import wait_until

pytestmark = pytest.mark.timeout(180)

FAST_BEAT = {"BATCHPOINT_JOBS__HEARTBEAT_INTERVAL_S": "0.5"}  # a dead server's jobs are stale after 1.5 s
ORPHAN_BOUND_S = 3.0  # "the old workers are gone within a few seconds"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _scored_by(traces: Path, workers: set[int]) -> list[str]:
    """The 'scored <file> <pid>' lines of the processes ``workers``."""
    path = traces / "side-effects.txt"
    lines = path.read_text().splitlines() if path.exists() else []
    return [line for line in lines if line.startswith("scored ") and int(line.rsplit(" ", 1)[1]) in workers]


def test_server_killed_mid_job_leaves_no_orphan_and_resumes_without_rescoring(
        tmp_path: Path, heart_model_dir: Path) -> None:
    home, traces = tmp_path / "home", tmp_path / "traces"
    data = heart_copies(tmp_path / "data", copies=2)  # 8 files, one per mini-batch
    env = {**FAST_BEAT, "BATCHPOINT_SERVER__PORT": str(_free_port())}
    first = start_server(home, env)
    second = None
    try:
        with MLClient(endpoint=first.url, home=home) as client:
            make_endpoint(client, "server-kill", heart_model_dir, tmp_path / "code", workers=2)
            name = invoke(client, "server-kill", data, traces, SLEEP_S="2")
            wait_until(lambda: client.jobs.get(name).progress.mini_batches_completed >= 2, 90, "2 mini-batches done")
            workers = wait_until(lambda: pids(traces, "init"), 10, "the worker pids")
            assert all(alive(pid) for pid in workers)
            first.proc.send_signal(signal.SIGKILL)
            killed_at = time.monotonic()
            scored_by_old = _scored_by(traces, workers)
            first.proc.wait(timeout=10)
        done_before = [json.loads(line)["index"] for line in (home / "jobs" / name / "done.jsonl").read_text().splitlines()]
        busy = {line for line in traces_of(traces, "start")} - set(traces_of(traces, "scored"))
        assert 2 <= len(done_before) < 8 and busy, (done_before, busy)  # killed mid-job, workers inside run()

        # the orphans end themselves (their script sleeps 2 s per file: they would finish it otherwise)
        wait_until(lambda: not any(alive(pid) for pid in workers), ORPHAN_BOUND_S, "the old workers gone")
        orphans_gone_after = time.monotonic() - killed_at
        time.sleep(2.5)  # longer than a file's sleep: an orphan still running would now have scored its file
        assert _scored_by(traces, workers) == scored_by_old, "an old worker went on scoring after its server died"
        worker_log = "".join(p.read_text() for p in (home / "jobs" / name / "logs").glob("worker-*.log"))
        assert "exiting so that no scoring code runs without its server" in worker_log, worker_log[-2000:]

        (home / "server.json").unlink(missing_ok=True)
        second = start_server(home, env)
        # finished mini-batches were not scored again: each file of the done log before the kill was
        # started exactly once; every file was scored; nothing ran twice at once
        final, history, saved = finish_job(second, name, tmp_path / "out")
        assert_resumed_without_rescoring(final, history, saved, second, heart_model_dir, data, traces, done_before)
        assert orphans_gone_after <= ORPHAN_BOUND_S
    finally:
        if second is not None:
            stop_server(second)
        if first.proc.poll() is None:
            first.proc.kill()
