"""Azure's batch samples in their CLI form: ``deploy-and-run.sh`` of ``heart-classifier-mlflow`` and
``custom-outputs-parquet`` (files in the samples' shapes: tests/azure_samples/sample_files.py), run by
bash with ``az`` on PATH being Batchpoint's shim (``az ml`` -> ``batchpoint``; the samples' internet
data URL -> a local copy of the heart data), against a server whose environments build from the local
package index. Both jobs of each script end Completed; the predictions downloaded are the model's own,
and the Parquet files the scoring script wrote are read back."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from conftest import HEART_UNLABELED, ServerHandle
from .sample_files import custom_outputs_parquet_cli, heart_mlflow_cli

from .conftest import PINS

SHIM = Path(__file__).with_name("az")
HEART_URL = "https://azuremlexampledata.blob.core.windows.net/data/heart-disease-uci/data"


def run_script(sample: Path, server: ServerHandle, tmp_path: Path) -> subprocess.CompletedProcess:
    """``bash deploy-and-run.sh`` in the sample's folder, ``az`` being the shim."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    shutil.copy(SHIM, bin_dir / "az")
    exe = shutil.which("batchpoint", path=str(Path(sys.executable).parent))
    env = {**server.env, "BATCHPOINT_SERVER_URL": server.url, "BATCHPOINT_EXE": exe or "batchpoint",
           "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "AZ_SHIM_LOG": str(tmp_path / "az.log"),
           "AZ_STANDINS": f"{HEART_URL}={HEART_UNLABELED}"}
    proc = subprocess.run(["bash", "deploy-and-run.sh"], cwd=sample, env=env, capture_output=True, text=True,
                          timeout=1500)
    assert proc.returncode == 0, f"deploy-and-run.sh exited {proc.returncode}:\n{proc.stdout[-4000:]}\n{proc.stderr[-3000:]}"
    return proc


def appended_rows(path: Path) -> pd.DataFrame:
    """A scoring script's append_row output as Azure's samples read it back (space-separated, no header)."""
    return pd.read_csv(path, sep=" ", header=None)


@pytest.mark.timeout(1800)
def test_heart_classifier_mlflow_deploy_and_run(samples_server: ServerHandle, heart_models: dict[str, Any],
                                                tmp_path: Path) -> None:
    sample = heart_mlflow_cli(tmp_path, heart_models["mlflow"], PINS)
    proc = run_script(sample, samples_server, tmp_path)
    assert proc.stdout.count("Job completed") == 2, proc.stdout[-3000:]
    calls = (tmp_path / "az.log").read_text().splitlines()
    assert all(c.startswith("az ml ") for c in calls), calls
    expected = heart_models["expected"]

    # the no-code MLflow deployment: row,prediction,file
    simple = pd.read_csv(sample / "simple" / "named-outputs" / "score" / "predictions.csv",
                         names=["row", "prediction", "file"])
    assert len(simple) == sum(map(len, expected.values())) == 303
    for (file, rows) in simple.groupby("file"):
        assert rows.sort_values("row")["prediction"].tolist() == expected[file], file

    # the scoring script's DataFrame: the input columns, filename, prediction
    custom = appended_rows(sample / "custom" / "named-outputs" / "score" / "predictions.csv")
    assert len(custom) == 303
    filename, prediction = custom.columns[-2], custom.columns[-1]
    for file, rows in custom.groupby(filename):
        assert rows[prediction].tolist() == expected[file], file

    jobs = re.findall(r"^JOB\d=(\S+)$", proc.stdout, flags=re.M)
    assert len(jobs) == 2, proc.stdout[-2000:]
    with samples_server.rest() as rest:
        log = rest.get(f"/jobs/{jobs[1]}/logs/environment.log").text
    # the conda file's python=3.8.5 is honoured as far as this machine allows, and said so
    assert "3.8.5" in log, log[-3000:]


@pytest.mark.timeout(1800)
def test_custom_outputs_parquet_deploy_and_run(samples_server: ServerHandle, heart_models: dict[str, Any],
                                               tmp_path: Path) -> None:
    sample = custom_outputs_parquet_cli(tmp_path, heart_models["pickled"], PINS)
    proc = run_script(sample, samples_server, tmp_path)
    assert "Job completed" in proc.stdout, proc.stdout[-3000:]
    out = sample / "named-outputs" / "score"
    files = sorted(p.name for p in out.glob("*.parquet"))
    assert files == [f"{Path(f).stem}.parquet" for f in sorted(heart_models["expected"])]
    # summary_only: no predictions file, only what the script wrote
    assert not (out / "predictions.csv").exists()
    for file, predictions in heart_models["expected"].items():
        frame = pd.read_parquet(out / f"{Path(file).stem}.parquet")
        assert frame["prediction"].tolist() == predictions, file
        assert list(frame.columns[:-1]) == list(pd.read_csv(HEART_UNLABELED / file).columns)
