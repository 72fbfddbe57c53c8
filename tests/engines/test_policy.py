"""The failure policy's table (engines/policy.py): each kind × attempt → the decision, platform
failures in a row, and init deaths counted per worker slot, in a row."""

from __future__ import annotations

import pytest

from batchpoint.engines.planning import FileRef, MiniBatch, RetryPolicy
from batchpoint.engines.policy import MAX_INIT_DEATHS, MAX_PLATFORM_FAILURES, Action, FailurePolicy, exit_text
from batchpoint.exceptions import PlatformError

ONE = (FileRef("in", "data/a.csv"),)
THREE = (FileRef("in", "data/a.csv"), FileRef("in", "data/b.csv"), FileRef("in", "data/c.csv"))


def error(kind: str | None) -> dict:
    found = {"type": "ValueError", "message": "boom", "where": None}
    return found if kind is None else {**found, "kind": kind}


@pytest.mark.parametrize("kind", ["user", "input", "timeout", None])
@pytest.mark.parametrize(("attempt", "files", "action"), [
    (1, ONE, Action.RETRY), (2, ONE, Action.RETRY), (3, ONE, Action.REPORT),
    (1, THREE, Action.RETRY), (3, THREE, Action.SPLIT),
])
def test_user_input_and_timeout_follow_max_retries_then_split(kind, attempt, files, action) -> None:
    policy = FailurePolicy(RetryPolicy(max_retries=2))
    batch = MiniBatch(7, files, attempt=attempt)
    decision = policy.on_failure(batch, error(kind))
    assert decision.action is action
    if action is Action.RETRY:
        assert [(b.index, b.attempt, b.files) for b in decision.batches] == [(7, attempt + 1, files)]
    if action is Action.SPLIT:  # one piece per file, on its last attempt (reported if it fails again)
        assert [(b.sub, b.pieces, b.files, b.attempt) for b in decision.batches] == [
            (i + 1, 3, (f,), 3) for i, f in enumerate(files)]
        piece = decision.batches[0]
        assert policy.on_failure(piece, error(kind)).action is Action.REPORT
    assert policy.charged(error(kind))


def test_zero_retries_reports_a_single_file_at_once() -> None:
    policy = FailurePolicy(RetryPolicy(max_retries=0))
    assert policy.on_failure(MiniBatch(0, ONE), error("user")).action is Action.REPORT


@pytest.mark.parametrize("files", [ONE, THREE])
def test_platform_failures_are_retried_in_a_row_then_fail_the_job(files) -> None:
    policy = FailurePolicy(RetryPolicy(max_retries=0, error_threshold=0))
    batch = MiniBatch(4, files, attempt=1)
    delays = []
    for n in range(1, MAX_PLATFORM_FAILURES + 1):
        decision = policy.on_failure(batch, {**error("platform"), "type": "WorkerLost"})
        assert decision.action is Action.RETRY, n
        (batch,) = decision.batches
        assert (batch.attempt, batch.platform_failures, batch.files) == (1, n, files)  # never a user retry
        delays.append(decision.delay_s)
    assert delays == sorted(delays) and delays[0] > 0
    decision = policy.on_failure(batch, {**error("platform"), "type": "OSError", "message": "No space left on device"})
    assert decision.action is Action.FAIL_JOB and isinstance(decision.error, PlatformError)
    message = str(decision.error)
    assert "00000004-0000" in message and "a.csv" in message and "No space left on device" in message
    assert decision.error.details["kind"] == "platform" and decision.error.code == "platform_error"
    assert not policy.charged(error("platform"))


def test_a_user_failure_resets_the_platform_count() -> None:
    policy = FailurePolicy(RetryPolicy(max_retries=5))
    batch = MiniBatch(0, ONE)
    for _ in range(MAX_PLATFORM_FAILURES):
        (batch,) = policy.on_failure(batch, error("platform")).batches
    (batch,) = policy.on_failure(batch, error("user")).batches
    assert (batch.attempt, batch.platform_failures) == (2, 0)
    assert policy.on_failure(batch, error("platform")).action is Action.RETRY


def test_init_deaths_count_per_slot_in_a_row() -> None:
    policy = FailurePolicy(RetryPolicy())
    for _ in range(5):  # deaths spread over a long job, each followed by a ready worker: never fatal
        for slot in (0, 1):
            for _ in range(MAX_INIT_DEATHS - 1):
                policy.on_init_death(slot, -9, f"logs/worker-{slot}.log")
            policy.on_worker_ready(slot)
    policy.on_init_death(0, -9, "logs/worker-0.log")
    policy.on_init_death(1, -9, "logs/worker-1.log")  # another slot's death does not add to slot 0's
    policy.on_init_death(0, -9, "logs/worker-0.log")
    with pytest.raises(PlatformError) as raised:
        policy.on_init_death(0, -9, "logs/worker-0.log")
    message = str(raised.value)
    assert "slot 0" in message and "init()" in message and f"{MAX_INIT_DEATHS} times in a row" in message
    assert "SIGKILL" in message and "logs/worker-0.log" in message
    assert raised.value.details["kind"] == "platform"


def test_exit_text_names_the_signal() -> None:
    assert exit_text(-9) == "-9: killed by SIGKILL"
    assert exit_text(3) == "3" and exit_text(None) == "None"
