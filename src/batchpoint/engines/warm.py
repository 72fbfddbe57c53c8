"""Warm fenced workers kept across jobs of a deployment (issue 24 §4), on the local pool.

A fenced worker (``engines/sandbox.py``) is a fresh interpreter that imports pandas / MLflow /
scikit-learn and runs ``init()``: seconds per job. With ``workers.warm_idle_s`` > 0 (300 s by
default; 0 turns this off) a job's fenced workers are not stopped at its end but *parked* here,
keyed by everything ``init()`` may depend on (:func:`pool_key`): the deployment
(``<endpoint>/<deployment>``), the scorer (model folder, code folder, scoring script, and a
fingerprint of the files in them), the interpreter (its path and file), the environment variables
(less ``AZUREML_BI_OUTPUT_PATH``, which is the same path for every job of a warm worker), the
isolation options (less the job's input paths) and the logging level. The next job with the same
key takes as many parked workers as it has slots (the rest start cold) and skips ``init()``;
anything different starts fresh workers, and a parked worker never serves another key. A parked
worker is stopped after ``warm_idle_s`` without a job, when it dies, and when the server stops
(``stop_all``; its sandbox also dies with the pool's spawner thread: bwrap's ``--die-with-parent``).
A deployment updated (any PUT or PATCH) or deleted, or its endpoint deleted, stops its parked
workers at once (:func:`release_warm`, which ``workspace/endpoints.py`` calls through the hook the
server gives it), and a worker serving a job of it then is stopped at that job's end instead of
being parked. :meth:`WarmPool.view` is what the web page's servers view shows of them.

**What a warm worker sees.** Its sandbox is made once, so none of a job's folders can be bound
into it. Each warm worker has an *exchange folder* on the host, ``<home>/warm/<id>/`` (the same
file system as the jobs folder), bound read-write at the same path, and nothing of any job:

=============== ======================================================================================
``parts/``      the worker's ``parts_dir``: it appends each mini-batch's rows to one segment file
                per job (``outputs/base.py``), which the engine hard-links into the job's
                ``parts/`` when a ``done`` reply first names it (a writer without segments: each
                part renamed there); the job's group commit syncs it (and ``parts/``) before the
                mini-batch counts as done
``bi/``         its ``AZUREML_BI_OUTPUT_PATH`` (the same path in every job); moved into the job's
                ``outputs/score/`` at the job's end
``in/``         the mini-batches' files of local stores, hard-linked (a copy across file systems)
                as ``in/<input>/<path in the store>`` before the worker gets the mini-batch, and
                kept until the job's end (the job's own files: a new folder per mini-batch, made and
                removed, cost more than its scoring on tiny files); bound read-only over the writable
                folder, so a link cannot be written through. Linked through a descriptor of the file's folder whose real
                path is checked once open (``storage/local_links.py``), regular files only: a
                folder swapped for a link out of the store mid-job fails the mini-batch instead.
                The links are made by the worker's *link helper*, a small process started with it
                (``local_links.py``: the engine hands it the ``batch`` frame, it links the files
                and passes the frame on), so that four system calls a file do not hold the
                server's GIL; in process when it has none, and for a path to normalise
``work/``, ``tmp/``, ``downloads/``  working directory (``HOME``), ``/tmp``, downloads of remote stores
``state``       its :class:`protocol.WorkerState` file
=============== ======================================================================================

At a job's end the engine sends ``park``: the worker lets go of the job's log (stdout/stderr to
``/dev/null``) and answers ``parked``; the engine moves the BI output, then empties every folder
above, before the worker may take another job. The next job's config comes with the ``job``
message, and the job's ``logs/worker-<n>.log`` as a file descriptor (``socket.send_fds``) that the
worker ``dup2()``s onto stdout and stderr. What the scoring script keeps in its own memory (or its
own open files) across jobs is its own business, as on Azure's warm nodes; what it can reach on
disk is the exchange folder of the current job only.

Unfenced workers (``workers.isolation: none``) are forks of the preloaded forkserver and are not
kept: they start in ~0.1 s anyway.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import queue
import shutil
import socket
import stat
import struct
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from batchpoint._internal.procfs import status_bytes
from batchpoint.engines.planning import EngineJob
from batchpoint.engines.sandbox import _SandboxProcess
from batchpoint.exceptions import PlatformError, UnsafeInputError
from batchpoint.storage.base import StorageSpec
from batchpoint.storage import local_links
from batchpoint.storage.local_links import NEEDS_NORMALISING
from batchpoint.worker import protocol
from batchpoint.worker.sandbox import DEFAULT_ISOLATION, _real_uid, _root, command

__all__ = ["POOL", "WarmPool", "WarmWorker", "add_pool", "compute_changed", "enabled", "kept_by_compute",
           "note_min_instances", "pool_key", "release_warm"]

log = logging.getLogger("batchpoint.engines.warm")

BI_VARIABLE = "AZUREML_BI_OUTPUT_PATH"
#: the exchange folder's sub-folders (see the module docstring)
FOLDERS = ("parts", "bi", "in", "work", "tmp", "downloads")
#: the most files of a model or code folder that are fingerprinted (their sizes and times)
FINGERPRINT_FILES = 5000
#: how long a parked worker has to answer ``park``
PARK_TIMEOUT_S = 5.0
#: the name prefix of a job's input links moved out of an exchange folder at its end (then removed)
TRASH = ".trash-"
#: a frame's length, as ``multiprocessing.connection`` writes it (the link helper's frames)
_FRAME = struct.Struct("!i")


def _options(job: EngineJob) -> dict[str, Any]:
    return {**DEFAULT_ISOLATION, **(job.isolation or {})}


def idle_seconds(job: EngineJob) -> float:
    """``workers.warm_idle_s`` of ``job`` (0 when its isolation names none: jobs built by hand)."""
    try:
        return max(0.0, float(_options(job).get("warm_idle_s") or 0))
    except (TypeError, ValueError):
        return 0.0


def enabled(job: EngineJob) -> bool:
    """Whether ``job``'s fenced workers are kept warm after it."""
    return _options(job)["mode"] != "none" and idle_seconds(job) > 0


