"""Azure Blob Storage and ADLS Gen2 data stores, on adlfs (fsspec) and azure-storage-blob.

Config keys (``StorageSpec.config``):

* ``azure_blob``: ``account_name``, ``container_name``, ``endpoint`` (DNS suffix, default
  ``core.windows.net``), ``protocol`` (``https`` | ``http``).
* ``azure_data_lake_gen2``: ``account_name``, ``filesystem``, ``endpoint``, ``protocol``. Read
  and written through the blob API (multi-protocol access), which is also what Azurite serves.
* both, optional: ``blob_endpoint_url`` (full service URL, e.g. Azurite's
  ``http://127.0.0.1:10000/devstoreaccount1``; replaces protocol/endpoint), ``datastore_name``
  (shown in error messages), ``retries`` (SDK retries per request, default 3),
  ``connect_timeout`` / ``read_timeout`` (seconds, default 10 / 120).

Credentials: see :mod:`batchpoint.storage.azure_auth` (``None`` means ``default_identity``).

Files are opened through adlfs (ranged streaming reads; block uploads committed on close).
Listings are List Blobs calls of 5,000 blobs (Azure's maximum), one page per call on adlfs's
event loop, so a listing of any size starts yielding after its first page and memory stays flat.
Each page goes through the SDK's own pipeline (its credential, retry and timeout policies) and
its XML is read with ``ElementTree.iterparse`` into (name, size, folder marker) only: the SDK's
``list_blobs`` builds two model objects per blob, which for a page of 5,000 costs ~2.5 s of CPU
and ~40 MiB at its peak (measured on Azurite; see docs/performance.md), against ~0.3 s and a few
MiB here. The first call of a listing asks for 100 blobs, so its first files come after a short request
(Azurite answers 100 in 0.55 s and 5,000 in 3.0 s with 22,000 blobs in its account). No request per
blob: a listing of N blobs is ``1 + ceil((N - 100) / 5000)`` requests. Paths are relative to the
container root.
"""

from __future__ import annotations

import asyncio
import logging
import os
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from typing import IO, Any, NamedTuple
from urllib.parse import quote, unquote, urlencode

from adlfs import AzureBlobFileSystem

from batchpoint.exceptions import (
    BatchpointError, StorageAuthError, StorageError, StorageNotFoundError, TransientStorageError,
    ValidationError,
)
from batchpoint.storage import azure_auth
from batchpoint.storage._support import (
    ReadStream, WriteStream, exception_chain, first_line, number, redact, require,
    require_secret, run_on_loop,
)
from batchpoint.storage.base import FileInfo, StorageBackend, StorageSpec, normalize_relpath, retries_of, translated, with_retries

_USER_AGENT = "batchpoint"

# The Azure SDK logs every request and response, headers included, at INFO: in a worker's log (at
# the deployment's default logging_level) that is a dozen lines per file read, burying the user's
# own lines. Quiet unless someone configured the logger on purpose.
_HTTP_LOG = logging.getLogger("azure.core.pipeline.policies.http_logging_policy")
if _HTTP_LOG.level == logging.NOTSET:
    _HTTP_LOG.setLevel(logging.WARNING)


class _BlobFileSystem(AzureBlobFileSystem):
    """adlfs with a service client that Batchpoint builds: any endpoint URL (Azurite over plain
    HTTP included), every credential type, and a retry policy that fails in seconds, not minutes."""

    def __init__(self, client_factory: Any, **kwargs: Any) -> None:
        self._client_factory = client_factory
        super().__init__(anon=True, skip_instance_cache=True, use_listings_cache=False, **kwargs)

    def do_connect(self) -> None:
        self.service_client = self._client_factory()


def _is_folder_marker(blob: Any) -> bool:
    """ADLS Gen2 directories and adlfs folder markers are zero-byte blobs, not files."""
    meta = getattr(blob, "metadata", None) or {}
    return (
        str(meta.get("hdi_isfolder", "")).lower() == "true"
        or str(meta.get("is_directory", "")).lower() == "true"
        or str(getattr(blob, "name", "")).endswith("/")
    )


