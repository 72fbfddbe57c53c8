"""A local data store's files hard-linked into a folder a fenced worker sees: in process, or by a
process of its own (a warm worker's *link helper*).

A warm fenced worker (``engines/warm.py``) cannot see the data store: the engine hard-links each
mini-batch's files into the worker's exchange folder, through a descriptor of the file's folder
whose real path is checked once open, regular files only (:func:`link_regular_file`,
:func:`link_from_store`). On tiny files those are four system calls a file on the engine's thread,
each of which gives up the server's one GIL and waits to get it back behind the group commit and
the listing: on 20,000 one-row files they were half the server's CPU and paced the job.

So each warm worker has a **link helper**: this file run as a script (``python -I -S
local_links.py FD``, imports ``os``, ``sys``, ``re``, ``stat``, ``json``, ``struct`` and ``shutil`` only),
started with the worker and ended with it. ``FD`` is the server's end of the worker's socket. The
engine writes it, on its standard input, a *links* frame and then the worker's ``batch`` frame,
each a 4-byte big-endian length and its bytes (``multiprocessing.connection``'s framing)::

    {"key": <mini-batch>, "roots": {<input>: <store root>}, "in": <the worker's in/>,
     "files": [[<input>, <its path in the store>, <1: make its folder first>], ...]}

It links every file (:func:`link_from_store`, the same checks as in process), writes on its
standard output a frame ``{"key": ..., "refused": [why, ...]}`` when it would not link some (a
folder or file that now leads out of the store; the first :data:`REFUSED_SHOWN`, the rest
counted), and only then passes the ``batch`` frame on to
the worker, byte for byte. The engine reads the refusals before the worker's reply (one ``poll``
sees both; the helper's first) and fails that mini-batch as it does in process. The helper ends at
the end of its input; if it dies, the engine stops its worker (its mini-batches are retried), since
frames it held may be lost. Paths the engine would have to normalise, and a worker without a
helper, are linked in process as before.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import struct
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:  # not imported when run as a script: it starts faster
    from pathlib import Path

#: what :func:`normalize_relpath` would change or refuse in a relative path: a backslash, a NUL, a
#: percent sign (an encoded ``..``), a leading, doubled or trailing ``/``, a ``.`` or ``..`` segment
NEEDS_NORMALISING = re.compile(r"[\\\x00%]|^/|//|/$|(^|/)\.\.?(/|$)")


def inside(real: str, root: str) -> bool:
    """Whether the real path ``real`` is the store's ``root`` (a real path) or below it."""
    return real == root or real.startswith(root.rstrip(os.sep) + os.sep)


def folder_outside(shown: str) -> str:
    """Why a file was not linked: its folder, open, resolves outside the store."""
    return (f"the data store's folder '{shown}' now resolves outside the data store through a symbolic link "
            "(swapped in during the job?); only files inside the data store are read")


def refusal(source: str, path: str, problem: str) -> str:
    """A file of a mini-batch not given to the worker, and why (its error message lists them)."""
    return f"input '{source}', file '{path}': {problem}"


def path_outside(path: str) -> str:
    """Why a file was not linked or read: it resolves outside the store through a link."""
    return (f"path '{path}' resolves outside the data store's folder through a symbolic link; only files "
            "inside the data store can be read or written: copy the data into it, or register its folder as "
            "a data store of its own")


def open_checked_folder(folder: str, root: str) -> int | str | None:
    """An ``O_PATH`` descriptor of ``folder`` whose real path, read from the *open* descriptor
    (``/proc/self/fd``), is inside ``root``; why not (:func:`folder_outside`) when it lies outside;
    None when there is no such folder. The caller closes the descriptor."""
    try:
        fd = os.open(folder, os.O_PATH | os.O_DIRECTORY)
    except OSError:
        return None
    try:
        real = os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        real = ""
    if not inside(real, root):
        os.close(fd)
        return folder_outside(os.path.relpath(folder, root) if folder.startswith(root) else "?")
    return fd


def link_regular_file(folder_fd: int, name: str, target: str | Path, made: set[str] | None = None,
                      st: os.stat_result | None = None) -> bool:
    """Hard-link the regular file ``name`` of the folder open as ``folder_fd`` (a descriptor from
    :func:`open_checked_folder` or :meth:`LocalBackend.open_folder`) to ``target``, never following a link; across file systems a
    copy of it, opened ``O_NOFOLLOW``. Whether ``target`` now holds that file: a name that is not a
    regular file, or one swapped for a link between the check and the link, is not given (the warm
    workers' and warm Ray actors' inputs: ``engines/warm.py``, ``worker/ray_actor.py``). ``made``:
    the target folders already made (the caller's, kept across calls: one ``mkdir`` per folder);
    ``st``: the caller's ``stat`` of ``name`` through ``folder_fd`` without following a link, just
    taken (not taken again; the linked inode is checked against it all the same)."""
    if st is None:
        try:
            st = os.stat(name, dir_fd=folder_fd, follow_symlinks=False)
        except OSError:
            return False
    if not stat.S_ISREG(st.st_mode):
        return False
    folder = os.path.dirname(os.fspath(target))
    if made is None or folder not in made:
        os.makedirs(folder, exist_ok=True)
        if made is not None:
            made.add(folder)
    try:
        os.link(name, target, src_dir_fd=folder_fd, follow_symlinks=False)
    except FileExistsError:
        return True
    except OSError:  # another file system, or a file that may not be linked: a copy
        try:
            source = os.open(name, os.O_RDONLY | os.O_NOFOLLOW, dir_fd=folder_fd)
        except OSError:
            return False
        with os.fdopen(source, "rb") as inp:
            if not stat.S_ISREG(os.fstat(inp.fileno()).st_mode):
                return False
            with open(target, "wb") as out:
                shutil.copyfileobj(inp, out)
        return True
    try:
        linked = os.lstat(target)
        if stat.S_ISREG(linked.st_mode) and linked.st_ino == st.st_ino:
            return True
        os.unlink(target)
    except OSError:
        pass
    return False