def _fingerprint(folder: str | None) -> list[Any]:
    """(path, size, mtime) of the files under ``folder``: a change of the model or code in place."""
    if not folder or not os.path.exists(folder):
        return []
    found: list[Any] = []
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        for name in sorted(files):
            try:
                st = os.stat(os.path.join(root, name))
            except OSError:
                continue
            found.append([os.path.relpath(os.path.join(root, name), folder), st.st_size, st.st_mtime_ns])
            if len(found) >= FINGERPRINT_FILES:
                return found
    return found


def _file_id(path: str | None) -> list[Any]:
    if not path:
        return []
    try:
        st = os.stat(path)
        return [os.path.realpath(path), st.st_size, st.st_mtime_ns, st.st_ino]
    except OSError:
        return [path]


def pool_key(job: EngineJob) -> str:
    """What a parked worker must have been started with to serve ``job`` (module docstring)."""
    options = {k: v for k, v in _options(job).items() if k not in ("inputs", "warm_idle_s")}
    scorer = dict(job.scorer)
    what = {
        "deployment": job.deployment,
        "scorer": scorer,
        "model": _fingerprint(scorer.get("model_dir")),
        "azureml_model": _fingerprint(scorer.get("azureml_model_dir")),
        "code": _fingerprint(scorer.get("code_dir")),
        "python": [job.python_exe, _file_id(job.python_exe)],
        "environment": {k: v for k, v in job.environment.items() if k != BI_VARIABLE},
        "isolation": options,
        "logging_level": job.logging_level,
    }
    return hashlib.sha256(json.dumps(what, sort_keys=True, default=str).encode()).hexdigest()


def _warm_root(job: EngineJob) -> Path:
    """``<home>/warm`` (beside the jobs folder: the same file system, so parts move by rename)."""
    home = _options(job).get("home")
    if home:
        return Path(home) / "warm"
    return Path(job.parts_dir).resolve().parent.parent / ".warm"


def _empty(folder: Path) -> None:
    for child in list(folder.iterdir()) if folder.is_dir() else []:
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child, ignore_errors=True)
        else:
            try:
                child.unlink()
            except OSError:
                pass


