"""Plain HTTP(S) file URLs as a read-only data store (kind ``https``), on httpx.

Config keys: ``base_url`` (required; ``path`` arguments are appended to it, and ``""`` names the
base URL itself), ``datastore_name`` (shown in errors), ``connect_timeout`` / ``read_timeout``
(seconds, default 10 / 120).

Credential dicts: ``None`` or ``{"kind": "anonymous"}`` (no authentication), or
``{"kind": "sas", "sas_token": "..."}`` (appended as the query string, e.g. for blob URLs).

HTTP has no listing: a URL names one file, so ``is_dir`` is always False and ``iter_files``
raises an InputError telling the user to declare the input as ``uri_file``. Writing is refused.

Redirects are followed (at most ``MAX_REDIRECTS``) only while every hop passes the SSRF guard
(``_internal/netguard.py``): a hop on the base URL's own host (checked when the input was
accepted) is followed; a hop to any other host must be a public address — the private-network
exceptions of the first host do not carry over (a 302 to ``http://127.0.0.2/...`` is refused
before it is requested). Proxy variables of the environment are never used (``trust_env=False``):
a worker's environment cannot route a URL's SAS through a proxy; the CA bundle the process was
started with (``SSL_CERT_FILE`` / ``SSL_CERT_DIR``) is still trusted.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Iterator
from typing import IO, Any
from urllib.parse import quote, urlparse

import httpx

from batchpoint._internal.netguard import check_host_allowed
from batchpoint.exceptions import (
    BatchpointError, InputError, StorageAuthError, StorageError, StorageNotFoundError,
    TransientStorageError, UnsafeInputError, ValidationError,
)
from batchpoint.storage._support import (
    ReadStream, first_line, number, redact, require, require_secret,
)
from batchpoint.storage.base import FileInfo, StorageBackend, StorageSpec, normalize_relpath, retries_of, translated

HTTP_CREDENTIAL_KINDS = ("anonymous", "sas")
_TRANSIENT_STATUS = {408, 425, 429, 500, 502, 503, 504}
MAX_REDIRECTS = 5


class _ResponseReader:
    """``read(n)`` over a streamed httpx response; closing it releases the connection."""

    def __init__(self, client: httpx.Client, response: httpx.Response) -> None:
        self._client = client
        self._response = response
        self._chunks = response.iter_bytes(chunk_size=1 << 16)
        self._buffer = b""

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            data = self._buffer + b"".join(self._chunks)
            self._buffer = b""
            return data
        while len(self._buffer) < size:
            chunk = next(self._chunks, None)
            if chunk is None:
                break
            self._buffer += chunk
        data, self._buffer = self._buffer[:size], self._buffer[size:]
        return data

    def close(self) -> None:
        try:
            self._response.close()
        finally:
            self._client.close()


def _verify() -> ssl.SSLContext | bool:
    """The CA bundle the process was started with (``SSL_CERT_FILE`` / ``SSL_CERT_DIR``, as httpx reads
    them with ``trust_env``), kept while ``trust_env=False`` drops the proxy variables. An invoke
    cannot set these (``jobs/submit.py``); the operator's bundle is what the server trusts."""
    cafile, capath = os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR")
    if (cafile and os.path.isfile(cafile)) or (capath and os.path.isdir(capath)):
        return ssl.create_default_context(cafile=cafile if cafile and os.path.isfile(cafile) else None,
                                          capath=capath if capath and os.path.isdir(capath) else None)
    return True


