"""Parts on a remote output store, without Ray (``jobs/assembly.py``, ``identity/delegation.py``):

* assembly reads the parts the done log names from the job's staging area on the output store
  (Azurite here), in the done log's order — a job folder's part of the same key first — never a
  part the log does not name, fetching a few ahead yet writing them in order, and a named part
  that is gone fails the job naming it;
* the credential a job's nodes write their parts with is a SAS to create and write blobs only:
  it writes a part, and it cannot read or list the container.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from batchpoint.exceptions import BatchpointError, PlatformError
from batchpoint.identity.delegation import WorkerCredentials
from batchpoint.jobs.assembly import PARTS_SOURCE, StagedParts, finished_parts, part_streams, staging_prefix
from batchpoint.jobs.folder import JobFolder
from batchpoint.storage.base import StorageSpec
from batchpoint.storage.registry import open_backend
from fixtures.components import AZURITE_ACCOUNT_KEY, AZURITE_ACCOUNT_NAME

pytestmark = pytest.mark.azurite
CONTAINER = "ray-staged-parts"


@pytest.fixture(scope="module")
def out_spec(azurite_connection_string: str, azurite_blob_url: str) -> StorageSpec:
    from azure.storage.blob import BlobServiceClient

    try:
        BlobServiceClient.from_connection_string(azurite_connection_string).create_container(CONTAINER)
    except Exception:  # noqa: BLE001 - there from an earlier run of the session
        pass
    return StorageSpec("azure_blob", {"account_name": AZURITE_ACCOUNT_NAME, "container_name": CONTAINER,
                                      "blob_endpoint_url": azurite_blob_url},
                       {"kind": "account_key", "account_key": AZURITE_ACCOUNT_KEY})


def _put(spec: StorageSpec, path: str, data: bytes) -> None:
    with open_backend(spec).open_write(path) as out:
        out.write(data)


def test_assembly_reads_the_named_parts_from_the_store_in_done_log_order(tmp_path: Path, out_spec: StorageSpec) -> None:
    job = "job-staged"
    staged = StagedParts("out", out_spec, staging_prefix(job))
    folder = JobFolder.local(tmp_path / "jobs", job)
    # mini-batch 0 was split (pieces 1 and 3 succeeded; its whole attempt's part is superseded),
    # 2 finished before 1; 1's part is in the job folder (scored there before the job moved to Ray)
    for key in ("00000002-0000", "00000000-0003", "00000000-0001", "00000000-0000"):
        _put(out_spec, f"{staged.prefix}/{key}.csv", f"rows of {key}\n".encode())
    _put(out_spec, f"{staged.prefix}/00000001-0000.csv", b"stale remote copy of 1\n")
    Path(folder.parts_dir).mkdir(parents=True)
    (Path(folder.parts_dir) / "00000001-0000.csv").write_bytes(b"rows of 00000001-0000\n")
    (tmp_path / "jobs" / job / "done.jsonl").write_text(
        '{"index":2,"rows":1,"parts":["00000002-0000"]}\n'
        '{"index":0,"rows":2,"parts":["00000000-0003","00000000-0001"]}\n'
        '{"index":1,"rows":1,"parts":["00000001-0000"]}\n')

    parts = finished_parts(folder, staged)
    expected = [f"rows of {k}" for k in ("00000000-0001", "00000000-0003", "00000001-0000", "00000002-0000")]
    assert [isinstance(p, Path) for p in parts] == [False, False, True, False]
    for ahead in (1, 2, 8):  # fetched ahead (fewer, as many as, more than the parts), written in order
        text = b""
        for src in part_streams(parts, ahead=ahead):
            with src:
                text += src.read()
        assert text.decode().splitlines() == expected, ahead
    with pytest.raises(PlatformError, match="missing from the job folder"):
        finished_parts(folder)  # without the store the remote parts cannot be found: named, not skipped

    (tmp_path / "jobs" / job / "done.jsonl").write_text(
        (tmp_path / "jobs" / job / "done.jsonl").read_text() + '{"index":3,"rows":1,"parts":["00000003-0000"]}\n')
    with pytest.raises(PlatformError, match=r"00000003-0000\.csv of finished mini-batch 3 is missing"):
        for src in part_streams(finished_parts(folder, staged), ahead=2):
            src.close()


def test_the_nodes_part_credential_writes_but_cannot_read(out_spec: StorageSpec) -> None:
    version, sources = WorkerCredentials({PARTS_SOURCE: out_spec}, 600, writable=frozenset({PARTS_SOURCE})).current()
    spec = sources[PARTS_SOURCE]
    assert spec.credential["kind"] == "sas" and AZURITE_ACCOUNT_KEY not in str(spec.credential)
    backend = open_backend(spec)
    backend.put_file(__file__, "azureml/job-sas/parts/00000000-0000.csv")
    admin = open_backend(out_spec)
    with admin.open_read("azureml/job-sas/parts/00000000-0000.csv") as got:
        assert got.read() == Path(__file__).read_bytes()
    with pytest.raises(BatchpointError):
        with backend.open_read("azureml/job-sas/parts/00000000-0000.csv") as src:
            src.read()
    with pytest.raises(BatchpointError):
        list(backend.iter_files("azureml"))
