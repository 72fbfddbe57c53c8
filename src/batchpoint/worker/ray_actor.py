"""A Batchpoint worker as a Ray actor: the worker loop's own steps, called by Ray instead of read
from a pipe.

The Ray engine (``batchpoint.engines.ray_engine``) makes one actor of :class:`RayWorker` per
worker slot. It calls :meth:`RayWorker.init` once (the job config of the worker protocol, and the
job's model and code folders packed as one archive) and then :meth:`RayWorker.run` per mini-batch
(the protocol's ``batch`` message). Scoring is :func:`batchpoint.worker.loop._score` — the very
code a local worker runs: fetch the files from storage with the job's (delegated) storage specs,
call the scorer's ``run()``, write the part — so both engines score a mini-batch the same way.

What differs is only *where* things are, since a node shares no filesystem with the server:

* the model and the code (the scorer's ``*_dir`` folders) arrive as one archive (a Ray object, put
  once per job) and are unpacked in the actor's own temporary folder;
* the part is written in that folder too; then, when the job's output data store is remote (the
  job config's ``parts_store``: the key of the output store's delegated, writable spec among the
  sources, and a prefix on it), the actor writes it there itself (``<prefix>/<part name>``, the
  name the job's output writer gives it, as everywhere: ``outputs/``; one put that is durable when
  it returns) and the reply names only where it is; otherwise (a local output store, which a node
  cannot reach) it is sent back with the reply (the part's bytes, through Ray's object store) and the engine stores it in the job folder, as a local worker would have;
* the worker's log is kept in that folder; each reply carries what was added to it since the last
  one, and the engine appends it to ``logs/worker-<n>.log`` in the job folder;
* ``AZUREML_BI_OUTPUT_PATH`` (the folder a scoring script writes its own files to) is a folder of
  the actor's own (``<home>/bi_output``), not the server's. After each mini-batch (whatever its
  outcome) the files that are new or changed there since the last one (:func:`changed_files`) go out
  before the reply: with the job config's ``bi_output_store`` (a remote output store) the actor
  uploads each one straight to ``<prefix>/<relative path>`` on it, the job's ``score`` output
  location; otherwise (a local output store) they travel with the reply (``bi_files``, at most
  :data:`BI_REPLY_LIMIT` bytes per mini-batch) and the engine writes them into the job's folder on
  the server. A file written twice (a retried mini-batch, another worker) is the last one written.

**Warm across jobs** (``engines/ray_warm.py``, issue 24 §4): an actor started with ``warm_key`` in
its job config may be kept after its job. :meth:`RayWorker.park` lets go of the job — its
worker process (fenced or not) answers the protocol's ``park``; the job's storage specs (its
credentials), output stores and fetcher are dropped; its parts, ``AZUREML_BI_OUTPUT_PATH``, input
links, working folder, ``/tmp`` and downloads are emptied; the log starts anew — and
:meth:`RayWorker.next_job` gives it the next job of the same key (the scorer's ``init()`` not run
again; another key is refused). A warm-capable fenced worker is never bound to a job's folder: the
mini-batches' files of a local store are hard-linked (or copied) by the actor into its read-only
``in/<input>/<path in the store>`` when the mini-batch is sent (kept until the job's end, when
:meth:`RayWorker.park` empties ``in/``), and its log comes as a
descriptor (``log_fd``), so its sandbox, made once, holds nothing of any job but what the current
one put there. What the scoring script keeps in its own memory across jobs is its own business.

Replies are the worker protocol's messages (``ready`` / ``init_failed`` / ``done``) as plain dicts.
Like the rest of the worker side, this module never imports the server side (nor Ray itself: the
engine wraps the class with ``ray.remote``).
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import re
import shutil
import socket
import stat
import subprocess
import sys
import tarfile
import tempfile
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from batchpoint.outputs import OutputWriter, worker_writer
from batchpoint.storage.base import StorageSpec
from batchpoint.storage.local_links import link_regular_file
from batchpoint.storage.registry import open_backend
from batchpoint.worker import loop, protocol, sandbox
from batchpoint.worker.errors import error_info
from batchpoint.worker.files import Fetcher

__all__ = ["BI_OUTPUT_VARIABLE", "BI_REPLY_LIMIT", "RayWorker", "bi_reply_refusal", "changed_files", "pack_folders",
           "remember"]

#: the scoring script's own output folder (``jobs/bi_output.py`` on the server side)
BI_OUTPUT_VARIABLE = "AZUREML_BI_OUTPUT_PATH"
#: the most bytes of ``AZUREML_BI_OUTPUT_PATH`` files one mini-batch may send back with its reply
#: (a local output store: they pass through Ray's object store and the server)
BI_REPLY_LIMIT = 64 << 20
#: the storage SDK's retries per request for what an actor writes: the engine retries the whole
#: mini-batch (a platform failure), so a store the node cannot reach fails in seconds, not minutes
WRITE_CONFIG = {"retries": 1, "connect_timeout": 5}

#: how long a parked actor's worker process has to answer ``park``
PARK_TIMEOUT_S = 5.0


def _empty(folder: Path, keep: tuple[str, ...] = ()) -> None:
    """Remove what ``folder`` holds but ``keep`` (the folder stays: a fenced worker has it bound)."""
    for child in list(folder.iterdir()) if folder.is_dir() else []:
        if child.name in keep:
            continue
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child, ignore_errors=True)
        else:
            child.unlink(missing_ok=True)


def _folders(scorer: dict[str, Any]) -> tuple[list[str], dict[str, tuple[int, str]]]:
    """The scorer's folders (its ``*_dir`` keys) as archive roots — a folder inside another one
    (the MLflow model inside ``AZUREML_MODEL_DIR``) is packed once, with its outer folder — and
    for each key: (root index, path inside that root)."""
    dirs = {k: str(Path(v).resolve()) for k, v in scorer.items() if k.endswith("_dir") and v}
    roots: list[str] = []
    for path in sorted(set(dirs.values()), key=len):
        if not any(path == r or path.startswith(r.rstrip("/") + "/") for r in roots):
            roots.append(path)
    where: dict[str, tuple[int, str]] = {}
    for key, path in dirs.items():
        index = next(i for i, r in enumerate(roots) if path == r or path.startswith(r.rstrip("/") + "/"))
        where[key] = (index, os.path.relpath(path, roots[index]))
    return roots, where


def pack_folders(scorer: dict[str, Any]) -> dict[str, Any]:
    """The scorer's folders (model, code: every ``*_dir`` key) as one tar archive (links followed),
    and where each key's folder is in it: ``{"tar": bytes, "layout": {key: [root, path inside]}}``."""
    buffer = io.BytesIO()
    roots, layout = _folders(scorer)
    with tarfile.open(fileobj=buffer, mode="w", dereference=True) as tar:
        for i, root in enumerate(roots):
            tar.add(root, arcname=f"d{i}")
    return {"tar": buffer.getvalue(), "layout": {k: list(v) for k, v in layout.items()}}


