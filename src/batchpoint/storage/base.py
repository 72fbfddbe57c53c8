"""The contract every storage backend keeps.

A backend serves one *location*: a root (a local folder, a blob container, an ADLS filesystem, an
S3 bucket, an HTTP base URL) described by a picklable :class:`StorageSpec`. Paths given to a
backend are relative to that root, use ``/`` and never contain ``..`` (callers normalise them with
:func:`normalize_relpath`). Specs travel to worker processes, which build their own backend with
:func:`batchpoint.storage.registry.open_backend`, so a mini-batch's files are read by the worker
that scores it.

Errors are translated at this boundary into :mod:`batchpoint.exceptions`:
``StorageNotFoundError`` (404), ``StorageAuthError`` (403 / bad credentials),
``TransientStorageError`` (timeouts, 5xx, throttling — retried by :func:`with_retries`).
"""

from __future__ import annotations

import abc
import posixpath
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any, ClassVar, TypeVar
from urllib.parse import unquote

from batchpoint.exceptions import BatchpointError, StorageNotFoundError, TransientStorageError, UnsafeInputError

T = TypeVar("T")


@dataclass(frozen=True)
class StorageSpec:
    """Where a backend points and how it authenticates. Picklable; holds secrets in ``credential``.

    ``kind`` picks the backend from the registry (``local``, ``azure_blob``,
    ``azure_data_lake_gen2``, ``azure_data_lake_gen1``, ``s3``, ``https``). ``config`` holds the
    non-secret settings (``path`` for local; ``account_name``, ``container_name``,
    ``endpoint``, ``protocol`` for Azure; ``bucket``, ``endpoint_url`` for S3; ...).
    ``credential`` is ``None`` (identity-based or anonymous) or a dict with a ``kind`` key
    (``account_key``, ``sas``, ``service_principal``, ``connection_string``, ``anonymous``,
    ``default_identity``, ``aws_keys``) and its secret fields.
    """

    kind: str
    config: dict[str, Any] = field(default_factory=dict)
    credential: dict[str, Any] | None = field(default=None, repr=False)

    @property
    def credential_kind(self) -> str:
        if not self.credential:
            return "none"
        return str(self.credential.get("kind", "unknown"))

    def describe(self) -> str:
        """A human label without secrets, for error messages and job records."""
        shown = {k: v for k, v in sorted(self.config.items()) if "key" not in k and "secret" not in k}
        return f"{self.kind}({', '.join(f'{k}={v}' for k, v in shown.items())})"


#: Config for a quick look before a job exists (invoke, registration): one attempt and short
#: timeouts, so an unreachable host is reported in seconds, not after minutes of retries.
PROBE_CONFIG: dict[str, Any] = {"retries": 0, "connect_timeout": 2, "read_timeout": 3}


def probe_spec(spec: StorageSpec) -> StorageSpec:
    """``spec`` for a quick check: the same storage and credential, :data:`PROBE_CONFIG` timeouts."""
    return StorageSpec(spec.kind, {**spec.config, **PROBE_CONFIG}, spec.credential)


def retries_of(config: dict[str, Any]) -> int:
    """How often a backend call is tried again at Batchpoint's level: never in a probe."""
    return 0 if str(config.get("retries", "")) == "0" else 1


@dataclass(frozen=True)
class FileInfo:
    """One file under a backend's root: ``path`` relative to the root, ``size`` in bytes,
    ``modified`` its modification time in nanoseconds where the backend knows it cheaply (local)."""

    path: str
    size: int | None = None
    modified: int | None = field(default=None, compare=False)


def _decoded(segment: str) -> str:
    """``segment`` with percent-encoding undone, layer after layer (``%252e`` → ``%2e`` → ``.``)."""
    for _ in range(4):
        if "%" not in segment:
            break
        decoded = unquote(segment)
        if decoded == segment:
            break
        segment = decoded
    return segment


def _climbs(segment: str) -> bool:
    """True for ``..`` and for a segment that a server decoding it would read as ``..`` or as a
    path holding ``..`` (``%2e%2e``, ``.%2E``, ``..%2f..``, ``%252e%252e``)."""
    if segment == "..":
        return True
    if "%" not in segment:
        return False
    return ".." in _decoded(segment).replace("\\", "/").split("/")


