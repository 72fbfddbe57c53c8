"""The worker loop: ``init()`` once, then score the mini-batches the engine sends.

:func:`serve` speaks the worker protocol (:mod:`batchpoint.worker.protocol`) over one
:mod:`multiprocessing.connection` connection: it waits for ``start`` (the job config), points its
output at ``logs/worker-<n>.log``, sets the deployment's environment variables, calls the scorer's
``init()`` and answers ``ready`` (or ``init_failed``), then answers each ``batch`` with ``done``
until ``stop`` or the connection closes. It is the same code whether the worker was forked from
the engine's forkserver or started as ``python -m batchpoint.worker`` in another interpreter.

With ``server_pid`` in the job config, a watchdog (:mod:`batchpoint.worker.watchdog`) ends the
worker as soon as that server process exits or the engine's end of the connection closes, even
while ``run()`` is busy.

What a scoring script's ``run()`` returns is checked as Azure's batch runner checks it: a pandas
DataFrame (or Series) or a list/tuple/array, one element per input it scored. Any other type
(a dict, None, a str, a number, a generator) fails the mini-batch (kind user) saying what ``run()``
must return; fewer elements than the mini-batch has files is a *shortfall*: the rows are kept and
the ``done`` message names how many files are ``missing`` (the engine charges them to
``error_threshold``). The MLflow no-code scorer writes one row per input row and is not checked.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

from batchpoint._internal.redact import Redactor, install_redacting_filter
from batchpoint.outputs import worker_writer
from batchpoint.scoring.scorers import make_scorer
from batchpoint.worker import protocol
from batchpoint.worker.errors import error_info
from batchpoint.outputs.base import Segment, segment_name
from batchpoint.worker.files import Fetcher, append_part, write_part
from batchpoint.worker.protocol import WorkerState, scratch_root
from batchpoint.worker.watchdog import watch

_redactor: Any = None  # this worker's log filter (see _redact_logs)


class ResultTypeError(TypeError):
    """``run()`` returned a type Azure's batch runner does not take (kind user)."""

    failure_kind = "user"


def results_of(result: Any, files: int, checked: bool) -> int:
    """How many of the mini-batch's ``files`` got no result (``checked``: a scoring script's
    ``run()``; the MLflow scorer is not checked). Raises :class:`ResultTypeError` for a type that
    is not a DataFrame, Series, list, tuple or array."""
    if not checked:
        return 0
    import pandas as pd

    ndim = getattr(result, "ndim", None)
    if isinstance(result, (pd.DataFrame, pd.Series, list, tuple)) or (
            type(result).__module__ == "numpy" and isinstance(ndim, int) and ndim >= 1):
        return max(0, files - len(result))
    shown = repr(result)
    shown = shown if len(shown) <= 80 else shown[:77] + "..."
    raise ResultTypeError(
        f"run() returned a {type(result).__name__} ({shown}); run() must return a pandas DataFrame or a list/array "
        "with one element (row) per input it scored, as on Azure ML batch deployments, whose batch runner counts "
        "each element as one input scored")


def _redirect_output(log_path: Path, level: str) -> logging.Logger:
    """stdout, stderr and logging → the worker's log (left as they are when it cannot be opened)."""
    try:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    except OSError as exc:
        print(f"batchpoint worker: cannot write its log {log_path}: {exc}", file=sys.stderr)
        return _logging_to_stderr(level)
    return _output_to(fd, level)


def _received_fd(conn: Any) -> int | None:
    """The descriptor the engine sends right after a frame (``socket.send_fds``): a warm worker's
    log of the current job; None when none came."""
    import socket

    sock = socket.socket(fileno=os.dup(conn.fileno()))
    try:
        _, fds, _, _ = socket.recv_fds(sock, 1, 1)
    except OSError:
        return None
    finally:
        sock.close()
    return fds[0] if fds else None


