"""``AZUREML_BI_OUTPUT_PATH`` on Ray nodes that share no disk with the server, and an output store
the nodes cannot reach, through the real server on the test command's Ray cluster.

The scoring script has the shape of Azure's custom-output samples (azureml-examples, batch
deployments writing one Parquet file per input to ``os.environ["AZUREML_BI_OUTPUT_PATH"]`` under
``summary_only``). The head and the worker node share this machine's disk, so the script stands in
for a node that does not: its ``init()`` refuses an ``AZUREML_BI_OUTPUT_PATH`` inside the server's
home (what a node of a real cluster cannot see). One input's first attempt writes a wrong file and
raises; its retry writes the right one under the same name (the last one written wins).

* output on Azurite: the actors upload the files into the output location themselves; each file
  is there once, with the right predictions, and none went through the server's folder;
* output on the local default store: the files come back with the replies and `job download
  --output-name score` brings each once, with the right predictions;
* an output store whose endpoint is a closed loopback port: the job fails after the platform
  retries, in seconds, naming the store, the node and the cause;
* output on S3 (moto): the actors write the parts and the files to the bucket; the predictions
  equal a local-pool run's;
* the bound on what a mini-batch may send back (no Ray needed).

The jobs are invoked at once by one fixture and run side by side (each test waits for its own).
"""

from __future__ import annotations

import io
import os
import pickle
import re
import socket
import threading
import time
import uuid
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import urlsplit

import pandas as pd
import pytest

from conftest import HEART_UNLABELED, wait_job
from batchpoint import AmlCompute, BatchDeployment, BatchEndpoint, CodeConfiguration, Datastore, Input, Model
from fixtures.components import S3_ACCESS_KEY_ID, S3_REGION, S3_SECRET_ACCESS_KEY
from fixtures.flows import predictions_of, write_script
from engines.ray_cluster.conftest import blobs_under, register_out_store

pytestmark = pytest.mark.timeout(240)

ENDPOINT = "ray-bi"
S3_BUCKET = "bp-ray-out"

# Azure's custom-output sample, as written for batch deployments; FAIL_ONCE and the SERVER_HOME
# check are the test's (see the module docstring).
BATCH_DRIVER = """
import glob
import os
import pickle
from pathlib import Path
from typing import List

import pandas as pd


def init():
    global model
    global output_path

    output_path = os.environ["AZUREML_BI_OUTPUT_PATH"]
    if os.environ.get("SERVER_HOME") and output_path.startswith(os.environ["SERVER_HOME"]):
        raise RuntimeError(f"{output_path} is on the server's disk, which a Ray node does not see")
    model_path = os.environ["AZUREML_MODEL_DIR"]
    model_file = glob.glob(f"{model_path}/*/*.pkl")[-1]

    with open(model_file, "rb") as file:
        model = pickle.load(file)


def run(mini_batch: List[str]):
    results = []
    for file_path in mini_batch:
        data = pd.read_csv(file_path)
        pred = model.predict(data)

        data["prediction"] = pred
        results += [f"{i},{int(p)},{os.path.basename(file_path)}" for i, p in enumerate(pred)]

        output_file_name = Path(file_path).stem
        output_file_path = os.path.join(output_path, output_file_name + ".parquet")
        marker = os.path.join(os.environ["MARKER_DIR"], output_file_name)
        if output_file_name == os.environ["FAIL_ONCE"] and not os.path.exists(marker):
            open(marker, "w").close()
            data.assign(prediction=-1).to_parquet(output_file_path)
            raise RuntimeError("the first attempt fails after writing its file")
        data.to_parquet(output_file_path)

    return results
"""


@pytest.fixture(scope="module")
def expected(heart_pickle_dir: Path) -> dict[str, list[int]]:
    with open(heart_pickle_dir / "model.pkl", "rb") as f:
        model = pickle.load(f)
    return {p.stem: [int(v) for v in model.predict(pd.read_csv(p))] for p in sorted(HEART_UNLABELED.glob("*.csv"))}