def normalize_relpath(path: str) -> str:
    """Normalise a path inside a store; refuse anything that would leave the store's root.

    ``\\`` counts as ``/``; empty and ``.`` segments are dropped, so a leading ``/`` means the
    store's root, never the server's. Refused (:class:`UnsafeInputError`): ``..`` segments, also
    percent-encoded (``%2e%2e``, double-encoded ``%252e%252e``, ``..%2f``), and NUL characters.
    """
    raw = (path or "").replace("\\", "/")
    if "\x00" in raw:
        raise UnsafeInputError(
            f"path {path!r} contains a NUL character, which no file or blob name may hold; "
            "give the path relative to the root of the data store or container",
            details={"path": str(path)[:200]},
        )
    parts = [p for p in raw.split("/") if p not in ("", ".")]
    if any(_climbs(p) for p in parts):
        raise UnsafeInputError(
            f"path '{path}' contains '..' segments (or their percent-encoded spelling %2e%2e), which could "
            "leave the data store or container; give the path from its root without '..'",
            details={"path": str(path)[:200]},
        )
    return posixpath.join(*parts) if parts else ""


class StorageBackend(abc.ABC):
    """Base class of every backend. Subclasses set ``kind`` and implement the abstract verbs."""

    kind: ClassVar[str] = ""

    def __init__(self, spec: StorageSpec) -> None:
        self.spec = spec

    # -- reading -------------------------------------------------------------------------
    @abc.abstractmethod
    def is_file(self, path: str) -> bool:
        """True when ``path`` is an existing file (False for folders and missing paths)."""

    @abc.abstractmethod
    def is_dir(self, path: str) -> bool:
        """True when ``path`` is a folder holding at least one file (or the root)."""

    @abc.abstractmethod
    def iter_files(self, prefix: str) -> Iterator[FileInfo]:
        """Every file under folder ``prefix``, recursively, lazily (page by page), in a
        deterministic order (lexicographic by path). Memory must not grow with the file count."""

    def iter_files_for_job(self, prefix: str) -> Iterator[FileInfo]:
        """:meth:`iter_files` for a job's listing: the same files in the same order. A backend may
        list them in a process of its own (local: ``storage/local_walk.py``)."""
        return self.iter_files(prefix)

    @abc.abstractmethod
    def open_read(self, path: str) -> IO[bytes]:
        """A binary file object to read ``path``."""

    def get_file(self, path: str, local_path: str) -> None:
        """Copy ``path`` to ``local_path`` (streamed)."""
        with self.open_read(path) as src, open(local_path, "wb") as dst:
            while chunk := src.read(1 << 20):
                dst.write(chunk)

    def local_path(self, path: str) -> str | None:
        """The path on this machine's disk when the backend is local (no copy needed), else None."""
        return None

    # -- writing -------------------------------------------------------------------------
    @abc.abstractmethod
    def open_write(self, path: str) -> IO[bytes]:
        """A binary file object that creates or replaces ``path`` when closed. It also has
        ``abort()``: drop what was written and leave ``path`` as it was (a ``with`` block that
        raises aborts too)."""

    def put_file(self, local_path: str, path: str) -> None:
        with open(local_path, "rb") as src, self.open_write(path) as dst:
            while chunk := src.read(1 << 20):
                dst.write(chunk)

    @abc.abstractmethod
    def delete(self, path: str) -> None:
        """Remove a file, or a folder and everything under it. Missing paths are not an error."""

    # -- checks --------------------------------------------------------------------------
    def check_access(self, path: str = "") -> None:
        """Raise StorageAuthError / StorageNotFoundError when the root cannot be read with the
        configured credential. Called before a job starts so bad credentials fail in seconds."""
        if path and not (self.is_file(path) or self.is_dir(path)):
            raise StorageNotFoundError(f"'{path}' does not exist in {self.spec.describe()}")

    def url_for(self, path: str) -> str:
        """A URL naming ``path`` for people (no secrets)."""
        return f"{self.spec.kind}://{path}"


def with_retries(
    fn: Callable[[], T], *, attempts: int = 5, base_delay: float = 0.2, max_delay: float = 5.0,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Call ``fn``; retry TransientStorageError with exponential backoff; re-raise the rest."""
    for attempt in range(1, attempts + 1):
        try:
            return fn()
        except TransientStorageError:
            if attempt == attempts:
                raise
            sleep(min(max_delay, base_delay * 2 ** (attempt - 1)))
    raise AssertionError("unreachable")


Translate = Callable[[BaseException, str], BaseException]


def translated(fn: Callable[[], T], translate: Translate, path: str = "", *, retries: int = 0) -> T:
    """THE error boundary of every backend: call ``fn``; a library's exception becomes the
    :mod:`batchpoint.exceptions` error ``translate(exc, path)`` names (raised ``from`` it); Batchpoint
    errors pass through; with ``retries``, a transient one is tried again with backoff."""

    def once() -> T:
        try:
            return fn()
        except BatchpointError:
            raise
        except Exception as exc:
            raise translate(exc, path) from exc

    return with_retries(once, attempts=retries + 1) if retries else once()
