"""SIGKILL a worker mid-mini-batch (acceptance 2, local pool): the mini-batch is retried as a
platform failure on a new worker, the job Completes, and its output is exactly a clean run's —
every input row once, the model's predictions, in listing order — and leaves no temporary folder."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from conftest import wait_job
from fixtures.faults import (
    assert_clean_run_output, download_predictions, heart_copies, invoke, kill, make_endpoint, pids, traces_of,
)
from fixtures.flows import wait_until

pytestmark = pytest.mark.timeout(180)


def test_a_worker_killed_mid_mini_batch_gives_a_clean_runs_output(
        ml_client: Any, server: Any, heart_model_dir: Path, tmp_path: Path) -> None:
    make_endpoint(ml_client, "faults-worker-kill", heart_model_dir, tmp_path / "code", workers=2)
    data = heart_copies(tmp_path / "data", copies=1)
    traces = tmp_path / "traces"
    name = invoke(ml_client, "faults-worker-kill", data, traces, HANG_ON="a-heart-unlabeled-1.csv")
    (victim,) = wait_until(lambda: pids(traces, "hang"), 120, "a worker inside run() on a-heart-unlabeled-1.csv")
    folder = server.home / "jobs" / name
    scratch = sorted(p.name for p in (folder / "tmp").iterdir()) if (folder / "tmp").is_dir() else []
    assert len(scratch) == 2 and scratch == ["worker-0", "worker-1"], scratch  # one per worker slot
    (traces / "signals" / "released").touch()  # the retry scores it without hanging
    kill(victim)
    job = wait_job(ml_client, name, timeout=120)
    assert job.status == "Completed", (job.status_message, job.error)
    assert job.failures == [] and job.progress.files_failed == 0 and job.progress.files_completed == 4
    saved = download_predictions(ml_client, name, tmp_path / "out")
    assert_clean_run_output(saved, heart_model_dir, data)
    assert traces_of(traces, "start").count("a-heart-unlabeled-1.csv") == 2  # killed once, scored once more
    # the killed worker's temporary folder (kept in the job folder, never in /tmp) is gone too
    assert (folder / "parts").is_dir() and not (folder / "tmp").exists()
    # the rows are in the workers' segments (one per worker process: the replacement has its own)
    entries = [json.loads(line) for line in (folder / "done.jsonl").read_text().splitlines()]
    assert len(entries) == 4 and all(set(e["segments"]) == set(e["parts"]) for e in entries), entries
    (retried,) = [e for e in entries if e["index"] == 1]  # a-heart-unlabeled-1.csv (1 file a mini-batch)
    assert all(f"-{victim}-" not in s[0] for s in retried["segments"].values()), retried  # not the killed one's
