"""The worker protocol: what an engine and a worker say to each other, as versioned JSON.

Every message is one JSON object ``{"v": PROTOCOL_VERSION, "type": <type>, ...fields}`` sent as
one frame of a :mod:`multiprocessing.connection` connection (``send_bytes`` / ``recv_bytes``).
Nothing is pickled across the boundary, so a worker may run another interpreter (a deployment's
own environment) or, later, on another machine. A message of another version is refused with a
:class:`ProtocolError` that says to install the same Batchpoint on both sides.

=============== ========= ==============================================================
type            direction fields
=============== ========= ==============================================================
``start``       → worker  ``job``: the job config (:func:`job_config`): ``name``, ``worker_id``,
                          ``scorer`` {model_dir, code_dir, scoring_script}, ``sources``
                          {key: storage spec dict}, ``parts_dir``, ``logs_dir``,
                          ``output_action`` (the name of the job's output writer, which
                          the worker finds in ``outputs/``' registry: ``outputs.worker_writer``),
                          ``logging_level``, ``environment``, and
                          optionally ``server_pid``: the worker ends itself when that
                          process exits or the connection closes (``worker/watchdog.py``);
                          ``state_file``: a small file the worker marks while it is
                          inside ``run()`` (:class:`WorkerState`), so the engine can tell
                          a death in the scoring code from one between mini-batches;
                          ``segments``: true to append every mini-batch's rows to one part
                          file of this worker per job (its *segment*, in ``parts_dir``)
                          instead of a part file per mini-batch (the local pool; absent:
                          part files, as Ray's actors write)
``batch``       → worker  ``key`` (the part's name), ``index``, ``sub``, ``attempt``, ``pieces``,
                          ``files`` [{source, path}], ``sources`` (renewed storage specs, or null)
``stop``        → worker  (none): finish and exit
``park``        → worker  (none): the job ended; a warm worker (``warm`` in its config) lets go of
                          the job's log and waits for ``job`` or ``stop`` (``engines/warm.py``)
``job``         → worker  ``job``: the next job's config for a parked warm worker (same scorer;
                          ``name``, ``worker_id``, ``sources``, ``output_action`` are this job's);
                          with ``log_fd``, the job's log follows as a file descriptor
                          (``socket.send_fds``) after the frame; answered with ``ready``
``parked``      ← worker  ``worker``: it let go of the job (answer to ``park``)
``ready``       ← worker  ``worker``, ``init_seconds``: init() returned
``init_failed`` ← worker  ``error``: init() raised (type, message, where, traceback, kind)
``done``        ← worker  ``key``, ``rows``, ``error``: null, or {type, message, where,
                          traceback, kind (user | input | platform)}; optionally
                          ``missing``: the files of the mini-batch ``run()`` returned no
                          result for (a script's shortfall; 0 or absent: none);
                          ``segment`` (a worker with ``segments``, for a success that
                          wrote rows): {``file``: the segment's name in ``parts_dir``,
                          ``offset``, ``length``}: where the mini-batch's rows are, written
                          to the kernel (not synced) before the reply
=============== ========= ==============================================================

A storage spec dict is ``{"kind", "config", "credential"}`` (:func:`spec_to_dict`); it holds the
worker's (delegated) credential, so messages are never logged.
"""

from __future__ import annotations

import json
import os
from typing import Any

from batchpoint.exceptions import JobError
from batchpoint.storage.base import StorageSpec

__all__ = ["PROTOCOL_VERSION", "ProtocolError", "batch", "decode", "done", "encode", "init_failed", "job_config",
           "next_job", "park", "parked", "ready", "WorkerState", "scratch_root", "spec_from_dict", "spec_to_dict", "start", "stop"]

#: 2: ``segments`` in the job config, ``segment`` in ``done`` (one part file per worker per job)
PROTOCOL_VERSION = 2

#: message type -> the fields it must have
FIELDS: dict[str, tuple[str, ...]] = {
    "start": ("job",),
    "batch": ("key", "index", "sub", "attempt", "pieces", "files", "sources"),
    "stop": (),
    "park": (),
    "job": ("job",),
    "parked": ("worker",),
    "ready": ("worker", "init_seconds"),
    "init_failed": ("error",),
    "done": ("key", "rows", "error"),
}


class ProtocolError(JobError):
    """A worker message that cannot be used: another protocol version, not JSON, a field missing."""

    code = "worker_protocol_error"


def _message(kind: str, **fields: Any) -> dict[str, Any]:
    return {"v": PROTOCOL_VERSION, "type": kind, **fields}


def spec_to_dict(spec: StorageSpec | dict[str, Any]) -> dict[str, Any]:
    if isinstance(spec, dict):
        return {"kind": spec["kind"], "config": dict(spec.get("config") or {}), "credential": spec.get("credential")}
    return {"kind": spec.kind, "config": dict(spec.config), "credential": spec.credential}


def spec_from_dict(data: dict[str, Any]) -> StorageSpec:
    return StorageSpec(data["kind"], dict(data.get("config") or {}), data.get("credential"))


def sources_to_dict(sources: dict[str, Any] | None) -> dict[str, Any] | None:
    return None if sources is None else {key: spec_to_dict(spec) for key, spec in sources.items()}


