"""A file the MLflow no-code scorer cannot read — a type it has no reader for, bytes its reader
cannot parse — is an ``input`` failure (``FileReadError``), not the model's (``user``); the engine
runs with real worker processes."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from conftest import HEART_UNLABELED
from batchpoint.engines.local_pool import LocalPoolEngine
from batchpoint.engines.planning import EngineJob, FileRef, MiniBatch, RetryPolicy
from batchpoint.storage.base import StorageSpec

pytestmark = pytest.mark.timeout(120)


def test_unreadable_files_are_input_failures(tmp_path: Path, heart_model_dir: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "good.csv").write_bytes((HEART_UNLABELED / "heart-unlabeled-3.csv").read_bytes())
    (data / "broken.parquet").write_bytes(b"this is not parquet")
    (data / "notes.txt").write_text("free text")
    job = EngineJob(name="readers", workers=1, scorer={"model_dir": str(heart_model_dir)},
                    sources={"in": StorageSpec("local", {"path": str(data)})}, policy=RetryPolicy(0, 60, -1),
                    parts_dir=str(tmp_path / "parts"), logs_dir=str(tmp_path / "logs"))
    batches = [MiniBatch(i, (FileRef("in", name),)) for i, name in enumerate(["good.csv", "broken.parquet", "notes.txt"])]
    outcomes = []
    LocalPoolEngine().run(job, iter(batches), outcomes.append, threading.Event())
    by_file = {o.batch.files[0].path: o for o in outcomes}
    assert by_file["good.csv"].ok and by_file["good.csv"].rows == 3
    for name, says in (("broken.parquet", "could not be read as parquet"), ("notes.txt", "cannot read")):
        error = by_file[name].error
        assert error and error["kind"] == "input" and error["type"] == "FileReadError", error
        assert name in error["message"] and says in error["message"], error
