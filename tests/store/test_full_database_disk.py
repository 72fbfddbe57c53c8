"""The disk holding the metadata database fills mid-job (issue 19 §6), on a real server whose SQLite
database lies on a small tmpfs the test fills.

Before: the job's counters could not be written, recording its end failed with ``sqlite3.
OperationalError: database or disk is full``, the job's thread died, and the job stayed Running for
ever (its own server never recovers its own jobs). Now: ``/health`` answers 503 naming the database
as unwritable; the job's end is tried again (``jobs.record_retry_s``), then left to the server's
dispatcher, which resumes it — a job of its own whose heartbeat went stale — once the disk has room
again: Completed, every file counted once, the output of a clean run, nothing scored twice.

Mounting needs root (``mount -t tmpfs``), as ``tests/engines/test_full_disk.py``; without it the
test fails saying why.
"""

from __future__ import annotations

import errno
import os
import sqlite3
import subprocess
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest

from batchpoint import MLClient
from conftest import start_server, stop_server, wait_job
from fixtures.faults import (
    assert_clean_run_output, download_predictions, heart_copies, invoke, make_endpoint, traces_of,
)
from fixtures.flows import wait_until

pytestmark = pytest.mark.timeout(240)

RETRY_S = 2.0  # jobs.record_retry_s: the job's thread gives up recording its end after this


def _mount(target: Path, size: str) -> None:
    target.mkdir(parents=True)
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(target)],
                          capture_output=True, text=True, timeout=30)
    if proc.returncode != 0:
        pytest.fail(f"cannot mount a tmpfs for the database (mount needs root): {proc.stderr.strip()}", pytrace=False)


def _fill(folder: Path) -> Path:
    """Fill ``folder``'s file system to the last byte with one ballast file."""
    ballast = folder / "ballast.bin"
    chunk = b"\0" * (64 * 1024)
    with open(ballast, "wb", buffering=0) as out:
        while True:
            try:
                out.write(chunk)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC, exc
                break
    with open(ballast, "ab", buffering=0) as out:  # the last partial chunk's worth
        for size in (4096, 512, 1):
            while True:
                try:
                    out.write(b"\0" * size)
                except OSError:
                    break
    return ballast


def test_a_full_database_disk_is_reported_and_the_job_is_resumed_by_its_own_server(
        tmp_path: Path, heart_model_dir: Path) -> None:
    db_disk = tmp_path / "db-disk"
    _mount(db_disk, "16m")
    server = None
    try:
        home, traces = tmp_path / "home", tmp_path / "traces"
        database = db_disk / "metadata.db"
        server = start_server(home, {"BATCHPOINT_DATABASE_URL": f"sqlite:///{database}",
                                     "BATCHPOINT_JOBS__HEARTBEAT_INTERVAL_S": "0.5",
                                     "BATCHPOINT_JOBS__RECORD_RETRY_S": str(RETRY_S)})
        data = heart_copies(tmp_path / "data", copies=2)  # 8 files, one per mini-batch
        with MLClient(endpoint=server.url, home=home) as client:
            make_endpoint(client, "full-db", heart_model_dir, tmp_path / "code", workers=2)
            name = invoke(client, "full-db", data, traces, SLEEP_S="1")
            wait_until(lambda: client.jobs.get(name).progress.mini_batches_completed >= 2, 120, "2 mini-batches done")
            with sqlite3.connect(database, timeout=30) as conn:  # the write-ahead log empty: every commit grows it
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            ballast = _fill(db_disk)
            health = httpx.get(f"{server.url}/health", timeout=10)
            assert health.status_code == 503, health.text
            assert health.json()["database"].startswith("unwritable: "), health.json()
            assert str(database) in health.json()["database"], health.json()

            # every file is scored; the counters cannot be written, nor the job's end
            wait_until(lambda: len(set(traces_of(traces, "scored"))) == 8, 120, "every file scored")
            time.sleep(RETRY_S + 4)  # past the retries of the job's end: its thread has given up
            stuck = client.jobs.get(name)
            assert stuck.status in ("Running", "Finalizing"), stuck.status
            assert "could not record" in server.log(), server.log()[-3000:]

            ballast.unlink()  # room again: the server resumes its own job
            assert httpx.get(f"{server.url}/health", timeout=10).status_code == 200
            final = wait_job(client, name, timeout=60)
            assert final.status == "Completed", (final.status, final.status_message, server.log()[-3000:])
            history = [e.status for e in client.jobs.events(name) if e.type == "status"]
            assert "Crashed" in history and history[-1] == "Completed", history  # resumed by the dispatcher
            assert final.progress.files_completed == 8 and final.progress.mini_batches_completed == 8, final.progress
            assert final.progress.mini_batches_total == 8
            assert max(Counter(traces_of(traces, "scored")).values()) == 1  # nothing was scored twice
            assert_clean_run_output(download_predictions(client, name, tmp_path / "out"), heart_model_dir, data)
    finally:
        if server is not None:
            stop_server(server)
        subprocess.run(["umount", "--lazy", str(db_disk)], timeout=30)
        os.sync()