class _Listed(NamedTuple):
    """One entry of a List Blobs page: all a listing needs of it."""

    name: str
    size: int
    folder: bool  # an ADLS Gen2 directory or a folder marker, not a file


_FOLDER_META = ("hdi_isfolder", "is_directory")


class _ListingParser:
    """A List Blobs response body, fed as it arrives: its entries and its NextMarker (None on the
    last page). Each ``<Blob>`` element is dropped once read, so a page of 5,000 never exists as a
    tree, nor its body as one string."""

    def __init__(self) -> None:
        self._parser = ET.XMLPullParser(events=("end",))
        self.items: list[_Listed] = []
        self.marker: str | None = None

    def feed(self, chunk: bytes) -> None:
        self._parser.feed(chunk)
        self._drain()

    def close(self) -> tuple[list[_Listed], str | None]:
        self._parser.close()
        self._drain()
        return self.items, self.marker

    def _drain(self) -> None:
        for _, elem in self._parser.read_events():
            if elem.tag == "Blob":
                name_el = elem.find("Name")
                name = (name_el.text or "") if name_el is not None else ""
                if name_el is not None and str(name_el.get("Encoded", "")).lower() == "true":
                    name = unquote(name)
                meta = elem.find("Metadata")
                folder = name.endswith("/") or (meta is not None and any(
                    str(meta.findtext(k) or "").lower() == "true" for k in _FOLDER_META))
                self.items.append(_Listed(name, int(elem.findtext("Properties/Content-Length") or 0), folder))
                elem.clear()
            elif elem.tag == "NextMarker":
                self.marker = elem.text or None


def _error_code(exc: Any) -> str:
    code = getattr(exc, "error_code", None)
    return str(getattr(code, "value", code) or "")


