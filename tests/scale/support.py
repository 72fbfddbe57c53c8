"""Helpers of the scale tests: many small files fast, a no-op deployment, a server's memory and
its metadata database's size."""

from __future__ import annotations

import os
import shutil
import sqlite3
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from batchpoint import BatchDeployment, BatchEndpoint, CodeConfiguration, Model

NOOP_SCORE = '''
import os


def init():
    pass


def run(mini_batch):
    return [os.path.basename(path) for path in mini_batch]
'''


@contextmanager
def scratch_folder(fallback: Path) -> Iterator[Path]:
    """A folder on tmpfs (/dev/shm) when there is one: creating 100,000 files on this VM's disk
    takes half a minute, on tmpfs 3 s. Removed afterwards."""
    shm = Path("/dev/shm")
    base = shm if shm.is_dir() and os.access(shm, os.W_OK) else fallback
    folder = Path(tempfile.mkdtemp(prefix="bp-scale-", dir=base))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def write_small_files(folder: Path, count: int, per_folder: int = 1000) -> list[str]:
    """``count`` one-row CSV files in sub-folders of ``per_folder``; their paths relative to ``folder``."""
    names = []
    for i in range(count):
        sub = f"d{i // per_folder:04d}"
        if i % per_folder == 0:
            (folder / sub).mkdir(parents=True, exist_ok=True)
        rel = f"{sub}/f{i:07d}.csv"
        fd = os.open(folder / rel, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.write(fd, f"x\n{i}\n".encode())
        os.close(fd)
        names.append(rel)
    return names


def deploy_noop(client: Any, tmp: Path, endpoint: str, mini_batch_size: int, workers: int = 2) -> None:
    """Endpoint ``endpoint`` with a deployment of a no-op script (one row per file, its name)."""
    model, code = tmp / "model", tmp / "code"
    for folder in (model, code):
        folder.mkdir(parents=True, exist_ok=True)
    (model / "weights.txt").write_text("none\n")
    (code / "score.py").write_text(NOOP_SCORE)
    client.models.create_or_update(Model(name="noop", type="custom_model", path=str(model)))
    client.batch_endpoints.begin_create_or_update(BatchEndpoint(name=endpoint)).result()
    client.batch_deployments.begin_create_or_update(BatchDeployment(
        name="noop", endpoint_name=endpoint, model="azureml:noop@latest",
        code_configuration=CodeConfiguration(code=str(code), scoring_script="score.py"),
        instance_count=1, max_concurrency_per_instance=workers, mini_batch_size=mini_batch_size,
        error_threshold=-1, retry_settings={"max_retries": 1, "timeout": 120},
        output_action="append_row", output_file_name="predictions.csv"), set_default=True).result()


def rss_kb(pid: int, field: str = "VmRSS") -> int:
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            if line.startswith(f"{field}:"):
                return int(line.split()[1])
    raise AssertionError(f"/proc/{pid}/status has no {field}")


def table_rows(db: Path) -> dict[str, int]:
    """Rows per table of a SQLite database (read while the server writes it: WAL)."""
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30) as conn:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        return {t: conn.execute(f'SELECT COUNT(*) FROM "{t}"').fetchone()[0] for t in tables}


def lines(path: Path) -> int:
    try:
        with open(path, "rb") as handle:
            return handle.read().count(b"\n")
    except FileNotFoundError:
        return 0


class JobSampler:
    """While a job runs: the server's peak RSS, and how far its lister ran ahead of the finished
    mini-batches (manifest lines written minus done-log lines) while the listing was going on."""

    def __init__(self, pid: int, job_dir: Path, interval: float = 0.1) -> None:
        self.pid, self.job_dir, self.interval = pid, job_dir, interval
        self.peak_rss_kb = 0
        self.max_lead = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> JobSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.peak_rss_kb = max(self.peak_rss_kb, rss_kb(self.pid))
            manifest = self.job_dir / "manifest.jsonl"
            listed = lines(manifest)
            done = lines(self.job_dir / "done.jsonl")
            if listed and b'"complete"' not in _tail(manifest):
                self.max_lead = max(self.max_lead, listed - done)
                self.samples += 1
            time.sleep(self.interval)


def _tail(path: Path, size: int = 200) -> bytes:
    try:
        with open(path, "rb") as handle:
            handle.seek(max(0, path.stat().st_size - size))
            return handle.read()
    except FileNotFoundError:
        return b""
