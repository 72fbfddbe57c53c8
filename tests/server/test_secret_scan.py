"""Acceptance (Security 3): no account key, SAS signature, client secret or API key appears in an
API response body, a server log, a job log or an output file.

The files are scanned by ``conftest.stop_server`` for every server a test starts (so this module
does not depend on running last, and a leak fails the test that owned the server); this module
makes the session's server hold real secrets (a key, a SAS, a client secret), runs a job through
them, scans the server's files as they are now, and scans the bodies of the read routes that show
resources, jobs and the audit log.
"""

from __future__ import annotations


import pytest

from conftest import RECORDED_SECRETS
from fixtures.components import AZURITE_ACCOUNT_KEY
from fixtures.secret_scan import leaks_in


def _secrets() -> list[bytes]:
    return [s.encode() for s in {AZURITE_ACCOUNT_KEY, *RECORDED_SECRETS} if len(s) >= 8]


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


def test_no_secret_in_files_the_server_wrote(server_holding_secrets):
    leaks = leaks_in(server_holding_secrets.home, {AZURITE_ACCOUNT_KEY, *RECORDED_SECRETS})
    assert not leaks, "secrets found in files:\n" + "\n".join(leaks)


def test_the_scan_finds_a_planted_secret(tmp_path):
    """The scan itself can fail: a SAS signature, an account key and an API key planted in a job's
    log are found (and owner.key, where the owner key belongs, is not reported)."""
    log = tmp_path / "jobs" / "j1" / "logs" / "worker-1.log"
    log.parent.mkdir(parents=True)
    log.write_text("GET https://a.blob.core.windows.net/c/x?sv=2021&sig=" + "A" * 43 + "%3D\n")
    (tmp_path / "out.csv").write_text("row,AccountKey=" + "B" * 40 + "\n")
    (tmp_path / "owner.key").write_text("bpk_abcdefgh_" + "C" * 30)
    (tmp_path / "echo.txt").write_text("key bpk_abcdefgh_" + "C" * 30)
    # uv's cache of third-party wheels (pyarrow's tests hold Azurite's published key) is not the server's
    wheel = tmp_path / "cache" / "uv" / "archive-v0" / "x1" / "pyarrow" / "tests" / "util.py"
    wheel.parent.mkdir(parents=True)
    wheel.write_text("conn = 'AccountKey=" + "D" * 40 + "'\n")
    (tmp_path / "jobs" / "j1" / "cache" / "uv").mkdir(parents=True)  # cache/uv elsewhere is scanned
    (tmp_path / "jobs" / "j1" / "cache" / "uv" / "x").write_text("AccountKey=" + "E" * 40)
    leaks = leaks_in(tmp_path, {"recorded-secret-value"})
    assert sorted(leak.split(":")[0] for leak in leaks) == ["echo.txt", "jobs/j1/cache/uv/x", "jobs/j1/logs/worker-1.log",
                                                           "out.csv"]


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
