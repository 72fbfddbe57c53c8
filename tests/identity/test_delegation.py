"""Workers get short-lived, read-only credentials, never a data store's key (Security: secrets)."""

from __future__ import annotations

from urllib.parse import parse_qs

import pytest

from batchpoint.identity.delegation import WorkerCredentials, delegated_kind
from batchpoint.storage.base import StorageSpec

KEY = "a2V5LWtleS1rZXkta2V5LWtleS1rZXkta2V5LWtleS1rZXkta2V5LWtleS1rZXk="
BLOB = {"account_name": "acct", "container_name": "data"}


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def _sas_fields(spec: StorageSpec) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(spec.credential["sas_token"]).items()}


def test_account_key_becomes_a_read_list_container_sas():
    clock = Clock()
    creds = WorkerCredentials({"in": StorageSpec("azure_blob", BLOB, {"kind": "account_key", "account_key": KEY})},
                              ttl_s=600, clock=clock)
    version, sources = creds.current()
    spec = sources["in"]
    assert version == 1 and spec.credential["kind"] == "sas" and KEY not in repr(spec.credential)
    fields = _sas_fields(spec)
    assert fields["sp"] == "rl" and fields["sr"] == "c"
    assert fields["se"].startswith("2027-01-15T08:")  # 1_800_000_000 + 600 s
    assert spec.config == BLOB


def test_renewed_after_two_thirds_of_the_life():
    clock = Clock()
    creds = WorkerCredentials({"in": StorageSpec("azure_data_lake_gen2", {"account_name": "acct", "filesystem": "fs"},
                                                 {"kind": "account_key", "account_key": KEY})}, ttl_s=600, clock=clock)
    first = creds.current()
    clock.now += 399
    assert creds.current() == first
    clock.now += 2
    version, sources = creds.current()
    assert version == 2 and sources["in"].credential != first[1]["in"].credential


def test_connection_string_key_keeps_its_endpoint():
    conn = ("DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=" + KEY +
            ";BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1;")
    spec = StorageSpec("azure_blob", {"container_name": "data"}, {"kind": "connection_string", "connection_string": conn})
    _, sources = WorkerCredentials({"in": spec}).current()
    out = sources["in"]
    assert out.credential["kind"] == "sas" and KEY not in repr(out)
    assert out.config["blob_endpoint_url"] == "http://127.0.0.1:10000/devstoreaccount1"
    assert out.config["account_name"] == "devstoreaccount1"


def test_identities_become_access_tokens_without_their_secret():
    class Fake:
        def get_token(self, *scopes, **kwargs):
            from azure.core.credentials import AccessToken

            assert scopes == ("https://storage.azure.com/.default",)
            return AccessToken("tok", 1_800_003_600)

    clock = Clock()
    spec = StorageSpec("azure_blob", BLOB, {"kind": "token_credential", "credential": Fake()})
    creds = WorkerCredentials({"in": spec}, ttl_s=7200, clock=clock)
    _, sources = creds.current()
    assert sources["in"].credential == {"kind": "access_token", "token": "tok", "expires_on": 1_800_003_600}
    clock.now += 2399  # renewed at two thirds of the token's own life, not of the ttl
    assert creds.current()[0] == 1
    clock.now += 2
    assert creds.current()[0] == 2


@pytest.mark.parametrize("spec, kind", [
    (StorageSpec("azure_blob", BLOB, {"kind": "sas", "sas_token": "sv=1&sig=x"}), "sas"),
    (StorageSpec("azure_blob", BLOB, {"kind": "anonymous"}), "anonymous"),
    (StorageSpec("local", {"path": "/tmp"}, None), "none"),
    (StorageSpec("s3", {"bucket": "b"}, {"kind": "aws_keys", "aws_access_key_id": "a",
                                         "aws_secret_access_key": "s"}), "aws_keys"),
    (StorageSpec("azure_blob", BLOB, {"kind": "connection_string",
                                      "connection_string": "BlobEndpoint=https://x;SharedAccessSignature=sv=1"}),
     "connection_string"),
])
def test_other_credentials_pass_unchanged(spec, kind):
    assert delegated_kind(spec) == kind
    assert WorkerCredentials({"in": spec}).current()[1]["in"] is spec


def test_an_identity_that_cannot_get_a_token_is_a_clear_auth_error():
    from batchpoint.exceptions import StorageAuthError

    class Broken:
        def get_token(self, *scopes, **kwargs):
            raise RuntimeError("ManagedIdentityCredential authentication unavailable\nmore")

    spec = StorageSpec("azure_blob", BLOB, {"kind": "token_credential", "credential": Broken()})
    with pytest.raises(StorageAuthError, match="could not get a token .* 'token_credential': ManagedIdentity"):
        WorkerCredentials({"in": spec}).current()


def test_worker_sas_reads_and_lists_but_cannot_write(azurite_connection_string, azurite_blob_url):
    from azure.storage.blob import BlobServiceClient

    from batchpoint.exceptions import StorageAuthError
    from batchpoint.storage.registry import open_backend
    from fixtures.components import AZURITE_ACCOUNT_KEY, AZURITE_ACCOUNT_NAME

    service = BlobServiceClient.from_connection_string(azurite_connection_string)
    try:
        service.create_container("delegation")
    except Exception:  # noqa: BLE001 - left by an earlier run
        pass
    service.get_blob_client("delegation", "d/a.csv").upload_blob(b"x\n1\n", overwrite=True)
    spec = StorageSpec("azure_blob", {"account_name": AZURITE_ACCOUNT_NAME, "container_name": "delegation",
                                      "blob_endpoint_url": azurite_blob_url},
                       {"kind": "account_key", "account_key": AZURITE_ACCOUNT_KEY})
    worker = open_backend(WorkerCredentials({"in": spec}, ttl_s=300).current()[1]["in"])
    assert [f.path for f in worker.iter_files("d")] == ["d/a.csv"]
    with worker.open_read("d/a.csv") as handle:
        assert handle.read() == b"x\n1\n"
    with pytest.raises(StorageAuthError):
        with worker.open_write("d/b.csv") as out:
            out.write(b"no")
    assert not service.get_blob_client("delegation", "d/b.csv").exists()
