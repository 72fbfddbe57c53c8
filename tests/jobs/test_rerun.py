"""``batchpoint job rerun --name <job> --failed-only`` (SDK ``jobs.rerun(name, failed_only=True)``,
REST ``POST /jobs/<name>/rerun``): a new job that scores only the files that failed, on the
deployment as it is now (here: after the user fixed its scoring script); its output merges the first job's rows with its own into one file equal
to a clean run's, and the first job's output is never changed. A job with nothing to rerun, or
one still running, is refused with what to do instead."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest

from batchpoint.exceptions import ConflictError
from conftest import HEART_UNLABELED, wait_job
from fixtures.faults import FIXED_SCORE_PY, download_predictions, heart_copies, invoke, make_endpoint, read_output, traces_of

pytestmark = pytest.mark.timeout(180)

BAD = "a-heart-unlabeled-2.csv"


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_rerun_failed_only_scores_only_the_failed_files_and_merges_one_complete_output(
        ml_client: Any, cli_inproc: Any, heart_model_dir: Path, tmp_path: Path) -> None:
    make_endpoint(ml_client, "faults-rerun", heart_model_dir, tmp_path / "code", workers=2)
    data = heart_copies(tmp_path / "data", copies=2)  # 8 files
    good = (data / BAD).read_text()
    last = good.rstrip("\n").rsplit("\n", 1)[-1]
    (data / BAD).write_text(good + "not-a-number," + last.split(",", 1)[1] + "\n")  # a corrupt last row: it raises
    traces = tmp_path / "traces"
    first = wait_job(ml_client, invoke(ml_client, "faults-rerun", data, traces), timeout=120)
    assert first.status == "Completed" and first.progress.files_failed == 1, (first.status_message, first.error)
    assert [f.file.rsplit("/", 1)[-1] for f in first.failures] == [BAD]
    first_out = download_predictions(ml_client, first.name, tmp_path / "first")
    before = _digest(first_out)
    assert BAD not in {r[2] for r in read_output(first_out)}

    (data / BAD).write_text(good)  # what a clean run reads
    # the user fixes the scoring script (it drops the corrupt row) and reruns what failed
    make_endpoint(ml_client, "faults-rerun", heart_model_dir, tmp_path / "code-fixed", workers=2, script=FIXED_SCORE_PY)
    scored_before = len(traces_of(traces, "scored"))
    rerun = ml_client.jobs.rerun(first.name, failed_only=True)
    assert rerun.name != first.name and rerun.settings["rerun"]["merge_with"] == first.name
    final = wait_job(ml_client, rerun.name, timeout=120)
    assert final.status == "Completed", (final.status_message, final.error)
    assert final.progress.files_total == 1 and final.progress.files_completed == 1
    assert traces_of(traces, "scored")[scored_before:] == [BAD]  # only the failed file was scored again
    merged = download_predictions(ml_client, final.name, tmp_path / "merged")
    assert merged.parent.name == "score" and final.outputs["score"].path.endswith(f"/azureml/{final.name}/score")
    # the first job's rows in their order, then the rerun's: every row of every file once
    rows = read_output(merged)
    assert rows[-len([r for r in rows if r[2] == BAD]):] == [r for r in rows if r[2] == BAD]
    assert_clean_run_output_unordered(merged, heart_model_dir, data)

    again = download_predictions(ml_client, first.name, tmp_path / "first-again")
    assert _digest(again) == before  # the first job's output never changes

    with pytest.raises(ConflictError, match="has no file that failed or was left unscored: there is nothing to rerun"):
        ml_client.jobs.rerun(final.name, failed_only=True)
    refused = cli_inproc("job", "rerun", "--name", final.name, "--failed-only", check=False)
    assert refused.code != 0 and "nothing to rerun" in refused.err, refused.err


def assert_clean_run_output_unordered(path: Path, model_dir: Path, folder: Path) -> None:
    """Every row of every file once with the model's predictions (the merged order is the first job's,
    then the rerun's; assert_clean_run_output checks the order of a single run)."""
    from fixtures.flows import expected_rows

    got = read_output(path)
    assert len(got) == len(set(got))
    assert sorted(got) == sorted(expected_rows(model_dir, folder))


def test_rerun_of_a_job_still_running_is_refused(ml_client: Any, heart_model_dir: Path, tmp_path: Path) -> None:
    make_endpoint(ml_client, "faults-rerun-busy", heart_model_dir, tmp_path / "code", workers=1)
    traces = tmp_path / "traces"
    name = invoke(ml_client, "faults-rerun-busy", HEART_UNLABELED, traces, HANG_ON="heart-unlabeled-0.csv")
    try:
        with pytest.raises(ConflictError, match="only a finished job .* can be rerun"):
            ml_client.jobs.rerun(name, failed_only=True)
    finally:
        ml_client.jobs.begin_cancel(name)

