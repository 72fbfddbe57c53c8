"""``job cancel`` (acceptance 4, local pool): Canceled at once, every worker process gone within
5 s — even two stuck in user code — and the rows of the mini-batches finished before the cancel
kept as the job's output, labelled partial (``partial`` in ``job show``, a ``_PARTIAL.json``
marker beside the file, and ``job download`` says so). Worker processes are checked by PID."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from conftest import wait_job
from fixtures.faults import (
    alive, assert_clean_run_output, download_predictions, heart_copies, invoke, make_endpoint, pids,
)
from fixtures.flows import wait_until

pytestmark = pytest.mark.timeout(180)

CANCEL_BOUND_S = 5.0  # the bound


def test_cancel_stops_stuck_workers_within_5s_and_keeps_a_labelled_partial_output(
        ml_client: Any, cli_inproc: Any, heart_model_dir: Path, tmp_path: Path) -> None:
    make_endpoint(ml_client, "faults-cancel", heart_model_dir, tmp_path / "code", workers=2)
    data = heart_copies(tmp_path / "data", copies=1)  # a-heart-unlabeled-0..3.csv
    traces = tmp_path / "traces"
    name = invoke(ml_client, "faults-cancel", data, traces, HANG_ON="a-heart-unlabeled-2.csv,a-heart-unlabeled-3.csv")
    wait_until(lambda: len(pids(traces, "hang")) == 2, 120, "both workers stuck in run()")
    workers = pids(traces, "init")
    assert len(workers) == 2 and all(alive(pid) for pid in workers)
    wait_until(lambda: ml_client.jobs.get(name).progress.mini_batches_completed == 2, 10, "2 mini-batches recorded")

    started = time.monotonic()
    result = cli_inproc("job", "cancel", "-n", name)
    canceled_after = time.monotonic() - started
    assert json.loads(result.out)["status"] == "Canceled", result.out
    wait_until(lambda: not any(alive(pid) for pid in workers), CANCEL_BOUND_S - canceled_after,
               "every worker process gone")
    gone_after = time.monotonic() - started
    assert gone_after <= CANCEL_BOUND_S, gone_after

    job = wait_until(lambda: (j := ml_client.jobs.get(name)).outputs["score"].partial and j, 30, "the partial output")
    assert job.status == "Canceled" and job.progress.mini_batches_completed == 2
    shown = json.loads(cli_inproc("job", "show", "-n", name).out)
    assert shown["outputs"]["score"]["partial"] is True, shown["outputs"]

    download = cli_inproc("job", "download", "-n", name, "--download-path", str(tmp_path / "out"))
    assert "PARTIAL" in download.err and "2 of 4 files" in download.err, download.err
    assert "job rerun --name" in download.err and "--failed-only" in download.err, download.err
    folder = tmp_path / "out" / "named-outputs" / "score"
    marker = json.loads((folder / "_PARTIAL.json").read_text())
    assert marker["partial"] is True and marker["status"] == "Canceled" and marker["files_completed"] == 2
    (predictions,) = [p for p in folder.iterdir() if p.name == job.outputs["score"].file_name]
    assert_clean_run_output(predictions, heart_model_dir, data, only={"a-heart-unlabeled-0.csv",
                                                                       "a-heart-unlabeled-1.csv"})
    assert not any(alive(pid) for pid in workers)

    # the rest, scored by a rerun of the files the cancel left unscored: one complete output
    (traces / "signals" / "released").touch()
    rerun = json.loads(cli_inproc("job", "rerun", "--name", name, "--failed-only").out)
    assert rerun["settings"]["rerun"] == {"of": name, "failed_only": True, "files": 2, "merge_with": name}
    final = wait_job(ml_client, rerun["name"], timeout=120)
    assert final.status == "Completed" and final.progress.files_total == 2, (final.status_message, final.error)
    merged = download_predictions(ml_client, final.name, tmp_path / "merged")
    assert_clean_run_output(merged, heart_model_dir, data)
    assert (folder / "_PARTIAL.json").exists() and ml_client.jobs.get(name).outputs["score"].partial

