"""A local data store's files, walked in order: in process, or by a process of its own.

:func:`walk` is the one walk of a local store (``storage/local.py LocalBackend.iter_files``): files
sorted by name within each folder, folders walked where they come in that order, names starting
``.tmp-`` (a file being written) skipped, and symbolic links followed only where they lead inside the
store. Each file comes with its size and modification time (ns), for the job's check of input files
that changed while it ran (``jobs/listing.py changed_files``).

A job's listing runs it **in a process of its own** (:func:`walk_apart`, after the first
:data:`IN_PROCESS_FIRST` files walked in process: :func:`walk_for_job`): run as a script
(``python -I -S local_walk.py ROOT FOLDER``), it writes each file as three NUL-terminated fields
(size, modification time, path under ROOT as the file system spells it) and ends with ``.`` (done) or
``!`` errno, message, file name (what stopped it). Why: every ``stat`` releases the server's one GIL
and waits to get it back behind the engine's and the group commit's threads; on a folder of
20,000 one-row files that wait paced the whole job (the listing took 0.7 s in the server against
0.16 s on its own). This file imports only ``os`` and ``sys`` when run as a script, so the process
starts in ~10 ms.
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:  # not imported when run as a script: it starts faster
    from collections.abc import Iterator
    from typing import IO

#: the markers that end the stream (a record starts with its size: digits)
_DONE, _FAILED = b".", b"!"
#: how much of the walk's output is read at once
_CHUNK = 1 << 16
#: files a job's listing walks in process before a process of its own takes over (its ~10 ms start
#: is then paid only by folders big enough to gain from it, while their first mini-batches score)
IN_PROCESS_FIRST = 1000


def walk(root: str, folder: str) -> Iterator[tuple[str, int, int]]:
    """``(path under root, size, modification time in ns)`` of each file under ``folder``."""
    root = root.rstrip(os.sep) or os.sep
    inside = root if root.endswith(os.sep) else root + os.sep
    cut = len(inside)
    with os.scandir(folder) as it:
        entries = sorted(it, key=lambda e: e.name)
    for entry in entries:
        if entry.name.startswith(".tmp-"):
            continue
        if entry.is_file(follow_symlinks=False):  # most entries: a plain file (its type from the folder read)
            st = entry.stat(follow_symlinks=False)
            yield entry.path[cut:], st.st_size, st.st_mtime_ns
            continue
        if entry.is_symlink():
            target = os.path.realpath(entry.path)
            if target != root and not target.startswith(inside):
                continue  # never follow links out of the store
        if entry.is_dir():
            yield from walk(root, entry.path)
        elif entry.is_file():
            st = entry.stat()
            yield entry.path[cut:], st.st_size, st.st_mtime_ns


def walk_for_job(root: str, folder: str, first: int | None = None) -> Iterator[tuple[str, int, int]]:
    """What :func:`walk` yields, for a job's listing: the first ``first`` files (default
    :data:`IN_PROCESS_FIRST`) walked in process, so a small folder never waits for a process to
    start (its first mini-batch comes as soon as it did in process); the rest by
    :func:`walk_apart`, whose first files are checked against those (same paths, in the same
    order). When they differ (the folder changed between the two walks), or the process fails on
    them, the walk goes on in process."""
    first = IN_PROCESS_FIRST if first is None else first
    here = walk(root, folder)
    head: list[str] = []
    for found in here:
        yield found
        head.append(found[0])
        if len(head) >= first:
            break
    else:
        return  # all of it walked here
    apart = walk_apart(root, folder)
    try:
        same = all(next(apart, (None,))[0] == path for path in head)
    except OSError:
        same = False
    if same:
        here.close()
        yield from apart
        return
    apart.close()
    yield from here


def walk_apart(root: str, folder: str) -> Iterator[tuple[str, int, int]]:
    """What :func:`walk` yields, walked by a process of its own (see the module's docstring); in
    process when no process can be started. The process is killed when the caller stops early."""
    import subprocess

    from batchpoint._internal.apart import start_script

    try:
        proc = start_script(__file__, root, folder)
    except OSError:
        yield from walk(root, folder)
        return
    finished = False
    try:
        assert proc.stdout is not None
        yield from _read(proc.stdout)
        finished = True
    finally:
        try:
            proc.wait(timeout=5 if finished else 0)  # at its end it exits at once; left early, it is killed
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def _read(stream: IO[bytes]) -> Iterator[tuple[str, int, int]]:
    fields: list[bytes] = []
    tail = b""
    fsdecode = os.fsdecode
    while True:
        chunk = stream.read1(_CHUNK)  # type: ignore[attr-defined]
        if not chunk:
            raise OSError(f"the listing of the local data store stopped early (its process ended; "
                          f"{len(fields)} field(s) unread)")
        parts = (tail + chunk).split(b"\0")
        tail = parts.pop()
        fields += parts
        i, n = 0, len(fields)
        while i < n:
            first = fields[i]
            if first == _DONE:
                return
            if first == _FAILED:
                if n - i < 4:
                    break
                code, message, name = fields[i + 1:i + 4]
                raise OSError(int(code), message.decode(errors="replace"), fsdecode(name) or None)
            if n - i < 3:
                break
            yield fsdecode(fields[i + 2]), int(first), int(fields[i + 1])
            i += 3
        del fields[:i]


def _main(argv: list[str]) -> int:
    root, folder = argv[1], argv[2]
    out = os.fdopen(1, "wb", buffering=_CHUNK)
    fsencode = os.fsencode
    try:
        written = 0
        for path, size, modified in walk(root, folder):
            out.write(b"%d\0%d\0%s\0" % (size, modified, fsencode(path)))
            written += 1
            if written == 64:  # the first mini-batches go at once, not after a whole buffer
                out.flush()
    except OSError as exc:
        out.write(b"%s\0%d\0%s\0%s\0" % (_FAILED, exc.errno or 0, (exc.strerror or str(exc)).encode(errors="replace"),
                                         fsencode(exc.filename or "")))
        out.flush()
        return 1
    except RecursionError:  # a folder linked inside itself
        out.write(b"%s\0%d\0%s\0%s\0" % (_FAILED, 0, b"folders nested too deep (a link to a folder above it?)",
                                         fsencode(folder)))
        out.flush()
        return 1
    out.write(_DONE + b"\0")
    out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv))
