"""The rules behind issue 19's sections 2, 3 and 7, unit by unit (the whole jobs, on a real server,
are tests/worker/test_scoring_code_faults.py): how a worker's death inside ``run()`` counts, what
``run()`` may return, and how a worker's log is cut."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from batchpoint.engines.dispatch import LogCap
from batchpoint.engines.planning import FileRef, MiniBatch, MiniBatchOutcome, RetryPolicy
from batchpoint.engines.policy import MAX_PLATFORM_FAILURES, FailurePolicy, death_in_run
from batchpoint.worker.loop import ResultTypeError, results_of
from batchpoint.worker.protocol import WorkerState


def _batch(*names: str) -> MiniBatch:
    return MiniBatch(0, tuple(FileRef("in", n) for n in names))


def test_a_worker_that_exits_or_crashes_inside_run_is_the_users_failure() -> None:
    exited = death_in_run(1, "00000003-0000", 3, "logs/worker-1.log", {"peak_rss": 512 << 20})
    assert exited["kind"] == "user" and "in_run" not in exited
    assert "exited by itself with exit code 3" in exited["message"] and "512 MiB" in exited["message"]
    assert "mini-batch 00000003-0000" in exited["message"] and "logs/worker-1.log" in exited["message"]
    crashed = death_in_run(1, "k", -11, "log")
    assert crashed["kind"] == "user" and "crashed (killed by signal 11, SIGSEGV" in crashed["message"]


def test_an_oom_kill_the_cgroup_counted_is_the_users_at_once_and_says_so() -> None:
    error = death_in_run(0, "k", -9, "log", {"peak_rss": 1000 << 20, "oom_kills": 1, "limit": 1 << 30})
    assert error["kind"] == "user" and error["death"] == "oom"
    assert "OOM killer" in error["message"] and "1024 MiB" in error["message"] and "1000 MiB" in error["message"]


def test_a_sigkill_without_evidence_is_retried_as_the_platforms_then_charged_to_the_mini_batch() -> None:
    policy = FailurePolicy(RetryPolicy(max_retries=0))
    batch, outcomes, notes = _batch("a.csv"), [], []
    for kill in range(MAX_PLATFORM_FAILURES):
        error = death_in_run(0, batch.key, -9, "log")
        assert error["kind"] == "platform" and error["in_run"]
        ((_, batch),) = policy.settle(batch, 0, error, 1.0, outcomes.append, notes.append)
        assert batch.platform_failures == kill + 1 and not outcomes  # retried as the platform's
    assert policy.settle(batch, 0, death_in_run(0, batch.key, -9, "log"), 1.0, outcomes.append, notes.append) == []
    (outcome,) = outcomes  # the 4th kill inside run(): the mini-batch's failure, not the job's
    assert outcome.error["kind"] == "user" and "killed inside run() 4 times in a row" in outcome.error["message"]


def test_once_it_killed_its_worker_on_every_retry_a_later_kill_of_its_pieces_counts_at_once() -> None:
    policy = FailurePolicy(RetryPolicy(max_retries=0))
    batch = MiniBatch(0, (FileRef("in", "a.csv"), FileRef("in", "b.csv")), platform_failures=MAX_PLATFORM_FAILURES)
    pieces = policy.settle(batch, 0, death_in_run(0, batch.key, -9, "log"), 1.0, lambda o: None, lambda t: None)
    assert len(pieces) == 2 and all(p.kills_run for _, p in pieces)  # split, each remembering it
    outcomes: list[MiniBatchOutcome] = []
    assert policy.settle(pieces[0][1], 0, death_in_run(0, "k", -9, "log"), 1.0, outcomes.append, lambda t: None) == []
    assert outcomes[0].error["kind"] == "user" and "killed its worker inside run() before" in outcomes[0].error["message"]


def test_a_worker_lost_outside_run_stays_the_platforms() -> None:
    policy = FailurePolicy(RetryPolicy(max_retries=0))
    lost = {"type": "WorkerLost", "kind": "platform", "message": "died while scoring no mini-batch"}
    batch = _batch("a.csv")
    for _ in range(MAX_PLATFORM_FAILURES):
        ((_, batch),) = policy.settle(batch, 0, lost, 1.0, lambda o: None, lambda t: None)
    with pytest.raises(Exception, match="on the platform"):
        policy.settle(batch, 0, lost, 1.0, lambda o: None, lambda t: None)


@pytest.mark.parametrize("result, files, missing", [
    ([1, 2, 3], 5, 2), ((1, 2), 2, 0), (pd.DataFrame({"a": range(7)}), 5, 0), (pd.Series([1]), 3, 2),
    (np.array([[1, 2], [3, 4]]), 3, 1), ([], 1, 1),
])
def test_run_results_are_counted_against_the_mini_batchs_files(result: Any, files: int, missing: int) -> None:
    assert results_of(result, files, checked=True) == missing


@pytest.mark.parametrize("result", [{"a": 1}, None, "text", 3, 2.5, (x for x in [1]), np.float64(1.0)])
def test_a_type_azure_rejects_is_a_user_failure_naming_what_run_must_return(result: Any) -> None:
    with pytest.raises(ResultTypeError, match="run\\(\\) must return a pandas DataFrame or a list/array") as info:
        results_of(result, 1, checked=True)
    assert info.value.failure_kind == "user" and type(result).__name__ in str(info.value)


def test_the_mlflow_scorers_rows_are_not_checked() -> None:
    assert results_of(pd.DataFrame(), 4, checked=False) == 0  # an empty file has no rows; not a shortfall


def test_the_worker_state_file_says_whether_run_was_running(tmp_path: Path) -> None:
    path = str(tmp_path / "worker-0")
    state = WorkerState(path)
    assert WorkerState.read(path) == WorkerState.IDLE
    state.set(WorkerState.IN_RUN)
    assert WorkerState.read(path) == WorkerState.IN_RUN  # seen by another reader at once (a shared map)
    assert WorkerState.read(str(tmp_path / "none")) is None


def test_init_timeout_is_a_deployment_setting_with_bounds() -> None:
    from pydantic import ValidationError

    from batchpoint import BatchDeployment, ModelBatchDeployment, ModelBatchDeploymentSettings

    plain = BatchDeployment(name="dep", endpoint_name="ep", model="m:1", init_timeout=30)  # the SDK's flat shape
    assert plain.settings.init_timeout == 30
    assert BatchDeployment(name="dep", endpoint_name="ep", model="m:1").settings.init_timeout == 600
    shaped = ModelBatchDeployment(name="dep", endpoint_name="ep", model="m:1",
                                  settings=ModelBatchDeploymentSettings(init_timeout=45))
    assert shaped.settings.init_timeout == 45
    for bad in (0, -1, 86_401):
        with pytest.raises(ValidationError, match="init_timeout"):
            BatchDeployment(name="dep", endpoint_name="ep", model="m:1", init_timeout=bad)


def test_a_log_past_its_limit_is_copied_truncated_and_says_so(tmp_path: Path) -> None:
    log = tmp_path / "worker-0.log"
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND)  # as a worker holds it
    os.write(fd, b"first\n" * 200)
    cap = LogCap([log], max_bytes=1000)
    cap.check(force=True)
    assert (tmp_path / "worker-0.log.1").read_bytes() == b"first\n" * 200
    os.write(fd, b"after the cut\n")  # the writer's next line lands after the note, not at its old offset
    os.close(fd)
    text = log.read_text()
    assert text.startswith("20") and "passed its limit of 1000 bytes" in text and "was cut, 1 time(s)" in text
    assert text.endswith("after the cut\n") and len(text) < 400
    cap.check(force=True)  # under the limit: left alone
    assert log.read_text() == text