@dataclass
class WarmWorker:
    """One fenced worker that may be kept warm: its sandbox process, connection and exchange folder."""

    id: str
    key: str
    deployment: str
    exchange: Path
    boot_log: Path
    idle_s: float
    proc: Any = None
    conn: Connection | None = None
    parked_at: float = 0.0
    since: float = field(default_factory=time.monotonic)  # started, or last taken by a job (release())
    compute: str | None = None  # its deployment's compute (the last job's), for min_instances
    min_instances: int = 0  # that compute's min_instances (the latest the pool knows)
    per_instance: int = 1  # the deployment's max_concurrency_per_instance
    jobs: int = 0  # jobs it served
    made: set[str] = field(default_factory=set)  # the folders of in/ made for this job's links (one mkdir each)
    linked: set[str] = field(default_factory=set)  # its segments of this job linked into the job's parts/
    backends: dict[str, tuple[Any, Any]] = field(default_factory=dict)  # input -> (its spec, its backend): linking
    refused: dict[str, list[str]] = field(default_factory=dict)  # mini-batch key -> its files not linked, and why
    lock: int | None = None  # an flock on its boot log while this server holds it (stale folders: sweep())
    #: its link helper (``storage/local_links.py``): the process that links its mini-batches' files
    #: and passes their batch frames on; None when it could not start (linked in process then)
    linker: Any = None
    linker_out: Connection | None = None  # the helper's answers: the files it would not link
    linker_made: set[str] = field(default_factory=set)  # the folders of in/ the helper was told to make
    #: its helper ended during a job: frames it held may be lost, so nothing more is sent to this
    #: worker (it is being stopped); a frame sent past a lost one would be answered in its place
    linker_lost: bool = False
    #: (its in/ resolved, {a folder of in/: whether it resolves inside in/}): linking 10,000s of files
    #: resolved every one's path twice (20 realpaths a mini-batch of 10), a mini-batch's files share a folder
    resolved_in: tuple[Path, dict[str, bool]] | None = None

    @property
    def parts(self) -> Path:
        return self.exchange / "parts"

    @property
    def state_file(self) -> Path:
        return self.exchange / "state"

    # -- a job's paths, translated ------------------------------------------------------------
    def sources(self, sources: dict[str, Any] | None) -> dict[str, Any] | None:
        """The job's storage specs as the worker uses them: a local store is its ``in/<key>/``."""
        if sources is None:
            return None
        out: dict[str, Any] = {}
        for key, spec in sources.items():
            data = protocol.spec_to_dict(spec)
            if data["kind"] == "local":
                folder = self.exchange / "in" / key
                folder.mkdir(parents=True, exist_ok=True)
                data = {**data, "config": {**data["config"], "path": str(folder)}}
            out[key] = data
        return out

    def config(self, job: EngineJob, slot: int, sources: dict[str, Any]) -> dict[str, Any]:
        """The worker config of ``job`` for this warm worker: every path is its exchange folder's."""
        e = self.exchange
        Path(job.parts_dir).mkdir(parents=True, exist_ok=True)  # where its parts move to
        environment = dict(job.environment)
        if BI_VARIABLE in environment:
            environment[BI_VARIABLE] = str(e / "bi")
        config = protocol.job_config(
            name=job.name, worker_id=slot, scorer=job.scorer, sources=self.sources(sources) or {},
            parts_dir=str(e / "parts"), logs_dir=str(e), output_action=job.output_action,
            logging_level=job.logging_level, environment=environment, state_file=str(self.state_file),
            segments=True)  # one part file per worker and job, linked into the job's parts/ once (done())
        config.update(scratch_dir=str(e / "downloads"), workdir=str(e / "work"), tmp_dir=str(e / "tmp"),
                      sandboxed=True, warm=True, log_fd=True)
        return config

    # -- the link helper ---------------------------------------------------------------------------
    def start_linker(self) -> None:
        """Start its link helper (``storage/local_links.py``) on the server's end of its socket;
        without one (it could not start) its files are linked in process."""
        assert self.conn is not None
        fd = self.conn.fileno()
        try:
            with open(self.boot_log, "ab") as errors:  # a helper's crash is read with the worker's boot
                self.linker = subprocess.Popen(
                    [sys.executable, "-I", "-S", local_links.__file__, str(fd)], stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE, stderr=errors, pass_fds=(fd,), close_fds=True, bufsize=0)
        except OSError as exc:
            log.warning("warm worker %s: no link helper (%s); its files are linked in process", self.id, exc)
            self.linker = None
            return
        self.linker_out = Connection(os.dup(self.linker.stdout.fileno()), writable=False)
        self.linker.stdout.close()

    def linker_fd(self) -> int | None:
        """What the engine polls for the helper's answers (and its end), while it has one."""
        return self.linker_out.fileno() if self.linker_out is not None else None

    def read_linker(self) -> bool:
        """Read every answer the helper has written (the files it would not link, by mini-batch);
        False when it has ended: the frames it held may be lost, so the caller stops the worker."""
        out = self.linker_out
        if out is None:
            return True
        try:
            while out.poll(0):
                answer = json.loads(out.recv_bytes())
                self.refused.setdefault(answer["key"], []).extend(answer["refused"])
        except (EOFError, OSError, ValueError, KeyError, TypeError):
            log.warning("warm worker %s: its link helper ended (exit code %s); the worker is stopped and its "
                        "mini-batches go to another", self.id, self.linker.poll())
            self.linker_lost = True
            self.end_linker()
            return False
        return True

    def end_linker(self) -> None:
        """End the link helper (the end of its input, then a kill)."""
        linker, self.linker = self.linker, None
        if linker is not None:
            try:
                linker.stdin.close()
            except OSError:
                pass
            try:
                linker.wait(timeout=2)
            except subprocess.TimeoutExpired:
                linker.kill()
                linker.wait(timeout=5)
        if self.linker_out is not None:
            self.linker_out.close()
            self.linker_out = None

    def _store_root(self, name: str, spec: Any, roots: dict[str, str]) -> str:
        """The real path of input ``name``'s local store ("" when it has no backend), once per message."""
        root = roots.get(name)
        if root is None:
            try:
                store_root = getattr(self._backend(name, spec), "root", None)  # resolved
            except Exception:  # noqa: BLE001 - no backend: in process says why
                store_root = None
            root = roots[name] = str(store_root) if store_root else ""
        return root

    def batch_message(self, job: EngineJob, message: dict[str, Any]) -> dict[str, Any] | None:
        """A ``batch`` message with the files of local stores linked into ``in/`` (module
        docstring); None when it went to the worker through its link helper, which links the files
        it is given and then passes the message on (``storage/local_links.py``)."""
        if message.get("type") != "batch":
            return message
        if self.linker_lost:  # being stopped: never a frame behind one its helper may have lost
            return None
        helper = self.linker is not None
        files, links, roots = [], [], {}
        opened: dict[str, int] = {}  # a store's folder -> its checked descriptor, for this mini-batch's files
        refused: list[str] = []
        in_root = str(self.exchange / "in")  # targets as strings: 10,000s of links, pathlib cost more than link(2)
        try:
            for ref in message["files"]:
                name, path = ref["source"], ref["path"]
                spec = job.sources.get(name)
                kind = spec.kind if isinstance(spec, StorageSpec) else (spec or {}).get("kind")
                if kind != "local":
                    files.append(ref)
                    continue
                rel = path.lstrip("/")
                target = f"{in_root}/{name}/{rel}"
                files.append({"source": name, "path": rel})
                if (helper and self._store_root(name, spec, roots) and not NEEDS_NORMALISING.search(rel)
                        and self._inside_in(target)):
                    folder = target.rpartition("/")[0]
                    links.append([name, path, 0 if folder in self.linker_made else 1])
                    self.linker_made.add(folder)
                    continue
                problem = self._link(name, spec, path, target, opened)  # in process: its checks say
                if problem is not None:
                    refused.append(local_links.refusal(name, path, problem))
        finally:
            for fd in opened.values():
                os.close(fd)
        if refused:
            self.refused[message["key"]] = refused
        linked = {**message, "files": files, "sources": self.sources(message.get("sources"))}
        if not helper:
            return linked
        roots = {k: v for k, v in roots.items() if v}
        if self._to_linker({"key": message["key"], "roots": roots, "in": in_root, "files": links}, linked):
            return None
        log.warning("warm worker %s: its link helper is gone; the worker is stopped and its mini-batches go "
                    "to another", self.id)
        self.linker_lost = True
        self.end_linker()
        if self.proc is not None:
            self.proc.kill()
        return None

    def _to_linker(self, links: dict[str, Any], message: dict[str, Any]) -> bool:
        """Write the helper ``links`` and then ``message`` (two frames, one write); False when it is gone."""
        head, payload = json.dumps(links).encode(), protocol.encode(message)
        data = memoryview(_FRAME.pack(len(head)) + head + _FRAME.pack(len(payload)) + payload)
        try:
            while data:
                data = data[self.linker.stdin.write(data):]
        except (OSError, ValueError):  # a broken pipe, or its input closed
            return False
        return True

    def _backend(self, name: str, spec: Any) -> Any:
        """The backend of input ``name`` (one per input: a job with several local inputs alternates)."""
        from batchpoint.storage.registry import open_backend

        cached = self.backends.get(name)
        if cached is not None and cached[0] is spec:
            return cached[1]
        backend = open_backend(spec if isinstance(spec, StorageSpec) else protocol.spec_from_dict(spec))
        self.backends[name] = (spec, backend)
        return backend

    def _link(self, name: str, spec: Any, path: str, target: str, opened: dict[str, int]) -> str | None:
        """Hard-link the file ``path`` of input ``name``'s store to ``target`` (a copy when it cannot
        be linked); nothing when it is not there (the worker then reports it as missing, an input
        failure). The link is made through a descriptor of the file's folder whose real path was
        checked once open (``storage/local_links.py``), and only of a regular file: a folder
        swapped for a symbolic link out of the store during the job never makes the server link a
        file from outside it. Returns why a file was refused (a link out of the store), else None."""
        try:
            backend = self._backend(name, spec)
            local_file = getattr(backend, "local_file", None)  # a local store's path and is-file check in one
            source = local_file(path) if local_file is not None else backend.local_path(path)
        except UnsafeInputError as exc:
            return str(exc)
        except Exception:  # noqa: BLE001 - no file: the worker reports it missing
            return None
        if not source or (local_file is None and not os.path.isfile(source)):
            return None
        if not self._inside_in(target):
            return None
        root = getattr(backend, "root", None)  # a local store's, resolved
        if root is None or not local_links.inside(source, str(root)):
            return None
        return local_links.link_from_store(str(root), source, target, self.made, opened, shown=path)

    def _inside_in(self, target: str | Path) -> bool:
        """Whether ``target`` resolves inside ``in/``: its folder resolved once (the last one asked
        is remembered), the name then added (a ``..`` or ``.`` name is resolved whole)."""
        if self.resolved_in is None:
            self.resolved_in = ((self.exchange / "in").resolve(), {})
        root, folders = self.resolved_in
        folder, name = os.path.split(os.fspath(target))
        if name in ("", ".", ".."):
            return Path(target).resolve().is_relative_to(root)
        inside = folders.get(folder)
        if inside is None:
            inside = (Path(folder).resolve() / name).is_relative_to(root)
            self.resolved_in = (root, {folder: inside})
        return inside

    def done(self, job: EngineJob, key: str, error: dict[str, Any] | None,
             segment: str | None = None) -> dict[str, Any] | None:
        """The mini-batch ``key`` is done: its part moves into the job's ``parts/`` before it
        counts; the error of a move that failed (its input links stay until the job's end, when
        :meth:`end_job` empties ``in/``). A part appended to the worker's ``segment`` (one file per
        worker and job, ``outputs/base.py``): the segment is hard-linked into the job's ``parts/``
        the first time a reply names it (the worker goes on appending to the same file, which the
        job's link shows), a regular file only. Not synced here: the job's
        group commit (``jobs/progress.py``, ``outputs/parts.py sync_parts``) syncs the group's parts
        and ``parts/`` itself before it writes their done records, as for every other worker's part
        (a sync per mini-batch here held the engine's loop for a disk flush each)."""
        refused = self.refused.pop(key, None)
        if refused:  # files the server would not link: the mini-batch fails, saying why (not "missing")
            for part in list(self.parts.iterdir()):
                if part.name == key or part.name.startswith(key + "."):
                    part.unlink(missing_ok=True)
            return {"type": "UnsafeInputError", "where": None, "traceback": "", "kind": "input",
                    "message": f"mini-batch {key}: not given to the worker (it is not scored): " + "; ".join(refused)}
        if error is not None:
            return None
        if segment is not None:
            return None if segment in self.linked else self._link_segment(job, key, segment)
        try:
            for part in list(self.parts.iterdir()):
                if part.name == key or part.name.startswith(key + "."):
                    os.rename(part, Path(job.parts_dir) / part.name)
        except OSError as exc:
            return {"type": "OSError", "where": None, "traceback": "", "kind": "platform",
                    "message": f"could not move the part of mini-batch {key} from its warm worker's folder into "
                               f"'{job.parts_dir}': {exc}"}
        return None

    def _link_segment(self, job: EngineJob, key: str, name: str) -> dict[str, Any] | None:
        """Hard-link this worker's segment ``name`` (a plain name: ``local_pool`` checked it) into
        the job's ``parts/``; the error when it is not a regular file of the worker's ``parts/``."""
        # not storage.local_links.link_regular_file: a segment must be *linked* (the worker goes on
        # appending to it), never copied across file systems, and an existing name is checked too
        source, target = self.parts / name, os.path.join(job.parts_dir, name)
        problem = None
        try:
            st = os.lstat(source)
            if not stat.S_ISREG(st.st_mode):
                problem = "it is not a regular file"
            else:
                try:
                    os.link(source, target, follow_symlinks=False)
                except FileExistsError:
                    pass
                linked = os.lstat(target)
                if not stat.S_ISREG(linked.st_mode) or linked.st_ino != st.st_ino:
                    problem = "the job's parts/ holds another file of that name"
        except OSError as exc:
            problem = str(exc)
        if problem is not None:
            return {"type": "OSError", "where": None, "traceback": "", "kind": "platform",
                    "message": f"could not link the part file {name} of mini-batch {key} from its warm worker's folder "
                               f"into '{job.parts_dir}': {problem}"}
        self.linked.add(name)
        return None

    def end_job(self, job: EngineJob) -> None:
        """After ``parked``: the BI output into the job's folder, then the exchange folder emptied."""
        bi, target = self.exchange / "bi", job.environment.get(BI_VARIABLE)
        if target and bi.is_dir():
            for path in sorted(bi.rglob("*")):
                if path.is_file() and not path.is_symlink():
                    dest = Path(target) / path.relative_to(bi)
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    try:
                        os.rename(path, dest)
                    except OSError:
                        shutil.copyfile(path, dest)
        self.made.clear()
        self.linker_made.clear()
        self.linked.clear()
        self.resolved_in = None
        self.backends = {}
        self.refused.clear()
        inputs = self.exchange / "in"
        for child in list(inputs.iterdir()) if inputs.is_dir() else []:
            # the job's links (10,000s on a job of tiny files: ~7 µs each to unlink) leave the worker's
            # view at once, moved beside the exchange folder (never bound into a sandbox), and are
            # removed in the background: the job's end does not wait for them
            trash = self.exchange.parent / f"{TRASH}{self.id}-{uuid.uuid4().hex[:8]}"
            try:
                os.rename(child, trash)
            except OSError:
                continue  # emptied below
            _discard(trash)
        for name in FOLDERS:
            _empty(self.exchange / name)
        for child in self.exchange.iterdir():  # anything else the worker made there
            if child.name not in FOLDERS and child.name != "state":
                shutil.rmtree(child, ignore_errors=True) if child.is_dir() else child.unlink(missing_ok=True)

    def alive(self) -> bool:
        return self.proc is not None and bool(self.proc.is_alive())

    def memory_bytes(self) -> int:
        """What it holds resident: its process's and its link helper's (0 once it died)."""
        if not self.alive():
            return 0
        held = status_bytes(self.proc.pid, "VmRSS")
        linker = self.linker
        if linker is not None and linker.poll() is None:
            held += status_bytes(linker.pid, "VmRSS")
        return held

    def stop(self) -> None:
        """End the worker (``stop``, then a kill) and remove its folders."""
        if self.conn is not None and self.alive():
            try:
                self.conn.send_bytes(protocol.encode(protocol.stop()))
            except OSError:
                pass
            self.proc.join(timeout=2)
        if self.proc is not None:
            if self.proc.is_alive():
                self.proc.kill()
            self.proc.join(timeout=5)
        if self.conn is not None:
            self.conn.close()
        self.remove()

    def remove(self) -> None:
        self.end_linker()
        shutil.rmtree(self.exchange, ignore_errors=True)
        self.boot_log.unlink(missing_ok=True)
        if self.lock is not None:
            os.close(self.lock)
            self.lock = None