def _scrub(text: str, spec: dict[str, Any]) -> str:
    """``text`` without the credential of ``spec`` (nor any SAS signature)."""
    for value in (spec.get("credential") or {}).values():
        if isinstance(value, str) and len(value) >= 8:
            text = text.replace(value, "***")
    return re.sub(r"(sig=)[^&\s'\"]+", r"\1***", text)


#: file times are coarse (a clock tick, a few ms): a file whose mtime is this close to a look may
#: be rewritten after it with the same (mtime, size), so its content is compared too
MTIME_SLACK_NS = 50_000_000


def _digest(path: Path) -> bytes:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "blake2b").digest()


def changed_files(folder: Path, seen: dict[str, tuple[int, int, bytes | None]], now_ns: int | None = None,
                  ) -> list[tuple[str, Path, tuple[int, int]]]:
    """The regular files under ``folder`` (links not followed) that are new or changed since
    :func:`remember` recorded them in ``seen``: another (mtime, size), or — for a file recorded
    with a digest (its mtime was close to that look) — other content: (relative path, path,
    (mtime, size)), sorted by relative path. A recorded file now clearly older than ``now_ns``
    loses its digest (a later rewrite gets a later mtime)."""
    now_ns = time.time_ns() if now_ns is None else now_ns
    found = []
    for root, _dirs, names in os.walk(folder):
        for name in names:
            path = Path(root) / name
            try:
                st = path.lstat()
                if not stat.S_ISREG(st.st_mode):
                    continue
                rel, signature = path.relative_to(folder).as_posix(), (st.st_mtime_ns, st.st_size)
                known = seen.get(rel)
                if known is None or known[:2] != signature or (known[2] is not None and _digest(path) != known[2]):
                    found.append((rel, path, signature))
                elif known[2] is not None and st.st_mtime_ns < now_ns - MTIME_SLACK_NS:
                    seen[rel] = (*signature, None)
            except OSError:  # removed meanwhile
                continue
    return sorted(found)


