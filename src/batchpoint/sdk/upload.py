"""Local files and folders → the upload area of the default data store (``LocalUpload/<id>/<name>``).

The client declares a manifest (each file's relative path, size and SHA-256); the server derives
the upload's id from it, checks every byte it receives against it, and marks the upload
``Completed`` only after reading each file back (see ``batchpoint.workspace.uploads``). A second
invoke on the same content sends nothing: the server says the upload is complete. An interrupted
upload is resumed: the server lists the files still missing, and nothing half-sent is trusted.

Progress: while files are sent (and while ``jobs.download`` saves a job's outputs) the callback in
:data:`TRANSFER_PROGRESS`, when one is set, is called as ``(what, done, total, unit)`` — ``what``
``"uploading <name>"`` or ``"downloading <job>"``, ``unit`` ``"bytes"`` or ``"files"``. The CLI sets
it to draw a progress bar on a terminal (``cli/output.py``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from pathlib import Path
from typing import Any
from urllib.parse import quote

from batchpoint.exceptions import ConflictError, InputError
from batchpoint.sdk.transport import Transport


TransferProgress = Callable[[str, int, int, str], None]
TRANSFER_PROGRESS: ContextVar[TransferProgress | None] = ContextVar("batchpoint_transfer_progress", default=None)


def report(what: str, done: int, total: int, unit: str) -> None:
    callback = TRANSFER_PROGRESS.get()
    if callback is not None:
        callback(what, done, total, unit)


def _files(root: Path) -> list[Path]:
    if root.is_file():
        return [root]
    return sorted(p for p in root.rglob("*") if p.is_file() and not any(part.startswith(".") for part in p.relative_to(root).parts))


def manifest(root: Path, files: list[Path]) -> list[dict[str, Any]]:
    """Each file's path relative to ``root`` (its name for a single file), size and SHA-256."""
    entries = []
    for path in files:
        digest, size = hashlib.sha256(), 0
        with open(path, "rb") as handle:
            while chunk := handle.read(1 << 20):
                size += len(chunk)
                digest.update(chunk)
        rel = path.name if root.is_file() else path.relative_to(root).as_posix()
        entries.append({"path": rel, "size": size, "sha256": digest.hexdigest()})
    return entries


def _chunks(path: Path) -> Iterator[bytes]:
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            yield chunk


def upload_local(transport: Transport, local: str, expect: str | None = None) -> tuple[str, str]:
    """Upload a local file or folder; returns (datastore URI, input type)."""
    root = Path(local).expanduser()
    if not root.exists():
        raise InputError(f"local path '{local}' does not exist (relative paths are read from {Path.cwd()})")
    kind = "uri_file" if root.is_file() else "uri_folder"
    if expect and expect != kind:
        what = "a file" if root.is_file() else "a folder"
        raise InputError(f"input type '{expect}' disagrees with local path '{local}', which is {what}; use {kind}")
    files = _files(root)
    if not files:
        raise InputError(f"local folder '{local}' is empty: there are no files to upload")
    entries = manifest(root, files)
    upload = transport.json("POST", "/uploads", json={"name": root.resolve().name, "type": kind, "files": entries})
    if upload["status"] != "Completed":
        missing = set(upload["missing"])
        base = f"/uploads/{upload['id']}/files/"
        what, sent = f"uploading {root.name}", [0]
        total = sum(e["size"] for e in entries if e["path"] in missing)

        def counted(path: Path) -> Iterator[bytes]:
            for chunk in _chunks(path):
                yield chunk
                sent[0] += len(chunk)
                report(what, sent[0], total, "bytes")

        report(what, 0, total, "bytes")
        for path, entry in zip(files, entries):
            if entry["path"] in missing:
                try:
                    transport.upload(base + quote(entry["path"]), counted(path))
                except ConflictError:
                    pass  # sent meanwhile by another client with the same content; the commit checks it
        upload = transport.json("POST", f"/uploads/{upload['id']}/commit")
    return upload["path"], kind
