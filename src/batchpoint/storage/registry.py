"""Storage kind → backend class, imported lazily, with an install hint for optional extras.

Adding a backend is one module under ``batchpoint/storage/`` and one line here.
"""

from __future__ import annotations

from batchpoint._internal.plugins import load
from batchpoint.exceptions import ValidationError
from batchpoint.storage.base import StorageBackend, StorageSpec

# kind: ("module:Class", "pip extra that installs its dependencies")
BACKENDS: dict[str, tuple[str, str | None]] = {
    "local": ("batchpoint.storage.local:LocalBackend", None),
    "azure_blob": ("batchpoint.storage.azure_blob:AzureBlobBackend", "azure"),
    "azure_data_lake_gen2": ("batchpoint.storage.azure_blob:AdlsGen2Backend", "azure"),
    "azure_data_lake_gen1": ("batchpoint.storage.adls_gen1:AdlsGen1Backend", "azure"),
    "s3": ("batchpoint.storage.s3:S3Backend", "s3"),
    "https": ("batchpoint.storage.http:HttpBackend", None),
}

_cache: dict[str, type[StorageBackend]] = {}


def known_kinds() -> list[str]:
    return sorted(BACKENDS)


def backend_class(kind: str) -> type[StorageBackend]:
    if kind in _cache:
        return _cache[kind]
    if kind not in BACKENDS:
        raise ValidationError(
            f"unknown storage kind '{kind}'; known kinds: {', '.join(known_kinds())}"
        )
    target, extra = BACKENDS[kind]
    cls = load(target, extra, f"storage kind '{kind}'")
    _cache[kind] = cls
    return cls


def open_backend(spec: StorageSpec) -> StorageBackend:
    return backend_class(spec.kind)(spec)
