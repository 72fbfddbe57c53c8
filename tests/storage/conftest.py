"""Fixtures for the storage tests: fresh Azurite containers and moto buckets.

Where Azurite and moto run comes from the session fixtures of ``tests/fixtures/components.py``
(``azurite_connection_string``, ``azurite_blob_url``, ``azurite_tls_blob_url``, ``s3_endpoint``),
which read the ``BATCHPOINT_TEST_*`` variables that ``scripts/test.sh`` exports and fail loudly
when they are missing: these tests never pass by testing nothing.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from batchpoint.storage.azure_auth import parse_connection_string
from batchpoint.storage.base import StorageSpec

S3_KEYS = {"kind": "aws_keys", "aws_access_key_id": "testing", "aws_secret_access_key": "testing"}


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="session")
def azurite_account(azurite_connection_string: str, azurite_blob_url: str) -> dict[str, str]:
    parts = parse_connection_string(azurite_connection_string)
    return {"name": parts["AccountName"], "key": parts["AccountKey"], "url": azurite_blob_url}


@pytest.fixture(scope="session")
def blob_service(azurite_connection_string: str) -> Any:
    from azure.storage.blob import BlobServiceClient

    return BlobServiceClient.from_connection_string(azurite_connection_string)


@pytest.fixture
def new_container(blob_service: Any) -> Iterator[Callable[..., str]]:
    """``new_container(public_access=None) -> name``; removed after the test."""
    made: list[str] = []

    def make(public_access: str | None = None) -> str:
        name = unique("bp")
        blob_service.create_container(name, public_access=public_access)
        made.append(name)
        return name

    yield make
    for name in made:
        blob_service.delete_container(name)


@pytest.fixture
def container(new_container: Callable[..., str]) -> str:
    return new_container()


def blob_spec(account: dict[str, str], container: str, credential: dict | None,
              kind: str = "azure_blob", **config: Any) -> StorageSpec:
    key = "filesystem" if kind == "azure_data_lake_gen2" else "container_name"
    base = {"account_name": account["name"], key: container, "blob_endpoint_url": account["url"]}
    return StorageSpec(kind, {**base, **config}, credential)


@pytest.fixture(scope="session")
def s3_admin(s3_endpoint: str) -> Any:
    import boto3

    return boto3.client(
        "s3", endpoint_url=s3_endpoint, region_name="us-east-1",
        aws_access_key_id="testing", aws_secret_access_key="testing",
    )


@pytest.fixture
def bucket(s3_admin: Any) -> Iterator[str]:
    name = unique("bp")
    s3_admin.create_bucket(Bucket=name)
    yield name
    listed = s3_admin.list_objects_v2(Bucket=name).get("Contents", [])
    if listed:
        s3_admin.delete_objects(Bucket=name, Delete={"Objects": [{"Key": o["Key"]} for o in listed]})
    s3_admin.delete_bucket(Bucket=name)
