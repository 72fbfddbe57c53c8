"""Acceptance (Security 3): after the whole suite, no account key, SAS signature, client secret or
API key appears in an API response body, a server log, a job log or an output file.

This module runs last (``zz_final``). It scans every file the session's servers wrote under
pytest's base temporary folder (except ``owner.key``, where the owner key is meant to be) and the
bodies of the read routes that show resources, jobs and the audit log.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from conftest import RECORDED_SECRETS
from fixtures.components import AZURITE_ACCOUNT_KEY

PATTERNS = [re.compile(rb"sig=[A-Za-z0-9%+/=]{20,}"), re.compile(rb"AccountKey=[A-Za-z0-9+/=]{20,}"),
            re.compile(rb"bpk_[A-Za-z0-9_-]{8,}_[A-Za-z0-9_-]{20,}")]
SKIP_NAMES = {"owner.key", "server.key"}


def _secrets() -> list[bytes]:
    return [s.encode() for s in {AZURITE_ACCOUNT_KEY, *RECORDED_SECRETS} if len(s) >= 8]


def _written_files(base: Path):
    for path in base.rglob("*"):
        if "site-packages" in path.parts:  # a deployment environment's installed packages (pyarrow's tests
            continue  # hold Azurite's published development key): not written by a server
        if path.is_file() and path.name not in SKIP_NAMES and path.stat().st_size < 50 * 1024 * 1024:
            yield path


def test_no_secret_in_files_written_by_servers(tmp_path_factory: pytest.TempPathFactory):
    base = tmp_path_factory.getbasetemp()
    leaks = []
    secrets = _secrets()
    for path in _written_files(base):
        if path.suffix in (".pkl", ".db", ".db-wal", ".db-shm") and "datastores" not in path.parts:
            data = path.read_bytes()
            hits = [s for s in secrets if s in data]
        else:
            data = path.read_bytes()
            hits = [s for s in secrets if s in data] + [p.pattern for p in PATTERNS if p.search(data)]
        if hits:
            leaks.append(f"{path.relative_to(base)}: {[h[:12] for h in hits]}")
    assert not leaks, "secrets found in files:\n" + "\n".join(leaks)


@pytest.fixture(scope="module")
def server_holding_secrets(server, ml_client, heart_model_dir, azurite_connection_string, azurite_blob_url):
    """The session server made to hold real secrets before its responses are scanned: a data store
    with the Azurite account key (and a job that read through it), one with a SAS, and a compute
    with a service principal's client secret."""
    from azure.storage.blob import BlobServiceClient, ContainerSasPermissions, generate_container_sas

    from batchpoint import AmlCompute, Datastore, Input
    from conftest import HEART_UNLABELED, deploy_heart, record_secret, wait_job
    from fixtures.components import AZURITE_ACCOUNT_NAME

    blobs = BlobServiceClient.from_connection_string(azurite_connection_string)
    try:
        blobs.create_container("scandata")
    except Exception:  # noqa: BLE001 - there from an earlier run
        pass
    for csv in sorted(HEART_UNLABELED.glob("*.csv")):
        blobs.get_blob_client("scandata", f"heart/{csv.name}").upload_blob(csv.read_bytes(), overwrite=True)
    sas = record_secret(generate_container_sas(AZURITE_ACCOUNT_NAME, "scandata", account_key=AZURITE_ACCOUNT_KEY,
                                               permission=ContainerSasPermissions(read=True, list=True),
                                               expiry=__import__("datetime").datetime(2099, 1, 1)))
    common = {"type": "azure_blob", "account_name": AZURITE_ACCOUNT_NAME, "container_name": "scandata",
              "blob_endpoint_url": azurite_blob_url, "allow_private_network": True}
    ml_client.datastores.create_or_update(Datastore(name="scankey", **common, credentials={"account_key": AZURITE_ACCOUNT_KEY}))
    ml_client.datastores.create_or_update(Datastore(name="scansas", **common, credentials={"sas_token": sas}))
    secret = record_secret("scan-client-secret-" + "x" * 24)
    ml_client.compute.begin_create_or_update(AmlCompute(name="scan-sp", identity={
        "type": "service_principal", "tenant_id": "00000000-0000-0000-0000-000000000001",
        "client_id": "00000000-0000-0000-0000-000000000002", "client_secret": secret})).result()
    deploy_heart(ml_client, "scan-ep", heart_model_dir)
    job = ml_client.batch_endpoints.invoke(endpoint_name="scan-ep",
                                           input=Input(path="azureml://datastores/scankey/paths/heart"))
    assert wait_job(ml_client, job.name).status == "Completed"
    return server


def test_no_secret_in_api_responses(server_holding_secrets):
    server = server_holding_secrets
    secrets = _secrets()
    assert len(secrets) >= 3
    with server.rest() as http:
        bodies = [http.get(p).content for p in ("/datastores", "/jobs?limit=1000", "/auditLog?limit=1000",
                                                  "/principals", "/roleAssignments", "/computes")]
        for job in http.get("/jobs?limit=1000").json():
            bodies.append(http.get(f"/jobs/{job['name']}").content)
            bodies.append(http.get(f"/jobs/{job['name']}/logs").content)
            for log in http.get(f"/jobs/{job['name']}/logs").json().get("logs", []):
                bodies.append(http.get(f"/jobs/{job['name']}/logs/{log['name']}").content)
        for store in http.get("/datastores").json():
            bodies.append(http.get(f"/datastores/{store['name']}").content)
        for compute in http.get("/computes").json():
            bodies.append(http.get(f"/computes/{compute['name']}").content)
    leaks = [s[:12] for body in bodies for s in secrets if s in body]
    assert not leaks, f"secrets in API responses: {leaks}"
