"""Azure configuration and credential handling that needs no server."""

from __future__ import annotations

import asyncio

import pytest
from azure.core.credentials import AccessToken, AzureNamedKeyCredential, AzureSasCredential

from batchpoint.exceptions import BackendNotInstalledError, ValidationError
from batchpoint.storage import azure_auth
from batchpoint.storage.adls_gen1 import AdlsGen1Backend
from batchpoint.storage.azure_blob import AdlsGen2Backend, AzureBlobBackend
from batchpoint.storage.base import StorageSpec

KEY = {"kind": "account_key", "account_key": "a2V5"}


class SyncCred:
    def get_token(self, *scopes, **kwargs):
        return AccessToken("tok-" + scopes[0], 4102444800)


class AsyncCred:
    async def get_token(self, *scopes, **kwargs):
        return AccessToken("async", 4102444800)


def test_account_urls():
    assert azure_auth.account_url({}, "acct") == "https://acct.blob.core.windows.net"
    assert azure_auth.account_url({"endpoint": "core.chinacloudapi.cn", "protocol": "http"}, "a") == (
        "http://a.blob.core.chinacloudapi.cn")
    assert azure_auth.account_url({"blob_endpoint_url": "http://127.0.0.1:1/dev/"}, "dev") == (
        "http://127.0.0.1:1/dev")
    with pytest.raises(ValidationError, match="protocol"):
        azure_auth.account_url({"protocol": "ftp"}, "a")
    with pytest.raises(ValidationError, match="blob_endpoint_url"):
        azure_auth.account_url({"blob_endpoint_url": "127.0.0.1:1"}, "a")


def test_credential_objects_by_kind():
    named = azure_auth.async_credential("account_key", KEY, "acct", "x")
    assert isinstance(named, AzureNamedKeyCredential) and named.named_key.name == "acct"
    sas = azure_auth.async_credential("sas", {"kind": "sas", "sas_token": "?sv=1&sig=2"}, "a", "x")
    assert isinstance(sas, AzureSasCredential) and sas.signature == "sv=1&sig=2"
    assert azure_auth.async_credential("anonymous", {"kind": "anonymous"}, "a", "x") is None


def test_identity_credentials_are_the_async_variants():
    from azure.identity.aio import ClientSecretCredential, DefaultAzureCredential

    principal = {"kind": "service_principal", "tenant_id": "t", "client_id": "c",
                 "client_secret": "s", "authority_url": "https://login.microsoftonline.us"}
    made = [azure_auth.async_credential("service_principal", principal, "a", "x"),
            azure_auth.async_credential("default_identity", None, "a", "x")]
    assert isinstance(made[0], ClientSecretCredential) and isinstance(made[1], DefaultAzureCredential)

    async def close_all():
        for cred in made:
            await cred.close()

    asyncio.run(close_all())


def test_token_credential_objects_are_adapted():
    adapted = azure_auth.async_credential("token_credential", {"kind": "token_credential",
                                                               "credential": SyncCred()}, "a", "x")
    assert asyncio.run(adapted.get_token("https://storage.azure.com/.default")).token.startswith("tok-")
    native = AsyncCred()
    assert azure_auth.async_credential("token_credential", {"kind": "token_credential",
                                                            "credential": native}, "a", "x") is native
    with pytest.raises(ValidationError, match="get_token"):
        azure_auth.async_credential("token_credential", {"kind": "token_credential"}, "a", "x")


def test_blob_config_validation_never_shows_secrets():
    with pytest.raises(ValidationError, match="'container_name'"):
        AzureBlobBackend(StorageSpec("azure_blob", {"account_name": "a"}, KEY))
    with pytest.raises(ValidationError, match="'filesystem'"):
        AdlsGen2Backend(StorageSpec("azure_data_lake_gen2", {"account_name": "a", "container_name": "c"}, KEY))
    with pytest.raises(ValidationError, match="'account_name'"):
        AzureBlobBackend(StorageSpec("azure_blob", {"container_name": "c"}, KEY))
    with pytest.raises(ValidationError, match="valid kinds: account_key, sas"):
        AzureBlobBackend(StorageSpec("azure_blob", {"account_name": "a", "container_name": "c"},
                                     {"kind": "aws_keys"}))
    principal = {"kind": "service_principal", "tenant_id": "tenant-123", "client_id": "client-456"}
    with pytest.raises(ValidationError, match="'client_secret'") as info:
        AzureBlobBackend(StorageSpec("azure_blob", {"account_name": "a", "container_name": "c"},
                                     principal)).fs
    assert "tenant-123" not in str(info.value)


def test_urls_for_people():
    blob = AzureBlobBackend(StorageSpec("azure_blob", {"account_name": "acct", "container_name": "data"}, KEY))
    assert blob.url_for("heart/a b.csv") == "https://acct.blob.core.windows.net/data/heart/a%20b.csv"
    gen2 = AdlsGen2Backend(StorageSpec("azure_data_lake_gen2", {"account_name": "acct", "filesystem": "fs"}, KEY))
    assert gen2.url_for("x/y.csv") == "abfss://fs@acct.dfs.core.windows.net/x/y.csv"


# -- ADLS Gen1: retired and not emulated, so only what needs no server -----------------------
def gen1(credential, **config):
    return AdlsGen1Backend(StorageSpec("azure_data_lake_gen1", {"store_name": "mystore", **config}, credential))


def test_gen1_config_validation():
    with pytest.raises(ValidationError, match="'store_name'"):
        AdlsGen1Backend(StorageSpec("azure_data_lake_gen1", {}, None))
    with pytest.raises(ValidationError, match="Entra tokens only.*not 'account_key'"):
        gen1(KEY)
    with pytest.raises(ValidationError, match="Entra tokens only.*not 'sas'"):
        gen1({"kind": "sas", "sas_token": "sv=1&sig=zz"})


def test_gen1_missing_credential_fields_are_named_not_shown():
    backend = gen1({"kind": "service_principal", "tenant_id": "tenant-123", "client_id": "client-456"})
    with pytest.raises(ValidationError, match="'client_secret'") as info:
        backend.adl
    assert "tenant-123" not in str(info.value) and "client-456" not in str(info.value)


def test_gen1_builds_the_library_client_without_network():
    from azure.datalake.store.core import AzureDLFileSystem

    backend = gen1({"kind": "token_credential", "credential": SyncCred()}, datastore_name="legacy")
    assert isinstance(backend.adl, AzureDLFileSystem)
    assert backend.adl.azure.url == "https://mystore.azuredatalakestore.net/"
    assert backend.url_for("a/b.csv") == "adl://mystore.azuredatalakestore.net/a/b.csv"
    assert "legacy" in backend._where("a") and "token_credential" in backend._where("a")


def test_gen1_library_missing_gives_the_install_hint(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "azure.datalake.store", None)
    with pytest.raises(BackendNotInstalledError, match=r"batchpoint\[azure\]"):
        gen1({"kind": "token_credential", "credential": SyncCred()}).adl


def test_connection_string_names_its_account_and_endpoint():
    conn = "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=a2V5;EndpointSuffix=core.usgovcloudapi.net"
    backend = AzureBlobBackend(StorageSpec("azure_blob", {"container_name": "c"},
                                           {"kind": "connection_string", "connection_string": conn}))
    assert backend.account == "acct"
    assert backend.url_for("x.csv") == "https://acct.blob.core.usgovcloudapi.net/c/x.csv"
    assert "a2V5" not in backend._where("x.csv")
