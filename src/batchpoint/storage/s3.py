"""Amazon S3 (and S3-compatible services) as a data store, on s3fs (fsspec) and aiobotocore.

Config keys: ``bucket`` (required), ``endpoint_url`` (optional: MinIO, moto, other S3 clones),
``region`` (optional), ``datastore_name`` (shown in errors), ``retries`` (botocore retries per
request, default 3), ``connect_timeout`` / ``read_timeout`` (seconds, default 10 / 120).

Credential dicts (``None`` means ``default_identity``)::

    {"kind": "aws_keys", "aws_access_key_id": "...", "aws_secret_access_key": "...",
     "aws_session_token": "..."}                 # session token optional
    {"kind": "anonymous"}                        # public buckets, unsigned requests
    {"kind": "default_identity"}                 # boto's default chain (env, profile, IMDS, ...)
    {"kind": "aws_profile", "profile": "..."}    # a named profile of ~/.aws/config (a compute identity)

Listings page through ``list_objects_v2`` (1,000 keys per call, one call per page) on s3fs's
event loop, so they are lazy; files are streamed through s3fs. Keys are relative to the bucket.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import IO, Any
from urllib.parse import quote

import s3fs

from batchpoint.exceptions import (
    BatchpointError, StorageAuthError, StorageError, StorageNotFoundError, TransientStorageError,
    ValidationError,
)
from batchpoint.storage._support import (
    ReadStream, WriteStream, exception_chain, first_line, number, redact, require,
    require_secret,
)
from batchpoint.storage.base import FileInfo, StorageBackend, StorageSpec, normalize_relpath, retries_of, translated

S3_CREDENTIAL_KINDS = ("aws_keys", "anonymous", "default_identity", "aws_profile")
_AUTH_CODES = {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken",
               "InvalidToken", "TokenRefreshRequired", "AllAccessDisabled", "AccountProblem"}
_NOT_FOUND_CODES = {"NoSuchKey", "NoSuchBucket", "404", "NotFound"}
_TRANSIENT_CODES = {"SlowDown", "RequestTimeout", "InternalError", "ServiceUnavailable",
                    "Throttling", "ThrottlingException", "RequestTimeTooSkewed"}
_AUTH_FIXES = {
    "aws_keys": "check aws_access_key_id / aws_secret_access_key (and the session token, which "
                "expires), and that the key may s3:ListBucket and s3:GetObject (PutObject and "
                "DeleteObject for outputs)",
    "anonymous": "the bucket is not public: give the data store AWS keys",
    "default_identity": "the identity found by boto's default chain (environment, profile, "
                        "instance role) was refused or absent: grant it access or set AWS keys",
    "aws_profile": "the AWS profile of the compute identity was refused or is not configured on the "
                   "server (~/.aws/config): grant its role s3:ListBucket and s3:GetObject",
}


class S3Backend(StorageBackend):
    kind = "s3"
    page_size = 1000  # S3's maximum per list call
    block_size = 8 * 2**20

    def __init__(self, spec: StorageSpec) -> None:
        super().__init__(spec)
        what = f"s3 data store {spec.describe()}"
        self.bucket = require(spec.config, "bucket", what)
        self.credential_kind = "default_identity" if not spec.credential else str(spec.credential.get("kind"))
        if self.credential_kind not in S3_CREDENTIAL_KINDS:
            raise ValidationError(
                f"{what}: unknown S3 credential kind '{self.credential_kind}'; valid kinds: "
                f"{', '.join(S3_CREDENTIAL_KINDS)}"
            )
        self._fs_kwargs = self._build_kwargs(what)
        self._fs_by_pid: dict[int, s3fs.S3FileSystem] = {}

    def _build_kwargs(self, what: str) -> dict[str, Any]:
        cfg = self.spec.config
        retries = int(number(cfg, "retries", 3, what))
        kwargs: dict[str, Any] = {
            "skip_instance_cache": True,
            "use_listings_cache": False,
            "default_block_size": self.block_size,
            "config_kwargs": {
                "retries": {"total_max_attempts": retries + 1, "mode": "standard"},  # botocore: max_attempts = retries
                "connect_timeout": number(cfg, "connect_timeout", 10, what),
                "read_timeout": number(cfg, "read_timeout", 120, what),
                # {} (not None): botocore then reads no proxy from the environment (HTTP(S)_PROXY)
                "proxies": {},
            },
            "client_kwargs": {"region_name": cfg["region"]} if cfg.get("region") else {},
        }
        if cfg.get("endpoint_url"):
            kwargs["endpoint_url"] = str(cfg["endpoint_url"])
        cred = self.spec.credential or {}
        if self.credential_kind == "aws_keys":
            kwargs["key"] = require_secret(cred, "aws_access_key_id", what)
            kwargs["secret"] = require_secret(cred, "aws_secret_access_key", what)
            kwargs["token"] = cred.get("aws_session_token") or None
        elif self.credential_kind == "anonymous":
            kwargs["anon"] = True
        elif self.credential_kind == "aws_profile":
            if cred.get("role_arn"):
                raise ValidationError(
                    f"{what}: role_arn is read from the AWS profile: set role_arn and source_profile in the "
                    "profile of ~/.aws/config and give only 'profile' in the compute identity"
                )
            kwargs["profile"] = require_secret(cred, "profile", what)
        return kwargs

    @property
    def fs(self) -> s3fs.S3FileSystem:
        """The s3fs filesystem of this process. A forked child builds its own (event loops do
        not survive fork) and keeps the parent's copy referenced: its finaliser would wait
        forever on the parent's loop."""
        pid = os.getpid()
        if pid not in self._fs_by_pid:
            fs = s3fs.S3FileSystem(**self._fs_kwargs)
            fs.retries = 1  # botocore retries already; s3fs would multiply them
            self._fs_by_pid[pid] = fs
        return self._fs_by_pid[pid]

    def __getstate__(self) -> dict[str, Any]:
        """Picklable (for spawned workers) when its credential is: clients are rebuilt there."""
        return {**self.__dict__, "_fs_by_pid": {}}

    def _call(self, method: str, path: str = "", **kwargs: Any) -> Any:
        """One S3 API call on s3fs's client; errors translated, transient ones retried."""
        return translated(lambda: self.fs.call_s3(method, **kwargs), self._translate, path,
                          retries=retries_of(self.spec.config))

    # -- errors ----------------------------------------------------------------------------
    def _where(self, path: str = "") -> str:
        name = self.spec.config.get("datastore_name")
        store = f"data store '{name}', " if name else ""
        target = f"'{path}' in " if path else ""
        endpoint = self.spec.config.get("endpoint_url") or "AWS"
        return (f"{target}S3 bucket '{self.bucket}' at {endpoint} "
                f"({store}credential kind '{self.credential_kind}')")

    def _translate(self, exc: BaseException, path: str = "") -> BatchpointError:
        chain = list(exception_chain(exc))
        for err in chain:
            if isinstance(err, BatchpointError):
                return err
            response = getattr(err, "response", None)
            if isinstance(response, dict) and "Error" in response:
                code = str(response["Error"].get("Code", ""))
                status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
                return self._by_code(code, status, err, path)
        for err in chain:
            found = self._by_type(err, path)
            if found is not None:
                return found
        return StorageError(f"S3 request failed on {self._where(path)}: {self._detail(exc)}")

    def _detail(self, err: BaseException) -> str:
        return redact(f"{type(err).__name__}: {first_line(err)}", self.spec.credential)

    def _by_code(self, code: str, status: Any, err: BaseException, path: str) -> BatchpointError:
        if code in _AUTH_CODES or status in (401, 403):
            return StorageAuthError(
                f"access denied to {self._where(path)}: {_AUTH_FIXES[self.credential_kind]} "
                f"[{code}]"
            )
        if code in _NOT_FOUND_CODES or status == 404:
            return self._not_found(code, path)
        if code in _TRANSIENT_CODES or status in (408, 429, 500, 502, 503, 504):
            return TransientStorageError(f"S3 is unavailable for {self._where(path)} [{code}] (retried)")
        return StorageError(f"S3 request failed on {self._where(path)}: {self._detail(err)}")

    def _by_type(self, err: BaseException, path: str) -> BatchpointError | None:
        from botocore.exceptions import (
            ConnectionError as BotoConnectionError, HTTPClientError, NoCredentialsError,
            PartialCredentialsError, ProfileNotFound,
        )

        if isinstance(err, (NoCredentialsError, PartialCredentialsError)):
            return StorageAuthError(f"no AWS credentials for {self._where(path)}: "
                                    f"{_AUTH_FIXES[self.credential_kind]}")
        if isinstance(err, ProfileNotFound):  # the profile name is no secret (``compute show`` prints it)
            profile = (self.spec.credential or {}).get("profile") or getattr(err, "kwargs", {}).get("profile")
            return StorageAuthError(
                f"AWS profile '{profile}' is not configured on the server, so {self._where(path)} cannot be "
                "read: add the profile to the server's AWS config files (AWS_CONFIG_FILE, default "
                "~/.aws/config; AWS_SHARED_CREDENTIALS_FILE, default ~/.aws/credentials) or fix the "
                "compute identity's 'profile'"
            )
        if isinstance(err, PermissionError):
            return StorageAuthError(f"access denied to {self._where(path)}: "
                                    f"{_AUTH_FIXES[self.credential_kind]}")
        if isinstance(err, FileNotFoundError):
            return self._not_found("", path)
        if isinstance(err, (BotoConnectionError, HTTPClientError, TimeoutError, ConnectionError)):
            return TransientStorageError(
                f"could not reach {self._where(path)}: {self._detail(err)}; check endpoint_url "
                "and the network (retried)"
            )
        return None

    def _not_found(self, code: str, path: str) -> StorageNotFoundError:
        if code == "NoSuchBucket" or not path:
            return StorageNotFoundError(
                f"bucket '{self.bucket}' does not exist at "
                f"{self.spec.config.get('endpoint_url') or 'AWS'} (credential kind "
                f"'{self.credential_kind}'): create it or fix 'bucket' of the data store"
            )
        return StorageNotFoundError(f"file {self._where(path)} does not exist")

    # -- reading ---------------------------------------------------------------------------
    def _head(self, key: str, path: str) -> dict[str, Any] | None:
        try:
            return self._call("head_object", path, Bucket=self.bucket, Key=key)
        except StorageNotFoundError:
            return None

    def _list_page(self, prefix: str, token: str | None, size: int, path: str) -> tuple[list, str | None]:
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": prefix, "MaxKeys": size}
        if token:
            kwargs["ContinuationToken"] = token
        out = self._call("list_objects_v2", path, **kwargs)
        token = out.get("NextContinuationToken") if out.get("IsTruncated") else None
        return out.get("Contents", []), token

    def is_file(self, path: str) -> bool:
        key = normalize_relpath(path)
        return bool(key) and self._head(key, path) is not None

    def is_dir(self, path: str) -> bool:
        key = normalize_relpath(path)
        try:
            items, _ = self._list_page(f"{key}/" if key else "", None, 1 if not key else 50, path)
        except StorageNotFoundError:
            return False
        return not key or any(not o["Key"].endswith("/") for o in items)

    def iter_files(self, prefix: str) -> Iterator[FileInfo]:
        key = normalize_relpath(prefix)
        token: str | None = None
        found = False
        while True:
            items, token = self._list_page(f"{key}/" if key else "", token, self.page_size, prefix)
            for obj in items:
                if not obj["Key"].endswith("/"):  # console "folder" objects are not files
                    found = True
                    yield FileInfo(obj["Key"], obj.get("Size"))
            if not token:
                break
        if key and not found:
            raise StorageNotFoundError(f"folder {self._where(prefix)} does not exist or is empty")

    def open_read(self, path: str) -> IO[bytes]:
        key = normalize_relpath(path)
        head = self._head(key, path) if key else None
        if head is None:
            if key and self.is_dir(path):
                raise StorageNotFoundError(f"{self._where(path)} is a folder, not a file")
            raise StorageNotFoundError(f"file {self._where(path)} does not exist")
        size = int(head.get("ContentLength", 0))

        def opener() -> Any:
            return self.fs.open(f"{self.bucket}/{key}", "rb", size=size, block_size=self.block_size)

        raw = self._sync(opener, path)
        return ReadStream(raw, self._translate, name=path)  # type: ignore[return-value]

    def _sync(self, fn: Any, path: str) -> Any:
        return translated(fn, self._translate, path)

    # -- writing ---------------------------------------------------------------------------
    def open_write(self, path: str) -> IO[bytes]:
        key = normalize_relpath(path)
        if not key:
            raise ValidationError("cannot write a file at the root of a data store: give a path")
        raw = self._sync(lambda: self.fs.open(f"{self.bucket}/{key}", "wb", block_size=self.block_size), path)

        def discard(f: Any) -> None:
            try:
                f.discard()  # aborts a multipart upload already started
            finally:
                f.closed = True

        return WriteStream(raw, self._translate, discard, name=path)  # type: ignore[return-value]

    def delete(self, path: str) -> None:
        key = normalize_relpath(path)
        token: str | None = None
        while True:
            items, token = self._list_page(f"{key}/" if key else "", token, self.page_size, path)
            if items:
                objects = [{"Key": o["Key"]} for o in items]
                out = self._call("delete_objects", path, Bucket=self.bucket,
                                 Delete={"Objects": objects, "Quiet": True})
                errors = [e for e in out.get("Errors", []) if e.get("Code") != "NoSuchKey"]
                if errors:
                    first = errors[0]
                    raise self._by_code(str(first.get("Code")), None, RuntimeError(
                        first.get("Message", "")), f"{path} ({len(errors)} objects not deleted)")
            if not token:
                break
        if key:
            self._call("delete_object", path, Bucket=self.bucket, Key=key)

    # -- checks ----------------------------------------------------------------------------
    def check_access(self, path: str = "") -> None:
        """At most one single-key listing and two HEADs. A folder is listed, then its first object
        is read (HEAD): s3:ListBucket and s3:GetObject are separate permissions, and a folder whose
        listing is public but whose objects are private must fail here, not in every mini-batch.
        The root (``path`` empty) is only listed: other folders may hold objects of other rights."""
        key = normalize_relpath(path)
        if key and self._head(key, path) is not None:
            return
        items, _ = self._list_page(f"{key}/" if key else "", None, 1, path)
        if key and not items:
            raise StorageNotFoundError(f"{self._where(path)} does not exist (neither a file nor a folder)")
        if key:
            self._head(items[0]["Key"], items[0]["Key"])  # 403 → StorageAuthError naming the object

    def url_for(self, path: str) -> str:
        return f"s3://{self.bucket}/{quote(normalize_relpath(path))}"
