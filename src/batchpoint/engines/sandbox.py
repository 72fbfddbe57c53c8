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
import re
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Iterable
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from batchpoint.engines.launchers import Launcher, _PopenProcess, worker_dirs
from batchpoint.engines.planning import EngineJob
from batchpoint.exceptions import PlatformError

__all__ = ["DEFAULT_ISOLATION", "SandboxLauncher", "bwrap_command", "check", "python_binds"]

log = logging.getLogger(__name__)

#: what a job gets when its EngineJob names no isolation (tests that build one by hand)
DEFAULT_ISOLATION: dict[str, Any] = {"mode": "bwrap", "bwrap": "bwrap", "run_as": "namespace", "uid": 65534,
                                     "gid": 65534, "home": None, "shared": []}
INSTALL_HINT = ("install bubblewrap (Debian/Ubuntu: apt-get install bubblewrap; Fedora/RHEL: dnf install bubblewrap) "
                "and allow user namespaces, or set BATCHPOINT_WORKERS__ISOLATION=none to run scoring code "
                "unfenced, with the server's rights (docs/security.md, 'Scoring code is fenced')")
#: files and folders of /etc a worker may need (name resolution, TLS, time zone); bound when present
ETC = ("/etc/resolv.conf", "/etc/hosts", "/etc/nsswitch.conf", "/etc/host.conf", "/etc/gai.conf", "/etc/ssl",
       "/etc/ca-certificates", "/etc/pki", "/etc/localtime", "/etc/timezone", "/etc/mime.types")
#: variables of the server's own environment a worker keeps: how to reach storage (the operator's
#: proxy and CA bundle) and the locale; nothing else of the server's environment crosses
PASSED = ("SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "HTTP_PROXY", "HTTPS_PROXY",
          "NO_PROXY", "http_proxy", "https_proxy", "no_proxy", "LANG", "LC_ALL", "TZ")
_checked: dict[tuple[str, bool, bool], str | None] = {}
_check_lock = threading.Lock()


def isolation_of(job: EngineJob) -> dict[str, Any]:
    return {**DEFAULT_ISOLATION, **(getattr(job, "isolation", None) or {})}


def _root() -> bool:
    return os.geteuid() == 0


def _real_uid(options: dict[str, Any]) -> bool:
    """Whether the workers run as a real other user (``workers.run_as: uid``), not a user namespace."""
    return options.get("run_as") == "uid"


def _identity_args(options: dict[str, Any], root: bool) -> tuple[list[str], list[str]]:
    """(bwrap's arguments, the command prefix) that make the worker another, unprivileged user."""
    uid, gid = str(int(options["uid"])), str(int(options["gid"]))
    if _real_uid(options):  # a real other uid: setpriv (util-linux) drops it inside, before Python starts
        caps = ["--cap-drop", "ALL", "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID", "--cap-add", "CAP_SETPCAP"]
        return caps, ["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups", "--inh-caps=-all",
                      "--bounding-set=-all", "--"]
    return ["--unshare-user", "--disable-userns", "--uid", uid, "--gid", gid], []


def _system_args() -> list[str]:
    args = ["--ro-bind", "/usr", "/usr"]
    for name in ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"):
        if os.path.islink(name):
            args += ["--symlink", os.readlink(name), name]
        elif os.path.isdir(name):
            args += ["--ro-bind", name, name]
    args += ["--proc", "/proc", "--dev", "/dev"]
    for path in ETC:
        args += ["--ro-bind-try", path, path]
    return args


