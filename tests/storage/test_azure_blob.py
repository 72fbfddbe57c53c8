"""Azure Blob Storage and ADLS Gen2 backends against a real Azurite."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

import pytest

from batchpoint.exceptions import (
    StorageAuthError, StorageNotFoundError, TransientStorageError, ValidationError,
)
from batchpoint.storage.azure_blob import AdlsGen2Backend, AzureBlobBackend
from batchpoint.storage.base import StorageSpec

from .conformance import BackendConformance, read, write
from .conftest import blob_spec

pytestmark = pytest.mark.azurite


def small_pages(backend):
    backend.page_size = 2  # listings cross page boundaries even on small trees
    return backend


def container_sas(account, container, *, expired=False, **perms):
    from azure.storage.blob import ContainerSasPermissions, generate_container_sas

    now = datetime.now(timezone.utc)
    expiry = now - timedelta(hours=1) if expired else now + timedelta(hours=1)
    permission = ContainerSasPermissions(**(perms or dict(read=True, list=True, write=True,
                                                           create=True, add=True, delete=True)))
    return generate_container_sas(account["name"], container, account_key=account["key"],
                                  permission=permission, expiry=expiry,
                                  start=now - timedelta(hours=2))


class TestBlobByAccountKey(BackendConformance):
    @pytest.fixture
    def backend(self, azurite_account, container):
        cred = {"kind": "account_key", "account_key": azurite_account["key"]}
        return small_pages(AzureBlobBackend(blob_spec(azurite_account, container, cred)))


class TestBlobByContainerSas(BackendConformance):
    @pytest.fixture
    def backend(self, azurite_account, container):
        cred = {"kind": "sas", "sas_token": "?" + container_sas(azurite_account, container)}
        return small_pages(AzureBlobBackend(blob_spec(azurite_account, container, cred)))


class TestBlobByConnectionString(BackendConformance):
    @pytest.fixture
    def backend(self, azurite_connection_string, container):
        cred = {"kind": "connection_string", "connection_string": azurite_connection_string}
        spec = StorageSpec("azure_blob", {"container_name": container}, cred)
        return small_pages(AzureBlobBackend(spec))


class TestAdlsGen2OnAzurite(BackendConformance):
    @pytest.fixture
    def backend(self, azurite_account, container):
        cred = {"kind": "account_key", "account_key": azurite_account["key"]}
        spec = blob_spec(azurite_account, container, cred, kind="azure_data_lake_gen2")
        return small_pages(AdlsGen2Backend(spec))


# -- credentials and their failures --------------------------------------------------------
def test_anonymous_reads_a_public_container(azurite_account, new_container, blob_service):
    name = new_container(public_access="container")
    blob_service.get_container_client(name).upload_blob("heart-disease-uci/data/heart.csv", b"age\n63\n")
    backend = AzureBlobBackend(blob_spec(azurite_account, name, {"kind": "anonymous"}))
    backend.check_access("heart-disease-uci/data")
    assert [i.path for i in backend.iter_files("heart-disease-uci")] == ["heart-disease-uci/data/heart.csv"]
    assert read(backend, "heart-disease-uci/data/heart.csv") == b"age\n63\n"


def test_anonymous_on_a_private_container_is_an_auth_error(azurite_account, container):
    backend = AzureBlobBackend(blob_spec(azurite_account, container, {"kind": "anonymous"}))
    with pytest.raises(StorageAuthError, match="not public"):
        backend.check_access()


def test_wrong_account_key_fails_fast_without_showing_the_key(azurite_account, container):
    wrong = "V3Jvbmcga2V5IGZvciB0ZXN0czogbm90IHRoZSByZWFsIG9uZQ==" * 2
    backend = AzureBlobBackend(blob_spec(azurite_account, container,
                                         {"kind": "account_key", "account_key": wrong},
                                         datastore_name="trainingstore"))
    started = time.monotonic()
    with pytest.raises(StorageAuthError) as info:
        backend.check_access()
    assert time.monotonic() - started < 5
    message = str(info.value)
    assert azurite_account["name"] in message and container in message
    assert "account_key" in message and "trainingstore" in message and "account key" in message
    assert wrong not in message and wrong[:20] not in message


def test_expired_sas_is_an_auth_error(azurite_account, container):
    sas = container_sas(azurite_account, container, expired=True)
    backend = AzureBlobBackend(blob_spec(azurite_account, container, {"kind": "sas", "sas_token": sas}))
    for call in (backend.check_access, lambda: backend.check_access("some/file.csv"),
                 lambda: list(backend.iter_files(""))):
        with pytest.raises(StorageAuthError) as info:
            call()
        message = str(info.value)
        assert "expired" in message and "'sas'" in message and azurite_account["name"] in message
        assert sas not in message and "sig=" + sas.split("sig=")[1][:8] not in message


def test_read_only_sas_cannot_write(azurite_account, container, blob_service):
    blob_service.get_container_client(container).upload_blob("in.csv", b"1")
    sas = container_sas(azurite_account, container, read=True, list=True)
    backend = AzureBlobBackend(blob_spec(azurite_account, container, {"kind": "sas", "sas_token": sas}))
    assert read(backend, "in.csv") == b"1"
    with pytest.raises(StorageAuthError, match="permission"):
        write(backend, "out.csv", b"2")


def test_missing_container_is_not_found(azurite_account):
    cred = {"kind": "account_key", "account_key": azurite_account["key"]}
    backend = AzureBlobBackend(blob_spec(azurite_account, "no-such-container", cred))
    for call in (backend.check_access, lambda: backend.check_access("a/b.csv"),
                 lambda: list(backend.iter_files("a"))):
        with pytest.raises(StorageNotFoundError,
                           match="container 'no-such-container' does not exist in .*devstoreaccount1"):
            call()
    assert not backend.is_dir("") and not backend.is_file("a/b.csv")


def test_token_credential_over_https(azurite_account, azurite_tls_blob_url, ca_bundle, blob_service):
    from azure.core.credentials import AzureNamedKeyCredential
    from azure.storage.blob import BlobServiceClient

    from .tokens import StaticTokenCredential

    admin = BlobServiceClient(azurite_tls_blob_url, connection_verify=ca_bundle,
                              credential=AzureNamedKeyCredential(azurite_account["name"], azurite_account["key"]))
    name = f"tok{int(time.time() * 1000)}"
    admin.create_container(name)
    try:
        account = {**azurite_account, "url": azurite_tls_blob_url}
        good = AzureBlobBackend(blob_spec(account, name, {"kind": "token_credential",
                                                          "credential": StaticTokenCredential()}))
        write(good, "t/x.txt", b"by token")
        assert read(good, "t/x.txt") == b"by token"
        expired = AzureBlobBackend(blob_spec(account, name, {
            "kind": "token_credential", "credential": StaticTokenCredential(lifetime=-3600)}))
        with pytest.raises(StorageAuthError, match="token_credential"):
            expired.check_access()
    finally:
        admin.delete_container(name)


def test_bearer_credentials_refused_over_plain_http(azurite_account):
    for cred in ({"kind": "default_identity"}, None,
                 {"kind": "service_principal", "tenant_id": "t", "client_id": "c", "client_secret": "s"}):
        with pytest.raises(ValidationError, match="plain HTTP"):
            AzureBlobBackend(blob_spec(azurite_account, "c1", cred))


# -- ADLS Gen2 directories ---------------------------------------------------------------
def test_gen2_directory_blobs_are_not_files(azurite_account, container, blob_service, tmp_path):
    """HNS accounts list directories as zero-byte blobs with hdi_isfolder=true."""
    client = blob_service.get_container_client(container)
    for name in ("raw", "raw/2024"):
        client.upload_blob(name, b"", metadata={"hdi_isfolder": "true"})
    client.upload_blob("raw/2024/a.csv", b"1")
    client.upload_blob("raw/empty/", b"")
    cred = {"kind": "account_key", "account_key": azurite_account["key"]}
    backend = AdlsGen2Backend(blob_spec(azurite_account, container, cred, kind="azure_data_lake_gen2"))
    assert [i.path for i in backend.iter_files("")] == ["raw/2024/a.csv"]
    assert not backend.is_file("raw") and backend.is_dir("raw") and backend.is_dir("raw/2024")
    with pytest.raises(StorageNotFoundError, match="folder"):
        backend.open_read("raw/2024")
    with pytest.raises(StorageNotFoundError, match="folder"):
        backend.get_file("raw/2024", str(tmp_path / "x"))
    with pytest.raises(StorageNotFoundError, match="does not exist"):
        backend.get_file("raw/2024/missing.csv", str(tmp_path / "y"))
    backend.get_file("raw/2024/a.csv", str(tmp_path / "a.csv"))
    assert (tmp_path / "a.csv").read_bytes() == b"1"
    backend.delete("raw")
    assert [b.name for b in client.list_blobs()] == []


# -- laziness, retries, processes --------------------------------------------------------
def test_listing_fetches_one_page_at_a_time(azurite_account, container, monkeypatch):
    cred = {"kind": "account_key", "account_key": azurite_account["key"]}
    backend = small_pages(AzureBlobBackend(blob_spec(azurite_account, container, cred)))
    for i in range(7):
        write(backend, f"many/{i:03d}.csv", b"x")
    calls = []
    original = backend._list_page
    monkeypatch.setattr(backend, "_list_page", lambda *a: calls.append(a) or original(*a))
    it = backend.iter_files("many")
    assert next(it).path == "many/000.csv" and len(calls) == 1
    assert len(list(it)) == 6 and len(calls) == 4


def test_closed_port_is_transient_and_quick(azurite_account):
    cred = {"kind": "account_key", "account_key": azurite_account["key"]}
    account = {**azurite_account, "url": "http://127.0.0.1:9/devstoreaccount1"}
    backend = AzureBlobBackend(blob_spec(account, "c1", cred, retries=0))
    started = time.monotonic()
    with pytest.raises(TransientStorageError, match=r"127\.0\.0\.1:9.*network") as info:
        backend.check_access()
    assert time.monotonic() - started < 10 and "'account_key'" in str(info.value)


def _use_in_child(backend, queue):
    try:
        write(backend, "child.txt", b"from the child")
        queue.put(sorted(i.path for i in backend.iter_files("")))
    except BaseException as exc:  # pragma: no cover - reported to the parent
        queue.put(repr(exc))


def test_backend_used_before_a_fork_works_in_the_child(azurite_account, container):
    import multiprocessing

    cred = {"kind": "account_key", "account_key": azurite_account["key"]}
    backend = AzureBlobBackend(blob_spec(azurite_account, container, cred))
    write(backend, "parent.txt", b"p")  # the parent's event loop and client now exist
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=_use_in_child, args=(backend, queue))
    child.start()
    result = queue.get(timeout=60)
    child.join(timeout=60)
    assert result == ["child.txt", "parent.txt"] and child.exitcode == 0
    assert read(backend, "child.txt") == b"from the child"


def test_backend_pickles_without_its_clients(azurite_account, container):
    import pickle

    cred = {"kind": "account_key", "account_key": azurite_account["key"]}
    backend = AzureBlobBackend(blob_spec(azurite_account, container, cred))
    write(backend, "p.txt", b"pickled")
    clone = pickle.loads(pickle.dumps(backend))
    assert read(clone, "p.txt") == b"pickled"
