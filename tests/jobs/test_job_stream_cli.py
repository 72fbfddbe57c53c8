"""``batchpoint job stream -n <job>`` (the real console script, ``BATCHPOINT_SERVER_URL`` set): it
follows the job's events — a line per status change, progress lines — and its worker logs with
``--logs``, and exits 1 when the job failed, 0 when it completed or was canceled (as ``az ml job
stream``: azure-ai-ml's log streaming raises only for a Failed job, so a sample's ``set -e`` script
goes on after a canceled one)."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from conftest import HEART_ROWS
from jobs.events_support import invoke, make_event_endpoint

pytestmark = pytest.mark.timeout(240)

ENDPOINT = "job-stream-cli"


@pytest.fixture(scope="module")
def endpoint(ml_client: Any, heart_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    make_event_endpoint(ml_client, ENDPOINT, heart_model_dir, tmp_path_factory.mktemp("stream-code"))
    return ENDPOINT


def _status_lines(out: str) -> list[str]:
    return [line for line in out.splitlines() if line.startswith("[")]


def test_stream_of_a_completed_job_exits_0(cli: Any, ml_client: Any, endpoint: str) -> None:
    name = invoke(ml_client, endpoint, "slow")
    result = cli("job", "stream", "-n", name, "--logs", check=False)
    assert result.code == 0, (result.err, result.out)
    assert _status_lines(result.out) == [
        "[Queued] waiting for a worker", "[Preparing] resolving inputs and starting workers",
        "[Running] scoring mini-batches", "[Finalizing] writing outputs", "[Completed] all mini-batches scored"]
    lines = result.out.splitlines()
    assert any(line.startswith(f"progress: 4/4 mini-batches, 4 files scored, 0 failed, {HEART_ROWS} rows (of 4 files")
               for line in lines), result.out
    assert any(line.startswith("worker-") and "scored" in line for line in lines), result.out  # --logs
    assert lines[-1] == f"Job {name} Completed: 4 files scored, 0 failed, {HEART_ROWS} rows"


def test_stream_of_a_failed_job_exits_1(cli: Any, ml_client: Any, endpoint: str) -> None:
    name = invoke(ml_client, endpoint, "failing")
    result = cli("job", "stream", "-n", name, check=False)
    assert result.code == 1, (result.err, result.out)
    status = _status_lines(result.out)
    assert status[:3] == ["[Queued] waiting for a worker", "[Preparing] resolving inputs and starting workers",
                          "[Running] scoring mini-batches"], result.out
    assert status[-1].startswith("[Failed] ") and "error_threshold" in status[-1], result.out
    assert "cannot score: the rows are corrupt" in status[-1], result.out  # the root cause, on the status line
    assert result.out.splitlines()[-1].startswith(f"Job {name} Failed: "), result.out
    assert "Traceback" not in result.err, result.err


def test_stream_of_a_canceled_job_exits_0_as_az_does(cli: Any, ml_client: Any, endpoint: str, tmp_path: Path) -> None:
    """The stream is started while the job is held Running and ends when it is canceled."""
    name = invoke(ml_client, endpoint, "held", environment_variables={"HOLD_ON": "heart-unlabeled-0.csv",
                                                                       "HOLD_UNTIL": str(tmp_path / "never")})
    deadline = time.monotonic() + 60
    while ml_client.jobs.get(name).status != "Running":
        assert time.monotonic() < deadline, "the job did not start Running"
        time.sleep(0.1)
    timer = threading.Timer(2.0, lambda: ml_client.jobs.begin_cancel(name))  # 2 s into the stream
    timer.start()
    try:
        result = cli("job", "stream", "-n", name, check=False, timeout=90)
    finally:
        timer.join(10)
    assert result.code == 0, (result.err, result.out)
    assert _status_lines(result.out)[-1] == "[Canceled] canceled by the user", result.out
    assert "[Running] scoring mini-batches" in result.out.splitlines()
    assert result.out.splitlines()[-1].startswith(f"Job {name} Canceled: "), result.out