def remember(seen: dict[str, tuple[int, int, bytes | None]], files: list[tuple[str, Path, tuple[int, int]]],
             now_ns: int) -> None:
    """Record ``files`` (as :func:`changed_files` found them at ``now_ns``) as sent; with their
    digest when their mtime is within :data:`MTIME_SLACK_NS` of that look."""
    for rel, path, (mtime, size) in files:
        try:
            digest = _digest(path) if mtime >= now_ns - MTIME_SLACK_NS else None
        except OSError:
            digest = None
        seen[rel] = (mtime, size, digest)


def bi_reply_refusal(key: str, files: list[tuple[str, Path, tuple[int, int]]], limit: int = BI_REPLY_LIMIT,
                     ) -> dict[str, Any] | None:
    """The platform error for mini-batch ``key`` when ``files`` are more than ``limit`` bytes
    together (None when they fit)."""
    total = sum(signature[1] for _rel, _path, signature in files)
    if total <= limit:
        return None
    largest = ", ".join(f"{rel} ({signature[1] / 2**20:.1f} MiB)" for rel, _path, signature
                        in sorted(files, key=lambda f: -f[2][1])[:3])
    return {"type": "OutputTooLarge", "where": None, "traceback": "", "kind": "platform",
            "message": f"the scoring script wrote {total / 2**20:.1f} MiB to {BI_OUTPUT_VARIABLE} in mini-batch {key} "
                       f"(largest: {largest}); with a local output data store these files come back to the server "
                       f"through Ray's object store, at most {limit / 2**20:g} MiB per mini-batch: put the job's "
                       "output on a data store the Ray nodes reach (Azure Blob, ADLS Gen2, S3; its files are then "
                       "uploaded from the nodes), or write less per mini-batch (a smaller mini_batch_size)"}


