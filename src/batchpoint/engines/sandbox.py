"""The fence around scoring code: each local worker runs in a bubblewrap sandbox of its own.

A scoring script is code a Contributor uploaded; the server holds the Owner's key, the server key
that decrypts every data store's secret and the metadata database. So a worker never runs in the
server's view of the machine. :class:`SandboxLauncher` starts each worker as
``bwrap … -- python -m batchpoint.worker --fd N`` (Debian's ``bubblewrap``) with:

* **a filesystem of its own** — an empty root (tmpfs) holding only, read-only: ``/usr`` (and the
  ``/bin``, ``/lib*`` links), a few files of ``/etc`` (name resolution, CA certificates, time zone),
  the worker's Python (its environment's prefix, the base interpreter it was made from, the folders
  its ``.pth`` files name), the model and code copies, the job's local input stores and a CA bundle
  the server was told to use; and, writable: the job's ``parts`` and ``AZUREML_BI_OUTPUT_PATH``
  folders, the workers' state folder, its own log file and its own scratch folder
  (``<job>/tmp/worker-<slot>/``: downloads, working directory, ``/tmp``). Everything at the same path
  as on the host, so nothing in the job config is translated. Not there: the server's home (its
  ``owner.key``, ``server.key``, ``metadata.db``), other jobs, other workers' scratch, ``/root``,
  ``/home``, the rest of ``/etc``.
* **its own pid namespace** (``--unshare-pid``, a fresh ``/proc``): the server's processes and their
  ``/proc/<pid>/environ`` do not exist there; when the worker (pid 2 there, under bwrap's pid 1)
  ends or is killed, the kernel kills every process left in the namespace, also those its code
  started in new sessions (``setsid``). ``--die-with-parent``: the sandbox dies with the server's
  job thread that started it.
* **another user** — by default (``workers.run_as: namespace``) a user namespace
  (``--unshare-user --disable-userns``): the worker is ``workers.uid``/``workers.gid`` (65534) inside,
  mapped to the server's own user outside, with no capabilities outside its namespace; what it
  may read is what is bound. ``workers.run_as: uid`` (a server running as root) makes it a real
  other user as well: ``setpriv`` drops it to ``workers.uid``/``workers.gid`` with no supplementary
  groups and no capabilities before Python starts, so even a file bound by mistake is read with
  that user's rights (the folders it writes are given to that user first; its inputs, model and
  code must be readable by that user). ``no_new_privs`` either way (bwrap).
* **a clean environment** (``--clearenv``): ``PATH``, ``HOME`` (its working directory), ``LANG``,
  ``USER``, the CA bundle and proxy variables the server itself was started with; the job's and
  deployment's variables come with the ``start`` message. Only the worker's own socket is inherited
  (``close_fds``), plus its log as stdout/stderr.
* ``--new-session`` (no ``TIOCSTI`` on the server's terminal), separate IPC and UTS namespaces.

Not fenced: the network (a worker reads remote stores itself), CPU and memory (no cgroup limits),
and what the job itself may read and write. ``workers.isolation: none`` (an Owner's explicit
opt-out, ``BATCHPOINT_WORKERS__ISOLATION=none``) runs workers as forks of the server's forkserver
instead, unfenced, with a warning at start-up and on every job; without a working ``bwrap`` and no
opt-out, workers are refused with a message that says what to install (:func:`check`).
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from batchpoint.engines.launchers import Launcher, _PopenProcess, worker_dirs
from batchpoint.engines.planning import EngineJob
from batchpoint.exceptions import PlatformError
from batchpoint.worker.sandbox import DEFAULT_ISOLATION, _real_uid, _root, check, command, input_location

__all__ = ["DEFAULT_ISOLATION", "SandboxLauncher", "bwrap_command", "check", "isolation_of"]

log = logging.getLogger(__name__)


def isolation_of(job: EngineJob) -> dict[str, Any]:
    return {**DEFAULT_ISOLATION, **(getattr(job, "isolation", None) or {})}


def _own(path: Path, uid: int, gid: int) -> None:
    try:
        os.chown(path, uid, gid)
    except OSError as exc:
        raise PlatformError(f"cannot give the worker's folder {path} to uid {uid}: {exc}") from exc


def bwrap_command(job: EngineJob, slot: int, python_exe: str, fd: int, options: dict[str, Any] | None = None,
                  root: bool | None = None) -> tuple[list[str], dict[str, str]]:
    """The bwrap command line of the worker of ``slot`` (and the environment bwrap itself starts
    with). Makes the folders the worker writes, and gives them to the worker's user when it is a
    real other user (``workers.run_as: uid``)."""
    options = {**isolation_of(job), **(options or {})}
    root = _root() if root is None else root
    uid, gid = int(options["uid"]), int(options["gid"])
    dirs = worker_dirs(job.parts_dir, slot)
    job_dir = Path(job.parts_dir).resolve().parent
    writable = [Path(job.parts_dir), job_dir / "state", Path(dirs["scratch_dir"]), Path(dirs["workdir"]),
                Path(dirs["tmp_dir"])]
    bi_output = job.environment.get("AZUREML_BI_OUTPUT_PATH")
    if bi_output:
        writable.append(Path(bi_output))
    for folder in writable:
        folder.mkdir(parents=True, exist_ok=True)
    log_file = Path(job.logs_dir) / f"worker-{slot}.log"
    log_files = [log_file, log_file.with_name(log_file.name + ".1")]  # the log and its one older copy
    for path in log_files:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(exist_ok=True)
    if root and _real_uid(options):  # the folders it writes become the workers' user's
        for path in [Path(dirs["root"]), *writable, *log_files]:
            _own(path, uid, gid)
        for path in [Path(dirs["root"]), *writable]:
            os.chmod(path, 0o700 if path != Path(job.parts_dir) else 0o755)
    readonly: list[str | Path] = [job.scorer[key] for key in ("model_dir", "azureml_model_dir", "code_dir")
                                  if job.scorer.get(key)]
    inputs = options.get("inputs") or {}
    for key, spec in (job.sources or {}).items():
        kind = spec.kind if hasattr(spec, "kind") else spec.get("kind")
        config = spec.config if hasattr(spec, "config") else (spec.get("config") or {})
        if kind == "local" and config.get("path"):
            readonly.append(input_location(config["path"], inputs.get(key)))
    return command(python_exe=python_exe, fd=fd, readonly=readonly, writable=[*writable, *log_files],
                   workdir=dirs["workdir"], tmp_dir=dirs["tmp_dir"], options=options, root=root)


class _SandboxProcess(_PopenProcess):
    """The bwrap process, with ``pid`` the worker's own (the Python process inside), so that what
    is read from ``/proc/<pid>`` (its memory, its cgroup) is the worker's; ``exitcode`` as
    ``multiprocessing`` gives it (bwrap exits 128+N when the worker was killed by signal N: -N);
    ``kill()`` ends bwrap, and with it every process of the sandbox's pid namespace."""

    def __init__(self, popen: subprocess.Popen) -> None:
        super().__init__(popen)
        self.bwrap_pid = popen.pid
        self._inner: int | None = None

    @property  # type: ignore[override]
    def pid(self) -> int:
        if self._inner is None:
            inner = _worker_pid(self.bwrap_pid)
            if inner is None:
                return self.bwrap_pid
            self._inner = inner
        return self._inner

    @pid.setter
    def pid(self, value: int) -> None:  # set by _PopenProcess.__init__
        pass

    @property
    def exitcode(self) -> int | None:
        code = self.popen.poll()
        return -(code - 128) if code is not None and 128 < code <= 128 + 64 else code


