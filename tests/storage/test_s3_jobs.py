"""Acceptance (issue 3): the heart job over data in S3 (a moto server), through a real server.

* an ``s3`` data store with AWS keys (``endpoint_url`` = moto): the job reads
  ``azureml://datastores/<store>/paths/heart`` with the store's keys and writes its predictions back
  into the bucket (``output_path`` on the same store);
* an ``s3://<bucket>/heart`` URL, with the server's ``BATCHPOINT_STORAGE__S3_ENDPOINT_URL`` pointing at
  moto: a storage URL is read with the identity of the job, here the compute's ``aws_profile``
  identity, a named profile of the server's AWS config files (``AWS_CONFIG_FILE``,
  ``AWS_SHARED_CREDENTIALS_FILE``);
* with no compute identity, public-read objects are read anonymously; private objects are refused
  at invoke (moto lists the bucket anonymously but refuses its objects, and the server checks one
  object before it accepts the input), as is a compute whose profile the server lacks. No job is
  left behind.

The shared moto server does not check signatures, so wrong keys are not refused here;
tests/storage/test_s3.py starts a moto server that checks them.
"""

from __future__ import annotations

import time

import pandas as pd
import pytest

from batchpoint import AmlCompute, AssetTypes, BatchDeployment, BatchEndpoint, Datastore, Input, Model
from batchpoint.entities import IdentityConfiguration
from batchpoint.exceptions import BatchpointError
from conftest import HEART_ROWS, HEART_UNLABELED, expected_predictions, start_server, stop_server
from fixtures.components import S3_ACCESS_KEY_ID, S3_REGION, S3_SECRET_ACCESS_KEY

pytestmark = pytest.mark.moto
ENDPOINT = "heart-s3"
BUCKET = "bp-heart-jobs"
PROFILE = "bp-moto-reader"


@pytest.fixture(scope="module")
def s3(s3_endpoint):
    import boto3

    client = boto3.client("s3", endpoint_url=s3_endpoint, region_name=S3_REGION,
                          aws_access_key_id=S3_ACCESS_KEY_ID, aws_secret_access_key=S3_SECRET_ACCESS_KEY)
    try:
        client.create_bucket(Bucket=BUCKET)
    except client.exceptions.BucketAlreadyOwnedByYou:  # an earlier run against the same moto
        pass
    for csv in sorted(HEART_UNLABELED.glob("*.csv")):
        client.put_object(Bucket=BUCKET, Key=f"heart/{csv.name}", Body=csv.read_bytes())  # private
        client.put_object(Bucket=BUCKET, Key=f"public-heart/{csv.name}", Body=csv.read_bytes(), ACL="public-read")
    return client


@pytest.fixture(scope="module")
def handle(tmp_path_factory, s3, s3_endpoint):
    home = tmp_path_factory.mktemp("bp-s3")
    aws = tmp_path_factory.mktemp("aws")
    (aws / "config").write_text(f"[profile {PROFILE}]\nregion = {S3_REGION}\n")
    (aws / "credentials").write_text(
        f"[{PROFILE}]\naws_access_key_id = {S3_ACCESS_KEY_ID}\naws_secret_access_key = {S3_SECRET_ACCESS_KEY}\n")
    env = {"BATCHPOINT_STORAGE__S3_ENDPOINT_URL": s3_endpoint,
           "AWS_CONFIG_FILE": str(aws / "config"), "AWS_SHARED_CREDENTIALS_FILE": str(aws / "credentials")}
    handle = start_server(home, env)
    yield handle
    stop_server(handle)


@pytest.fixture(scope="module")
def client(handle, heart_model_dir):
    from batchpoint import MLClient

    c = MLClient(endpoint=handle.url, home=handle.home)
    c.models.create_or_update(Model(name="heart-classifier", path=str(heart_model_dir), type="mlflow_model"))
    c.compute.begin_create_or_update(AmlCompute(
        name="aws-cpu", identity=IdentityConfiguration(type="aws_profile", profile=PROFILE))).result()
    c.compute.begin_create_or_update(AmlCompute(
        name="aws-unknown", identity=IdentityConfiguration(type="aws_profile", profile="not-on-this-server"))).result()
    c.batch_endpoints.begin_create_or_update(BatchEndpoint(name=ENDPOINT)).result()
    for name, compute in (("keys", None), ("profile", "azureml:aws-cpu"), ("noprofile", "azureml:aws-unknown")):
        c.batch_deployments.begin_create_or_update(BatchDeployment(
            name=name, endpoint_name=ENDPOINT, model="azureml:heart-classifier@latest", compute=compute,
            mini_batch_size=2, max_concurrency_per_instance=2), set_default=name == "keys").result()
    yield c
    c.close()