@pytest.fixture(scope="module")
def bi_endpoint(ml_client: Any, ray_address: str, ray_token: str, heart_pickle_dir: Path,
                tmp_path_factory: pytest.TempPathFactory) -> str:
    """Deployments ``files`` (summary_only) and ``rows`` (append_row) of the Azure-shaped script on
    Ray (one actor each: the module's jobs run side by side), and ``rows-local`` (append_row) on the
    local pool (2 workers): 2 files per mini-batch, max_retries 1."""
    ml_client.compute.begin_create_or_update(AmlCompute(
        name="ray-bi", type="ray", address=ray_address, auth_token=ray_token, num_cpus_per_worker=0.5,
        max_instances=2)).result()
    code = write_script(tmp_path_factory.mktemp("ray-bi-code"), BATCH_DRIVER, "batch_driver.py")
    ml_client.models.create_or_update(Model(name="ray-bi-heart", type="custom_model", path=str(heart_pickle_dir)))
    ml_client.batch_endpoints.begin_create_or_update(BatchEndpoint(name=ENDPOINT)).result()
    for name, action, compute in (("files", "summary_only", "azureml:ray-bi"), ("rows", "append_row", "azureml:ray-bi"),
                                  ("rows-local", "append_row", None)):
        ml_client.batch_deployments.begin_create_or_update(BatchDeployment(
            name=name, endpoint_name=ENDPOINT, model="azureml:ray-bi-heart@latest", compute=compute,
            code_configuration=CodeConfiguration(code=str(code), scoring_script="batch_driver.py"),
            instance_count=1, max_concurrency_per_instance=1 if compute else 2, mini_batch_size=2, output_action=action,
            retry_settings={"max_retries": 1, "timeout": 120}), set_default=name == "files").result()
    return ENDPOINT


def _invoke(ml_client: Any, server_home: str, tmp_path: Path, fail_once: str = "none", deployment: str = "files",
            output_path: str | None = None) -> str:
    markers = tmp_path / "markers"
    markers.mkdir(parents=True)
    return ml_client.batch_endpoints.invoke(
        endpoint_name=ENDPOINT, deployment_name=deployment, input=Input(type="uri_folder", path=str(HEART_UNLABELED)),
        output_path=output_path,
        environment_variables={"SERVER_HOME": server_home, "MARKER_DIR": str(markers), "FAIL_ONCE": fail_once},
    ).name


class _Relay:
    """A loopback TCP relay to ``target`` (host:port) until :meth:`close`; its port then refuses."""

    def __init__(self, target: str) -> None:
        host, port = target.rsplit(":", 1)
        self.target = (host, int(port))
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.open: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:  # closed
                return
            upstream = socket.create_connection(self.target)
            self.open += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(a: socket.socket, b: socket.socket) -> None:
        try:
            while data := a.recv(65536):
                b.sendall(data)
        except OSError:
            pass
        for s in (a, b):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def close(self) -> None:
        self.listener.shutdown(socket.SHUT_RDWR)  # stops listening (close alone leaves accept() holding it)
        self.listener.close()
        for s in self.open:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()


