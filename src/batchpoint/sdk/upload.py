"""Local files and folders → the default data store, under ``LocalUpload/<content hash>/<name>``.

The hash covers every file's relative path and bytes, so the same content is uploaded once: a
second invoke on the same folder re-uses it. Files are sent in sorted order and the last one is
checked, so an interrupted upload is never taken for a complete one.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

from batchpoint.exceptions import InputError
from batchpoint.sdk.transport import Transport


def _files(root: Path) -> list[Path]:
    if root.is_file():
        return [root]
    return sorted(p for p in root.rglob("*") if p.is_file() and not any(part.startswith(".") for part in p.relative_to(root).parts))


def content_hash(root: Path, files: list[Path]) -> str:
    digest = hashlib.sha256()
    for path in files:
        rel = path.name if root.is_file() else path.relative_to(root).as_posix()
        digest.update(rel.encode() + b"\0")
        with open(path, "rb") as handle:
            while chunk := handle.read(1 << 20):
                digest.update(chunk)
        digest.update(b"\0")
    return digest.hexdigest()[:32]


def _chunks(path: Path) -> Iterator[bytes]:
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            yield chunk


def upload_local(transport: Transport, datastore: str, local: str, expect: str | None = None) -> tuple[str, str]:
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
    target = f"LocalUpload/{content_hash(root, files)}/{root.resolve().name}"
    if root.is_file():
        dests = [(root, target)]
    else:
        dests = [(p, f"{target}/{p.relative_to(root).as_posix()}") for p in files]
    url = f"/datastores/{quote(datastore)}/files/"
    if not transport.exists(url + quote(dests[-1][1])):
        for path, dest in dests:
            transport.upload(url + quote(dest), _chunks(path))
    return f"azureml://datastores/{datastore}/paths/{target}", kind