def job_config(*, name: str, worker_id: int, scorer: dict[str, Any], sources: dict[str, Any], parts_dir: str,
               logs_dir: str, output_action: str, logging_level: str, environment: dict[str, str],
               server_pid: int | None = None, state_file: str | None = None,
               segments: bool = False) -> dict[str, Any]:
    """The job config a worker starts with (plain JSON: paths, names, storage spec dicts)."""
    config = {"name": name, "worker_id": worker_id, "scorer": dict(scorer), "sources": sources_to_dict(sources),
              "parts_dir": parts_dir, "logs_dir": logs_dir, "output_action": output_action, "logging_level": logging_level,
              "environment": dict(environment)}
    if server_pid is not None:
        config["server_pid"] = server_pid
    if state_file is not None:
        config["state_file"] = state_file
    if segments:
        config["segments"] = True
    return config


def scratch_root(parts_dir: str) -> str:
    """Where the workers of a job keep their downloads: ``tmp/`` in the job folder (beside
    ``parts_dir``), which the engine removes when the job's workers are gone, so a worker that was
    killed leaves nothing behind in the machine's temporary folder."""
    return os.path.join(os.path.dirname(os.path.abspath(parts_dir)), "tmp")


def start(job: dict[str, Any]) -> dict[str, Any]:
    return _message("start", job=job)


def batch(key: str, index: int, sub: int, attempt: int, pieces: int, files: list[dict[str, str]],
          sources: dict[str, Any] | None = None) -> dict[str, Any]:
    return _message("batch", key=key, index=index, sub=sub, attempt=attempt, pieces=pieces, files=files,
                    sources=sources_to_dict(sources))


def stop() -> dict[str, Any]:
    return _message("stop")


def park() -> dict[str, Any]:
    return _message("park")


def next_job(job: dict[str, Any]) -> dict[str, Any]:
    return _message("job", job=job)


def parked(worker: int) -> dict[str, Any]:
    return _message("parked", worker=worker)


def ready(worker: int, init_seconds: float) -> dict[str, Any]:
    return _message("ready", worker=worker, init_seconds=init_seconds)


def init_failed(error: dict[str, Any]) -> dict[str, Any]:
    return _message("init_failed", error=error)


def done(key: str, rows: int, error: dict[str, Any] | None, missing: int = 0,
         segment: dict[str, Any] | None = None) -> dict[str, Any]:
    extra: dict[str, Any] = {}
    if missing:
        extra["missing"] = missing
    if segment is not None:
        extra["segment"] = segment
    return _message("done", key=key, rows=rows, error=error, **extra)


class WorkerState:
    """Where a worker is, as one byte of a small shared file (``state_file`` of the job config):
    :data:`IDLE` between mini-batches, :data:`IN_RUN` while the scoring code's ``run()`` runs. The
    worker writes it through a memory map (no system call per mini-batch); the engine reads it
    after the worker died, to tell a death in the scoring code (the mini-batch's failure, kind
    user) from one between mini-batches (the platform's)."""

    IDLE, IN_RUN = 0, 1
    SIZE = 16

    def __init__(self, path: str) -> None:
        import mmap

        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            if os.fstat(fd).st_size < self.SIZE:
                os.ftruncate(fd, self.SIZE)
            self._map = mmap.mmap(fd, self.SIZE)
        finally:
            os.close(fd)

    def set(self, state: int) -> None:
        self._map[0] = state

    @staticmethod
    def read(path: str) -> int | None:
        """The state a worker left in ``path`` (None: no such file)."""
        try:
            with open(path, "rb") as f:
                data = f.read(1)
        except OSError:
            return None
        return data[0] if data else None


def encode(message: dict[str, Any]) -> bytes:
    try:
        return json.dumps(message, separators=(",", ":")).encode()
    except (TypeError, ValueError) as exc:
        raise ProtocolError(f"worker message '{message.get('type')}' cannot be sent as JSON: {exc}; "
                            "storage spec configs and job settings must hold only JSON values") from exc


def decode(data: bytes, peer: str = "peer") -> dict[str, Any]:
    """The message in ``data``, checked: version, type and fields. ``peer`` names the sender in errors."""
    try:
        message = json.loads(data)
    except ValueError as exc:
        raise ProtocolError(f"a message from the {peer} is not JSON ({exc}); the other side does not speak the "
                            f"worker protocol: install the same Batchpoint version in the worker's environment") from exc
    if not isinstance(message, dict):
        raise ProtocolError(f"a message from the {peer} is not a JSON object")
    version = message.get("v")
    if version != PROTOCOL_VERSION:
        raise ProtocolError(f"a message from the {peer} has worker protocol version {version!r}, this side speaks "
                            f"version {PROTOCOL_VERSION}: install the same Batchpoint version in the server's and "
                            "the worker's environments")
    kind = message.get("type")
    if kind not in FIELDS:
        raise ProtocolError(f"a message from the {peer} has unknown type {kind!r}; known: {', '.join(FIELDS)}")
    missing = [f for f in FIELDS[kind] if f not in message]
    if missing:
        raise ProtocolError(f"'{kind}' message from the {peer} lacks {', '.join(missing)}")
    return message
