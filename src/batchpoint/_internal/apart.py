"""Batchpoint's own stdlib-only scripts, run in a process of their own.

``python -I -S <script> <args>``: the same interpreter, no site packages and no ``PYTHON*``
variables, so it starts in ~10 ms. For work that is mostly system calls (a ``stat`` per file),
which in the server would take turns with the engine and the group commit on its one GIL: the
listing of a local store (``storage/local_walk.py``) and the end-of-job check for changed inputs
(``jobs/changed_inputs.py``). The script writes its answer to its standard output. (A warm
fenced worker's link helper, ``storage/local_links.py``, is such a script too, started by
``engines/warm.py`` with an input pipe and the worker's socket.)
"""

from __future__ import annotations

import subprocess
import sys


def start_script(script: str, *args: str) -> subprocess.Popen[bytes]:
    """``script`` started with ``args``: its standard output a pipe to read, no input, its errors
    dropped (the caller checks the answer and its exit status). :class:`OSError` when no process
    can be started (the caller then does the work itself)."""
    return subprocess.Popen([sys.executable, "-I", "-S", script, *args], stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, close_fds=True)
