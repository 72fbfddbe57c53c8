"""Input files that change under a job, and file names a POSIX folder allows (issue 19 §7), on the
session's server with a local data store over the test's own folder.

* A file truncated, or rewritten, after it was listed is scored without a word before; now the
  listing records each file's size and modification time in the manifest, and a job that
  Completes names the files that changed in a warning of its status message (it is not failed).
* A file whose name holds a backslash (``back\\slash.csv``, one file on Linux) was read back as
  ``back/slash.csv`` and failed as "listed, then removed"; now it is scored like any other.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

import pytest

from batchpoint import Datastore, Input
from conftest import HEART_UNLABELED, wait_job
from fixtures.faults import assert_clean_run_output, download_predictions, heart_copies, make_endpoint, pids, read_output
from fixtures.flows import wait_until

pytestmark = pytest.mark.timeout(180)


def _local_store(client: Any, folder: Path) -> str:
    name = f"changes{uuid.uuid4().hex[:6]}"
    client.datastores.create_or_update(Datastore(name=name, type="local", path=str(folder)))
    return name


def _invoke(client: Any, endpoint: str, store: str, traces: Path, **env: str) -> str:
    (traces / "signals").mkdir(parents=True, exist_ok=True)
    variables = {"SIGNAL_DIR": str(traces / "signals"), "SIDE_EFFECTS": str(traces / "side-effects.txt"), **env}
    return client.batch_endpoints.invoke(endpoint_name=endpoint, environment_variables=variables, input=Input(
        type="uri_folder", path=f"azureml://datastores/{store}/paths/in")).name


def test_files_changed_while_the_job_runs_are_named_in_its_warning(
        ml_client: Any, heart_model_dir: Path, tmp_path: Path) -> None:
    data = heart_copies(tmp_path / "store" / "in", copies=1)  # a-heart-unlabeled-0..3.csv
    store = _local_store(ml_client, tmp_path / "store")
    make_endpoint(ml_client, "faults-changes", heart_model_dir, tmp_path / "code", workers=2)
    traces = tmp_path / "traces"
    name = _invoke(ml_client, "faults-changes", store, traces, HANG_ON="a-heart-unlabeled-3.csv")
    wait_until(lambda: pids(traces, "hang") and ml_client.jobs.get(name).progress.mini_batches_completed == 3, 120,
               "3 files scored, the last one held")
    truncated, replaced = data / "a-heart-unlabeled-0.csv", data / "a-heart-unlabeled-1.csv"
    size = truncated.stat().st_size
    os.truncate(truncated, size // 2)  # truncated under the job
    text = replaced.read_text()
    replaced.write_text(text.replace("1", "2"))  # replaced by other rows of the same size
    assert replaced.stat().st_size == len(text)
    (traces / "signals" / "released").touch()

    job = wait_job(ml_client, name, timeout=120)
    assert job.status == "Completed", (job.status_message, job.error)  # a warning, not a failure
    message = job.status_message or ""
    assert "warning: 2 input file(s) changed after they were listed" in message, message
    assert f"in/a-heart-unlabeled-0.csv (size {size} -> {size // 2} bytes)" in message, message
    assert "in/a-heart-unlabeled-1.csv (modified (same size))" in message, message
    assert "a-heart-unlabeled-2.csv" not in message and "a-heart-unlabeled-3.csv" not in message, message


def test_a_file_name_with_a_backslash_is_scored(ml_client: Any, heart_model_dir: Path, tmp_path: Path) -> None:
    folder = tmp_path / "store" / "in"
    folder.mkdir(parents=True)
    sources = sorted(HEART_UNLABELED.glob("*.csv"))
    names = ["back\\slash.csv", *(p.name for p in sources[1:])]
    for src, name in zip(sources, names):
        (folder / name).write_bytes(src.read_bytes())
    assert len(os.listdir(folder)) == 4  # one file named back\slash.csv, not a folder
    store = _local_store(ml_client, tmp_path / "store")
    make_endpoint(ml_client, "faults-backslash", heart_model_dir, tmp_path / "code", workers=2)
    job = wait_job(ml_client, _invoke(ml_client, "faults-backslash", store, tmp_path / "traces"), timeout=120)
    assert job.status == "Completed", (job.status_message, job.error)
    assert job.failures == [] and job.progress.files_failed == 0, [f.error for f in job.failures]
    assert job.progress.files_completed == 4
    out = download_predictions(ml_client, job.name, tmp_path / "out")
    assert "back\\slash.csv" in {r[2] for r in read_output(out)}
    assert_clean_run_output(out, heart_model_dir, folder)