def _output_to(fd: int | None, level: str) -> logging.Logger:
    """stdout, stderr and logging → ``fd`` (the job's log; /dev/null when None), which is closed here."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    target = fd if fd is not None else os.open(os.devnull, os.O_WRONLY)
    os.dup2(target, 1)
    os.dup2(target, 2)
    os.close(target)
    sys.stdout = os.fdopen(1, "w", buffering=1, closefd=False)
    sys.stderr = os.fdopen(2, "w", buffering=1, closefd=False)
    return _logging_to_stderr(level)


def _logging_to_stderr(level: str) -> logging.Logger:
    logging.basicConfig(level=level.upper(), stream=sys.stderr, force=True,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if _redactor is not None:  # force=True dropped the handler that held it
        install_redacting_filter(_redactor)
    return logging.getLogger("batchpoint.worker")


def _park(conn: Any, job: dict[str, Any], log: logging.Logger) -> Fetcher | None:
    """A warm worker between jobs (``engines/warm.py``): let go of the job's log (stdout/stderr to
    /dev/null), say ``parked``, and wait. ``job``: take the next job's fields (its log arrives as a
    descriptor), answer ``ready`` and return its Fetcher; ``stop`` or a closed connection: None."""
    log.info("worker %s: the job ended; kept warm for the next job of this deployment", job["worker_id"])
    _end_segment()
    _output_to(None, job["logging_level"])
    job["sources"] = {}  # the job's storage specs (its credentials) are not kept while parked
    if not _send(conn, protocol.parked(job["worker_id"])):
        return None
    message = _receive(conn)
    if message is None or message["type"] != "job":
        return None
    new = message["job"]
    log = _output_to(_received_fd(conn) if new.get("log_fd") else None, job["logging_level"])
    job.update({k: new[k] for k in ("name", "worker_id", "sources", "output_action") if k in new})
    job["segments"] = bool(new.get("segments"))
    _redact_logs(job["sources"])
    _own_folders(job)
    fetcher = Fetcher(job["sources"], job.get("scratch_dir") or scratch_root(job["parts_dir"]))
    log.info("worker %s ready: warm, init() ran for an earlier job of this deployment", job["worker_id"])
    if not _send(conn, protocol.ready(job["worker_id"], 0.0)):
        fetcher.close()
        return None
    return fetcher


def _own_folders(job: dict[str, Any]) -> None:
    """Work in the worker's own folder (``workdir`` of the job config), never in the server's
    working directory: what a script writes to relative paths, and MLflow's ``mlruns/`` (a
    ``MLFLOW_TRACKING_URI`` inside it, unless the deployment sets one), stay in the job's scratch."""
    workdir = job.get("workdir")
    if not workdir:
        return
    os.makedirs(workdir, exist_ok=True)
    os.chdir(workdir)
    os.environ["HOME"] = workdir
    os.environ["MLFLOW_TRACKING_URI"] = Path(workdir, "mlruns").as_uri()
    os.environ["MLFLOW_ALLOW_FILE_STORE"] = "true"  # MLflow 3's file store needs it; older ones ignore it
    if job.get("tmp_dir"):
        os.makedirs(job["tmp_dir"], exist_ok=True)
        os.environ["TMPDIR"] = job["tmp_dir"]
        import tempfile

        tempfile.tempdir = None  # chosen again, from TMPDIR


def _redact_logs(sources: dict[str, Any]) -> None:
    """Mask the credentials this worker holds (and anything secret-looking) in its log records.
    (What the scoring script prints to stdout is its own business: it is not a log record.)"""
    global _redactor
    if _redactor is None:
        _redactor = Redactor()
        install_redacting_filter(_redactor)
    for spec in sources.values():
        credential = spec.get("credential") or {}
        _redactor.add_secrets({k: v for k, v in credential.items() if k != "kind" and isinstance(v, str)})


def _send(conn: Any, message: dict[str, Any]) -> bool:
    try:
        conn.send_bytes(protocol.encode(message))
        return True
    except OSError:  # the engine went away
        return False


def _receive(conn: Any) -> dict[str, Any] | None:
    """The next message, or None when the connection closed. A message this worker cannot read
    (another protocol version) raises ProtocolError: the worker exits and its log says why."""
    try:
        data = conn.recv_bytes()
    except (EOFError, OSError):
        return None
    return protocol.decode(data, peer="engine")


def _state(path: str | None, log: logging.Logger) -> WorkerState | None:
    """The worker's state file (in run() or not), or None when it cannot be made: the engine then
    takes a death of this worker for the platform's, as before."""
    if not path:
        return None
    try:
        return WorkerState(path)
    except OSError as exc:
        log.warning("cannot use the state file %s (%s): a death of this worker inside run() will count as the "
                    "platform's", path, exc)
        return None