class HttpBackend(StorageBackend):
    kind = "https"

    def __init__(self, spec: StorageSpec) -> None:
        super().__init__(spec)
        what = f"https data store {spec.describe()}"
        self.base_url = require(spec.config, "base_url", what)
        if urlparse(self.base_url).scheme not in ("http", "https") or not urlparse(self.base_url).netloc:
            raise ValidationError(f"{what}: base_url '{self.base_url}' must be an http(s) URL")
        self.credential_kind = "anonymous" if not spec.credential else str(spec.credential.get("kind"))
        if self.credential_kind not in HTTP_CREDENTIAL_KINDS:
            raise ValidationError(
                f"{what}: credential kind '{self.credential_kind}' is not supported for plain "
                f"HTTP(S) URLs; valid kinds: {', '.join(HTTP_CREDENTIAL_KINDS)}"
            )
        self._sas = ""
        if self.credential_kind == "sas":
            self._sas = require_secret(spec.credential or {}, "sas_token", what).lstrip("?")
        self._timeout = httpx.Timeout(
            number(spec.config, "read_timeout", 120, what),
            connect=number(spec.config, "connect_timeout", 10, what),
        )

    # -- URLs and errors -------------------------------------------------------------------
    def url_for(self, path: str) -> str:
        rel = normalize_relpath(path)
        return f"{self.base_url.rstrip('/')}/{quote(rel)}" if rel else self.base_url

    def _request_url(self, path: str) -> str:
        url = self.url_for(path)
        if self._sas:
            url += ("&" if "?" in url else "?") + self._sas
        return url

    def _where(self, path: str) -> str:
        name = self.spec.config.get("datastore_name")
        store = f"data store '{name}', " if name else ""
        return f"'{self.url_for(path)}' ({store}credential kind '{self.credential_kind}')"

    def _check_status(self, status: int, path: str) -> None:
        if status in (401, 403):
            fix = ("the SAS token has expired or lacks read permission: generate a new one"
                   if self._sas else "the URL is not public: use a data store with a credential")
            raise StorageAuthError(f"access denied (HTTP {status}) to {self._where(path)}: {fix}")
        if status in (404, 410):
            raise StorageNotFoundError(f"{self._where(path)} does not exist (HTTP {status})")
        if status in _TRANSIENT_STATUS:
            raise TransientStorageError(f"{self._where(path)} answered HTTP {status} (retried)")
        if status >= 400:
            raise StorageError(f"{self._where(path)} answered HTTP {status}")

    def _translate(self, exc: BaseException, path: str) -> BatchpointError:
        if isinstance(exc, BatchpointError):
            return exc
        detail = redact(f"{type(exc).__name__}: {first_line(exc)}", self.spec.credential)
        if isinstance(exc, (httpx.TransportError, TimeoutError, ConnectionError)):
            return TransientStorageError(
                f"could not reach {self._where(path)}: {detail}; check the URL and the network (retried)"
            )
        return StorageError(f"request for {self._where(path)} failed: {detail}")

    def _guarded(self, fn: Any, path: str) -> Any:
        return translated(fn, self._translate, path, retries=2 * retries_of(self.spec.config))

    def _client(self) -> httpx.Client:
        return httpx.Client(timeout=self._timeout, follow_redirects=True, max_redirects=MAX_REDIRECTS,
                            trust_env=False, verify=_verify(), event_hooks={"request": [self._check_hop]})

    def _check_hop(self, request: httpx.Request) -> None:
        """Every request, redirects included, before it is sent: another host than the base URL's
        must pass the SSRF guard as a public address."""
        host = request.url.host
        if host.lower().rstrip(".") == (urlparse(self.base_url).hostname or "").lower().rstrip("."):
            return
        try:
            check_host_allowed(host)
        except UnsafeInputError as exc:
            origin = self.base_url.rstrip("/")
            raise UnsafeInputError(
                f"{origin} redirected to {request.url.scheme}://{request.url.netloc.decode(errors='replace')[:200]}, "
                f"which is refused: {exc.message} Redirects are followed only to public hosts; give the final URL "
                "of the file", details={"redirect": str(request.url.copy_with(query=None))[:200]}) from None

    # -- reading ---------------------------------------------------------------------------
    def is_file(self, path: str) -> bool:
        def head() -> bool:
            with self._client() as client:
                response = client.head(self._request_url(path))
                if response.status_code in (405, 501):  # servers without HEAD
                    with client.stream("GET", self._request_url(path)) as streamed:
                        status = streamed.status_code
                else:
                    status = response.status_code
            if status in (404, 410):
                return False
            self._check_status(status, path)
            return True

        return self._guarded(head, path)

    def is_dir(self, path: str) -> bool:
        return False

    def iter_files(self, prefix: str) -> Iterator[FileInfo]:
        raise InputError(
            f"{self._where(prefix)} is an http(s) URL: folders cannot be listed over HTTP, so "
            "http(s) URLs must be inputs of type uri_file (one file per URL); for a folder use a "
            "data store (azureml://datastores/...) or a storage URL the server can list"
        )

    def open_read(self, path: str) -> IO[bytes]:
        def opener() -> _ResponseReader:
            client = self._client()
            try:
                request = client.build_request("GET", self._request_url(path))
                response = client.send(request, stream=True)
            except BaseException:
                client.close()
                raise
            if response.status_code >= 400:
                response.close()
                client.close()
                self._check_status(response.status_code, path)
            return _ResponseReader(client, response)

        raw = self._guarded(opener, path)
        return ReadStream(raw, self._translate, name=path)  # type: ignore[return-value]

    # -- writing: refused ------------------------------------------------------------------
    def _read_only(self, path: str) -> InputError:
        return InputError(
            f"{self._where(path)} is read-only: http(s) URLs can be inputs only; write outputs "
            "to a data store"
        )

    def open_write(self, path: str) -> IO[bytes]:
        raise self._read_only(path)

    def delete(self, path: str) -> None:
        raise self._read_only(path)

    def check_access(self, path: str = "") -> None:
        if not normalize_relpath(path):
            return  # a host has no root to check over plain HTTP: each file is checked by its own URL
        if not self.is_file(path):
            raise StorageNotFoundError(f"{self._where(path)} does not exist (HTTP 404)")