_trash: queue.SimpleQueue[Path] = queue.SimpleQueue()
_trash_thread: threading.Thread | None = None
_trash_lock = threading.Lock()


def _discard(folder: Path) -> None:
    """Remove ``folder`` (a job's input links moved out of an exchange folder) in the background."""
    global _trash_thread
    _trash.put(folder)
    with _trash_lock:
        if _trash_thread is None or not _trash_thread.is_alive():
            _trash_thread = threading.Thread(target=_empty_trash, name="batchpoint-warm-trash", daemon=True)
            _trash_thread.start()


def _empty_trash() -> None:
    """Remove what :func:`_discard` queued: with ``rm -rf`` at a lower priority, a process of its
    own (20,000 unlinks in this thread competed for the server's GIL with the next job's engine
    loop), else ``shutil.rmtree``."""
    rm, nice = shutil.which("rm"), shutil.which("nice")
    argv = ([nice, "-n", "10"] if nice else []) + [rm, "-rf", "--"] if rm else None
    while True:
        folder = _trash.get()
        if argv is not None:
            try:
                subprocess.run([*argv, str(folder)], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, check=False, timeout=600)
            except (OSError, subprocess.SubprocessError):
                pass
        shutil.rmtree(folder, ignore_errors=True)  # what is left, or all of it without rm


