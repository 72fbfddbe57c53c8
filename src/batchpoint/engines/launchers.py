"""How the local pool starts a worker process: two launchers behind one small interface.

``launch(slot, job_name, log_path)`` returns ``(process, connection)``: a process handle
(``pid``, ``exitcode``, ``is_alive()``, ``kill()``, ``join(timeout)``) and a
:class:`multiprocessing.connection.Connection` that carries the worker protocol's JSON frames
(``send_bytes`` / ``recv_bytes``; :mod:`batchpoint.worker.protocol`). The engine then sends the
``start`` message; nothing else crosses the boundary.

* :class:`ForkserverLauncher` (the default, the fast path): a fork of a forkserver that has
  pandas, pyarrow, MLflow and scikit-learn imported already (``worker/preload.py``); the worker
  runs :func:`batchpoint.worker.loop.serve` on one end of a pipe.
* :class:`SubprocessLauncher`: ``[python_exe, "-m", "batchpoint.worker", "--fd", N]`` — a fresh
  interpreter, e.g. a deployment's own environment. The connection is one end of a
  ``socket.socketpair()`` whose other end the child *inherits* as fd ``N`` (``pass_fds``): no port
  is opened and no key is needed, since only the child holds the other end. Its stdout/stderr go
  to the worker's log from the first line, so an import error there is in ``logs/worker-<n>.log``.
  This is the seam for per-deployment environments and remote workers (Ray).
"""

from __future__ import annotations

import abc
import multiprocessing
import os
import socket
import subprocess
import threading
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from batchpoint.exceptions import PlatformError
from batchpoint.worker.entry import forked_worker
from batchpoint.worker.protocol import scratch_root

__all__ = ["ForkserverLauncher", "Launcher", "SubprocessLauncher", "mp_context", "warm_up", "worker_dirs"]

PRELOAD = ["batchpoint.worker.preload"]
_ctx_lock = threading.Lock()
_ctx: Any = None


def mp_context() -> Any:
    """The forkserver context with the heavy imports preloaded (started once per server)."""
    global _ctx
    with _ctx_lock:
        if _ctx is None:
            ctx = multiprocessing.get_context("forkserver")
            ctx.set_forkserver_preload(PRELOAD)
            _ctx = ctx
        return _ctx


def warm_up() -> None:
    """Start the forkserver now (server start-up), so the first job does not pay for imports."""
    proc = mp_context().Process(target=time.sleep, args=(0,))
    proc.start()
    proc.join()


def worker_dirs(parts_dir: str, slot: int) -> dict[str, str]:
    """The folders of the worker of ``slot``, in the job's scratch (``<job>/tmp/``, removed with the
    job's workers): ``scratch_dir`` (its downloads), ``workdir`` (its working directory and
    ``HOME``; ``MLFLOW_TRACKING_URI`` points at ``mlruns/`` there) and ``tmp_dir`` (its ``/tmp``)."""
    root = os.path.join(scratch_root(parts_dir), f"worker-{slot}")
    return {"root": root, "scratch_dir": os.path.join(root, "downloads"), "workdir": os.path.join(root, "work"),
            "tmp_dir": os.path.join(root, "tmp")}


class Launcher(abc.ABC):
    """Starts one worker process and hands back its handle and connection."""

    name = ""

    def worker_config(self, job: Any, slot: int) -> dict[str, Any]:
        """What this launcher adds to the job config of the worker of ``slot`` (``job``: the
        EngineJob): its own folders (:func:`worker_dirs`), so that it never works in the server's
        working directory."""
        dirs = worker_dirs(job.parts_dir, slot)
        return {"scratch_dir": dirs["scratch_dir"], "workdir": dirs["workdir"], "tmp_dir": dirs["tmp_dir"]}

    @abc.abstractmethod
    def launch(self, slot: int, job_name: str, log_path: Path) -> tuple[Any, Connection]:
        """Start the worker of ``slot``; the engine sends it the ``start`` message next."""


class ForkserverLauncher(Launcher):
    name = "forkserver"

    def launch(self, slot: int, job_name: str, log_path: Path) -> tuple[Any, Connection]:
        ctx = mp_context()
        parent, child = ctx.Pipe()
        proc = ctx.Process(target=forked_worker, args=(child,), daemon=True, name=f"batchpoint-{job_name}-w{slot}")
        proc.start()
        child.close()
        return proc, parent


class _PopenProcess:
    """A :class:`subprocess.Popen` with the process-handle verbs of ``multiprocessing.Process``."""

    def __init__(self, popen: subprocess.Popen) -> None:
        self.popen = popen
        self.pid = popen.pid

    @property
    def exitcode(self) -> int | None:
        return self.popen.poll()

    def is_alive(self) -> bool:
        return self.popen.poll() is None

    def kill(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()

    def join(self, timeout: float | None = None) -> None:
        try:
            self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pass


def _without_server_settings(environ: Any) -> dict[str, str]:
    """The environment less the server's own settings (``BATCHPOINT_*``: keys, database URL)."""
    return {k: v for k, v in environ.items() if not k.startswith("BATCHPOINT_")}


class SubprocessLauncher(Launcher):
    """Workers in a given Python interpreter (``python_exe``), which must have Batchpoint installed."""

    name = "subprocess"

    def __init__(self, python_exe: str, env: dict[str, str] | None = None) -> None:
        self.python_exe = python_exe
        self.env = env

    def launch(self, slot: int, job_name: str, log_path: Path) -> tuple[Any, Connection]:
        ours, theirs = socket.socketpair()
        log_path.parent.mkdir(parents=True, exist_ok=True)
        try:
            with open(log_path, "ab") as log:
                popen = subprocess.Popen(
                    [self.python_exe, "-m", "batchpoint.worker", "--fd", str(theirs.fileno())],
                    pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                    env={**_without_server_settings(os.environ), **(self.env or {})}, close_fds=True)
        except OSError as exc:
            ours.close()
            raise PlatformError(f"cannot start a worker of job {job_name} with the Python interpreter "
                                f"'{self.python_exe}': {exc}; give the path of an interpreter that has Batchpoint "
                                "installed", details={"python": self.python_exe}) from exc
        finally:
            theirs.close()
        return _PopenProcess(popen), Connection(ours.detach())