def _check_predictions(client, job, model_dir, tmp_path):
    job = client.jobs.wait(job.name, timeout=120)
    assert job.status == "Completed", job.status_message
    assert job.progress.rows == HEART_ROWS, job.failures[:1]
    [path] = client.jobs.download(job.name, download_path=tmp_path)
    frame = pd.read_csv(path, names=["row", "prediction", "file"])
    assert len(frame) == HEART_ROWS
    assert {(f, int(r)): int(p) for f, r, p in zip(frame.file, frame.row, frame.prediction)} == \
        expected_predictions(model_dir)
    return job


def test_s3_datastore_by_keys_in_and_out(client, s3, s3_endpoint, heart_model_dir, tmp_path):
    client.datastores.create_or_update(Datastore(
        name="s3heart", type="s3", bucket=BUCKET, endpoint_url=s3_endpoint, region=S3_REGION,
        allow_private_network=True,
        credentials={"aws_access_key_id": S3_ACCESS_KEY_ID, "aws_secret_access_key": S3_SECRET_ACCESS_KEY}))
    shown = client.datastores.get("s3heart")
    assert shown.credential_kind == "aws_keys" and "aws_secret_access_key" not in (shown.credentials or {})
    job = client.batch_endpoints.invoke(
        endpoint_name=ENDPOINT, output_path="azureml://datastores/s3heart/paths/scores/by-keys",
        input=Input(type=AssetTypes.URI_FOLDER, path="azureml://datastores/s3heart/paths/heart"))
    job = _check_predictions(client, job, heart_model_dir, tmp_path)
    seen = job.inputs["input_data"]
    assert (seen["credential_kind"], seen["credential_source"], seen["datastore"]) == \
        ("aws_keys", "datastore", "s3heart")
    key = f"scores/by-keys/{job.outputs['score'].file_name}"
    body = s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()  # the predictions file is an object in the bucket
    assert body == (tmp_path / "named-outputs" / "score" / job.outputs["score"].file_name).read_bytes()


def test_s3_url_read_with_the_compute_aws_profile(client, heart_model_dir, tmp_path):
    job = client.batch_endpoints.invoke(endpoint_name=ENDPOINT, deployment_name="profile",
                                        input=Input(type=AssetTypes.URI_FOLDER, path=f"s3://{BUCKET}/heart"))
    job = _check_predictions(client, job, heart_model_dir, tmp_path)
    seen = job.inputs["input_data"]
    assert (seen["credential_kind"], seen["credential_source"]) == ("aws_profile", "compute identity (aws-cpu)"), seen
    assert seen["location"].startswith("s3(") and f"bucket={BUCKET}" in seen["location"]


def test_s3_url_of_public_objects_without_compute_identity_is_read_anonymously(client, heart_model_dir, tmp_path):
    job = client.batch_endpoints.invoke(endpoint_name=ENDPOINT, input=Input(path=f"s3://{BUCKET}/public-heart"))
    job = _check_predictions(client, job, heart_model_dir, tmp_path)
    seen = job.inputs["input_data"]
    assert (seen["credential_kind"], seen["credential_source"]) == ("anonymous", "anonymous (public data)"), seen


@pytest.mark.parametrize("case", ["private_objects_no_identity", "profile_missing_on_server"])
def test_s3_url_refused_at_invoke_with_no_job(client, case):
    """Private objects and no compute identity (the bucket lists anonymously on moto, its objects do
    not), or a compute whose AWS profile the server lacks: refused by invoke, clearly, in seconds."""
    before = len(client.jobs.list())
    started = time.monotonic()
    with pytest.raises(BatchpointError) as info:
        client.batch_endpoints.invoke(
            endpoint_name=ENDPOINT, deployment_name="keys" if case == "private_objects_no_identity" else "noprofile",
            input=Input(type=AssetTypes.URI_FOLDER, path=f"s3://{BUCKET}/heart"))
    assert time.monotonic() - started < 15
    message = str(info.value)
    if case == "private_objects_no_identity":
        assert f"S3 bucket '{BUCKET}'" in message and "no identity" in message, message
        assert "type: aws_profile" in message and "Storage Blob" not in message, message
    else:
        assert "AWS profile 'not-on-this-server' is not configured on the server" in message, message
        assert f"S3 bucket '{BUCKET}'" in message and "AWS_CONFIG_FILE" in message, message
    assert len(client.jobs.list()) == before
