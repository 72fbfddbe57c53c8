"""The worker process: ``init()`` once, then score the mini-batches the engine sends.

Messages to the engine: ``("ready",)``, ``("init_failed", error)``, ``("done", key, rows, error)``;
from it: ``(mini_batch, sources or None)`` (new sources when the job's credentials were renewed),
or ``None`` to stop.
A mini-batch's files are fetched here, by the worker that scores it: local stores hand over their
path; remote ones are downloaded to a per-worker temporary folder that is emptied after the batch.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

from batchpoint.engines.planning import EngineJob, MiniBatch

FRAMEWORK_DIRS = (str(Path(__file__).resolve().parents[1]),)
_redactor: Any = None  # this worker's log filter (see _redact_logs)


def error_info(exc: BaseException, *, code_dir: str | None = None) -> dict[str, Any]:
    """The user's exception with framework frames trimmed; ``where`` is the innermost user frame."""
    frames = traceback.extract_tb(exc.__traceback__)
    user = [f for f in frames if not f.filename.startswith(FRAMEWORK_DIRS) and "site-packages" not in f.filename]
    shown = user or frames[-3:]
    where = None
    if user:
        last = user[-1]
        where = f"{Path(last.filename).name}, line {last.lineno}, in {last.name}"
    return {
        "type": type(exc).__name__,
        "message": str(exc)[:2000],
        "where": where,
        "traceback": "".join(traceback.format_list(shown))[-6000:],
    }


class _Fetcher:
    def __init__(self, sources: dict[str, Any]) -> None:
        self.use(sources)
        self.tmp = tempfile.mkdtemp(prefix="batchpoint-worker-")

    def use(self, sources: dict[str, Any]) -> None:
        from batchpoint.storage.registry import open_backend

        self.backends = {key: open_backend(spec) for key, spec in sources.items()}

    def fetch(self, batch: MiniBatch) -> list[str]:
        paths = []
        for i, ref in enumerate(batch.files):
            backend = self.backends[ref.source]
            local = backend.local_path(ref.path)
            if local is None:
                folder = Path(self.tmp) / str(i)
                folder.mkdir(parents=True, exist_ok=True)
                local = str(folder / ref.name)
                backend.get_file(ref.path, local)
            paths.append(local)
        return paths

    def clear(self) -> None:
        for child in Path(self.tmp).iterdir():
            shutil.rmtree(child, ignore_errors=True)


def _redirect_output(log_path: Path, level: str, sources: dict[str, Any]) -> logging.Logger:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    sys.stdout = os.fdopen(1, "w", buffering=1, closefd=False)
    sys.stderr = os.fdopen(2, "w", buffering=1, closefd=False)
    logging.basicConfig(level=level.upper(), stream=sys.stderr, force=True,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    _redact_logs(sources)
    return logging.getLogger("batchpoint.worker")


def _redact_logs(sources: dict[str, Any]) -> None:
    """Mask the credentials this worker holds (and anything secret-looking) in its log records.
    (What the scoring script prints to stdout is its own business: it is not a log record.)"""
    global _redactor
    from batchpoint._internal.redact import Redactor, install_redacting_filter

    if _redactor is None:
        _redactor = Redactor()
        install_redacting_filter(_redactor)
    for spec in sources.values():
        credential = getattr(spec, "credential", None) or {}
        _redactor.add_secrets({k: v for k, v in credential.items() if k != "kind" and isinstance(v, str)})


def worker_main(conn: Any, worker_id: int, job: EngineJob) -> None:
    log = _redirect_output(Path(job.logs_dir) / f"worker-{worker_id}.log", job.logging_level, job.sources)
    os.environ.update(job.environment)
    code_dir = job.scorer.get("code_dir")
    try:
        from batchpoint.scoring.scorers import make_scorer

        scorer = make_scorer(job.scorer)
        started = time.perf_counter()
        scorer.init()
        fetcher = _Fetcher(job.sources)
        log.info("worker %s ready (init took %.3fs)", worker_id, time.perf_counter() - started)
    except BaseException as exc:  # noqa: BLE001 - reported to the engine, which fails the job
        log.exception("init failed")
        conn.send(("init_failed", error_info(exc, code_dir=code_dir)))
        return
    conn.send(("ready",))
    try:
        _serve(conn, scorer, fetcher, job, log, code_dir)
    finally:
        shutil.rmtree(fetcher.tmp, ignore_errors=True)


def _serve(conn: Any, scorer: Any, fetcher: _Fetcher, job: EngineJob, log: logging.Logger, code_dir: str | None) -> None:
    from batchpoint.scoring.output import count_rows, write_rows

    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return
        if message is None:
            return
        batch, sources = message
        started = time.perf_counter()
        try:
            if sources is not None:
                _redact_logs(sources)
                fetcher.use(sources)
            files = fetcher.fetch(batch)
            result = scorer.run(files)
            if job.write_rows:
                rows = _write_part(Path(job.parts_dir), batch.key, result, write_rows)
            else:
                rows = count_rows(result)
            log.info("mini-batch %s (%d files) scored: %d rows in %.3fs", batch.key, len(files), rows,
                     time.perf_counter() - started)
            conn.send(("done", batch.key, rows, None))
        except Exception as exc:  # noqa: BLE001 - user code errors go back to the engine
            log.exception("mini-batch %s failed (attempt %d)", batch.key, batch.attempt)
            conn.send(("done", batch.key, 0, error_info(exc, code_dir=code_dir)))
        finally:
            fetcher.clear()


def _write_part(parts: Path, key: str, result: Any, write_rows: Any) -> int:
    parts.mkdir(parents=True, exist_ok=True)
    tmp = parts / f".{key}.tmp"
    with open(tmp, "w", newline="") as out:
        rows = write_rows(result, out)
    os.replace(tmp, parts / f"{key}.csv")
    return rows