def link_from_store(root: str, source: str, target: str, made: set[str] | None, opened: dict[str, int],
                    shown: str) -> str | None:
    """Hard-link the file ``source`` (a path under ``root``, the store's real path, with nothing to
    normalise; ``shown`` as the job names it) to ``target``: through a checked descriptor of its
    folder (kept in ``opened``, which the caller closes), a link inside the store followed once,
    regular files only. Nothing when the file is not there (the worker reports it missing); why,
    when it leads out of the store. The one linking of a warm worker's input, in process
    (``engines/warm.py WarmWorker._link``) and in its link helper."""
    for _ in range(2):  # the file itself may be a link inside the store: its target, once
        folder, base = os.path.split(source)
        fd = opened.get(folder)
        if fd is None:
            checked = open_checked_folder(folder, root)
            if checked is None or isinstance(checked, str):
                return checked
            fd = opened[folder] = checked
        try:
            st = os.stat(base, dir_fd=fd, follow_symlinks=False)
        except OSError:
            return None
        if not stat.S_ISLNK(st.st_mode):
            break
        source = os.path.realpath(source)
        if not inside(source, root):
            return path_outside(shown)
    link_regular_file(fd, base, target, made=made, st=st)
    return None


# -- the link helper (run as a script) ------------------------------------------------------------
#: the refusals of one mini-batch the helper names (the rest counted), and the length of each: its
#: answer stays far below a pipe's 64 KiB, so it never waits on an engine that waits on it
REFUSED_SHOWN, REASON_MAX = 20, 600


class _Frames:
    """Frames of standard input (a 4-byte big-endian length, then that many bytes), read 64 KiB at a
    time: the engine writes a mini-batch's two frames in one write, which one read then takes."""

    def __init__(self) -> None:
        self.buffer = bytearray()

    def next(self) -> bytes | None:
        """The next frame, its length included; None at the end of the input."""
        while True:
            if len(self.buffer) >= 4:
                end = 4 + struct.unpack_from("!i", self.buffer)[0]
                if len(self.buffer) >= end:
                    frame = bytes(self.buffer[:end])
                    del self.buffer[:end]
                    return frame
            chunk = os.read(0, 1 << 16)
            if not chunk:
                return None
            self.buffer += chunk


def _write(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _link_frame(links: dict) -> list[str]:
    """Link a links frame's files; why each refused one was not linked."""
    refused: list[str] = []
    opened: dict[str, int] = {}
    roots, in_root = links["roots"], links["in"]
    try:
        for source, path, make in links["files"]:
            rel = path.lstrip("/")
            target = f"{in_root}/{source}/{rel}"
            folder = os.path.dirname(target)
            try:
                if make:
                    os.makedirs(folder, exist_ok=True)
                root = roots[source]
                problem = link_from_store(root, f"{root}/{rel}", target, {folder}, opened, shown=path)
            except OSError:  # not linked: the worker reports the file missing
                problem = None
            if problem is not None:
                refused.append(refusal(source, path, problem))
    finally:
        for fd in opened.values():
            os.close(fd)
    return refused


def _main(argv: list[str]) -> int:
    """Read links frames and batch frames until the end of standard input (module docstring)."""
    worker, frames = int(argv[1]), _Frames()
    while True:
        head = frames.next()
        payload = frames.next() if head is not None else None
        if payload is None:
            return 0
        links = json.loads(head[4:])
        refused = _link_frame(links)
        if refused:  # bounded: a frame the engine reads whole while it may be writing the next one
            shown = [why[:REASON_MAX] for why in refused[:REFUSED_SHOWN]]
            if len(refused) > REFUSED_SHOWN:
                shown.append(f"and {len(refused) - REFUSED_SHOWN} more files of this mini-batch not linked")
            answer = json.dumps({"key": links["key"], "refused": shown}).encode()
            _write(1, struct.pack("!i", len(answer)) + answer)
        try:
            _write(worker, payload)
        except OSError:  # the worker is gone: the engine sees it on its own end
            return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv))
