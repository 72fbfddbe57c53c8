"""The S3 backend against a real moto server."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from batchpoint.exceptions import (
    StorageAuthError, StorageNotFoundError, TransientStorageError, ValidationError,
)
from batchpoint.storage.base import StorageSpec
from batchpoint.storage.s3 import S3Backend

from .conformance import BackendConformance, read, write
from .conftest import S3_KEYS

pytestmark = pytest.mark.moto


def s3_backend(endpoint: str, bucket: str, credential=S3_KEYS, **config) -> S3Backend:
    spec = StorageSpec("s3", {"bucket": bucket, "endpoint_url": endpoint, "region": "us-east-1", **config},
                       credential)
    return S3Backend(spec)


class TestS3Conformance(BackendConformance):
    @pytest.fixture
    def backend(self, s3_endpoint, bucket):
        backend = s3_backend(s3_endpoint, bucket)
        backend.page_size = 2
        return backend


def test_missing_bucket_is_not_found(s3_endpoint):
    backend = s3_backend(s3_endpoint, "no-such-bucket-bp")
    for call in (backend.check_access, lambda: backend.check_access("a/b.csv"),
                 lambda: list(backend.iter_files(""))):
        with pytest.raises(StorageNotFoundError, match="bucket 'no-such-bucket-bp' does not exist"):
            call()


def test_listing_fetches_one_page_at_a_time(s3_endpoint, bucket, monkeypatch):
    backend = s3_backend(s3_endpoint, bucket)
    backend.page_size = 2
    for i in range(5):
        write(backend, f"p/{i}.csv", b"x")
    calls = []
    original = backend._list_page
    monkeypatch.setattr(backend, "_list_page", lambda *a: calls.append(a) or original(*a))
    it = backend.iter_files("p")
    assert next(it).path == "p/0.csv" and len(calls) == 1
    assert len(list(it)) == 4 and len(calls) == 3


def test_closed_port_is_transient_and_quick():
    backend = s3_backend("http://127.0.0.1:9", "b1", retries=0)
    started = time.monotonic()
    with pytest.raises(TransientStorageError, match=r"127\.0\.0\.1:9"):
        backend.check_access()
    assert time.monotonic() - started < 10


def test_config_and_credential_validation():
    with pytest.raises(ValidationError, match="'bucket'"):
        S3Backend(StorageSpec("s3", {}, S3_KEYS))
    with pytest.raises(ValidationError, match="valid kinds: aws_keys, anonymous, default_identity"):
        S3Backend(StorageSpec("s3", {"bucket": "b"}, {"kind": "account_key", "account_key": "k"}))
    with pytest.raises(ValidationError, match="aws_secret_access_key") as info:
        S3Backend(StorageSpec("s3", {"bucket": "b"}, {"kind": "aws_keys", "aws_access_key_id": "AKIA1"}))
    assert "AKIA1" not in str(info.value)


# -- a moto server of its own that checks credentials (the shared one accepts any) ------------
def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def strict_s3():
    """A moto server enforcing IAM, with one bucket and one user allowed to use it."""
    import boto3

    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    try:
        _wait_for(endpoint + "/moto-api/")
        admin = dict(endpoint_url=endpoint, region_name="us-east-1",
                     aws_access_key_id="admin", aws_secret_access_key="admin")
        boto3.client("s3", **admin).create_bucket(Bucket="guarded")
        iam = boto3.client("iam", **admin)
        iam.create_user(UserName="scorer")
        policy = {"Version": "2012-10-17",
                  "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}
        iam.put_user_policy(UserName="scorer", PolicyName="all", PolicyDocument=json.dumps(policy))
        key = iam.create_access_key(UserName="scorer")["AccessKey"]
        request = urllib.request.Request(endpoint + "/moto-api/reset-auth", data=b"0", method="POST",
                                         headers={"Content-Type": "text/plain"})
        urllib.request.urlopen(request).close()
        yield endpoint, key["AccessKeyId"], key["SecretAccessKey"]
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _wait_for(url: str) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(url).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def test_valid_keys_pass_a_server_that_checks_them(strict_s3):
    endpoint, key_id, secret = strict_s3
    cred = {"kind": "aws_keys", "aws_access_key_id": key_id, "aws_secret_access_key": secret}
    backend = s3_backend(endpoint, "guarded", cred)
    write(backend, "in/x.csv", b"ok")
    backend.check_access("in")
    assert read(backend, "in/x.csv") == b"ok"


@pytest.mark.parametrize("which", ["unknown key id", "wrong secret"])
def test_bad_keys_are_auth_errors_without_the_secret(strict_s3, which):
    endpoint, key_id, secret = strict_s3
    bad_secret = "Wr0ngSecretValueForTheTest0123456789abcd"
    cred = {"kind": "aws_keys", "aws_access_key_id": "AKIAUNKNOWN000000000" if which == "unknown key id"
            else key_id, "aws_secret_access_key": bad_secret}
    backend = s3_backend(endpoint, "guarded", cred, datastore_name="s3store")
    started = time.monotonic()
    with pytest.raises(StorageAuthError) as info:
        backend.check_access()
    assert time.monotonic() - started < 5
    message = str(info.value)
    assert "guarded" in message and "aws_keys" in message and "s3store" in message
    assert bad_secret not in message and secret not in message


def test_anonymous_reads_a_public_bucket(s3_admin, s3_endpoint):
    name = f"bp-public-{int(time.time() * 1000)}"
    s3_admin.create_bucket(Bucket=name, ACL="public-read")
    try:
        s3_admin.put_object(Bucket=name, Key="data/heart.csv", Body=b"age\n63\n", ACL="public-read")
        backend = s3_backend(s3_endpoint, name, {"kind": "anonymous"})
        backend.check_access("data")
        assert [i.path for i in backend.iter_files("data")] == ["data/heart.csv"]
        assert read(backend, "data/heart.csv") == b"age\n63\n"
    finally:
        s3_admin.delete_object(Bucket=name, Key="data/heart.csv")
        s3_admin.delete_bucket(Bucket=name)


def test_console_folder_objects_are_not_files(s3_endpoint, s3_admin, bucket):
    s3_admin.put_object(Bucket=bucket, Key="in/", Body=b"")
    s3_admin.put_object(Bucket=bucket, Key="in/sub/", Body=b"")
    s3_admin.put_object(Bucket=bucket, Key="in/sub/x.csv", Body=b"1")
    backend = s3_backend(s3_endpoint, bucket)
    assert [i.path for i in backend.iter_files("")] == ["in/sub/x.csv"]
    assert backend.is_dir("in") and not backend.is_file("in")
    backend.delete("in")
    assert s3_admin.list_objects_v2(Bucket=bucket)["KeyCount"] == 0


def test_backend_pickles_without_its_clients(s3_endpoint, bucket):
    import pickle

    backend = s3_backend(s3_endpoint, bucket)
    write(backend, "p.txt", b"pickled")
    assert read(pickle.loads(pickle.dumps(backend)), "p.txt") == b"pickled"


def test_folder_listable_but_objects_private_fails_check_access(s3_endpoint, s3_admin, bucket):
    """s3:ListBucket without s3:GetObject: refused by check_access (before a job), not per mini-batch."""
    s3_admin.put_object(Bucket=bucket, Key="private/a.csv", Body=b"1")
    s3_admin.put_object(Bucket=bucket, Key="public/a.csv", Body=b"1", ACL="public-read")
    anonymous = s3_backend(s3_endpoint, bucket, {"kind": "anonymous"})
    anonymous.check_access("public")
    anonymous.check_access()  # the root is only listed
    with pytest.raises(StorageAuthError, match="'private/a.csv' in S3 bucket"):
        anonymous.check_access("private")


def test_aws_profile_missing_on_the_server_is_named(s3_endpoint, bucket, tmp_path, monkeypatch):
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    backend = s3_backend(s3_endpoint, bucket, {"kind": "aws_profile", "profile": "no-such-profile"})
    with pytest.raises(StorageAuthError, match="AWS profile 'no-such-profile' is not configured on the server"):
        backend.check_access()
    (tmp_path / "credentials").write_text(
        "[no-such-profile]\naws_access_key_id = testing\naws_secret_access_key = testing\n")
    s3_backend(s3_endpoint, bucket, {"kind": "aws_profile", "profile": "no-such-profile"}).check_access()
