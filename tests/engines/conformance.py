"""The behaviour every engine shares, written once: the engine conformance suite.

An engine's test module subclasses :class:`EngineConformance` (its name does not start with
``Test``, so it is not collected itself) and overrides the ``engine`` fixture with one that returns
the engine to test. The tests drive ``Engine.run`` directly with a small scoring script whose
behaviour files and environment variables choose: a file that fails in ``run()``, one that fails
only on its first attempt, one that hangs past the timeout on its first attempt, one whose worker
process dies (a platform failure) on its first attempt, and an ``init()`` that raises. The script
keeps its memory of attempts in marker files in a state folder, so it works whichever worker
process (or Ray actor) gets the retry.

What each test checks is the shared policy (``engines/policy.py``) as the engine applies it:
retries, the timeout, splitting a failing mini-batch down to single files, stopping when the
sink's ``error_threshold`` is passed, ``init()`` failing the job, platform failures retried and
never charged, every outcome reported exactly once, and the job's output action reaching its
workers by name (they pick its writer from ``outputs/``).
"""

from __future__ import annotations

import csv
import sys
import textwrap
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from batchpoint.engines.base import Engine
from batchpoint.engines.planning import EngineJob, FileRef, MiniBatchOutcome, RetryPolicy, plan_minibatches
from batchpoint.engines.policy import FailureKind, WorkerInitError
from batchpoint.storage.base import StorageSpec

SCORE_PY = '''
import os
import signal
import time

STATE = os.environ["STATE_DIR"]


def _first_time(name):
    """True on the first call for ``name`` (a marker file remembers it across processes)."""
    marker = os.path.join(STATE, name)
    try:
        fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return False
    os.close(fd)
    return True


def init():
    if os.environ.get("INIT_FAIL"):
        raise RuntimeError("init failed on purpose")


def run(mini_batch):
    rows = []
    for path in mini_batch:
        name = os.path.basename(path)
        if name.startswith("bad"):
            raise ValueError(f"cannot score {name}")
        if name.startswith("flaky") and _first_time(name):
            raise ValueError(f"{name} fails on its first attempt")
        if name.startswith("slow") and _first_time(name):
            time.sleep(60)
        if name.startswith("die") and _first_time(name):
            os.kill(os.getpid(), signal.SIGKILL)
        with open(path) as f:
            count = sum(1 for _ in f) - 1
        if name.startswith("env"):  # which environment scored it (set by the environment's interpreter)
            rows += [f"{name},{i},{os.environ.get('BP_ENV_MARK', 'none')}" for i in range(count)]
            continue
        rows += [f"{name},{i}" for i in range(count)]
    return rows
'''

ROWS_PER_FILE = 3


@dataclass
class Setup:
    root: Path
    data: Path
    code: Path
    state: Path
    job_dir: Path

    def files(self, *names: str) -> list[FileRef]:
        for name in names:
            (self.data / name).write_text("a,b\n" + "".join(f"{i},{i}\n" for i in range(ROWS_PER_FILE)))
        return [FileRef("input", name) for name in names]

    def job(self, workers: int = 2, max_retries: int = 0, timeout_s: float = 60.0, error_threshold: int = -1,
            python_exe: str | None = None, output_action: str = "append_row", **environment: str) -> EngineJob:
        return EngineJob(
            name=f"conformance-{self.root.name}", workers=workers,
            scorer={"code_dir": str(self.code), "scoring_script": "score.py", "model_dir": None},
            sources={"input": StorageSpec("local", {"path": str(self.data)}, None)},
            policy=RetryPolicy(max_retries, timeout_s, error_threshold),
            parts_dir=str(self.job_dir / "parts"), logs_dir=str(self.job_dir / "logs"),
            environment={"STATE_DIR": str(self.state), **environment}, python_exe=python_exe,
            output_action=output_action,
            isolation={"shared": [str(self.state)]})  # the scripts' attempt markers (fenced workers)

    def part_rows(self) -> Counter:
        """(file, row) -> how many times it appears over all parts."""
        counts: Counter = Counter()
        for line in self.part_lines():
            counts[(line[0], int(line[1]))] += 1
        return counts

    def part_lines(self) -> list[list[str]]:
        lines = []
        for part in sorted((self.job_dir / "parts").glob("*.csv")):
            with open(part, newline="") as f:
                lines.extend(csv.reader(f))
        return lines

    def environment(self, mark: str) -> str:
        """A stand-in for a deployment's environment: an interpreter (this one, behind a wrapper
        that marks the processes it runs) at a path of its own."""
        python = self.root / "env" / "bin" / "python"
        python.parent.mkdir(parents=True)
        python.write_text(f"#!/bin/sh\nBP_ENV_MARK={mark} exec {sys.executable} \"$@\"\n")
        python.chmod(0o755)
        return str(python)