def serve(conn: Any) -> None:
    """Run one worker over ``conn`` until ``stop`` or the connection closes."""
    message = _receive(conn)
    if message is None or message["type"] != "start":
        return
    job = message["job"]
    if job.get("log_fd"):  # a warm worker (engines/warm.py): the job's log comes as a descriptor
        log = _output_to(_received_fd(conn), job["logging_level"])
    else:
        log_path = Path(job["logs_dir"]) / f"worker-{job['worker_id']}.log"
        log = _redirect_output(log_path, job["logging_level"])
    state = _state(job.get("state_file"), log)
    if job.get("server_pid") or job.get("sandboxed"):  # the worker ends itself when its server or engine does
        watch(int(job["server_pid"]) if job.get("server_pid") else None, conn)
    _redact_logs(job["sources"])
    _own_folders(job)
    os.environ.update(job["environment"])
    try:
        scorer = make_scorer(job["scorer"])
        started = time.perf_counter()
        scorer.init()
        seconds = time.perf_counter() - started
        fetcher = Fetcher(job["sources"], job.get("scratch_dir") or scratch_root(job["parts_dir"]))
        log.info("worker %s ready (init took %.3fs)", job["worker_id"], seconds)
    except BaseException as exc:  # noqa: BLE001 - reported to the engine, which fails the job
        log.exception("init failed")
        _send(conn, protocol.init_failed(error_info(exc, "user")))
        return
    if not _send(conn, protocol.ready(job["worker_id"], seconds)):
        return
    while True:
        try:
            ended = _batches(conn, scorer, fetcher, job, log, state)
        finally:
            fetcher.close()
        if ended != "park":
            return
        fetcher_or_none = _park(conn, job, log)  # a warm worker: the job's end; the next job, or stop
        if fetcher_or_none is None:
            return
        fetcher = fetcher_or_none


def _batches(conn: Any, scorer: Any, fetcher: Fetcher, job: dict[str, Any], log: logging.Logger,
             state: WorkerState | None = None) -> str | None:
    while True:
        message = _receive(conn)
        if message is None or message["type"] == "stop":
            return None
        if message["type"] == "park" and job.get("warm"):
            return "park"
        if message["type"] != "batch":
            raise protocol.ProtocolError(f"the engine sent '{message['type']}' to a ready worker; expected batch or stop")
        if not _send(conn, _score(message, scorer, fetcher, job, log, state)):
            return


_segment: tuple[tuple[str, str, str], Segment | None] = (("", "", ""), None)  # (job, parts_dir, action): its segment


def _segment_for(job: dict[str, Any], writer: Any) -> Segment | None:
    """This worker's segment of ``job`` (made at its first mini-batch; a new one for each job), when
    the engine asked for segments (``segments`` in the job config: the local pool) and the writer
    writes parts by appending; None: a part file per mini-batch (Ray's actors, summary_only)."""
    global _segment
    if not job.get("segments") or not writer.writes_parts or not hasattr(writer, "append_part"):
        return None
    of = (job["name"], job["parts_dir"], writer.action)
    if _segment[0] != of or _segment[1] is None:
        _end_segment()
        _segment = (of, Segment(job["parts_dir"], segment_name(job["worker_id"], writer.part_suffix)))
    return _segment[1]


def _end_segment() -> None:
    """The job's end (a warm worker parks): its segment is closed; the next job appends to a new one."""
    global _segment
    if _segment[1] is not None:
        _segment[1].close()
    _segment = (("", "", ""), None)


_parts: tuple[str, Path] = ("", Path())  # the job's parts folder as a Path, made once per job, not per mini-batch


def _parts_path(parts_dir: str) -> Path:
    global _parts
    if _parts[0] != parts_dir:
        _parts = (parts_dir, Path(parts_dir))
    return _parts[1]


def _score(message: dict[str, Any], scorer: Any, fetcher: Fetcher, job: dict[str, Any],
           log: logging.Logger, state: WorkerState | None = None) -> dict[str, Any]:
    key, started = message["key"], time.perf_counter()
    try:
        if message["sources"] is not None:
            _redact_logs(message["sources"])
            fetcher.use(message["sources"])
        files = fetcher.fetch(message["files"], key)
        if state is not None:
            state.set(WorkerState.IN_RUN)
        try:
            result = scorer.run(files)
        finally:
            if state is not None:
                state.set(WorkerState.IDLE)
        missing = results_of(result, len(files), bool(job["scorer"].get("scoring_script")))
        # the job's output writer (outputs/): append_row writes the part, summary_only only counts
        writer = worker_writer(job)
        segment = _segment_for(job, writer)
        where = None
        if segment is not None:  # appended to this worker's segment of the job (the local pool)
            rows, offset, length = append_part(segment, key, result, writer)
            where = {"file": segment.name, "offset": offset, "length": length}
        else:
            rows = write_part(_parts_path(job["parts_dir"]), key, result, writer)
        log.info("mini-batch %s (%d files) scored: %d rows in %.3fs", key, len(files), rows,
                 time.perf_counter() - started)
        if missing:
            log.warning("mini-batch %s: run() returned %d result(s) for its %d files: %d file(s) counted as failed "
                        "(charged to error_threshold, as Azure's batch runner counts them)", key, len(files) - missing,
                        len(files), missing)
        return protocol.done(key, rows, None, missing, segment=where)
    except Exception as exc:  # noqa: BLE001 - every failure goes back to the engine, with its kind
        error = error_info(exc)
        log.exception("mini-batch %s failed (attempt %d, kind %s)", key, message["attempt"], error["kind"])
        return protocol.done(key, 0, error)
    finally:
        fetcher.clear()
