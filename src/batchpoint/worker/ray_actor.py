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
  sources, and a prefix on it), the actor writes it there itself (``<prefix>/<key>.csv``, one put
  that is durable when it returns) and the reply names only where it is; otherwise (a local output
  store, which a node cannot reach) it is sent back with the reply (CSV bytes, through Ray's object
  store) and the engine stores it in the job folder, as a local worker would have;
* the worker's log is kept in that folder; each reply carries what was added to it since the last
  one, and the engine appends it to ``logs/worker-<n>.log`` in the job folder.

Replies are the worker protocol's messages (``ready`` / ``init_failed`` / ``done``) as plain dicts.
Like the rest of the worker side, this module never imports the server side (nor Ray itself: the
engine wraps the class with ``ray.remote``).
"""

from __future__ import annotations

import io
import logging
import os
import re
import shutil
import socket
import subprocess
import tarfile
import tempfile
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from batchpoint.storage.registry import open_backend
from batchpoint.worker import loop, protocol
from batchpoint.worker.errors import error_info
from batchpoint.worker.files import Fetcher

__all__ = ["RayWorker", "pack_folders"]

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
        self.log_path = Path(self.home) / "logs" / f"worker-{job['worker_id']}.log"
        self.log = loop._redirect_output(self.log_path, job["logging_level"])
        loop._redact_logs(job["sources"])
        os.environ.update(job["environment"])
        self.sources = job["sources"]
        if python_exe and not os.access(python_exe, os.X_OK):
            return {"type": "unavailable", "log": self._new_log(), "message":
                    f"the deployment's environment {python_exe} is not on Ray node {self.where()['host']}: build "
                    "the environments where every node sees them at the same path (a shared environment cache)"}
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
        ``init_failed``. It ends itself when this actor's process does (``server_pid``)."""
        ours, theirs = socket.socketpair()
        with open(self.log_path, "ab") as log:
            self.child = subprocess.Popen(
                [python_exe, "-m", "batchpoint.worker", "--fd", str(theirs.fileno())], pass_fds=(theirs.fileno(),),
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, close_fds=True,
                env={**os.environ, "PYTHONPATH": "", "PYTHONHOME": "", "PYTHONNOUSERSITE": "1"})
        theirs.close()
        self.conn = Connection(ours.detach())
        self.conn.send_bytes(protocol.encode(protocol.start({**job, "server_pid": os.getpid()})))
        return self._child_reply()

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
            self.conn.send_bytes(protocol.encode(message))
            reply = self._child_reply()
        else:
            assert self.fetcher is not None, "init() first"
            reply = loop._score(message, self.scorer, self.fetcher, self.job, self.log)
        part = stored = None
        path = Path(self.job["parts_dir"]) / f"{message['key']}.csv"
        try:
            if reply["error"] is None and self.job["write_rows"]:
                if self.job.get("parts_store"):
                    stored, error = self._put_part(path, message["key"], self.job["parts_store"])
                    if error is not None:
                        reply = {**reply, "rows": 0, "error": error}
                else:
                    part = path.read_bytes()
        finally:
            path.unlink(missing_ok=True)
        return {**reply, "part": part, "stored": stored, "log": self._new_log()}

    def _put_part(self, path: Path, key: str, store: dict[str, str]) -> tuple[str | None, dict[str, Any] | None]:
        """Write the part to ``<prefix>/<key>.csv`` on the output store: (its path, None), or
        (None, a platform error: the mini-batch is tried again) — with no credential in it."""
        target = f"{store['prefix']}/{key}.csv"
        spec = self.sources[store["source"]]
        try:
            if self.parts_backend is None or self.parts_backend[0] is not spec:
                self.parts_backend = (spec, open_backend(protocol.spec_from_dict(spec)))
            backend = self.parts_backend[1]
            backend.put_file(str(path), target)  # one upload, committed when it returns
            self.log.info("mini-batch %s: part written to %s", key, backend.url_for(target))
            return target, None
        except Exception as exc:  # noqa: BLE001 - any fault writing the part is the platform's
            cause = _scrub(f"{type(exc).__name__}: {exc}", spec)
            self.log.warning("mini-batch %s: could not write its part to the output store: %s", key, cause)
            where = protocol.spec_from_dict(spec).describe()
            return None, {"type": type(exc).__name__, "where": None, "traceback": "", "kind": "platform",
                          "message": f"could not write the rows of mini-batch {key} to {target} on the output "
                                     f"data store ({where}) from Ray node {socket.gethostname()}: {cause[:500]}; "
                                     "every node must reach the output data store"}

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
