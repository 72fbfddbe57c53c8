"""Stop the storage emulator for 10 s mid-job (acceptance 2, local pool): a private Azurite, started
by this test (by PID, from ``.cache/node/node_modules/.bin/azurite``), holds the input; it is
stopped while workers score and started again on the same ports and folder 10 s later. The
workers' fetches fail meanwhile and are retried (the Azure SDK's own retries, the backend's retry,
then the platform policy's retries of the mini-batch on the same worker: together well over 10 s,
docs/faults.md); the job Completes with exactly a clean run's output."""

from __future__ import annotations

import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from batchpoint import Datastore, Input
from conftest import wait_job
from fixtures.faults import assert_clean_run_output, download_predictions, heart_copies, make_endpoint, pids
from fixtures.components import AZURITE_ACCOUNT_KEY, AZURITE_ACCOUNT_NAME
from fixtures.flows import wait_until

pytestmark = [pytest.mark.timeout(240), pytest.mark.azurite]

AZURITE = Path(__file__).resolve().parents[2] / ".cache" / "node" / "node_modules" / ".bin" / "azurite"
OUTAGE_S = 10.0


def _free_ports(count: int) -> list[int]:
    socks = [socket.socket() for _ in range(count)]
    for sock in socks:
        sock.bind(("127.0.0.1", 0))
    ports = [sock.getsockname()[1] for sock in socks]
    for sock in socks:
        sock.close()
    return ports


@dataclass
class PrivateAzurite:
    folder: Path
    ports: list[int]
    proc: subprocess.Popen | None = None

    @property
    def blob_url(self) -> str:
        return f"http://127.0.0.1:{self.ports[0]}/{AZURITE_ACCOUNT_NAME}"

    def start(self) -> None:
        blob, queue, table = self.ports
        log = open(self.folder / "azurite.log", "ab")
        self.proc = subprocess.Popen(
            [str(AZURITE), "--silent", "--disableTelemetry", "--skipApiVersionCheck", "--loose",
             "--location", str(self.folder), "--blobHost", "127.0.0.1", "--blobPort", str(blob),
             "--queueHost", "127.0.0.1", "--queuePort", str(queue), "--tableHost", "127.0.0.1",
             "--tablePort", str(table)], stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, (self.folder / "azurite.log").read_text()[-2000:]
            try:
                socket.create_connection(("127.0.0.1", blob), timeout=1).close()
                return
            except OSError:
                time.sleep(0.1)
        raise AssertionError("the private Azurite did not open its port in 60 s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


@pytest.fixture
def azurite(tmp_path: Path) -> Iterator[PrivateAzurite]:
    if not AZURITE.exists():
        pytest.fail(f"Azurite is not installed at {AZURITE}: run scripts/test.sh once", pytrace=False)
    (tmp_path / "azurite").mkdir()
    emulator = PrivateAzurite(tmp_path / "azurite", _free_ports(3))
    emulator.start()
    yield emulator
    emulator.stop()


def test_the_storage_emulator_stopped_for_10s_mid_job(azurite: PrivateAzurite, ml_client: Any,
                                                      heart_model_dir: Path, tmp_path: Path) -> None:
    from azure.storage.blob import BlobServiceClient

    data = heart_copies(tmp_path / "data", copies=2)  # 8 files
    conn = (f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT_NAME};AccountKey={AZURITE_ACCOUNT_KEY};"
            f"BlobEndpoint={azurite.blob_url};")
    with BlobServiceClient.from_connection_string(conn) as service:
        service.create_container("outage")
        for csv in sorted(data.iterdir()):
            service.get_blob_client("outage", f"heart/{csv.name}").upload_blob(csv.read_bytes())
    store = f"outage{uuid.uuid4().hex[:6]}"
    ml_client.datastores.create_or_update(Datastore(
        name=store, type="azure_blob", account_name=AZURITE_ACCOUNT_NAME, container_name="outage",
        blob_endpoint_url=azurite.blob_url, allow_private_network=True, credentials={"account_key": AZURITE_ACCOUNT_KEY}))
    make_endpoint(ml_client, "faults-outage", heart_model_dir, tmp_path / "code", workers=2)
    traces = tmp_path / "traces"
    (traces / "signals").mkdir(parents=True)
    name = ml_client.batch_endpoints.invoke(
        endpoint_name="faults-outage", input=Input(type="uri_folder", path=f"azureml://datastores/{store}/paths/heart"),
        environment_variables={"SIGNAL_DIR": str(traces / "signals"), "SIDE_EFFECTS": str(traces / "side-effects.txt"),
                               "SLEEP_S": "1"}).name
    wait_until(lambda: ml_client.jobs.get(name).progress.mini_batches_completed >= 2, 120, "2 mini-batches done")
    assert len(pids(traces, "init")) == 2
    azurite.stop()
    down_at = time.monotonic()
    time.sleep(OUTAGE_S)
    during = ml_client.jobs.get(name)
    assert during.status == "Running" and during.progress.files_completed < 8, during.progress
    azurite.start()
    outage = time.monotonic() - down_at
    job = wait_job(ml_client, name, timeout=150)
    assert job.status == "Completed", (job.status_message, job.error)
    assert job.failures == [] and job.progress.files_completed == 8
    assert_clean_run_output(download_predictions(ml_client, name, tmp_path / "out"), heart_model_dir, data)
    assert outage >= OUTAGE_S
