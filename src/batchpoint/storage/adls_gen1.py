"""Azure Data Lake Storage Gen1 as a data store, on ``azure-datalake-store``.

ADLS Gen1 was retired by Microsoft (February 2024) and nothing emulates it, so this backend is
kept thin and follows the library's documented API: ``AzureDLFileSystem(token_credential=...,
store_name=...)`` with an azure-identity credential (the library's 1.x releases take
``token_credential``; the old ADAL ``lib.auth`` helper is gone).

Config keys: ``store_name`` (required), ``url_suffix`` (default ``azuredatalakestore.net``),
``datastore_name`` (shown in errors). Credentials (Microsoft Entra tokens only; ``None`` means
``default_identity``)::

    {"kind": "service_principal", "tenant_id": "...", "client_id": "...", "client_secret": "...",
     "authority_url": "..."}                     # authority optional
    {"kind": "default_identity", "managed_identity_client_id": "..."}  # client id optional
    {"kind": "token_credential", "credential": <object with a synchronous get_token>}

The library is imported on first use, so this module imports without it.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterator
from typing import IO, Any

from batchpoint.exceptions import (
    BackendNotInstalledError, BatchpointError, StorageAuthError, StorageError,
    StorageNotFoundError, TransientStorageError, ValidationError,
)
from batchpoint.storage import azure_auth
from batchpoint.storage._support import (
    ReadStream, WriteStream, exception_chain, first_line, redact, require,
)
from batchpoint.storage.base import FileInfo, StorageBackend, StorageSpec, normalize_relpath, retries_of, translated

DEFAULT_URL_SUFFIX = "azuredatalakestore.net"


class AdlsGen1Backend(StorageBackend):
    kind = "azure_data_lake_gen1"

    def __init__(self, spec: StorageSpec) -> None:
        super().__init__(spec)
        self._what = f"azure_data_lake_gen1 data store {spec.describe()}"
        self.store_name = require(spec.config, "store_name", self._what)
        self.url_suffix = str(spec.config.get("url_suffix") or DEFAULT_URL_SUFFIX)
        self.credential_kind = azure_auth.credential_kind(spec.credential)
        if self.credential_kind not in azure_auth.TOKEN_KINDS:
            raise ValidationError(
                f"{self._what} authenticates with Microsoft Entra tokens only: use credential kind "
                f"'service_principal', 'default_identity' or 'token_credential', not "
                f"'{self.credential_kind}'"
            )
        self._fs: Any = None

    @property
    def adl(self) -> Any:
        if self._fs is None:
            try:
                from azure.datalake.store import core
            except ImportError as exc:
                raise BackendNotInstalledError(
                    f"storage kind 'azure_data_lake_gen1' needs azure-datalake-store ({exc.name}); "
                    "run: pip install 'batchpoint[azure]'"
                ) from exc
            credential = azure_auth.sync_token_credential(self.spec.credential, self._what)
            self._fs = core.AzureDLFileSystem(
                token_credential=credential, store_name=self.store_name, url_suffix=self.url_suffix
            )
        return self._fs

    # -- errors ----------------------------------------------------------------------------
    def _where(self, path: str = "") -> str:
        name = self.spec.config.get("datastore_name")
        store = f"data store '{name}', " if name else ""
        target = f"'{path}' in " if path else ""
        return (f"{target}ADLS Gen1 store '{self.store_name}.{self.url_suffix}' "
                f"({store}credential kind '{self.credential_kind}')")

    def _translate(self, exc: BaseException, path: str = "") -> BatchpointError:
        from azure.core.exceptions import ClientAuthenticationError

        for err in exception_chain(exc):
            if isinstance(err, BatchpointError):
                return err
            if isinstance(err, (ClientAuthenticationError, PermissionError)):
                return StorageAuthError(
                    f"access denied to {self._where(path)}: {azure_auth.AUTH_FIXES[self.credential_kind]}"
                    " (Gen1 checks POSIX ACLs: the identity needs read+execute on the folders)"
                )
            if isinstance(err, FileNotFoundError):
                return StorageNotFoundError(f"{self._where(path)} does not exist")
            if "HTTP error" in str(err) or isinstance(err, (TimeoutError, ConnectionError)):
                return TransientStorageError(f"could not reach {self._where(path)}: "
                                             f"{self._detail(err)} (retried)")
        return StorageError(f"ADLS Gen1 request failed on {self._where(path)}: {self._detail(exc)}")

    def _detail(self, err: BaseException) -> str:
        return redact(f"{type(err).__name__}: {first_line(err)}", self.spec.credential)

    def _call(self, fn: Any, path: str = "") -> Any:
        return translated(fn, self._translate, path, retries=retries_of(self.spec.config))

    @staticmethod
    def _abs(path: str) -> str:
        return "/" + normalize_relpath(path)

    # -- reading ---------------------------------------------------------------------------
    def _info(self, path: str) -> dict[str, Any] | None:
        try:
            return self._call(lambda: self.adl.info(self._abs(path)), path)
        except StorageNotFoundError:
            return None

    def is_file(self, path: str) -> bool:
        info = self._info(path) if normalize_relpath(path) else None
        return bool(info) and info.get("type") == "FILE"

    def is_dir(self, path: str) -> bool:
        info = self._info(path)
        return bool(info) and info.get("type") == "DIRECTORY"

    def iter_files(self, prefix: str) -> Iterator[FileInfo]:
        if not self.is_dir(prefix):
            raise StorageNotFoundError(f"folder {self._where(prefix)} does not exist")
        yield from self._walk(self._abs(prefix))

    def _walk(self, folder: str) -> Iterator[FileInfo]:
        # One folder's listing at a time, sorted: memory bounded by the largest folder.
        entries = self._call(lambda: self.adl.ls(folder, detail=True), folder)
        for entry in sorted(entries, key=lambda e: str(e.get("name", ""))):
            name = "/" + str(entry.get("name", "")).lstrip("/")
            if entry.get("type") == "DIRECTORY":
                yield from self._walk(name)
            else:
                yield FileInfo(normalize_relpath(name), entry.get("length"))

    def open_read(self, path: str) -> IO[bytes]:
        if not self.is_file(path):
            raise StorageNotFoundError(f"file {self._where(path)} does not exist")
        raw = self._call(lambda: self.adl.open(self._abs(path), "rb"), path)
        return ReadStream(raw, self._translate, name=path)  # type: ignore[return-value]

    # -- writing ---------------------------------------------------------------------------
    def open_write(self, path: str) -> IO[bytes]:
        rel = normalize_relpath(path)
        if not rel:
            raise ValidationError("cannot write a file at the root of a data store: give a path")
        parent = posixpath.dirname(self._abs(rel))
        self._call(lambda: self.adl.mkdir(parent), path)
        raw = self._call(lambda: self.adl.open(self._abs(rel), "wb"), path)

        def discard(f: Any) -> None:
            f.closed = True  # Gen1 appends as it goes: drop what was already sent
            self.delete(rel)

        return WriteStream(raw, self._translate, discard, name=path)  # type: ignore[return-value]

    def delete(self, path: str) -> None:
        rel = normalize_relpath(path)
        if not rel:  # the root stays; everything in it goes
            for entry in self._call(lambda: self.adl.ls("/"), path):
                self._call(lambda e=entry: self.adl.rm("/" + str(e).lstrip("/"), recursive=True), path)
            return
        if self._info(rel) is not None:
            self._call(lambda: self.adl.rm(self._abs(rel), recursive=True), path)

    def check_access(self, path: str = "") -> None:
        if self._info(path) is None:
            raise StorageNotFoundError(f"{self._where(path)} does not exist")

    def url_for(self, path: str) -> str:
        return f"adl://{self.store_name}.{self.url_suffix}/{normalize_relpath(path)}"