def check(options: dict[str, Any] | None = None) -> str | None:
    """None when workers can be fenced here; else why not and what to do. Runs bwrap once with the
    same namespaces the workers get (cached while it works)."""
    options = {**DEFAULT_ISOLATION, **(options or {})}
    root = _root()
    key = (str(options["bwrap"]), root, _real_uid(options))
    with _check_lock:
        if _checked.get(key, "") is None:
            return None
        exe = shutil.which(str(options["bwrap"]))
        if exe is None:
            return f"scoring code runs fenced by bubblewrap, and '{options['bwrap']}' is not installed here: {INSTALL_HINT}"
        if _real_uid(options) and not root:
            return ("workers.run_as is 'uid' (a real other user for the workers), which needs a server running as "
                    "root; use workers.run_as 'namespace' (the default) or start the server as root")
        if _real_uid(options) and shutil.which("setpriv") is None:
            return ("scoring code runs as another user (setpriv, from util-linux) and setpriv is not installed: "
                    "install util-linux, or " + INSTALL_HINT.split(", or ", 1)[1])
        ids, prefix = _identity_args(options, root)
        argv = [exe, "--unshare-pid", "--unshare-ipc", "--die-with-parent", "--new-session", *ids, *_system_args(),
                "--", *prefix, "/usr/bin/true"]
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
            error = None if done.returncode == 0 else (done.stderr.strip() or f"exit code {done.returncode}")
        except (OSError, subprocess.TimeoutExpired) as exc:
            error = str(exc)
        if error is not None:
            return f"scoring code runs fenced by bubblewrap, and bubblewrap does not work here ({error}): {INSTALL_HINT}"
        _checked[key] = None
        return None


def _pth_dirs(site: Path) -> list[Path]:
    """The folders the ``.pth`` files of ``site`` add to the path (read, never executed)."""
    found = []
    for pth in sorted(site.glob("*.pth")):
        try:
            lines = pth.read_text(errors="replace").splitlines()
        except OSError:
            continue
        for line in lines:
            line = line.strip()
            if not line or line.startswith(("#", "import ", "import\t")):
                continue
            path = (site / line) if not os.path.isabs(line) else Path(line)
            if path.is_dir():
                found.append(path.resolve())
    return found


def python_binds(python_exe: str, depth: int = 0) -> list[Path]:
    """What the interpreter ``python_exe`` needs to run, read-only: its prefix (a virtual
    environment's folder), the base interpreter's prefix (``pyvenv.cfg``'s ``home``), the folders its
    site-packages' ``.pth`` files name (an editable install, the worker copy of a deployment's
    environment), and the real interpreter file's prefix. Found by reading files, never by running
    the interpreter."""
    exe = Path(python_exe).absolute()
    prefix = exe.parent.parent
    paths = [prefix, exe.resolve().parent.parent]
    cfg = prefix / "pyvenv.cfg"
    if cfg.is_file():
        for line in cfg.read_text(errors="replace").splitlines():
            key, _, value = line.partition("=")
            if key.strip() == "home" and value.strip():
                paths.append(Path(value.strip()).parent)
    for site in list(prefix.glob("lib/python3*/site-packages")) + list(prefix.glob("lib64/python3*/site-packages")):
        paths.extend(_pth_dirs(site))
    if depth == 0:  # a wrapper script (``exec /path/to/python "$@"``): what the interpreter it runs needs
        for other in _wrapped_interpreters(exe):
            paths.extend(python_binds(str(other), depth=1))
    return paths


def _wrapped_interpreters(exe: Path) -> list[Path]:
    """The Python interpreters a wrapper script at ``exe`` names (none for a binary)."""
    try:
        with open(exe, "rb") as f:
            head = f.read(4096)
    except OSError:
        return []
    if not head.startswith(b"#!") or b"\0" in head:
        return []
    found = []
    for word in re.findall(rb"/[\w./+-]+", head):
        path = Path(os.fsdecode(word))
        if path.name.startswith("python") and path.is_file() and path != exe:
            found.append(path)
    return found


