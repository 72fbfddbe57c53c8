"""The heart classifier, end to end: train, register, deploy, invoke, wait, download.

    python examples/heart/run_demo.py [--sdk] [--home DIR]

It trains the model (train.py), then drives Batchpoint with the same commands you would type —
each is printed before it runs (run from this folder) — on the embedded default: a local server
under BATCHPOINT_HOME (default ~/.batchpoint), started on first use, that keeps running after the
demo so you can go on with the same names (see README.md). With BATCHPOINT_SERVER_URL set, that
server is used instead. ``--sdk`` does the same through the Python SDK instead of the CLI.

Re-runnable: each run registers a new model version and a new data asset version (the data is
uploaded once: uploads are keyed by content), creating the compute, endpoint and deployment is
idempotent, and the deployment is pointed at the newest model. Predictions are downloaded to
outputs/<job-name>/ next to this file.
"""

from __future__ import annotations

import argparse
import csv
import logging
import os
import shlex
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
ENDPOINT = "heart-classifier-batch"
DEPLOYMENT = "classifier-gbm-mlflow"
MODEL = "heart-classifier"
DATA = "heart-dataset-unlabeled"
COMPUTE = "batch-cluster"


def say(text: str) -> None:
    print(text, flush=True)


# ---- the CLI way ---------------------------------------------------------------------------------


def _batchpoint_exe() -> str:
    beside = Path(sys.executable).parent / "batchpoint"
    found = str(beside) if beside.exists() else shutil.which("batchpoint")
    if not found:
        sys.exit("the 'batchpoint' command is not installed here: pip install -e '.[sklearn]' (or run scripts/demo.sh)")
    return found


def bp(*args: str, capture: bool = False) -> str:
    """Run one ``batchpoint`` command from this folder, printing it first."""
    say(f"$ batchpoint {shlex.join(args)}")
    proc = subprocess.run([_batchpoint_exe(), *args], cwd=HERE, text=True,
                          stdout=subprocess.PIPE if capture else None)
    if proc.returncode != 0:
        sys.exit(f"run_demo: 'batchpoint {args[0]} {args[1] if len(args) > 1 else ''}' failed "
                 f"(exit code {proc.returncode})")
    out = (proc.stdout or "").strip()
    if capture and out:
        say(f"  {out}")
    return out


def run_cli(download_root: Path) -> Path:
    if not os.environ.get("BATCHPOINT_SERVER_URL"):
        bp("server", "start")
    bp("compute", "create", "--name", COMPUTE, "--type", "amlcompute", "--min-instances", "0",
       "--max-instances", "5", "-o", "none")
    bp("model", "create", "--name", MODEL, "--type", "mlflow_model", "--path", "model",
       "--query", "version", "-o", "tsv", capture=True)
    bp("data", "create", "-f", "heart-dataset-unlabeled.yml", "--query", "version", "-o", "tsv", capture=True)
    bp("batch-endpoint", "create", "-f", "endpoint.yml", "-o", "none")
    bp("batch-deployment", "create", "-f", "deployment.yml", "--set-default", "--query", "model", "-o", "tsv",
       capture=True)
    job = bp("batch-endpoint", "invoke", "--name", ENDPOINT, "--input", f"azureml:{DATA}@latest",
             "--query", "name", "-o", "tsv", capture=True)
    bp("job", "stream", "--name", job)
    target = download_root / job
    bp("job", "download", "--name", job, "--download-path", os.path.relpath(target, HERE))
    return target / "named-outputs" / "score"


# ---- the SDK way ---------------------------------------------------------------------------------


