"""Issue 18 §3: data store account, container, file-system, store and bucket names follow Azure's
and S3's naming rules, checked before any connection (``workspace/service.py``).

Before the fix ``PUT /datastores/x`` with ``account_name: "x@127.0.0.2:18061/"`` and a SAS made the
server connect to 127.0.0.2:18061 (the name became the URL's user and host) and answer with the
TLS error: a port-probe oracle.
"""

from __future__ import annotations

import pytest

from fixtures.inproc import workspace
from storage.test_storage_traffic import Listener

SAS = {"sas_token": "sv=2024-01-01&sp=rl&sig=abc"}


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    with workspace(tmp_path_factory.mktemp("names")) as inproc:
        yield inproc


@pytest.fixture
def internal():
    listener = Listener("127.0.0.2")
    yield listener
    listener.close()


def test_report_account_name_with_a_host_is_refused_before_any_connection(ws, internal):
    body = {"type": "azure_blob", "account_name": f"x@127.0.0.2:{internal.port}/", "container_name": "data",
            "credentials": SAS}
    response = ws.owner.put("/datastores/probe", json=body)
    assert response.status_code == 400, response.text
    message = response.json()["error"]["message"]
    assert "account_name" in message and "3 to 24 characters, lowercase letters and digits only" in message
    assert internal.received == []
    assert ws.owner.get("/datastores/probe").status_code == 404


@pytest.mark.parametrize(("body", "field", "rule"), [
    ({"type": "azure_blob", "account_name": "ab", "container_name": "data"}, "account_name", "3 to 24"),
    ({"type": "azure_blob", "account_name": "MyAccount", "container_name": "data"}, "account_name", "lowercase"),
    ({"type": "azure_blob", "account_name": "acct1", "container_name": "Data"}, "container_name", "3 to 63"),
    ({"type": "azure_blob", "account_name": "acct1", "container_name": "a--b"}, "container_name", "single hyphens"),
    ({"type": "azure_blob", "account_name": "acct1", "container_name": "x/../y"}, "container_name", "3 to 63"),
    ({"type": "azure_data_lake_gen2", "account_name": "acct1", "filesystem": "fs@evil"}, "filesystem", "3 to 63"),
    ({"type": "azure_data_lake_gen1", "store_name": "store.example.com"}, "store_name", "3 to 24"),
    ({"type": "s3", "bucket": "127.0.0.1"}, "bucket", "not an IP address"),
    ({"type": "s3", "bucket": "b@127.0.0.2"}, "bucket", "3 to 63"),
    ({"type": "s3", "bucket": "a..b"}, "bucket", "no '..'"),
    ({"type": "azure_blob", "account_name": "acct1", "container_name": "data",
      "credentials": {"connection_string": "AccountName=x@127.0.0.2;AccountKey=a2V5;EndpointSuffix=core.windows.net"}},
     "AccountName", "3 to 24"),
])
def test_names_follow_the_naming_rules(ws, internal, body, field, rule):
    response = ws.owner.put("/datastores/badname", json={"credentials": SAS, **body})
    assert response.status_code == 400, response.text
    message = response.json()["error"]["message"]
    assert field in message and rule in message, message
    assert internal.received == []


def test_valid_names_pass_the_name_check(ws):
    """Names by the rules get past the check (the store is then refused for its private host only)."""
    body = {"type": "azure_blob", "account_name": "devstoreaccount1", "container_name": "my-container-1",
            "blob_endpoint_url": "http://127.0.0.2:1/devstoreaccount1", "credentials": SAS}
    response = ws.owner.put("/datastores/goodnames", json=body)
    assert response.status_code == 400 and response.json()["error"]["code"] == "unsafe_input", response.text