def _within(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


class _Binds:
    """bwrap bind arguments at the same path as on the host, parents made 0755, nothing twice."""

    def __init__(self, forbidden: Iterable[Path]) -> None:
        self.args: list[str] = []
        self.bound: list[tuple[Path, bool]] = []
        self.made: set[Path] = set()
        self.forbidden = [p for p in forbidden]

    def add(self, path: str | Path, *, writable: bool = False, what: str = "") -> None:
        source = Path(path).resolve()
        if not source.exists():
            return
        for secret in self.forbidden:  # never a folder that holds the server's home
            if _within(secret, source):
                raise PlatformError(f"the worker of this job would see the server's home {secret} through {what or 'a folder'} "
                                    f"{source}; a worker may not read a folder that holds the server's home: use a data "
                                    "store, model or environment outside it")
        if any(_within(source, done) and (w == writable or not writable) for done, w in self.bound):
            return  # already there (read-only inside read-only, or inside a writable one)
        for parent in reversed(source.parents):
            if parent == Path("/") or parent in self.made or any(_within(parent, done) for done, _ in self.bound):
                continue
            self.args += ["--perms", "0755", "--dir", str(parent)]
            self.made.add(parent)
        self.args += ["--bind" if writable else "--ro-bind", str(source), str(source)]
        self.bound.append((source, writable))


def _own(path: Path, uid: int, gid: int) -> None:
    try:
        os.chown(path, uid, gid)
    except OSError as exc:
        raise PlatformError(f"cannot give the worker's folder {path} to uid {uid}: {exc}") from exc


def bwrap_command(job: EngineJob, slot: int, python_exe: str, fd: int, options: dict[str, Any] | None = None,
                  root: bool | None = None) -> tuple[list[str], dict[str, str]]:
    """The bwrap command line of the worker of ``slot`` (and the environment bwrap itself starts
    with). Makes the folders the worker writes, and gives them to the worker's user when the
    server is root."""
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
    home = Path(options["home"]).resolve() if options.get("home") else None
    binds = _Binds([home] if home is not None else [])
    for path in python_binds(python_exe):
        binds.add(path, what="the worker's Python")
    for name in ("SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        if os.environ.get(name):
            binds.add(os.environ[name], what=f"{name}")
    scorer = job.scorer
    for key in ("model_dir", "azureml_model_dir", "code_dir"):
        if scorer.get(key):
            binds.add(scorer[key], what=f"the {key.replace('_', ' ')}")
    for spec in (job.sources or {}).values():
        kind = spec.kind if hasattr(spec, "kind") else spec.get("kind")
        config = spec.config if hasattr(spec, "config") else (spec.get("config") or {})
        if kind == "local" and config.get("path"):
            binds.add(config["path"], what="a local data store")
    for folder in writable:
        binds.add(folder, writable=True, what="the job's folder")
    for folder in options.get("shared") or ():  # the operator's shared folders (workers.shared_paths)
        binds.add(folder, writable=True, what="workers.shared_paths")
    for path in log_files:
        binds.add(path, writable=True, what="the worker's log")
    ids, prefix = _identity_args(options, root)
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": dirs["workdir"], "TMPDIR": dirs["tmp_dir"], "LANG": "C.UTF-8",
           "USER": "batchpoint-worker", "LOGNAME": "batchpoint-worker", "PYTHONNOUSERSITE": "1",
           "PYTHONDONTWRITEBYTECODE": "1"}
    env.update({name: os.environ[name] for name in PASSED if os.environ.get(name)})
    argv = [str(shutil.which(str(options["bwrap"])) or options["bwrap"]),
            "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try", "--die-with-parent",
            "--new-session", "--hostname", "batchpoint-worker", *ids, *_system_args(),
            # an empty /tmp first (the binds below may lie under it); TMPDIR is the worker's tmp_dir
            "--perms", "1777", "--tmpfs", "/tmp", *binds.args,
            "--chdir", "/", "--clearenv"]  # the worker goes to its workdir itself
    for name, value in env.items():
        argv += ["--setenv", name, value]
    argv += ["--", *prefix, str(Path(python_exe).absolute()), "-m", "batchpoint.worker", "--fd", str(fd)]
    return argv, {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}


class _SandboxProcess(_PopenProcess):
    """The bwrap process, with ``pid`` the worker's own (the Python process inside), so that what
    is read from ``/proc/<pid>`` (its memory) is the worker's; ``kill()`` ends bwrap, and with it
    every process of the sandbox's pid namespace."""

    def __init__(self, popen: subprocess.Popen) -> None:
        super().__init__(popen)
        self.bwrap_pid = popen.pid
        self._inner: int | None = None

    @property  # type: ignore[override]
    def pid(self) -> int:
        if self._inner is None:
            inner = _deepest_child(self.bwrap_pid)
            if inner is None or inner == self.bwrap_pid:
                return self.bwrap_pid
            self._inner = inner
        return self._inner

    @pid.setter
    def pid(self, value: int) -> None:  # set by _PopenProcess.__init__
        pass

    def kill(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()


def _deepest_child(pid: int) -> int | None:
    """The first descendant of ``pid`` with no children (bwrap → its pid 1 → the worker)."""
    current = pid
    for _ in range(4):
        try:
            children = Path(f"/proc/{current}/task/{current}/children").read_text().split()
        except OSError:
            return None
        if not children:
            return current
        current = int(children[0])
    return current


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
