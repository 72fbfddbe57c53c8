"""Smoke tests: each real component that scripts/test.sh starts is up and usable."""

from __future__ import annotations

import datetime as dt
import time
import uuid

import pytest

from fixtures.components import (
    AZURITE_ACCOUNT_KEY,
    AZURITE_ACCOUNT_NAME,
    S3_ACCESS_KEY_ID,
    S3_REGION,
    S3_SECRET_ACCESS_KEY,
)


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


@pytest.mark.azurite
def test_azurite_container_roundtrip(azurite_connection_string: str, azurite_blob_url: str) -> None:
    from azure.storage.blob import BlobServiceClient

    assert azurite_blob_url.startswith("http://127.0.0.1:")
    assert azurite_blob_url in azurite_connection_string
    name = _name("smoke")
    with BlobServiceClient.from_connection_string(azurite_connection_string) as service:
        container = service.create_container(name)
        container.upload_blob("hello.txt", b"hello azurite")
        assert name in [c.name for c in service.list_containers()]
        assert container.download_blob("hello.txt").readall() == b"hello azurite"
        service.delete_container(name)


@pytest.mark.azurite
def test_azurite_tls_with_account_key(azurite_tls_blob_url: str, ca_bundle: str) -> None:
    import os

    from azure.storage.blob import BlobServiceClient

    assert azurite_tls_blob_url.startswith("https://127.0.0.1:")
    # The bundle must be what Python's TLS clients use (set before Python started).
    assert os.environ.get("REQUESTS_CA_BUNDLE") == ca_bundle
    assert os.environ.get("SSL_CERT_FILE") == ca_bundle
    credential = {"account_name": AZURITE_ACCOUNT_NAME, "account_key": AZURITE_ACCOUNT_KEY}
    name = _name("tls")
    with BlobServiceClient(azurite_tls_blob_url, credential=credential) as service:
        service.create_container(name)
        assert name in [c.name for c in service.list_containers()]
        service.delete_container(name)


class _FakeAadCredential:
    """A TokenCredential handing out an unsigned AAD-shaped token, which Azurite's
    ``--oauth basic`` accepts (it checks audience, issuer and expiry, not the signature)."""

    def get_token(self, *scopes: str, **kwargs: object):
        import jwt
        from azure.core.credentials import AccessToken

        now = int(time.time())
        claims = {
            "aud": "https://storage.azure.com",
            "iss": "https://sts.windows.net/ab1f708d-50f6-404c-a006-d71b2ac7a606/",
            "iat": now - 60,
            "nbf": now - 60,
            "exp": now + 3600,
            "oid": str(uuid.uuid4()),
            "tid": "ab1f708d-50f6-404c-a006-d71b2ac7a606",
        }
        token = jwt.encode(claims, "not-checked-by-azurite-0123456789abcdef", algorithm="HS256")
        return AccessToken(token, now + 3600)


@pytest.mark.azurite
def test_azurite_tls_with_bearer_token(azurite_tls_blob_url: str) -> None:
    from azure.core.exceptions import ClientAuthenticationError, HttpResponseError
    from azure.storage.blob import BlobServiceClient

    name = _name("oauth")
    with BlobServiceClient(azurite_tls_blob_url, credential=_FakeAadCredential()) as service:
        service.create_container(name)
        assert name in [c.name for c in service.list_containers()]
        service.delete_container(name)

    class _WrongAudience(_FakeAadCredential):
        def get_token(self, *scopes: str, **kwargs: object):
            import jwt
            from azure.core.credentials import AccessToken

            now = int(time.time())
            claims = {"aud": "https://example.invalid", "iss": "https://sts.windows.net/x/",
                      "iat": now, "nbf": now, "exp": now + 3600}
            return AccessToken(jwt.encode(claims, "k" * 32, algorithm="HS256"), now + 3600)

    with BlobServiceClient(azurite_tls_blob_url, credential=_WrongAudience()) as service:
        with pytest.raises((ClientAuthenticationError, HttpResponseError)):
            service.create_container(_name("denied"))


@pytest.mark.moto
def test_moto_s3_bucket(s3_endpoint: str) -> None:
    import boto3

    assert s3_endpoint.startswith("http://127.0.0.1:")
    s3 = boto3.client(
        "s3",
        endpoint_url=s3_endpoint,
        aws_access_key_id=S3_ACCESS_KEY_ID,
        aws_secret_access_key=S3_SECRET_ACCESS_KEY,
        region_name=S3_REGION,
    )
    bucket = _name("smoke")
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="a/b.txt", Body=b"hello moto")
    assert bucket in [b["Name"] for b in s3.list_buckets()["Buckets"]]
    assert s3.get_object(Bucket=bucket, Key="a/b.txt")["Body"].read() == b"hello moto"
    s3.close()


@pytest.mark.postgres
def test_postgres_select_one(postgres_url: str) -> None:
    import sqlalchemy as sa

    assert postgres_url.startswith("postgresql+psycopg://")
    assert postgres_url.endswith("/batchpoint_test")
    engine = sa.create_engine(postgres_url)
    try:
        with engine.connect() as conn:
            assert conn.execute(sa.text("select 1")).scalar() == 1
            assert conn.execute(sa.text("select current_database()")).scalar() == "batchpoint_test"
            server_time = conn.execute(sa.text("select now()")).scalar()
            assert isinstance(server_time, dt.datetime)
    finally:
        engine.dispose()
