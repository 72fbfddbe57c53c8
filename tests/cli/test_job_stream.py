"""``batchpoint job stream`` (issue 13, acceptance 1): the real console script under a pseudo-terminal
(a rich progress bar) and piped (plain lines, no control codes); phases, final counts, exit code;
on a failing job the root cause is the first thing printed after the failure."""

from __future__ import annotations

import fcntl
import io
import os
import pty
import re
import select
import shutil
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path
from typing import Any

import pytest

from conftest import HEART_ROWS
from fixtures.observe import LIFE, invoke, make_endpoint

pytestmark = pytest.mark.timeout(240)

ENDPOINT = "observe-stream"
ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[()][0-9A-B]|\r")


@pytest.fixture(scope="module")
def endpoint(ml_client: Any, heart_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    make_endpoint(ml_client, ENDPOINT, heart_model_dir, tmp_path_factory.mktemp("observe-code"), {
        "slow": {"environment_variables": {"SLEEP_S": "0.5"}},
        "failing": {"environment_variables": {"FAIL_ALL": "1"}, "error_threshold": 0}})
    return ENDPOINT


def _exe() -> str:
    return shutil.which("batchpoint", path=str(Path(sys.executable).parent)) or "batchpoint"


def _env(server: Any) -> dict[str, str]:
    return {**server.env, "BATCHPOINT_SERVER_URL": server.url, "TERM": "xterm-256color"}


def run_in_pty(server: Any, *args: str, timeout: float = 150) -> tuple[int, str]:
    """The console script with stdout and stderr on a pseudo-terminal; (exit code, what it drew)."""
    primary, secondary = pty.openpty()
    fcntl.ioctl(secondary, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 400, 0, 0))  # 400 columns: no wrapping
    proc = subprocess.Popen([_exe(), *args], stdin=subprocess.DEVNULL, stdout=secondary, stderr=secondary,
                            env=_env(server), close_fds=True)
    os.close(secondary)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([primary], [], [], 0.5)
            if ready:
                try:
                    data = os.read(primary, 65536)
                except OSError:  # EIO: the other side closed
                    break
                if not data:
                    break
                chunks.append(data)
            elif proc.poll() is not None:
                break
        code = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(primary)
    return code, b"".join(chunks).decode("utf-8", "replace")


def screen_lines(drawn: str) -> list[str]:
    """What a terminal shows, line by line: rich redraws the bar by erasing its line (ESC [2K)."""
    return ANSI.sub("", drawn.replace("\x1b[2K", "\n")).splitlines()


def test_stream_on_a_terminal_draws_phases_a_bar_and_final_counts(server: Any, ml_client: Any, endpoint: str) -> None:
    name = invoke(ml_client, endpoint, "slow")
    code, drawn = run_in_pty(server, "job", "stream", "-n", name)
    assert code == 0, drawn
    assert "\x1b[" in drawn, "no control codes: the progress bar was not drawn on the terminal"
    text = ANSI.sub("", drawn)
    positions = [text.find(f"[{status}]") for status in LIFE]
    assert all(p >= 0 for p in positions) and positions == sorted(positions), text
    assert re.search(r"\(Queued took \d+\.\d s\)", text), text
    assert "mini-batches" in text and "rows/s" in text, text
    assert re.search(r"phases: Queued \d+\.\d s, Preparing \d+\.\d s( \([^)]*\))?, Running \d+\.\d s \(listing \d+\.\d s(, init\(\) \d+\.\d s)?\), "
                     r"Finalizing \d+\.\d s", text), text
    assert f"Job {name} Completed: 4 files scored, 0 failed, {HEART_ROWS} rows" in text, text
    assert "worker-0.log" not in text  # the logs only on request


def test_stream_piped_prints_plain_lines(cli_inproc: Any, ml_client: Any, endpoint: str) -> None:
    name = invoke(ml_client, endpoint, "slow")
    result = cli_inproc("job", "stream", "-n", name, "--logs", check=False)
    assert result.code == 0, (result.err, result.out)
    assert "\x1b" not in result.out and "\r" not in result.out
    lines = result.out.splitlines()
    assert [line.split("]")[0][1:] for line in lines if line.startswith("[")] == LIFE, result.out
    progress = [line for line in lines if line.startswith("progress: ")]
    assert progress[-1].startswith(f"progress: 4/4 mini-batches, 4 files scored, 0 failed, {HEART_ROWS} rows (of 4 files, "), \
        progress
    assert re.search(r"rows/s, ETA \d+s\)$", progress[-1]), progress
    assert any(line.startswith("worker-") and "scored" in line for line in lines), result.out  # --logs
    assert lines[-2].startswith("phases: Queued "), lines[-2]
    assert lines[-1] == f"Job {name} Completed: 4 files scored, 0 failed, {HEART_ROWS} rows"


def test_a_failing_job_prints_its_root_cause_first(server: Any, ml_client: Any, endpoint: str) -> None:
    name = invoke(ml_client, endpoint, "failing")
    code, drawn = run_in_pty(server, "job", "stream", "-n", name)
    assert code == 1, drawn
    lines = [line.strip() for line in screen_lines(drawn) if line.strip()]
    failed = next(i for i, line in enumerate(lines) if line.startswith("[Failed] "))
    cause = lines[failed + 1:failed + 4]
    assert cause[0] == "root cause: ValueError: cannot score: the rows are corrupt", lines[failed:]
    assert re.fullmatch(r"file heart-unlabeled-\d\.csv, mini-batch \d, attempt 1, kind user \(the scoring code raised\)",
                        cause[1]), cause
    assert cause[2].startswith('File "score.py", line ') and cause[2].endswith(", in run"), cause
    assert lines[-1].startswith(f"Job {name} Failed: "), lines[-1]
    assert "Traceback" not in drawn


def test_sdk_stream_prints_the_same_plain_lines(ml_client: Any, endpoint: str, cli_inproc: Any) -> None:
    name = invoke(ml_client, endpoint, "failing")
    out = io.StringIO()
    final = ml_client.jobs.stream(name, out=out)
    assert final.status == "Failed"
    lines = out.getvalue().splitlines()
    failed = next(i for i, line in enumerate(lines) if line.startswith("[Failed] "))
    assert lines[failed + 1] == "root cause: ValueError: cannot score: the rows are corrupt", lines
    assert lines[failed + 3].startswith('  File "score.py", line '), lines
    piped = cli_inproc("job", "stream", "-n", name, check=False)  # the job has ended: its whole history again
    assert piped.code == 1
    drop = re.compile(r"^(progress: |phases: )")  # rates and times are measured
    assert [x for x in piped.out.splitlines() if not drop.match(x)] == [x for x in lines if not drop.match(x)]
