"""A worker stops when the server that owns it dies — even while the user's code runs.

Without this, a worker whose server was killed finishes its mini-batch (17 s seen) while the
restarted server scores the same mini-batch again: scoring code runs twice at once. Three guards,
started by :func:`watch` as soon as the worker has its ``start`` message:

* a **watchdog thread** blocked in ``poll()`` on two things at once: a pidfd of the server process
  (``os.pidfd_open``: readable when that process exits; no PID-reuse race) and the worker's
  connection to the engine (``POLLHUP``: the engine closed its end, or its process died). Either
  one ends the worker with :func:`os._exit` within milliseconds — ``poll`` releases the GIL, so
  user code that sleeps, reads or computes in NumPy/pandas does not delay it. Without pidfds
  (old kernels) the thread polls the server's PID every ``FALLBACK_POLL_S``.
* ``prctl(PR_SET_PDEATHSIG, SIGKILL)`` for workers forked from the forkserver (their parent is the
  forkserver, which exits when the server dies): the kernel kills the worker even if user code
  holds the GIL in a C loop. Not set for a worker whose parent is the server itself: a death signal
  follows the parent *thread*, and the server starts workers from short-lived job threads.
* the engine's own kill: on cancel or timeout the engine sends SIGKILL by PID.

The exit code is :data:`EXIT_ORPHANED` (70) and the worker's log says why.
"""

from __future__ import annotations

import ctypes
import os
import select
import signal
import sys
import threading
import time
from typing import Any

__all__ = ["EXIT_ORPHANED", "watch"]

EXIT_ORPHANED = 70
FALLBACK_POLL_S = 0.2
_PR_SET_PDEATHSIG = 1


def _set_pdeathsig() -> bool:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0
    except (OSError, AttributeError):  # not Linux
        return False


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _exit(why: str) -> None:
    try:
        sys.stderr.write(f"batchpoint worker {os.getpid()}: {why}; exiting so that no scoring code runs "
                         "without its server\n")
        sys.stderr.flush()
    finally:
        os._exit(EXIT_ORPHANED)


def watch(server_pid: int | None, conn: Any) -> threading.Thread:
    """Start the guards for a worker owned by process ``server_pid`` that talks to it over ``conn``.
    ``server_pid`` None: a worker in a sandbox (``engines/sandbox.py``), where the server's pid does
    not exist; only the connection is watched (bwrap's ``--die-with-parent`` ends the sandbox with
    the server)."""
    pidfd: int | None = None
    if server_pid is not None:
        if os.getppid() != server_pid and _set_pdeathsig() and os.getppid() == 1:
            _exit("its parent (the worker forkserver) exited before the worker started")
        if not _alive(server_pid):
            _exit(f"its server (pid {server_pid}) is gone")
        try:
            pidfd = os.pidfd_open(server_pid)
        except (AttributeError, OSError):
            pidfd = None
    try:
        conn_fd = conn.fileno()
    except (AttributeError, OSError, ValueError):
        conn_fd = None
    thread = threading.Thread(target=_run, args=(server_pid, pidfd, conn_fd), name="batchpoint-watchdog",
                              daemon=True)
    thread.start()
    return thread


def _run(server_pid: int | None, pidfd: int | None, conn_fd: int | None) -> None:
    poller = select.poll()
    if pidfd is not None:
        poller.register(pidfd, select.POLLIN)
    if conn_fd is not None:
        poller.register(conn_fd, 0)  # no events asked: only POLLHUP / POLLERR / POLLNVAL come back
    timeout_ms = None if pidfd is not None or server_pid is None else int(FALLBACK_POLL_S * 1000)
    while True:
        for fd, events in poller.poll(timeout_ms):
            if fd == pidfd:
                _exit(f"its server (pid {server_pid}) exited")
            if events & (select.POLLHUP | select.POLLERR):
                _exit("the engine closed its connection (its server stopped or the job ended)")
            if events & select.POLLNVAL:  # the connection was closed in this process: the loop ended
                return
        if pidfd is None and server_pid is not None and not _alive(server_pid):
            _exit(f"its server (pid {server_pid}) exited")
        if timeout_ms is None:
            time.sleep(0)  # spurious wake-up