class AzureBlobBackend(StorageBackend):
    """One blob container (``azure_blob``)."""

    kind = "azure_blob"
    container_key = "container_name"
    container_label = "container"
    service_label = "Azure storage account"
    # blobs per List Blobs call (Azure's maximum): a page is held as (name, size, folder) tuples,
    # ~1 MiB for 5,000, while its files are handed out
    page_size = 5000
    # the first call of a listing asks for fewer: the first files (the first mini-batch, and the
    # is-it-empty check of an invoke) come after a short request, the rest in pages of 5,000
    first_page_size = 100
    block_size = 8 * 2**20

    def __init__(self, spec: StorageSpec) -> None:
        super().__init__(spec)
        cfg = spec.config
        what = f"{self.kind} data store {spec.describe()}"
        self.credential_kind = azure_auth.credential_kind(spec.credential)
        self._conn = None
        if self.credential_kind == "connection_string":
            self._conn = require_secret(spec.credential or {}, "connection_string", what)
        conn_parts = azure_auth.parse_connection_string(self._conn or "")
        self.account = str(cfg.get("account_name") or conn_parts.get("AccountName") or "").strip()
        if not self.account and not self._conn:
            require(cfg, "account_name", what)
        self.container = require(cfg, self.container_key, what)
        self.account_url = "" if self._conn else azure_auth.account_url(cfg, self.account)
        self.display_url = self.account_url or str(conn_parts.get("BlobEndpoint") or (
            f"{conn_parts.get('DefaultEndpointsProtocol', 'https')}://{self.account}.blob."
            f"{conn_parts.get('EndpointSuffix', 'core.windows.net')}")).rstrip("/")
        if self.account_url.startswith("http://") and self.credential_kind in azure_auth.TOKEN_KINDS:
            raise ValidationError(
                f"{what}: credential kind '{self.credential_kind}' sends bearer tokens, which Azure "
                f"SDKs refuse over plain HTTP ({self.account_url}); use an https endpoint"
            )
        self.retries = int(number(cfg, "retries", 3, what))
        self._timeouts = {
            "connection_timeout": number(cfg, "connect_timeout", 10, what),
            "read_timeout": number(cfg, "read_timeout", 120, what),
        }
        self._fs_by_pid: dict[int, _BlobFileSystem] = {}

    # -- clients ---------------------------------------------------------------------------
    @property
    def fs(self) -> _BlobFileSystem:
        """The adlfs filesystem of this process. A forked child builds its own (event loops do
        not survive fork) and keeps the parent's copy referenced: its finaliser would wait
        forever on the parent's loop."""
        pid = os.getpid()
        if pid not in self._fs_by_pid:
            self._fs_by_pid[pid] = self._make_fs()
        return self._fs_by_pid[pid]

    def __getstate__(self) -> dict[str, Any]:
        """Picklable (for spawned workers) when its credential is: clients are rebuilt there."""
        return {**self.__dict__, "_fs_by_pid": {}}

    def _make_fs(self) -> _BlobFileSystem:
        what = f"{self.kind} data store {self.spec.describe()}"
        cred = None
        if not self._conn:
            cred = azure_auth.async_credential(self.credential_kind, self.spec.credential, self.account, what)

        def factory() -> Any:
            from azure.storage.blob.aio import BlobServiceClient, ExponentialRetry

            opts = dict(
                retry_policy=ExponentialRetry(
                    initial_backoff=0.5, increment_base=2, retry_total=self.retries,
                    random_jitter_range=0.5,
                ),
                user_agent=_USER_AGENT, **self._timeouts,
                # storage traffic never goes through a proxy named by the environment (a worker's
                # variables must not route its SAS or token elsewhere), and never follows a redirect
                use_env_settings=False, permit_redirects=False,
            )
            if self._conn:
                return BlobServiceClient.from_connection_string(self._conn, **opts)
            return BlobServiceClient(self.account_url, credential=cred, **opts)

        return _BlobFileSystem(factory, credential=cred, blocksize=self.block_size)

    def _container(self) -> Any:
        return self.fs.service_client.get_container_client(self.container)

    def _call(self, make_coro: Any, path: str = "") -> Any:
        """Run one SDK coroutine; translate its errors; retry the transient ones."""
        return translated(lambda: run_on_loop(self.fs.loop, make_coro), self._translate, path,
                          retries=retries_of(self.spec.config))

    def _sync(self, fn: Any, path: str = "") -> Any:
        return translated(fn, self._translate, path)

    # -- errors ----------------------------------------------------------------------------
    def _where(self, path: str = "") -> str:
        name = self.spec.config.get("datastore_name")
        store = f"data store '{name}', " if name else ""
        target = f"'{path}' in " if path else ""
        return (
            f"{target}{self.container_label} '{self.container}' of {self.service_label} "
            f"'{self.account or self.display_url}' ({store}credential kind '{self.credential_kind}')"
        )

    def _translate(self, exc: BaseException, path: str = "") -> BatchpointError:
        from azure.core.exceptions import (
            ClientAuthenticationError, HttpResponseError, ResourceNotFoundError,
            ServiceRequestError, ServiceResponseError,
        )

        for err in exception_chain(exc):
            if isinstance(err, BatchpointError):
                return err
            status = getattr(err, "status_code", None) if isinstance(err, HttpResponseError) else None
            detail = redact(f"{_error_code(err) or type(err).__name__}: {first_line(err)}", self.spec.credential)
            if isinstance(err, ClientAuthenticationError) or status in (401, 403):
                fix = azure_auth.AUTH_FIXES[self.credential_kind]
                return StorageAuthError(f"access denied to {self._where(path)}: {fix} [{detail}]")
            if isinstance(err, (ResourceNotFoundError, FileNotFoundError)) or status == 404:
                return self._not_found(err, path)
            if status in (408, 429, 500, 502, 503, 504) or isinstance(
                err, (ServiceRequestError, ServiceResponseError, TimeoutError, ConnectionError)
            ):
                return TransientStorageError(
                    f"could not reach {self._where(path)} at {self.display_url}: {detail}; "
                    "check the endpoint and the network (retried)"
                )
        detail = redact(f"{type(exc).__name__}: {first_line(exc)}", self.spec.credential)
        return StorageError(f"storage request failed on {self._where(path)}: {detail}")

    def _not_found(self, err: BaseException, path: str) -> StorageNotFoundError:
        if _error_code(err) == "ContainerNotFound" or not path:
            return StorageNotFoundError(
                f"{self.container_label} '{self.container}' does not exist in {self.service_label} "
                f"'{self.account or self.display_url}' (credential kind '{self.credential_kind}'): "
                f"create it or fix '{self.container_key}' of the data store"
            )
        return StorageNotFoundError(f"file {self._where(path)} does not exist")

    # -- reading ---------------------------------------------------------------------------
    async def _properties(self, blob: str) -> Any:
        from azure.core.exceptions import ResourceNotFoundError

        try:
            return await self._container().get_blob_client(blob).get_blob_properties()
        except ResourceNotFoundError:
            return None

    async def _list_page(self, name_prefix: str, token: str | None, size: int) -> tuple[list[_Listed], str | None]:
        """One List Blobs request (``size`` blobs at most, from ``token`` on), sent through the
        container client's pipeline: signed by its credential, retried by its retry policy."""
        from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
        from azure.core.rest import HttpRequest

        container = self._container()
        query = {"restype": "container", "comp": "list", "maxresults": str(size), "include": "metadata"}
        if name_prefix:
            query["prefix"] = name_prefix
        if token:
            query["marker"] = token
        url = container.url  # carries a SAS token when that is the credential
        request = HttpRequest("GET", f"{url}{'&' if '?' in url else '?'}{urlencode(query, quote_via=quote)}",
                              headers={"x-ms-version": container.api_version, "Accept": "application/xml"})
        # streamed: the pipeline then leaves the body alone (not streamed, it parses it whole into a tree)
        response = await container._client._send_request(request, stream=True)  # noqa: SLF001 - the SDK's pipeline
        try:
            if response.status_code != 200:
                await response.read()
                code = response.headers.get("x-ms-error-code") or ""
                kind = ResourceNotFoundError if response.status_code == 404 else HttpResponseError
                error = kind(message=f"{code or response.reason} (List Blobs, HTTP {response.status_code})",
                             response=response)
                error.error_code = code
                raise error
            parser = _ListingParser()
            async for chunk in response.iter_bytes():
                parser.feed(chunk)
            return parser.close()
        finally:
            await response.close()

    def is_file(self, path: str) -> bool:
        blob = normalize_relpath(path)
        if not blob:
            return False
        props = self._call(lambda: self._properties(blob), path)
        return props is not None and not _is_folder_marker(props)

    def is_dir(self, path: str) -> bool:
        from azure.core.exceptions import ResourceNotFoundError

        blob = normalize_relpath(path)

        async def probe() -> bool:
            try:
                items, _ = await self._list_page(f"{blob}/" if blob else "", None, 1 if not blob else 50)
            except ResourceNotFoundError:
                return False
            return not blob or any(not b.folder for b in items)

        return self._call(probe, path)

    def iter_files(self, prefix: str) -> Iterator[FileInfo]:
        blob = normalize_relpath(prefix)
        name_prefix = f"{blob}/" if blob else ""
        token: str | None = None
        found = False
        size = min(self.first_page_size, self.page_size)
        while True:
            items, token = self._call(lambda t=token, n=size: self._list_page(name_prefix, t, n), prefix)
            size = self.page_size
            for item in items:
                if not item.folder:
                    found = True
                    yield FileInfo(item.name, item.size)
            if not token:
                break
        if blob and not found:
            raise StorageNotFoundError(f"folder {self._where(prefix)} does not exist or is empty")

    def open_read(self, path: str) -> IO[bytes]:
        blob = normalize_relpath(path)
        if not blob:
            raise StorageNotFoundError(f"{self._where()} is a folder (the root), not a file")

        def opener() -> Any:
            raw = self.fs.open(f"{self.container}/{blob}", "rb", block_size=self.block_size)
            if raw.details.get("type") != "file":
                raw.close()
                raise StorageNotFoundError(f"{self._where(path)} is a folder, not a file")
            return raw

        raw = with_retries(lambda: self._sync(opener, path), attempts=2)
        return ReadStream(raw, self._translate, name=path)  # type: ignore[return-value]

    def get_file(self, path: str, local_path: str) -> None:
        """One GET for a blob up to 32 MiB (the SDK's first request brings it whole; a larger one
        goes on in 4 MiB ranges, written to the file as they come) instead of adlfs's HEAD then
        ranged GET: half the requests, and a third of the time, for inputs of many small files."""
        blob = normalize_relpath(path)
        if not blob:
            raise StorageNotFoundError(f"{self._where()} is a folder (the root), not a file")

        async def download() -> None:
            downloader = await self._container().get_blob_client(blob).download_blob()
            if _is_folder_marker(downloader.properties):
                raise StorageNotFoundError(f"{self._where(path)} is a folder, not a file")
            with open(local_path, "wb") as out:  # reopened (truncated) when a transient error retries
                await downloader.readinto(out)

        self._call(download, path)

    # -- writing ---------------------------------------------------------------------------
    def open_write(self, path: str) -> IO[bytes]:
        blob = normalize_relpath(path)
        if not blob:
            raise ValidationError("cannot write a file at the root of a data store: give a path")
        raw = self._sync(lambda: self.fs.open(f"{self.container}/{blob}", "wb", block_size=self.block_size), path)

        def discard(f: Any) -> None:
            f.closed = True  # skip the commit: staged blocks are dropped by the service

        return WriteStream(raw, self._translate, discard, name=path)  # type: ignore[return-value]

    def delete(self, path: str) -> None:
        blob = normalize_relpath(path)
        name_prefix = f"{blob}/" if blob else ""
        markers: list[str] = []
        token: str | None = None
        while True:
            items, token = self._call(
                lambda t=token: self._list_page(name_prefix, t, self.page_size), path
            )
            markers.extend(b.name for b in items if b.folder)
            self._call(lambda i=items: self._delete_blobs([b.name for b in i if not b.folder]), path)
            if not token:
                break
        # Gen2 directories must be emptied before they go: deepest first.
        self._call(lambda: self._delete_blobs(sorted(markers, reverse=True), one_by_one=True), path)
        if blob:
            self._call(lambda: self._delete_blobs([blob]), path)

    async def _delete_blobs(self, names: list[str], one_by_one: bool = False) -> None:
        from azure.core.exceptions import ResourceNotFoundError

        container = self._container()
        limit = asyncio.Semaphore(1 if one_by_one else 32)

        async def drop(name: str) -> None:
            async with limit:
                try:
                    await container.delete_blob(name)
                except ResourceNotFoundError:
                    pass

        if one_by_one:  # in order: a Gen2 directory must be empty before it goes
            for name in names:
                await drop(name)
        else:
            await asyncio.gather(*(drop(n) for n in names))

    # -- checks ----------------------------------------------------------------------------
    def check_access(self, path: str = "") -> None:
        """One HEAD and/or one single-item listing: bad credentials, an expired SAS or a missing
        container fail here in seconds."""
        blob = normalize_relpath(path)

        async def probe() -> bool:
            if blob:
                props = await self._properties(blob)
                if props is not None and not _is_folder_marker(props):
                    return True
            items, _ = await self._list_page(f"{blob}/" if blob else "", None, 1)
            return bool(items) or not blob

        if not self._call(probe, path):
            raise StorageNotFoundError(f"{self._where(path)} does not exist (neither a file nor a folder)")

    def url_for(self, path: str) -> str:
        return f"{self.display_url}/{self.container}/{quote(normalize_relpath(path))}"


class AdlsGen2Backend(AzureBlobBackend):
    """One ADLS Gen2 filesystem (``azure_data_lake_gen2``), through the blob API."""

    kind = "azure_data_lake_gen2"
    container_key = "filesystem"
    container_label = "filesystem"
    service_label = "ADLS Gen2 account"

    def url_for(self, path: str) -> str:
        blob = normalize_relpath(path)
        if self.spec.config.get("blob_endpoint_url") or self._conn:
            return super().url_for(path)
        endpoint = str(self.spec.config.get("endpoint") or "core.windows.net").strip(".")
        scheme = "abfs" if str(self.spec.config.get("protocol", "https")).lower() == "http" else "abfss"
        return f"{scheme}://{self.container}@{self.account}.dfs.{endpoint}/{quote(blob)}"
