"""A storage kind that is not part of Batchpoint: files held in this process's memory, read with
``mem://<store>/<path>``. Everything Batchpoint needs to know about it is declared here, in one
module, as a new kind's module would declare it; a test adds it with one ``registry.register`` call
(the registry line) and runs the shared conformance suite, input parsing, resolution, identity rules
and delegation against it."""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import IO, Any
from urllib.parse import SplitResult

from batchpoint.exceptions import StorageNotFoundError, ValidationError
from batchpoint.storage.base import FileInfo, StorageBackend, StorageSpec, normalize_relpath
from batchpoint.storage.kind import (
    Capabilities, Delegation, IdentityRules, MalformedUrl, StorageKind, StorageUrl, UrlScheme,
)

#: store name -> {path: bytes}
STORES: dict[str, dict[str, bytes]] = {}


class _Writer(io.BytesIO):
    def __init__(self, files: dict[str, bytes], key: str) -> None:
        super().__init__()
        self._files, self._key, self._done = files, key, False

    def abort(self) -> None:
        self._done = True
        super().close()

    def close(self) -> None:
        if not self._done and not self.closed:
            self._files[self._key] = self.getvalue()
        self._done = True
        super().close()

    def __exit__(self, exc_type: Any, *rest: Any) -> None:
        self.abort() if exc_type is not None else self.close()


class MemoryBackend(StorageBackend):
    kind = "memory"

    def __init__(self, spec: StorageSpec) -> None:
        super().__init__(spec)
        self.files = STORES.setdefault(str(spec.config["name"]), {})

    def is_file(self, path: str) -> bool:
        key = normalize_relpath(path)
        return bool(key) and key in self.files

    def is_dir(self, path: str) -> bool:
        key = normalize_relpath(path)
        return not key or any(name.startswith(key + "/") for name in self.files)

    def iter_files(self, prefix: str) -> Iterator[FileInfo]:
        key = normalize_relpath(prefix)
        if key and not self.is_dir(key):
            raise StorageNotFoundError(f"folder '{key}' does not exist in {self.spec.describe()}")
        base, last = (key + "/" if key else ""), None
        while True:  # one name per step, looked up again each time: lazy, as a paged listing is
            after = sorted(n for n in self.files if n.startswith(base) and (last is None or n > last))
            if not after:
                return
            last = after[0]
            yield FileInfo(last, len(self.files[last]))

    def open_read(self, path: str) -> IO[bytes]:
        key = normalize_relpath(path)
        if key not in self.files:
            raise StorageNotFoundError(f"'{key}' does not exist in {self.spec.describe()}")
        return io.BytesIO(self.files[key])

    def open_write(self, path: str) -> IO[bytes]:
        key = normalize_relpath(path)
        if not key:
            raise ValidationError("cannot write a file at the root of a store: give a path")
        return _Writer(self.files, key)

    def delete(self, path: str) -> None:
        key = normalize_relpath(path)
        for name in [n for n in self.files if not key or n == key or n.startswith(key + "/")]:
            del self.files[name]

    def url_for(self, path: str) -> str:
        return f"mem://{self.spec.config['name']}/{normalize_relpath(path)}"


def parse_url(text: str, scheme: str, parts: SplitResult, hostport: str, path: str) -> StorageUrl:
    if parts.username is not None or parts.port is not None:
        raise MalformedUrl("expected mem://<store>/<path>")
    return StorageUrl("memory", "", hostport, path, None, text, scheme)


def spec_for_url(url: StorageUrl, storage: Any) -> tuple[StorageSpec, str]:
    return StorageSpec("memory", {"name": url.container}), url.path


KIND = StorageKind(
    name="memory",
    title="a memory store",
    backend=f"{__name__}:MemoryBackend",
    extra=None,
    schemes=(UrlScheme("mem", parse_url),),
    spec_for_url=spec_for_url,
    identity=IdentityRules(
        reader="job", compute_identities=("managed_identity",),
        compute_identity_hint="give the compute a managed_identity, the only identity a memory store trusts",
        public_access=False, account_fields=("name",), location="memory store", container_word="store",
        grant="Give the compute a managed identity, or register a data store with credentials",
    ),
    delegation=Delegation(sas=False, token_scope="https://memory.example/.default"),
    capabilities=Capabilities(lists_folders=True, writable=True, hierarchical=False),
    config_fields=("name",),
)
