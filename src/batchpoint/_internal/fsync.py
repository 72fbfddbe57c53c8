"""``fsync(2)`` of one path, file or folder (a folder's fsync makes its renames durable)."""

from __future__ import annotations

import os


def fsync_path(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
