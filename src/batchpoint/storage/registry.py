"""The storage kinds: one line per kind, naming the module that declares it.

Adding a kind is one module under ``batchpoint/storage/kinds/`` declaring ``KIND`` (a
:class:`~batchpoint.storage.kind.StorageKind`: schemes, identity rules, delegation, settings,
capabilities, and the ``"module:Class"`` of its backend) and one line in :data:`KIND_MODULES` (or,
for a plug-in outside Batchpoint, one :func:`register` call). The backend class is imported when a
backend is first opened, with the kind's pip extra as the install hint when its library is missing.
"""

from __future__ import annotations

import importlib
import threading

from batchpoint._internal.plugins import load
from batchpoint.exceptions import ValidationError
from batchpoint.storage.base import StorageBackend, StorageSpec
from batchpoint.storage.kind import StorageKind, UrlScheme

#: the modules that declare the storage kinds (``KIND``), in the order URL parsers are tried
KIND_MODULES: tuple[str, ...] = (
    "batchpoint.storage.kinds.local",
    "batchpoint.storage.kinds.azure_blob",
    "batchpoint.storage.kinds.adls_gen2",
    "batchpoint.storage.kinds.adls_gen1",
    "batchpoint.storage.kinds.s3",
    "batchpoint.storage.kinds.https",
)

_kinds: dict[str, StorageKind] = {}
_loaded = False
_lock = threading.RLock()
_cache: dict[str, type[StorageBackend]] = {}


def _declared(module_name: str) -> StorageKind:
    kind = getattr(importlib.import_module(module_name), "KIND", None)
    if not isinstance(kind, StorageKind):
        raise ValidationError(f"storage kind module '{module_name}' declares no KIND (a StorageKind)")
    return kind


def _all() -> dict[str, StorageKind]:
    global _loaded
    if not _loaded:
        with _lock:
            if not _loaded:
                for module_name in KIND_MODULES:
                    kind = _declared(module_name)
                    _kinds.setdefault(kind.name, kind)
                _loaded = True
    return _kinds


def register(kind: StorageKind | str) -> StorageKind:
    """Add a storage kind: its descriptor, or the name of the module that declares it as ``KIND``.
    A kind of the same name is replaced."""
    declared = _declared(kind) if isinstance(kind, str) else kind
    with _lock:
        _all()[declared.name] = declared
        _cache.pop(declared.name, None)
    return declared


def unregister(name: str) -> None:
    """Remove a kind added with :func:`register` (tests, plug-ins being unloaded)."""
    with _lock:
        _all().pop(name, None)
        _cache.pop(name, None)


def storage_kinds() -> list[StorageKind]:
    """Every registered kind, in registration order."""
    return list(_all().values())


def known_kinds() -> list[str]:
    return sorted(_all())


def datastore_kinds() -> list[str]:
    """The kinds a data store may be (``datastore``), in registration order: the types
    ``entities.Datastore`` accepts."""
    return [kind.name for kind in _all().values() if kind.datastore]


def find_kind(name: str) -> StorageKind | None:
    return _all().get(name)


def storage_kind(name: str) -> StorageKind:
    """The descriptor of kind ``name``; an unknown name is refused, listing the known ones."""
    kind = _all().get(name)
    if kind is None:
        raise ValidationError(f"unknown storage kind '{name}'; known kinds: {', '.join(known_kinds())}")
    return kind


def url_schemes() -> list[str]:
    """Every URL scheme some registered kind reads, sorted."""
    return sorted({scheme.scheme for kind in _all().values() for scheme in kind.schemes})


def scheme_parsers(scheme: str) -> list[UrlScheme]:
    """The parsers of ``scheme`` in the order they are tried: the kinds' own first, catch-alls last."""
    found = [s for kind in _all().values() for s in kind.schemes if s.scheme == scheme]
    return [s for s in found if not s.catch_all] + [s for s in found if s.catch_all]


def backend_class(kind: str) -> type[StorageBackend]:
    if kind in _cache:
        return _cache[kind]
    declared = storage_kind(kind)
    cls = load(declared.backend, declared.extra, f"storage kind '{kind}'")
    _cache[kind] = cls
    return cls


def open_backend(spec: StorageSpec) -> StorageBackend:
    return backend_class(spec.kind)(spec)