class RayWorker:
    """One worker of one job (see the module docstring). Not thread-safe: one call at a time."""

    def __init__(self) -> None:
        self.home = tempfile.mkdtemp(prefix="batchpoint-ray-worker-")
        self.scorer: Any = None
        self.fetcher: Fetcher | None = None
        self.job: dict[str, Any] = {}
        self.log: logging.Logger = logging.getLogger("batchpoint.worker")
        self.log_path = Path(self.home) / "worker.log"
        self.log_sent = 0
        self.child: subprocess.Popen | None = None  # the worker process of a deployment's environment
        self.conn: Connection | None = None
        self.sources: dict[str, Any] = {}  # the storage spec dicts, as last renewed
        self.parts_backend: tuple[Any, Any] | None = None  # (spec dict, backend) of the parts store
        self.bi_dir: Path | None = None  # this actor's AZUREML_BI_OUTPUT_PATH
        self.bi_seen: dict[str, tuple[int, int, bytes | None]] = {}  # its files sent so far (remember())
        self.isolation: dict[str, Any] | None = None  # how the scoring code is fenced (None: in this process)
        self.warm_key: str | None = None  # set: may be parked after its job and serve another of this key
        self.links: set[str] = set()  # the folders of in/ made for this job's links (one mkdir each)
        self.link_backends: dict[int, Any] = {}  # each local input's backend, by its spec in self.sources (linking)

    def where(self) -> dict[str, Any]:
        """The actor's process and node (for the engine's notes and for tests)."""
        return {"pid": os.getpid(), "host": socket.gethostname(), "home": self.home}

    def init(self, job: dict[str, Any], archive: dict[str, Any] | None, python_exe: str | None = None) -> dict[str, Any]:
        """Unpack the model and code, call the scorer's ``init()``; ``ready`` or ``init_failed``
        (both with ``log``: the worker's log so far). With ``python_exe`` (the deployment's own
        environment, at the same path on every node) the scorer runs in a worker process of that
        interpreter (``python -m batchpoint.worker``), which this actor drives over the worker
        protocol, as the local pool drives its workers; ``unavailable`` when this node lacks it."""
        job = dict(job)
        self.warm_key = job.pop("warm_key", None)
        if BI_OUTPUT_VARIABLE in job["environment"]:  # the server's folder is not on this node: one of ours
            self.bi_dir = Path(self.home) / "bi_output"
            self.bi_dir.mkdir(parents=True, exist_ok=True)
            job["environment"] = {**job["environment"], BI_OUTPUT_VARIABLE: str(self.bi_dir)}
        self.log_path = Path(self.home) / "logs" / f"worker-{job['worker_id']}.log"
        self.log = loop._redirect_output(self.log_path, job["logging_level"])
        loop._redact_logs(job["sources"])
        os.environ.update(job["environment"])
        self.sources = job["sources"]
        if python_exe and not os.access(python_exe, os.X_OK):
            return {"type": "unavailable", "log": self._new_log(), "message":
                    f"the deployment's environment {python_exe} is not on Ray node {self.where()['host']}: build "
                    "the environments where every node sees them at the same path (a shared environment cache)"}
        isolation = dict(job.get("isolation") or {"mode": "bwrap"})
        if isolation.get("mode", "bwrap") != "none":  # scoring code runs fenced, in a child of this actor
            problem = sandbox.check(isolation)
            if problem is not None:
                return {"type": "unavailable", "log": self._new_log(), "message":
                        f"cannot fence the scoring code on Ray node {self.where()['host']}: {problem}"}
            self.isolation = isolation
            python_exe = python_exe or sys.executable
        try:
            job["scorer"] = self._unpack(job["scorer"], archive)
            job["parts_dir"] = str(Path(self.home) / "parts")
            job["logs_dir"] = str(self.log_path.parent)
            self.job = job
            if python_exe:
                return {**self._start_child(python_exe, job), "log": self._new_log()}
            self.scorer = loop.make_scorer(job["scorer"])
            started = time.perf_counter()
            self.scorer.init()
            seconds = time.perf_counter() - started
            self.fetcher = Fetcher(job["sources"])
            self.log.info("worker %s ready on Ray (init took %.3fs)", job["worker_id"], seconds)
        except BaseException as exc:  # noqa: BLE001 - reported to the engine, which fails the job
            self.log.exception("init failed")
            return {**protocol.init_failed(error_info(exc, "user")), "log": self._new_log()}
        return {**protocol.ready(job["worker_id"], seconds), "log": self._new_log()}

    def _unpack(self, scorer: dict[str, Any], archive: dict[str, Any] | None) -> dict[str, Any]:
        scorer = dict(scorer)
        if archive is None:
            return scorer
        target = Path(self.home) / "scorer"
        with tarfile.open(fileobj=io.BytesIO(archive["tar"]), mode="r") as tar:
            tar.extractall(target, filter="data")
        for key, (index, inside) in archive["layout"].items():
            scorer[key] = os.path.normpath(target / f"d{index}" / inside)
        return scorer

    def _start_child(self, python_exe: str, job: dict[str, Any]) -> dict[str, Any]:
        """A worker process of ``python_exe`` on one end of a socket pair; its ``ready`` or
        ``init_failed``. It ends itself when this actor's process does (``server_pid``). Fenced
        (``self.isolation``): in a bubblewrap sandbox (``worker/sandbox.py``) that holds only the
        model and code (read-only), its parts, log, ``AZUREML_BI_OUTPUT_PATH`` and scratch folders,
        with its own pid namespace and a clean environment; it ends with this actor's process
        (``--die-with-parent``) or when this actor closes the connection."""
        ours, theirs = socket.socketpair()
        # the worker marks run() in a state file in its parts folder (writable for it, fenced or not)
        Path(job["parts_dir"]).mkdir(parents=True, exist_ok=True)
        job["state_file"] = str(Path(job["parts_dir"]) / ".worker-state")
        start = {**job, "server_pid": os.getpid()}
        if self.isolation is not None:
            argv, env, start = self._fenced(python_exe, theirs.fileno(), start)
        else:
            argv = [python_exe, "-m", "batchpoint.worker", "--fd", str(theirs.fileno())]
            env = {**os.environ, "PYTHONPATH": "", "PYTHONHOME": "", "PYTHONNOUSERSITE": "1"}
        if self.warm_key is not None:  # its log comes as a descriptor, job after job; it may be parked
            start.update(warm=True, log_fd=True, sources=self._child_sources(start.get("sources")) or {})
        with open(self.log_path, "ab") as log:
            self.child = subprocess.Popen(argv, pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL, stdout=log,
                                          stderr=log, close_fds=True, env=env)
        theirs.close()
        self.conn = Connection(ours.detach())
        self._send_job(protocol.start(start))
        return self._child_reply()

    def _send_job(self, message: dict[str, Any]) -> None:
        """``start`` or ``job`` to the worker process; with ``log_fd``, the log as a descriptor after it."""
        assert self.conn is not None
        self.conn.send_bytes(protocol.encode(message))
        if not message["job"].get("log_fd"):
            return
        fd = os.open(self.log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            sock = socket.socket(fileno=os.dup(self.conn.fileno()))
            try:
                socket.send_fds(sock, [b"L"], [fd])
            finally:
                sock.close()
        finally:
            os.close(fd)

    # -- a warm-capable fenced worker's inputs: links in its read-only in/ ------------------------
    def _linking(self) -> bool:
        return self.warm_key is not None and self.isolation is not None

    def _child_sources(self, sources: dict[str, Any] | None) -> dict[str, Any] | None:
        """The storage specs as a warm-capable fenced worker reads them: a local store is ``in/<key>/``."""
        if sources is None or not self._linking():
            return sources
        out = {}
        for key, spec in sources.items():
            if spec.get("kind") == "local":
                folder = Path(self.home) / "in" / key
                folder.mkdir(parents=True, exist_ok=True)
                spec = {**spec, "config": {**(spec.get("config") or {}), "path": str(folder)}}
            out[key] = spec
        return out

    def _linked(self, message: dict[str, Any]) -> dict[str, Any]:
        """A ``batch`` message with its files of local stores linked into ``in/<input>/<path in the
        store>``, once per job (the links stay until :meth:`park` empties ``in/``: a new folder per
        mini-batch, made and removed, cost more than scoring a tiny file; the local pool's warm
        workers do the same, ``engines/warm.py``); nothing for a file that is not in the store: the
        worker reports it missing."""
        if not self._linking():
            return message
        files = []
        for ref in message["files"]:
            spec = self.sources.get(ref["source"]) or {}
            if spec.get("kind") != "local":
                files.append(ref)
                continue
            self._link(spec, ref["path"], Path(self.home) / "in" / ref["source"])
            files.append({"source": ref["source"], "path": ref["path"].lstrip("/")})
        return {**message, "files": files, "sources": self._child_sources(message.get("sources"))}

    def _link(self, spec: dict[str, Any], path: str, folder: Path) -> None:
        """Link the store's *file* ``path`` into ``folder`` as the local pool's warm workers do
        (``engines/warm.py``): through an ``O_PATH`` descriptor of its folder whose real path is
        checked once open (``LocalBackend.open_folder``), without following a link, a regular file
        only (a copy across file systems). Nothing when it is not a file of the store (the worker
        then reports it missing)."""
        target = folder / path.lstrip("/")
        if not target.resolve().is_relative_to(folder.resolve()):
            return
        try:
            backend = self.link_backends.get(id(spec))
            if backend is None:
                backend = open_backend(protocol.spec_from_dict(spec))
                self.link_backends[id(spec)] = backend
            full = backend.local_file(path)
            fd = backend.open_folder(full)
        except Exception:  # noqa: BLE001 - not a file of the store (or out of it): reported missing
            return
        try:
            link_regular_file(fd, os.path.basename(full), target, made=self.links)
        finally:
            os.close(fd)

    def _fenced(self, python_exe: str, fd: int, start: dict[str, Any]) -> tuple[list[str], dict[str, str], dict[str, Any]]:
        """The bwrap command line of this actor's fenced worker, and its start message."""
        scratch = Path(self.home) / "worker"
        dirs = {"scratch_dir": scratch / "downloads", "workdir": scratch / "work", "tmp_dir": scratch / "tmp"}
        writable = [Path(start["parts_dir"]), *dirs.values()]
        if self.bi_dir is not None:
            writable.append(self.bi_dir)
        for folder in writable:
            folder.mkdir(parents=True, exist_ok=True)
        log_files = [self.log_path, self.log_path.with_name(self.log_path.name + ".1")]
        if self.warm_key is not None:  # its log comes as a descriptor: no file of a job's log bound
            log_files = []
        for path in log_files:
            path.touch(exist_ok=True)
        readonly = [Path(self.home) / "scorer"]
        readonly += [v for k, v in start["scorer"].items() if k.endswith("_dir") and v]
        if self.warm_key is not None:  # no job's folder: its local inputs are linked into in/ (read-only)
            (Path(self.home) / "in").mkdir(parents=True, exist_ok=True)
            readonly.append(Path(self.home) / "in")
        else:
            inputs = self.isolation.get("inputs") or {}  # of a local store, only the input's folder
            readonly += [sandbox.input_location(spec["config"]["path"], inputs.get(key))
                         for key, spec in (start.get("sources") or {}).items()
                         if spec.get("kind") == "local" and (spec.get("config") or {}).get("path")]
        argv, env = sandbox.command(python_exe=python_exe, fd=fd, readonly=readonly, writable=[*writable, *log_files],
                                    workdir=str(dirs["workdir"]), tmp_dir=str(dirs["tmp_dir"]), options=self.isolation)
        start = {**start, "server_pid": None, "sandboxed": True, **{k: str(v) for k, v in dirs.items()}}
        return argv, env, start

    def _child_died(self) -> dict[str, Any]:
        """The ``died`` reply for a worker process that ended while it had a mini-batch: its exit
        code (``-N`` for signal N, also through bubblewrap, which exits with ``128 + N``) and whether
        it was inside ``run()`` (its state file, ``protocol.WorkerState``); the engine classifies
        it as a local worker's death (``engines/policy.py death_in_run``)."""
        code = self.child.wait(timeout=5) if self.child is not None else None
        if self.isolation is not None and code is not None and 128 < code < 128 + 65:
            code = -(code - 128)
        state = protocol.WorkerState.read(self.job.get("state_file") or "")
        return {"type": "died", "exit_code": code, "in_run": state == protocol.WorkerState.IN_RUN,
                "log": self._new_log()}

    def _child_reply(self) -> dict[str, Any]:
        try:
            message = protocol.decode(self.conn.recv_bytes(), peer="environment worker")
        except (EOFError, OSError) as exc:  # it died: the engine treats this as the actor lost
            code = self.child.wait(timeout=5) if self.child is not None else None
            raise RuntimeError(f"the worker process in the deployment's environment exited (code {code}); "
                               "see the worker log") from exc
        return message

    def run(self, message: dict[str, Any]) -> dict[str, Any]:
        """Score one mini-batch (the protocol's ``batch`` message): ``done`` plus ``part`` (the
        part's CSV bytes, or None), ``stored`` (the part's path on the output store, when this
        actor wrote it there, or None) and ``log`` (the worker's log since the last reply)."""
        if message.get("sources") is not None:
            self.sources = message["sources"]
        if self.child is not None:
            try:
                self.conn.send_bytes(protocol.encode(self._linked(message)))
                reply = protocol.decode(self.conn.recv_bytes(), peer="environment worker")
            except (EOFError, OSError):  # the worker died: where (in run() or not) and how, for the engine
                return self._child_died()
        else:
            assert self.fetcher is not None, "init() first"
            reply = loop._score(message, self.scorer, self.fetcher, self.job, self.log)
        part = stored = None
        writer = worker_writer(self.job)  # the job's output writer names the part (outputs/)
        path = Path(self.job["parts_dir"]) / writer.part_name(message["key"])
        try:
            if reply["error"] is None and writer.writes_parts:
                if self.job.get("parts_store"):
                    stored, error = self._put_part(path, message["key"], self.job["parts_store"], writer)
                    if error is not None:
                        reply = {**reply, "rows": 0, "error": error}
                else:
                    part = path.read_bytes()
        finally:
            path.unlink(missing_ok=True)
        part_failed = stored is None and part is None and reply["error"] is not None and reply["error"]["kind"] == "platform"
        bi_files, error = self._bi_output(message["key"], ship=not part_failed)
        if error is not None:
            reply = {**reply, "rows": 0, "error": error}
        return {**reply, "part": part, "stored": stored, "bi_files": bi_files, "log": self._new_log()}

    def _bi_output(self, key: str, ship: bool = True) -> tuple[dict[str, bytes] | None, dict[str, Any] | None]:
        """What the scoring script wrote to ``AZUREML_BI_OUTPUT_PATH`` since the last mini-batch:
        uploaded to the output store (``bi_output_store``: (None, None), or (None, a platform error)),
        or read to go back with the reply (``{relative path: bytes}``, or a platform error past
        :data:`BI_REPLY_LIMIT`). They belong to this mini-batch: when they cannot go out (or
        ``ship`` is false: its part could not), they are dropped with it — its retry writes them
        again — so a stale copy is never sent later over the retry's."""
        if self.bi_dir is None:
            return None, None
        now = time.time_ns()
        files = changed_files(self.bi_dir, self.bi_seen, now)
        if not files:
            return None, None
        remember(self.bi_seen, files, now)
        if not ship:
            return None, None
        store = self.job.get("bi_output_store")
        if store:
            for rel, path, _signature in files:
                target = f"{store['prefix']}/{rel}" if store["prefix"] else rel
                error = self._put(path, target, store["source"], key,
                                  f"the file '{rel}' the scoring script wrote to {BI_OUTPUT_VARIABLE}")
                if error is not None:
                    return None, error
            self.log.info("mini-batch %s: %d file(s) of %s written to the job's output", key, len(files),
                          BI_OUTPUT_VARIABLE)
            return None, None
        refusal = bi_reply_refusal(key, files)
        if refusal is not None:
            self.log.warning("mini-batch %s: %s", key, refusal["message"])
            return None, refusal
        sent: dict[str, bytes] = {}
        for rel, path, _signature in files:
            try:
                sent[rel] = path.read_bytes()
            except OSError:  # removed meanwhile
                continue
        return sent, None

    def _put_part(self, path: Path, key: str, store: dict[str, str],
                  writer: OutputWriter) -> tuple[str | None, dict[str, Any] | None]:
        """Write the part to ``<prefix>/<part name>`` (``writer.part_name``) on the output store: (its
        path, None), or (None, a platform error: the mini-batch is tried again) — with no credential in it."""
        target = f"{store['prefix']}/{writer.part_name(key)}"
        error = self._put(path, target, store["source"], key, f"the rows of mini-batch {key}")
        return (None, error) if error is not None else (target, None)

    def _put(self, path: Path, target: str, source: str, key: str, what: str) -> dict[str, Any] | None:
        """Upload ``path`` to ``target`` on the output store (the job's delegated, writable spec
        ``source``, with :data:`WRITE_CONFIG`'s bounded retries): None, or a platform error naming
        the store, this node and the cause, with no credential in it (the mini-batch is tried again)."""
        spec = self.sources[source]
        try:
            if self.parts_backend is None or self.parts_backend[0] is not spec:
                plain = protocol.spec_from_dict(spec)
                bounded = StorageSpec(plain.kind, {**plain.config, **WRITE_CONFIG}, plain.credential)
                self.parts_backend = (spec, open_backend(bounded))
            backend = self.parts_backend[1]
            backend.put_file(str(path), target)  # one upload, committed when it returns
            self.log.info("mini-batch %s: %s written to %s", key, what, backend.url_for(target))
            return None
        except Exception as exc:  # noqa: BLE001 - any fault writing to the output store is the platform's
            cause = _scrub(f"{type(exc).__name__}: {exc}", spec)
            self.log.warning("mini-batch %s: could not write %s to the output store: %s", key, what, cause)
            where = protocol.spec_from_dict(spec).describe()
            return {"type": type(exc).__name__, "where": None, "traceback": "", "kind": "platform",
                    "message": f"could not write {what} to {target} on the output data store ({where}) from Ray "
                               f"node {socket.gethostname()}: {cause[:500]}; every node must reach the output data "
                               "store"}

    # -- warm across jobs (module docstring) ----------------------------------------------------
    def park(self) -> dict[str, Any]:
        """The job ended: let go of it (``parked``, with the log's last lines); ``died`` when the
        worker process does not answer (the engine then does not keep this actor)."""
        if self.warm_key is None:
            return {"type": "refused", "log": self._new_log(), "message": "this actor was not started warm-capable"}
        if self.child is not None:
            try:
                self.conn.send_bytes(protocol.encode(protocol.park()))
                if not self.conn.poll(PARK_TIMEOUT_S):
                    raise TimeoutError("no answer to park")
                answer = protocol.decode(self.conn.recv_bytes(), peer="environment worker")
                if answer["type"] != "parked":
                    raise protocol.ProtocolError(f"'{answer['type']}' in answer to park")
            except (EOFError, OSError, TimeoutError, protocol.ProtocolError) as exc:
                self.log.warning("the worker process was not kept: %s", exc)
                return {"type": "died", "exit_code": self.child.poll(), "log": self._new_log()}
        else:
            self.log.info("worker %s: the job ended; kept warm for the next job of this deployment",
                          self.job.get("worker_id"))
        if self.fetcher is not None:
            self.fetcher.close()
            self.fetcher = None
        text = self._new_log()
        # nothing of the job is kept: its credentials, output stores, folders' contents, log
        self.sources, self.parts_backend, self.bi_seen, self.links, self.link_backends = {}, None, {}, set(), {}
        for name in ("sources", "parts_store", "bi_output_store", "name"):
            self.job.pop(name, None)
        home = Path(self.home)
        _empty(home / "parts", keep=(".worker-state",))  # its state file: mapped by the worker process
        for folder in (home / "in", home / "bi_output", home / "worker" / "downloads", home / "worker" / "work",
                       home / "worker" / "tmp"):
            _empty(folder)
        for child in home.iterdir():  # anything else made there (the in-process scorer's fetcher: gone)
            if child.name not in ("scorer", "parts", "in", "bi_output", "worker", "logs"):
                shutil.rmtree(child, ignore_errors=True) if child.is_dir() else child.unlink(missing_ok=True)
        self.log = loop._output_to(None, self.job.get("logging_level") or "info")
        for path in self.log_path.parent.iterdir():
            path.unlink(missing_ok=True)
        self.log_sent = 0
        return {"type": "parked", "log": text}

    def next_job(self, job: dict[str, Any], key: str) -> dict[str, Any]:
        """Take the next job of this actor's key (its ``init()`` is not run again): ``ready``, or
        ``refused`` for another key (the engine starts a fresh actor)."""
        if self.warm_key is None or key != self.warm_key or job.get("warm_key") != key:
            return {"type": "refused", "log": "", "message": "another deployment, scorer, environment or settings"}
        self.log = loop._redirect_output(self.log_path, job["logging_level"])
        loop._redact_logs(job["sources"])
        self.sources = job["sources"]
        self.job.update({k: job[k] for k in ("name", "worker_id", "sources", "output_action") if k in job})
        for name in ("parts_store", "bi_output_store"):
            if job.get(name):
                self.job[name] = dict(job[name])
        if self.child is not None:
            if self.child.poll() is not None:
                return {"type": "died", "exit_code": self.child.poll(), "log": self._new_log()}
            new = {k: self.job[k] for k in ("name", "worker_id", "output_action", "logging_level") if k in self.job}
            new.update(sources=self._child_sources(self.sources) or {}, log_fd=True)
            try:
                self._send_job(protocol.next_job(new))
                return {**self._child_reply(), "log": self._new_log()}
            except RuntimeError:
                return {"type": "died", "exit_code": self.child.poll(), "log": self._new_log()}
        self.fetcher = Fetcher(self.sources)
        self.log.info("worker %s ready on Ray: warm, init() ran for an earlier job of this deployment",
                      self.job["worker_id"])
        return {**protocol.ready(self.job["worker_id"], 0.0), "log": self._new_log()}

    def _new_log(self) -> str:
        for handler in logging.getLogger().handlers:
            handler.flush()
        try:
            with open(self.log_path, "rb") as log:
                log.seek(self.log_sent)
                data = log.read()
        except OSError:
            return ""
        self.log_sent += len(data)
        return data.decode(errors="replace")

    def close(self) -> None:
        if self.child is not None and self.child.poll() is None:
            self.child.kill()
        if self.fetcher is not None:
            self.fetcher.close()
        shutil.rmtree(self.home, ignore_errors=True)
