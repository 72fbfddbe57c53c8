"""Bubblewrap command lines for fenced workers: what the local pool's launcher
(``engines/sandbox.py``) and a Ray actor (``worker/ray_actor.py``) both start scoring code in.

:func:`command` builds ``bwrap … -- python -m batchpoint.worker --fd N`` from plain lists of
folders (read-only, writable) so that either side can use it; :func:`check` says whether bwrap
works here. What the sandbox holds and why is docs/security.md, "Scoring code is fenced", and the
docstring of ``engines/sandbox.py``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

__all__ = ["DEFAULT_ISOLATION", "INSTALL_HINT", "check", "command", "input_location", "python_binds"]

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
#: ``python -m batchpoint.worker`` without running ``batchpoint/__init__.py``, which imports the SDK
#: (httpx, pydantic models: seconds of a fresh interpreter) that a worker never uses: the package is
#: registered bare, its submodules import as usual (the forkserver had them preloaded)
BOOTSTRAP = ("import importlib.util, sys; spec = importlib.util.find_spec('batchpoint'); "
             "sys.modules['batchpoint'] = importlib.util.module_from_spec(spec); "
             "from batchpoint.worker.__main__ import main; sys.exit(main(sys.argv[1:]))")
_checked: dict[tuple[str, bool, bool], str | None] = {}
_check_lock = threading.Lock()


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
    """bwrap bind arguments at the same path as on the host, parents made 0755, nothing twice.

    ``hidden`` (the server's home) is never visible: when a folder bound here holds it (a local data
    store on a parent of the home, say), an empty tmpfs is mounted over it after the binds outside
    it, and the binds inside it (the job's own folders, its model and code) come after that."""

    def __init__(self, hidden: Iterable[Path]) -> None:
        self.hidden = [p for p in hidden]
        self.binds: list[tuple[Path, bool]] = []

    def add(self, path: str | Path, *, writable: bool = False, what: str = "") -> None:
        source = Path(path).resolve()
        if source.exists() and (source, writable) not in self.binds:
            self.binds.append((source, writable))

    @property
    def args(self) -> list[str]:
        inside = [b for b in self.binds if any(_within(b[0], h) for h in self.hidden)]
        outside = [b for b in self.binds if b not in inside]
        args: list[str] = []
        self._emit(outside, args)
        masked = [h for h in self.hidden if any(_within(h, b[0]) for b in outside)]
        for home in masked:  # an empty folder where the server's home is
            args += ["--perms", "0755", "--tmpfs", str(home)]
        self._emit(inside, args)
        return args

    @staticmethod
    def _emit(binds: list[tuple[Path, bool]], args: list[str]) -> None:
        done: list[tuple[Path, bool]] = []
        made: set[Path] = set()
        for source, writable in sorted(binds, key=lambda b: (len(b[0].parts), not b[1])):
            if any(_within(source, d) and (w or not writable) for d, w in done):
                continue  # already there (read-only inside read-only, or anything inside a writable one)
            for parent in reversed(source.parents):
                if parent == Path("/") or parent in made or any(_within(parent, d) for d, _ in done):
                    continue
                args += ["--perms", "0755", "--dir", str(parent)]
                made.add(parent)
            args += ["--bind" if writable else "--ro-bind", str(source), str(source)]
            done.append((source, writable))


def input_location(root: str, path: str | None) -> Path:
    """What a worker sees of a local input store: the input's own folder or file (``path`` in the
    store, up to its first wildcard), or the whole store when that is unknown or leaves it."""
    store = Path(root).resolve()
    inside = (path or "").strip("/")
    for i, char in enumerate(inside):
        if char in "*?[":
            inside = inside[:i].rsplit("/", 1)[0] if "/" in inside[:i] else ""
            break
    target = (store / inside).resolve() if inside else store
    return target if target.exists() and (target == store or store in target.parents) else store


def command(*, python_exe: str, fd: int, readonly: Iterable[str | Path], writable: Iterable[str | Path],
            workdir: str, tmp_dir: str, options: dict[str, Any] | None = None, root: bool | None = None,
            extra_env: dict[str, str] | None = None) -> tuple[list[str], dict[str, str]]:
    """The bwrap command line of one worker of ``python_exe`` serving socket ``fd``, and the
    environment bwrap itself starts with. ``readonly`` and ``writable`` are bound at the same path
    (writable ones must exist; none may hold ``options["home"]``); the interpreter's own folders
    and a CA bundle of the server's environment are added read-only, ``options["shared"]`` writable."""
    options = {**DEFAULT_ISOLATION, **(options or {})}
    root = _root() if root is None else root
    home = Path(options["home"]).resolve() if options.get("home") else None
    binds = _Binds([home] if home is not None else [])
    for path in python_binds(python_exe):
        binds.add(path, what="the worker's Python")
    for name in ("SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        if os.environ.get(name):
            binds.add(os.environ[name], what=name)
    for path in readonly:
        binds.add(path, what="a read-only folder of the job")
    for path in writable:
        binds.add(path, writable=True, what="the job's folder")
    for folder in options.get("shared") or ():  # the operator's shared folders (workers.shared_paths)
        binds.add(folder, writable=True, what="workers.shared_paths")
    ids, prefix = _identity_args(options, root)
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": workdir, "TMPDIR": tmp_dir, "LANG": "C.UTF-8",
           "USER": "batchpoint-worker", "LOGNAME": "batchpoint-worker", "PYTHONNOUSERSITE": "1",
           "PYTHONDONTWRITEBYTECODE": "1"}
    env.update({name: os.environ[name] for name in PASSED if os.environ.get(name)})
    env.update(extra_env or {})
    argv = [str(shutil.which(str(options["bwrap"])) or options["bwrap"]),
            "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try", "--die-with-parent",
            "--new-session", "--hostname", "batchpoint-worker", *ids, *_system_args(),
            # an empty /tmp first (the binds below may lie under it); TMPDIR is the worker's tmp_dir
            "--perms", "1777", "--tmpfs", "/tmp", *binds.args,
            "--chdir", "/", "--clearenv"]  # the worker goes to its workdir itself
    for name, value in env.items():
        argv += ["--setenv", name, value]
    argv += ["--", *prefix, str(Path(python_exe).absolute()), "-c", BOOTSTRAP, "--fd", str(fd)]
    return argv, {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