class Recorder:
    """The outcome sink: every final outcome, in order. With ``threshold`` it plays the job's
    progress: past that many charged failed files it sets ``stop``, as ``jobs/progress.py`` does."""

    def __init__(self, stop: threading.Event, threshold: int = -1) -> None:
        self.outcomes: list[MiniBatchOutcome] = []
        self.stop, self.threshold, self.charged = stop, threshold, 0

    def __call__(self, outcome: MiniBatchOutcome) -> None:
        self.outcomes.append(outcome)
        if outcome.error is not None and FailureKind.of(outcome.error).charged:
            self.charged += len(outcome.batch.files)
            if 0 <= self.threshold < self.charged:
                self.stop.set()

    def keys(self) -> list[str]:
        return [o.batch.key for o in self.outcomes]

    def failed(self) -> dict[str, dict[str, Any]]:
        return {o.batch.files[0].name: o.error for o in self.outcomes if o.error is not None}


def make_setup(root: Path) -> Setup:
    """The suite's folders under ``root``: data, the scoring script, its state, the job folder."""
    code = root / "code"
    code.mkdir()
    (code / "score.py").write_text(textwrap.dedent(SCORE_PY).lstrip())
    for sub in ("data", "state", "job"):
        (root / sub).mkdir()
    (root / "state").chmod(0o777)  # written by the workers, who are another user when the tests run as root
    return Setup(root, root / "data", code, root / "state", root / "job")