@pytest.fixture(scope="module")
def jobs(ml_client: Any, server: Any, bi_endpoint: str, azurite_blob_url: str, out_container: Any, s3_endpoint: str,
         expected: dict[str, list[int]], tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    """The module's jobs, invoked at once (they run side by side on the cluster's four CPUs):

    * ``blob``: ``files`` with its output on Azurite, the second input's first attempt failing;
    * ``local``: ``files`` with its output on the local default store, the first input failing once;
    * ``unreachable``: ``rows`` with its output on a store registered (and the job invoked) through
      a relay to Azurite that is then closed: a loopback port nothing listens on;
    * ``s3``: ``rows`` with its output on S3 (the test command's moto); ``s3_local``: the same on
      the local pool (``rows-local``), for its predictions.
    """
    import boto3

    tmp = tmp_path_factory.mktemp("ray-bi-jobs")
    home = str(server.home)
    s3 = boto3.client("s3", endpoint_url=s3_endpoint, region_name=S3_REGION, aws_access_key_id=S3_ACCESS_KEY_ID,
                      aws_secret_access_key=S3_SECRET_ACCESS_KEY)
    try:
        s3.create_bucket(Bucket=S3_BUCKET)
    except s3.exceptions.BucketAlreadyOwnedByYou:
        pass
    ml_client.datastores.create_or_update(Datastore(
        name="rays3", type="s3", bucket=S3_BUCKET, endpoint_url=s3_endpoint, region=S3_REGION,
        allow_private_network=True,
        credentials={"aws_access_key_id": S3_ACCESS_KEY_ID, "aws_secret_access_key": S3_SECRET_ACCESS_KEY}))
    store = register_out_store(ml_client, azurite_blob_url)
    run = SimpleNamespace(s3=s3, blob_folder=f"bi-{uuid.uuid4().hex[:8]}", s3_folder=f"rows-{uuid.uuid4().hex[:8]}")
    azurite = urlsplit(azurite_blob_url)
    relay = _Relay(azurite.netloc)
    try:
        run.endpoint = f"http://127.0.0.1:{relay.port}{azurite.path}"
        register_out_store(ml_client, run.endpoint, name="rayunreachable")
        run.started = time.monotonic()
        run.unreachable = _invoke(ml_client, "", tmp / "unreachable", deployment="rows",  # the parts matter here
                                  output_path="azureml://datastores/rayunreachable/paths/scored")
    finally:
        relay.close()
    stems = sorted(expected)
    run.blob = _invoke(ml_client, home, tmp / "blob", stems[1],
                       output_path=f"azureml://datastores/{store}/paths/{run.blob_folder}")
    run.local = _invoke(ml_client, home, tmp / "local", stems[0])
    run.s3_job = _invoke(ml_client, home, tmp / "s3", deployment="rows",
                         output_path=f"azureml://datastores/rays3/paths/{run.s3_folder}")
    run.s3_local = _invoke(ml_client, "", tmp / "s3-local", deployment="rows-local")
    return run


def _retried_once(job: Any) -> None:
    assert job.status == "Completed", (job.status_message, job.error)
    p = job.progress
    assert (p.files_completed, p.files_failed, p.mini_batches_failed) == (4, 0, 0), p


def test_script_files_reach_a_blob_output_from_the_nodes(ml_client: Any, server: Any, jobs: SimpleNamespace,
                                                         out_container: Any, expected: dict[str, list[int]]) -> None:
    _retried_once(wait_job(ml_client, jobs.blob, timeout=150))
    folder = jobs.blob_folder
    # each file once (the retried one's second write replaced its first), nothing else in the output
    assert sorted(blobs_under(out_container, f"{folder}/")) == [f"{folder}/{stem}.parquet" for stem in expected]
    for stem, predictions in expected.items():
        data = out_container.get_blob_client(f"{folder}/{stem}.parquet").download_blob().readall()
        assert pd.read_parquet(io.BytesIO(data))["prediction"].tolist() == predictions, stem
    # uploaded from the nodes: nothing was written to the server's folder for the job's files
    assert [p for p in (server.home / "jobs" / jobs.blob / "outputs").rglob("*") if p.is_file()] == []


def test_script_files_reach_a_local_output_through_the_replies(ml_client: Any, jobs: SimpleNamespace,
                                                               expected: dict[str, list[int]], tmp_path: Path) -> None:
    _retried_once(wait_job(ml_client, jobs.local, timeout=150))
    saved = ml_client.jobs.download(jobs.local, download_path=tmp_path / "out", output_name="score")
    assert sorted(p.name for p in saved) == [f"{stem}.parquet" for stem in expected]
    for path in saved:
        assert pd.read_parquet(path)["prediction"].tolist() == expected[Path(path).stem], path


def test_an_output_store_the_nodes_cannot_reach_fails_the_job_naming_it(ml_client: Any, server: Any,
                                                                       jobs: SimpleNamespace) -> None:
    job = wait_job(ml_client, jobs.unreachable, timeout=90)  # it does not hang
    message = f"{job.status_message} {job.error}"
    assert job.status == "Failed", message
    for named in (jobs.endpoint, "from Ray node", "could not write the rows of mini-batch", "failed 4 times in a row"):
        assert named in message, (named, message)
    assert "Connect call failed" in message or "refused" in message.lower(), message  # the cause
    assert "Traceback" not in message and "sig=" not in message.replace("sig=***", ""), message
    assert job.progress.mini_batches_completed == 0
    # the actor's bounded retries: each failed write of a part (from its mini-batch scored to the
    # write given up) takes seconds, not the ~20 s of the store's default retries (3 per request, twice)
    log = "".join(f.read_text() for f in sorted((server.home / "jobs" / jobs.unreachable / "logs").glob("worker-*.log")))
    scored: dict[str, datetime] = {}
    writes: list[float] = []
    for line in log.splitlines():
        found = re.match(r"(\S+ \S+) \w+ batchpoint\.worker: mini-batch (\S+?):? (\(\d+ files\) scored|could not write the rows)",
                         line)
        if found:
            at = datetime.strptime(found[1], "%Y-%m-%d %H:%M:%S,%f")
            if "scored" in found[3]:
                scored[found[2]] = at
            else:
                writes.append((at - scored.pop(found[2])).total_seconds())
    assert len(writes) >= 4, log[-3000:]
    assert max(writes) < 8, writes
    print(f"unreachable output store: {len(writes)} failed part writes, {min(writes):.1f}-{max(writes):.1f}s each; "
          f"Failed {time.monotonic() - jobs.started:.1f}s after invoke")


def test_parts_and_script_files_on_an_s3_output(ml_client: Any, server: Any, jobs: SimpleNamespace,
                                               expected: dict[str, list[int]], tmp_path: Path) -> None:
    """The actors write the parts and the script's files to the bucket themselves; the
    predictions equal a local-pool run's."""
    for name in (jobs.s3_job, jobs.s3_local):
        job = wait_job(ml_client, name, timeout=150)
        assert job.status == "Completed", (job.status_message, job.error)
    def predictions(name: str) -> list[tuple[int, int, str]]:
        saved = ml_client.jobs.download(name, download_path=tmp_path / name)  # the script's files too
        [path] = [p for p in saved if p.name == ml_client.jobs.get(name).outputs["score"].file_name]
        return predictions_of(path)

    got = predictions(jobs.s3_job)
    assert got == predictions(jobs.s3_local)
    by_file: dict[str, list[int]] = {}
    for _, prediction, file in got:
        by_file.setdefault(file, []).append(prediction)
    assert by_file == {f"{stem}.csv": predictions for stem, predictions in expected.items()}
    assert list((server.home / "jobs" / jobs.s3_job).glob("parts/*.csv")) == []  # no part came through the server
    folder = jobs.s3_folder
    keys = sorted(o["Key"] for o in jobs.s3.list_objects_v2(Bucket=S3_BUCKET).get("Contents", [])
                  if o["Key"].startswith((f"{folder}/", f"azureml/{jobs.s3_job}/")))
    output = ml_client.jobs.get(jobs.s3_job).outputs["score"].file_name
    assert keys == sorted([f"{folder}/{output}"] + [f"{folder}/{stem}.parquet" for stem in expected])  # staging gone
    for stem, predictions in expected.items():
        body = jobs.s3.get_object(Bucket=S3_BUCKET, Key=f"{folder}/{stem}.parquet")["Body"].read()
        assert pd.read_parquet(io.BytesIO(body))["prediction"].tolist() == predictions, stem


def test_a_mini_batch_sends_back_at_most_64_mib_of_script_files(tmp_path: Path) -> None:
    from batchpoint.worker.ray_actor import BI_REPLY_LIMIT, bi_reply_refusal, changed_files

    (tmp_path / "sub").mkdir()
    (tmp_path / "small.parquet").write_bytes(b"x" * 10)
    with open(tmp_path / "sub" / "big.bin", "wb") as f:
        f.truncate(BI_REPLY_LIMIT)
    files = changed_files(tmp_path, {})
    assert [rel for rel, _, _ in files] == ["small.parquet", "sub/big.bin"]
    error = bi_reply_refusal("00000003", files)
    assert error is not None and error["kind"] == "platform"
    assert "64 MiB per mini-batch" in error["message"] and "sub/big.bin (64.0 MiB)" in error["message"]
    assert "AZUREML_BI_OUTPUT_PATH" in error["message"] and "mini-batch 00000003" in error["message"]
    assert bi_reply_refusal("00000003", files[:1]) is None


def test_a_script_file_is_sent_again_only_when_it_changed(tmp_path: Path) -> None:
    from batchpoint.worker.ray_actor import changed_files, remember

    small = tmp_path / "small.parquet"
    small.write_bytes(b"x" * 10)
    (tmp_path / "other.csv").write_bytes(b"1")
    now = time.time_ns()
    seen: dict = {}
    remember(seen, changed_files(tmp_path, seen, now), now)
    assert changed_files(tmp_path, seen, now) == []
    # rewritten with the same size and mtime (a coarse clock tick just after the look): its content tells
    mtime = small.stat().st_mtime_ns
    small.write_bytes(b"y" * 10)
    os.utime(small, ns=(mtime, mtime))
    assert [rel for rel, _, _ in changed_files(tmp_path, seen, now)] == ["small.parquet"]
    # once clearly older than a look, only (mtime, size) are compared, and a change shows there
    remember(seen, changed_files(tmp_path, seen, now), now)
    later = now + 10**9
    assert changed_files(tmp_path, seen, later) == [] and seen["small.parquet"][2] is None
    small.write_bytes(b"z" * 11)
    assert [rel for rel, _, _ in changed_files(tmp_path, seen, later)] == ["small.parquet"]