def _worker_pid(pid: int) -> int | None:
    """The first descendant of bwrap's ``pid`` that is not bwrap itself (bwrap → its pid 1 → the
    worker); None while there is none yet."""
    current = pid
    for _ in range(4):
        try:
            children = Path(f"/proc/{current}/task/{current}/children").read_text().split()
        except OSError:
            return None
        if not children:
            return None
        current = int(children[0])
        try:
            if Path(f"/proc/{current}/comm").read_text().strip() != "bwrap":
                return current
        except OSError:
            return None
    return None


class SandboxLauncher(Launcher):
    """Workers of ``job`` in bwrap sandboxes (see the module docstring), in ``python_exe``."""

    name = "sandbox"

    def __init__(self, job: EngineJob, python_exe: str | None = None, options: dict[str, Any] | None = None) -> None:
        self.job = job
        self.python_exe = python_exe or sys.executable
        self.options = {**isolation_of(job), **(options or {})}
        problem = check(self.options)
        if problem is not None:
            raise PlatformError(f"cannot start the workers of job {job.name}: {problem}")

    def worker_config(self, job: EngineJob, slot: int) -> dict[str, Any]:
        # the server's pid does not exist in the sandbox's pid namespace: bwrap's --die-with-parent
        # and the closed connection end the worker with the server instead
        return {**super().worker_config(job, slot), "server_pid": None, "sandboxed": True}

    def launch(self, slot: int, job_name: str, log_path: Path) -> tuple[Any, Connection]:
        ours, theirs = socket.socketpair()
        try:
            argv, env = bwrap_command(self.job, slot, self.python_exe, theirs.fileno(), self.options)
            with open(log_path, "ab") as log_file:
                popen = subprocess.Popen(argv, pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL, stdout=log_file,
                                         stderr=log_file, env=env, close_fds=True)
        except OSError as exc:
            ours.close()
            raise PlatformError(f"cannot start a worker of job {job_name} in its sandbox: {exc}") from exc
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        return _SandboxProcess(popen), Connection(ours.detach())
