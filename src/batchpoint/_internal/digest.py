"""The SHA-256 of a folder's files, the same wherever the folder lies (a code snapshot's identity)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path


def tree_sha256(folder: str | Path) -> str:
    """Hex SHA-256 over each file's path relative to ``folder`` and its bytes, in path order
    (``__pycache__`` folders and ``.pyc`` files, which running the code writes, are left out)."""
    root = Path(folder)
    paths = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d != "__pycache__"]
        paths += [Path(dirpath, f) for f in filenames if not f.endswith(".pyc")]
    digest = hashlib.sha256()
    for path in sorted(paths, key=lambda p: p.relative_to(root).as_posix()):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        with open(path, "rb") as file:
            for block in iter(lambda: file.read(1 << 20), b""):
                digest.update(block)
        digest.update(b"\0")
    return digest.hexdigest()
