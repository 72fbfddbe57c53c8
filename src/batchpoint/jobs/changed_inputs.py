"""Which listed input files no longer look as the listing saw them: the first pass of the job's
check for input files that changed while it ran (``jobs/listing.py Lister.changed_files``).

One ``stat`` per file on a local data store, against the size and modification time the manifest
recorded (``jobs/folder.py Manifest``: ``files`` and ``seen`` of each line). At a job's end the
runner starts it **in a process of its own** (run as a script: ``python -I -S changed_inputs.py
MANIFEST ROOTS``, ``ROOTS`` a JSON object of input name -> its store's folder ending in ``/``; it
writes one JSON line ``[input, path, size, modified]`` per file that differs, then ``.``), so that
the 20,000 stats of a job of 20,000 files run beside the output's assembly instead of taking turns
with it on the server's one GIL. This file imports only ``os``, ``sys`` and ``json`` when run as a
script. What a differing file is (changed, removed, or a link out of the store) is decided by the
server, for these few files only.
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:  # not imported when run as a script: it starts faster
    from collections.abc import Iterable, Iterator
    from typing import Any

#: the last line of the script's output: it read the whole manifest
DONE = b"."
#: a listing of at most this many files is checked in the server: a process's ~10 ms start would
#: cost a small job more than its stats
IN_PROCESS_UP_TO = 1000


def suspects(entries: Iterable[dict[str, Any]], roots: dict[str, str]) -> Iterator[tuple[str, str, Any, Any]]:
    """``(input, path, listed size, listed modification time)`` of each file of ``entries`` (the
    manifest's lines) on an input of ``roots`` whose size or time is not as listed now, or that is
    gone. Files listed with neither (a manifest written before they were recorded) are not checked."""
    stat = os.stat
    for entry in entries:
        files = entry.get("files")
        if entry.get("complete") or not files:
            continue
        seen = entry.get("seen") or []
        for i, (source, path) in enumerate(files):
            root = roots.get(source)
            if root is None:
                continue
            size, modified = (list(seen[i]) + [None, None])[:2] if i < len(seen) else (None, None)
            if size is None and modified is None:
                continue
            try:  # the listed path under the store's folder: one stat, no path checks, for the files unchanged
                st = stat(root + path)
                if (size is None or st.st_size == size) and (modified is None or st.st_mtime_ns == modified):
                    continue
            except OSError:
                pass
            yield source, path, size, modified


def _entries(manifest: str) -> Iterator[dict[str, Any]]:
    import json

    with open(manifest, "rb") as handle:
        for raw in handle:
            try:
                entry = json.loads(raw)
            except ValueError:  # a torn last line: the listing's record of it was never complete
                continue
            if isinstance(entry, dict):
                yield entry


def _main(argv: list[str]) -> int:
    import json

    manifest, roots = argv[1], json.loads(argv[2])
    out = os.fdopen(1, "wb", buffering=1 << 16)
    for found in suspects(_entries(manifest), roots):
        out.write(json.dumps(found).encode() + b"\n")
    out.write(DONE + b"\n")
    out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv))