def _sweep(root: Path) -> None:
    """Remove the exchange folders no live server holds (a server that was killed left them), and
    the input links moved out of them that a server stopped before removing."""
    for boot_log in root.glob("*.log") if root.is_dir() else []:
        try:
            fd = os.open(boot_log, os.O_RDONLY)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # held: a live server's warm worker
            os.close(fd)
            continue
        shutil.rmtree(root / boot_log.stem, ignore_errors=True)
        boot_log.unlink(missing_ok=True)
        os.close(fd)
        log.info("removed the exchange folder %s of a warm worker of a server that is gone", root / boot_log.stem)
    for trash in root.glob(f"{TRASH}*") if root.is_dir() else []:
        worker_id = trash.name[len(TRASH):].rsplit("-", 1)[0]
        if not (root / f"{worker_id}.log").exists():  # its worker is gone (its server stopped or was killed)
            shutil.rmtree(trash, ignore_errors=True)


class WarmPool:
    """The server's parked workers (one per process: :data:`POOL`)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.parked: list[WarmWorker] = []
        self.starting: list[WarmWorker] = []  # still in init() when their job ended (adopt)
        self._spawner: ThreadPoolExecutor | None = None
        self._reaper: threading.Thread | None = None
        self._wake = threading.Event()
        self._swept: set[Path] = set()
        #: (endpoint, deployment or None for all of it) -> when its warm workers were last released
        self.released: dict[tuple[str, str | None], float] = {}
        #: compute -> its min_instances as last stored (:meth:`rescale`): newer than a running job's plan
        self.min_instances: dict[str, int] = {}

    # -- starting ---------------------------------------------------------------------------------
    def _spawn(self, argv: list[str], env: dict[str, str], fd: int, boot_log: Path) -> subprocess.Popen:
        """``Popen`` in the pool's one long-lived thread: bwrap's ``--die-with-parent`` follows the
        thread that started it, and a job's thread ends with the job while its workers stay."""
        with self.lock:
            if self._spawner is None:
                self._spawner = ThreadPoolExecutor(1, thread_name_prefix="batchpoint-warm-spawner")
            spawner = self._spawner

        def start() -> subprocess.Popen:
            with open(boot_log, "ab") as out:
                return subprocess.Popen(argv, pass_fds=(fd,), stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                        env=env, close_fds=True)

        return spawner.submit(start).result()

    def launch(self, job: EngineJob, python_exe: str) -> WarmWorker:
        """A new (cold) fenced worker for ``job`` that can be kept warm afterwards."""
        options = _options(job)
        root, wid = _warm_root(job), uuid.uuid4().hex[:12]
        worker = WarmWorker(wid, pool_key(job), job.deployment or "", root / wid, root / f"{wid}.log",
                            idle_seconds(job))
        if root not in self._swept:
            self._swept.add(root)
            _sweep(root)
        for name in FOLDERS:
            (worker.exchange / name).mkdir(parents=True, exist_ok=True)
        worker.exchange.chmod(0o700)
        worker.lock = os.open(worker.boot_log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        fcntl.flock(worker.lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        if _root() and _real_uid(options):
            for path in [worker.exchange, *(worker.exchange / n for n in FOLDERS if n != "in")]:
                os.chown(path, int(options["uid"]), int(options["gid"]))
        readonly = [job.scorer[k] for k in ("model_dir", "azureml_model_dir", "code_dir") if job.scorer.get(k)]
        ours, theirs = socket.socketpair()
        try:
            e = worker.exchange
            argv, env = command(python_exe=python_exe, fd=theirs.fileno(), readonly=readonly, writable=[e],
                                workdir=str(e / "work"), tmp_dir=str(e / "tmp"), options=options)
            at = argv.index("--chdir")  # in/ read-only over the writable exchange folder, after every bind
            argv[at:at] = ["--ro-bind", str(e / "in"), str(e / "in")]
            popen = self._spawn(argv, env, theirs.fileno(), worker.boot_log)
        except OSError as exc:
            ours.close()
            worker.remove()
            raise PlatformError(f"cannot start a worker of job {job.name} in its sandbox: {exc}") from exc
        except BaseException:
            ours.close()
            worker.remove()
            raise
        finally:
            theirs.close()
        worker.proc, worker.conn = _SandboxProcess(popen), Connection(ours.detach())
        worker.start_linker()
        return worker

    def send_job(self, worker: WarmWorker, message: dict[str, Any], log_file: Path) -> None:
        """``message`` (``start`` or ``job``) and then the job's log as a descriptor."""
        assert worker.conn is not None
        log_file.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            worker.conn.send_bytes(protocol.encode(message))
            sock = socket.socket(fileno=os.dup(worker.conn.fileno()))
            try:
                socket.send_fds(sock, [b"L"], [fd])
            finally:
                sock.close()
        except OSError:  # it died: the engine's poll reports it
            pass
        finally:
            os.close(fd)
        worker.jobs += 1

    # -- parking ----------------------------------------------------------------------------------
    def take(self, key: str) -> WarmWorker | None:
        """A parked worker of ``key`` (alive), or None."""
        while True:
            with self.lock:
                worker = next((w for w in self.parked if w.key == key), None)
                if worker is None:
                    return None
                self.parked.remove(worker)
            if worker.alive() and worker.conn is not None and not worker.conn.poll(0):
                if worker.linker is not None and worker.linker.poll() is not None:
                    worker.end_linker()  # it ended while parked: this job's files are linked in process
                worker.since = time.monotonic()
                log.info("warm worker %s (pid %s) reused for a job of %s (its job %d)", worker.id, worker.proc.pid,
                         worker.deployment, worker.jobs + 1)
                return worker
            log.info("warm worker %s of %s stopped: it died while parked (exit code %s)", worker.id,
                     worker.deployment, worker.proc.exitcode if worker.proc else None)
            worker.stop()

    def park(self, worker: WarmWorker, job: EngineJob) -> bool:
        """Ask ``worker`` (idle, at ``job``'s end) to let go of the job, clear its exchange folder
        and keep it; False (it is stopped) when it does not answer ``parked`` in time."""
        assert worker.conn is not None
        if self._released_since(worker):  # its deployment changed or went while this job ran
            log.info("warm worker %s of %s stopped at the end of job %s: its deployment was updated or deleted "
                     "since", worker.id, worker.deployment, job.name)
            worker.end_job(job)
            worker.stop()
            return False
        try:
            worker.conn.send_bytes(protocol.encode(protocol.park()))
            deadline = time.monotonic() + PARK_TIMEOUT_S
            while True:
                left = deadline - time.monotonic()
                if left <= 0 or not worker.conn.poll(left):
                    raise TimeoutError("no answer to park")
                message = protocol.decode(worker.conn.recv_bytes(), peer=f"warm worker {worker.id}")
                if message["type"] == "parked":
                    break
            worker.end_job(job)
        except Exception as exc:  # noqa: BLE001 - any trouble: the worker is not kept
            log.info("warm worker %s of %s stopped at the end of job %s: %s", worker.id, worker.deployment,
                     job.name, exc)
            worker.end_job(job)
            worker.stop()
            return False
        worker.parked_at = time.monotonic()
        compute = job.warm_compute or {}
        worker.compute = compute.get("name")
        worker.per_instance = max(1, int(compute.get("per_instance") or 1))
        with self.lock:
            worker.min_instances = self.min_instances.get(worker.compute or "", int(compute.get("min_instances") or 0))
            self.parked.append(worker)
        log.info("warm worker %s (pid %s) of %s parked after job %s; kept %gs for its next job", worker.id,
                 worker.proc.pid, worker.deployment, job.name, worker.idle_s)
        self._start_reaper()
        return True

    def adopt(self, worker: WarmWorker, job: EngineJob) -> None:
        """``worker`` was still in ``init()`` when ``job`` ended: a thread waits for its ``ready``
        (up to ``settings.init_timeout``) and parks it then; stopped if init() fails or never returns."""
        with self.lock:
            self.starting.append(worker)

        def wait_ready() -> None:
            ready = False
            try:
                assert worker.conn is not None
                if worker.conn.poll(job.init_timeout_s):
                    ready = protocol.decode(worker.conn.recv_bytes(), peer=f"warm worker {worker.id}")["type"] == "ready"
            except Exception:  # noqa: BLE001 - gone, or another message: not kept
                ready = False
            with self.lock:
                if worker not in self.starting:  # stop_all took it
                    return
                self.starting.remove(worker)
            if ready:
                self.park(worker, job)
            else:
                log.info("warm worker %s of %s stopped: its init() did not return after job %s ended", worker.id,
                         worker.deployment, job.name)
                worker.stop()

        threading.Thread(target=wait_ready, name="batchpoint-warm-adopt", daemon=True).start()

    def _start_reaper(self) -> None:
        with self.lock:
            if self._reaper is not None and self._reaper.is_alive():
                self._wake.set()
                return
            self._reaper = threading.Thread(target=self._reap, name="batchpoint-warm-reaper", daemon=True)
            self._reaper.start()

    def _kept(self) -> set[int]:
        """ids of the parked workers kept past their idle timeout (:func:`kept_by_compute`; under the lock)."""
        return kept_by_compute(self.parked)

    def _expire(self) -> float | None:
        """Stop the parked workers past their idle timeout (but those :meth:`_kept`) and the dead
        ones; seconds until the next may expire (at most 1), None when none is parked."""
        with self.lock:
            if not self.parked:
                return None
            now, kept = time.monotonic(), self._kept()
            expired = [w for w in self.parked if id(w) not in kept and now - w.parked_at >= w.idle_s]
            dead = [w for w in self.parked if w not in expired and not w.alive()]
            for w in expired + dead:
                self.parked.remove(w)
            wait = min([w.parked_at + w.idle_s - now for w in self.parked if id(w) not in kept] + [1.0])
        for w in expired:
            log.info("warm worker %s of %s stopped: idle for %gs (workers.warm_idle_s)%s", w.id, w.deployment,
                     w.idle_s, f", beyond the {w.min_instances} min_instances of compute {w.compute}"
                     if w.min_instances else "")
            w.stop()
        for w in dead:
            log.info("warm worker %s of %s stopped: it died while parked", w.id, w.deployment)
            w.stop()
        return wait

    def _reap(self) -> None:
        while True:
            wait = self._expire()
            if wait is None:
                with self.lock:
                    if not self.parked:
                        self._reaper = None
                        return
                continue
            self._wake.wait(max(0.05, min(wait, 1.0)))
            self._wake.clear()

    def rescale(self, compute: str, min_instances: int) -> None:
        """Compute ``compute`` was stored with ``min_instances``: its deployments' parked workers keep
        that many instances' worth past the idle timeout from now on; those no longer kept and
        past their idle timeout are stopped at once (a scale-down frees them)."""
        note_min_instances(self, compute, min_instances)
        self._expire()

    def _released_since(self, worker: WarmWorker) -> bool:
        endpoint, _, deployment = worker.deployment.partition("/")
        with self.lock:
            at = max(self.released.get((endpoint, deployment), 0.0), self.released.get((endpoint, None), 0.0))
        return at >= worker.since

    def release(self, endpoint: str, deployment: str | None = None, why: str = "its deployment changed") -> int:
        """Stop the parked workers of ``endpoint``'s deployment ``deployment`` (None: of every
        deployment of the endpoint) at once, and those still in ``init()`` or serving a job now when
        that job ends (:meth:`park` refuses them): the deployment was updated or deleted. How many
        were stopped now."""
        with self.lock:
            self.released[(endpoint, deployment)] = time.monotonic()
            if len(self.released) > 10_000:  # older releases no longer matter: no worker is that old
                self.released = dict(sorted(self.released.items(), key=lambda kv: kv[1])[-5_000:])

            def matches(w: WarmWorker) -> bool:
                ep, _, dep = w.deployment.partition("/")
                return ep == endpoint and (deployment is None or dep == deployment)

            gone = [w for w in self.parked + self.starting if matches(w)]
            self.parked = [w for w in self.parked if w not in gone]
            self.starting = [w for w in self.starting if w not in gone]
        for w in gone:
            log.info("warm worker %s of %s stopped: %s", w.id, w.deployment, why)
            w.stop()
        return len(gone)

    def stop_all(self, why: str = "the server stops") -> None:
        with self.lock:
            parked, self.parked = self.parked + self.starting, []
            self.starting = []
        for w in parked:
            log.info("warm worker %s of %s stopped: %s", w.id, w.deployment, why)
            w.stop()

    def view(self) -> list[dict[str, Any]]:
        """Per deployment (by name): its parked workers, their resident memory in bytes and the
        seconds each has left before its idle timeout, the soonest first, None for one its compute's
        ``min_instances`` keeps past it (the web page's servers view)."""
        with self.lock:
            parked, kept = list(self.parked), self._kept()
        now = time.monotonic()
        shown: dict[str, dict[str, Any]] = {}
        for w in parked:
            d = shown.setdefault(w.deployment, {"deployment": w.deployment, "workers": 0, "memory_bytes": 0,
                                                "idle_left_s": []})
            d["workers"] += 1
            d["memory_bytes"] += w.memory_bytes()
            d["idle_left_s"].append(None if id(w) in kept else round(max(0.0, w.parked_at + w.idle_s - now), 1))
        for d in shown.values():
            d["idle_left_s"].sort(key=lambda left: -1.0 if left is None else left)
        return [shown[k] for k in sorted(shown)]

    def snapshot(self) -> dict[str, tuple[int, int]]:
        """deployment -> (parked workers, their resident memory in bytes)."""
        with self.lock:
            parked = list(self.parked)
        out: dict[str, tuple[int, int]] = {}
        for w in parked:
            count, rss = out.get(w.deployment, (0, 0))
            out[w.deployment] = (count + 1, rss + w.memory_bytes())
        return out


#: this server's warm workers
POOL = WarmPool()

#: other engines' pools of warm workers (each with ``release(endpoint, deployment, why) -> int``), added
#: with :func:`add_pool`; :func:`release_warm` reaches them all
_OTHER_POOLS: list[Any] = []


def kept_by_compute(parked: list[Any]) -> set[int]:
    """ids of the ``parked`` workers (or Ray actors) kept past their idle timeout: of each
    deployment, the most recently parked ``min_instances × max_concurrency_per_instance`` of its
    compute (each item has ``deployment``, ``parked_at``, ``min_instances``, ``per_instance``)."""
    by_deployment: dict[str, list[Any]] = {}
    for w in parked:
        by_deployment.setdefault(w.deployment, []).append(w)
    kept: set[int] = set()
    for workers in by_deployment.values():
        newest = max(workers, key=lambda w: w.parked_at)
        floor = newest.min_instances * newest.per_instance
        if floor > 0:
            kept.update(id(w) for w in sorted(workers, key=lambda w: w.parked_at, reverse=True)[:floor])
    return kept


def note_min_instances(pool: Any, compute: str, min_instances: int) -> None:
    """Store ``compute``'s ``min_instances`` in ``pool`` (a :class:`WarmPool` or Ray's pool: its
    ``lock``, ``min_instances`` table and ``parked`` items) and give it to the items parked for it."""
    with pool.lock:
        pool.min_instances[compute] = max(0, int(min_instances))
        if len(pool.min_instances) > 10_000:  # computes stored long ago no longer matter
            pool.min_instances = {compute: pool.min_instances[compute]}
        for item in pool.parked:
            if item.compute == compute:
                item.min_instances = pool.min_instances[compute]


def add_pool(pool: Any) -> None:
    """Let :func:`release_warm` reach another engine's warm workers (a Ray pool of parked actors)."""
    if pool not in _OTHER_POOLS:
        _OTHER_POOLS.append(pool)


def compute_changed(name: str, spec: dict[str, Any]) -> None:
    """Compute ``name`` was stored (created, or replaced: ``workspace/service.py`` calls this through
    the hook ``server/app.py`` gives it): its ``min_instances`` from now on (:meth:`WarmPool.rescale`)."""
    POOL.rescale(name, int(spec.get("min_instances") or 0))
    for pool in list(_OTHER_POOLS):  # Ray's parked actors
        rescale = getattr(pool, "rescale", None)
        if rescale is not None:
            try:
                rescale(name, int(spec.get("min_instances") or 0))
            except Exception:  # noqa: BLE001 - one engine's trouble never fails the compute's update
                log.warning("could not rescale the warm workers of compute %s", name, exc_info=True)


def release_warm(endpoint: str, deployment: str | None = None, why: str = "its deployment changed") -> int:
    """Stop the workers this server keeps warm for ``endpoint``'s ``deployment`` (None: every one of
    the endpoint), on every engine: the deployment was updated or deleted (``workspace/endpoints.py``
    calls this through the hook ``server/app.py`` gives it). How many were stopped now."""
    stopped = POOL.release(endpoint, deployment, why)
    for pool in list(_OTHER_POOLS):
        try:
            stopped += int(pool.release(endpoint, deployment, why) or 0)
        except Exception:  # noqa: BLE001 - one engine's trouble never fails the update
            log.warning("could not release the warm workers of %s/%s on %r", endpoint, deployment or "*", pool,
                        exc_info=True)
    return stopped