class EngineConformance:
    @pytest.fixture
    def engine(self) -> Engine:  # pragma: no cover - overridden
        raise NotImplementedError("a subclass provides the engine to test")

    @pytest.fixture
    def setup(self, tmp_path: Path) -> Setup:
        return make_setup(tmp_path)

    def run(self, engine: Engine, job: EngineJob, files: list[FileRef], size: int,
            threshold: int = -1) -> Recorder:
        stop = threading.Event()
        recorder = Recorder(stop, threshold)
        engine.run(job, plan_minibatches(iter(files), size), recorder, stop)
        return recorder

    def test_every_file_scored_and_every_outcome_reported_once(self, engine: Engine, setup: Setup) -> None:
        files = setup.files(*(f"f{i}.csv" for i in range(7)))
        recorder = self.run(engine, setup.job(workers=2), files, size=2)
        assert sorted(recorder.keys()) == [f"{i:08d}-0000" for i in range(4)]
        assert all(o.ok for o in recorder.outcomes)
        assert sum(o.rows for o in recorder.outcomes) == 7 * ROWS_PER_FILE
        counts = setup.part_rows()
        assert set(counts) == {(f"f{i}.csv", r) for i in range(7) for r in range(ROWS_PER_FILE)}
        assert set(counts.values()) == {1}

    def test_the_jobs_output_action_names_the_writer_its_workers_use(self, engine: Engine, setup: Setup) -> None:
        """The action goes to the workers by name (``output_action``), and they pick its writer
        from the registry (``outputs/``): summary_only counts every row and writes no part."""
        files = setup.files(*(f"s{i}.csv" for i in range(5)))
        recorder = self.run(engine, setup.job(workers=2, output_action="summary_only"), files, size=2)
        assert all(o.ok for o in recorder.outcomes) and len(recorder.outcomes) == 3
        assert sum(o.rows for o in recorder.outcomes) == 5 * ROWS_PER_FILE
        parts = setup.job_dir / "parts"
        assert not parts.exists() or [p.name for p in parts.iterdir() if not p.name.startswith(".")] == []

    def test_a_failure_is_retried_up_to_max_retries(self, engine: Engine, setup: Setup) -> None:
        files = setup.files("flaky-a.csv", "b.csv")
        recorder = self.run(engine, setup.job(workers=1, max_retries=1), files, size=2)
        assert len(recorder.outcomes) == 1
        outcome = recorder.outcomes[0]
        assert outcome.ok and outcome.batch.attempt == 2 and outcome.batch.sub == 0
        assert outcome.rows == 2 * ROWS_PER_FILE

    def test_retries_spent_split_the_mini_batch_to_single_files(self, engine: Engine, setup: Setup) -> None:
        files = setup.files("a.csv", "bad-b.csv", "c.csv")
        recorder = self.run(engine, setup.job(workers=2, max_retries=1), files, size=3)
        assert sorted(recorder.keys()) == ["00000000-0001", "00000000-0002", "00000000-0003"]
        by_name = {o.batch.files[0].name: o for o in recorder.outcomes}
        assert by_name["a.csv"].ok and by_name["c.csv"].ok
        bad = by_name["bad-b.csv"]
        assert bad.error is not None and bad.error["kind"] == "user" and "cannot score bad-b.csv" in bad.error["message"]
        assert {o.batch.pieces for o in recorder.outcomes} == {3}
        assert {o.batch.attempt for o in recorder.outcomes} == {2}  # the split pieces are the last attempt
        assert set(setup.part_rows()) == {(n, r) for n in ("a.csv", "c.csv") for r in range(ROWS_PER_FILE)}

    def test_timeout_kills_the_worker_and_retries(self, engine: Engine, setup: Setup) -> None:
        files = setup.files("slow-a.csv")
        started = time.monotonic()
        recorder = self.run(engine, setup.job(workers=1, max_retries=1, timeout_s=2), files, size=1)
        assert time.monotonic() - started < 50  # not the 60 s the first attempt would have slept
        [outcome] = recorder.outcomes
        assert outcome.ok and outcome.batch.attempt == 2

    def test_timeout_with_retries_spent_is_a_timeout_failure(self, engine: Engine, setup: Setup) -> None:
        files = setup.files("slow-a.csv", "b.csv")
        recorder = self.run(engine, setup.job(workers=2, max_retries=0, timeout_s=2), files, size=1)
        assert sorted(recorder.keys()) == ["00000000-0000", "00000001-0000"]
        failed = recorder.failed()
        assert list(failed) == ["slow-a.csv"] and failed["slow-a.csv"]["kind"] == "timeout"
        assert "timeout of 2s" in failed["slow-a.csv"]["message"]

    def test_error_threshold_stops_the_job(self, engine: Engine, setup: Setup) -> None:
        files = setup.files("bad-0.csv", *(f"f{i}.csv" for i in range(30)))
        recorder = self.run(engine, setup.job(workers=1, max_retries=0, error_threshold=0), files, size=1,
                            threshold=0)
        assert recorder.stop.is_set() and recorder.charged == 1
        assert recorder.outcomes[0].batch.files[0].name == "bad-0.csv"
        assert len(recorder.outcomes) < 31  # it stopped assigning work

    def test_init_failure_fails_the_job(self, engine: Engine, setup: Setup) -> None:
        files = setup.files("a.csv")
        with pytest.raises(WorkerInitError, match="init failed on purpose"):
            self.run(engine, setup.job(workers=1, INIT_FAIL="1"), files, size=1)

    def test_platform_failure_is_retried_and_not_charged(self, engine: Engine, setup: Setup) -> None:
        files = setup.files("die-a.csv", "b.csv", "c.csv")
        recorder = self.run(engine, setup.job(workers=2, max_retries=0), files, size=1)
        assert sorted(recorder.keys()) == ["00000000-0000", "00000001-0000", "00000002-0000"]
        assert all(o.ok for o in recorder.outcomes), recorder.failed()
        died = next(o for o in recorder.outcomes if o.batch.files[0].name == "die-a.csv")
        assert died.batch.attempt == 1 and died.batch.platform_failures == 1  # retried, not a user retry
        assert (setup.state / "die-a.csv").exists()  # its first attempt really ran and died
        assert set(setup.part_rows().values()) == {1}

    def test_the_deployments_environment_scores_every_mini_batch(self, engine: Engine, setup: Setup) -> None:
        files = setup.files("env-a.csv", "env-b.csv", "env-c.csv")
        recorder = self.run(engine, setup.job(workers=2, python_exe=setup.environment("env-one")), files, size=1)
        assert all(o.ok for o in recorder.outcomes) and len(recorder.outcomes) == 3
        lines = setup.part_lines()
        assert len(lines) == 3 * ROWS_PER_FILE and {line[2] for line in lines} == {"env-one"}