def run_sdk(download_root: Path) -> Path:
    from batchpoint import AmlCompute, BatchDeployment, BatchEndpoint, Data, Input, MLClient, Model

    os.chdir(HERE)  # the SDK reads local paths from the working folder
    say("MLClient()  # BATCHPOINT_SERVER_URL, else the local server under BATCHPOINT_HOME")
    ml_client = MLClient()
    say(f"  server: {ml_client.base_url}")
    ml_client.compute.begin_create_or_update(
        AmlCompute(name=COMPUTE, type="amlcompute", min_instances=0, max_instances=5)).result()
    model = ml_client.models.create_or_update(Model(name=MODEL, type="mlflow_model", path="model"))
    say(f"  model {model.name} version {model.version}")
    data = ml_client.data.create_or_update(
        Data(name=DATA, type="uri_folder", path="data", description="An unlabeled dataset for heart classification."))
    say(f"  data asset {data.name} version {data.version}: {data.path}")
    ml_client.batch_endpoints.begin_create_or_update(
        BatchEndpoint(name=ENDPOINT, description="A heart condition classifier for batch inference")).result()
    deployment = BatchDeployment(
        name=DEPLOYMENT, endpoint_name=ENDPOINT, model=f"azureml:{MODEL}@latest", compute=COMPUTE,
        instance_count=2, max_concurrency_per_instance=2, mini_batch_size=2,
        output_action="append_row", output_file_name="predictions.csv")
    ml_client.batch_deployments.begin_create_or_update(deployment, set_default=True).result()
    job = ml_client.batch_endpoints.invoke(endpoint_name=ENDPOINT,
                                           input=Input(type="uri_folder", path=f"azureml:{DATA}@latest"))
    say(f"  job {job.name} {job.status}")
    started = time.monotonic()
    job = ml_client.jobs.wait(job.name, timeout=600)
    say(f"  job {job.name} {job.status} after {time.monotonic() - started:.1f}s: {job.status_message}")
    if job.status != "Completed":
        sys.exit(f"run_demo: job {job.name} ended {job.status}: {job.error}")
    target = download_root / job.name
    ml_client.jobs.download(job.name, download_path=target)
    ml_client.close()
    return target / "named-outputs" / "score"


# ---- the predictions -----------------------------------------------------------------------------


def show_predictions(folder: Path) -> None:
    path = folder / "predictions.csv"
    if not path.is_file():
        sys.exit(f"run_demo: the job's output has no predictions.csv (found: {sorted(p.name for p in folder.glob('*'))})")
    with open(path, newline="") as handle:
        rows = list(csv.reader(handle))  # row-in-file, prediction, file name (append_row, no header)
    say("")
    say(f"{path.relative_to(HERE)} (append_row output: row in file, prediction, file; no header):")
    for row in rows[:5]:
        say("  " + ",".join(row))
    if len(rows) > 5:
        say(f"  ... {len(rows) - 5} more")
    by_prediction = Counter(r[1] for r in rows)
    by_file = Counter(r[2] for r in rows)
    say(f"{len(rows)} rows from {len(by_file)} files: "
        + ", ".join(f"{n} with prediction {p}" for p, n in sorted(by_prediction.items())))
    for name, count in sorted(by_file.items()):
        say(f"  {name}: {count} rows")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sdk", action="store_true", help="use the Python SDK instead of the CLI")
    parser.add_argument("--home", help="BATCHPOINT_HOME for the local server (default: $BATCHPOINT_HOME or ~/.batchpoint)")
    parser.add_argument("--skip-training", action="store_true", help="reuse model/ if it is there")
    args = parser.parse_args()
    if args.home:
        os.environ["BATCHPOINT_HOME"] = str(Path(args.home).expanduser().resolve())
    if os.environ.get("BATCHPOINT_SERVER_URL"):
        say(f"Server: {os.environ['BATCHPOINT_SERVER_URL']} (BATCHPOINT_SERVER_URL)")
    else:
        home = Path(os.environ.get("BATCHPOINT_HOME") or Path.home() / ".batchpoint").expanduser()
        say(f"Server: the local one under {home} (BATCHPOINT_HOME), started on first use")

    if not (args.skip_training and (HERE / "model" / "MLmodel").is_file()):
        sys.path.insert(0, str(HERE))
        from train import train

        # mlflow warns on every cloudpickle save; the demo trains its own model, so that is known
        logging.getLogger("mlflow.sklearn").setLevel(logging.ERROR)

        say("Training the model (train.py) ...")
        out, accuracy = train()
        say(f"  held-out accuracy {accuracy:.3f}; MLflow model in {out}")

    download_root = HERE / "outputs"
    folder = run_sdk(download_root) if args.sdk else run_cli(download_root)
    show_predictions(folder)
    say(f"\nThe predictions are in {folder / 'predictions.csv'}")


if __name__ == "__main__":
    main()
