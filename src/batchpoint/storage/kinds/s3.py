"""Amazon S3 and S3-compatible services: ``s3://<bucket>/<key>``, read with AWS keys or a profile."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import SplitResult

from batchpoint.storage.base import StorageSpec
from batchpoint.storage.kind import Capabilities, IdentityRules, MalformedUrl, StorageKind, StorageUrl, UrlScheme

_BUCKET = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def parse_url(text: str, scheme: str, parts: SplitResult, hostport: str, path: str) -> StorageUrl:
    bucket = parts.netloc
    if not _BUCKET.fullmatch(bucket):
        raise MalformedUrl("expected s3://<bucket>/<key>")
    return StorageUrl("s3", "", bucket, path, None, text, scheme)


def spec_for_url(url: StorageUrl, storage: Any) -> tuple[StorageSpec, str]:
    config = {"bucket": url.container}
    if storage.s3_endpoint_url:
        config["endpoint_url"] = storage.s3_endpoint_url
    return StorageSpec("s3", config), url.path


KIND = StorageKind(
    name="s3",
    title="S3",
    backend="batchpoint.storage.s3:S3Backend",
    extra="s3",
    schemes=(UrlScheme("s3", parse_url),),
    spec_for_url=spec_for_url,
    identity=IdentityRules(
        reader="job", compute_identities=("aws_profile",),
        compute_identity_hint="give the compute an identity of type aws_profile (profile, role_arn)",
        public_access=True, account_fields=("bucket",), location="S3 bucket", container_word="bucket",
        grant=("Assign one (batchpoint compute create -f compute.yml with identity: {type: aws_profile, profile: ...}, "
               "a profile of the server's AWS config) and allow it s3:ListBucket and s3:GetObject on the bucket, or "
               "register a data store with credentials"),
    ),
    # S3 keys or a profile are handed over unchanged (not delegated yet: STS session credentials would be the way)
    capabilities=Capabilities(lists_folders=True, writable=True, hierarchical=False, remote_writes=True),
    config_fields=("bucket",),
    settings=("s3_endpoint_url",),
)
