"""A full disk (acceptance f), on a real server whose job folders (``<home>/jobs``) and one output
data store are small tmpfs file systems that fill up.

Writing parts fails with ENOSPC: a platform failure, retried, never charged to ``error_threshold``;
as it persists the job ends ``Failed`` naming the path and the cause — not "Completed with N
failed files" — and no ``.tmp`` part is left. An output store that is full fails the job naming
the output location.

Mounting: ``mount -t tmpfs`` (root, as here and in CI); without that privilege the server runs in
a new user + mount namespace (``unshare --user --map-root-user --mount``) that mounts them, and the
test reaches them through ``/proc/<server pid>/root``. ``BATCHPOINT_TEST_TMPFS=unshare`` forces the
second way. When neither works the test fails, saying why.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from conftest import (
    HEART_UNLABELED, INDEX_DIR, ServerHandle, deploy_heart, index_env, start_server, stop_server, wait_job,
)
from batchpoint import Datastore, Input, MLClient
from batchpoint.jobs.assembly import finished_parts
from batchpoint.jobs.folder import JobFolder

pytestmark = pytest.mark.timeout(240)

JOBS_SIZE, OUT_SIZE = "4m", "1m"
FREE_FOR_JOB = 64 * 1024  # left free on the job folders' disk: the manifest, logs and a few parts fit


@dataclass
class SmallDisks:
    server: ServerHandle
    client: MLClient
    jobs: Path  # <home>/jobs, as the test sees it
    out: Path  # the output store's folder, as the test sees it
    out_on_server: Path


def _mount_here(target: Path, size: str) -> str | None:
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(target)],
                          capture_output=True, text=True, timeout=30)
    return None if proc.returncode == 0 else (proc.stderr.strip() or f"exit code {proc.returncode}")


def _start_in_namespace(home: Path, jobs: Path, out: Path, extra_env: dict[str, str] | None) -> ServerHandle:
    """The server in a user + mount namespace where ``jobs`` and ``out`` are small tmpfs mounts."""
    script = ('mount -t tmpfs -o size="$1" tmpfs "$2" && mount -t tmpfs -o size="$3" tmpfs "$4" && '
              'exec "$5" -m batchpoint.server --home "$6"')
    env = {**os.environ, "BATCHPOINT_HOME": str(home), **(extra_env or {})}
    env.pop("BATCHPOINT_SERVER_URL", None)
    log = open(home / "server.log", "ab")
    proc = subprocess.Popen(["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", script, "sh", JOBS_SIZE,
                             str(jobs), OUT_SIZE, str(out), sys.executable, str(home)],
                            stdout=log, stderr=log, stdin=subprocess.DEVNULL, env=env)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"cannot mount a tmpfs: `mount` needs root, and the user + mount namespace way failed too "
                        f"(exit {proc.returncode}):\n{(home / 'server.log').read_text()[-2000:]}")
        try:
            url = json.loads((home / "server.json").read_text())["url"]
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return ServerHandle(url, home, proc, env)
        except (OSError, ValueError, KeyError, httpx.HTTPError):
            pass
        time.sleep(0.05)
    proc.kill()
    pytest.fail("the server in a user + mount namespace did not become healthy in 60 s")


@pytest.fixture(scope="module")
def disks(tmp_path_factory: pytest.TempPathFactory, heart_model_dir: Path,
          request: pytest.FixtureRequest) -> Iterator[SmallDisks]:
    home = tmp_path_factory.mktemp("full-disk-home")
    # the heart model's environment is built from the local index, as on the session's server
    # (the test command's network namespace reaches no package index but that one)
    index = index_env(request.getfixturevalue("local_index")) if (INDEX_DIR / "index.json").is_file() else None
    jobs, out = home / "jobs", tmp_path_factory.mktemp("full-out-store")
    jobs.mkdir()
    mounted: list[Path] = []
    why = None if os.environ.get("BATCHPOINT_TEST_TMPFS") == "unshare" else _mount_here(jobs, JOBS_SIZE)
    if why is None and os.environ.get("BATCHPOINT_TEST_TMPFS") != "unshare":
        mounted.append(jobs)
        why = _mount_here(out, OUT_SIZE)
        if why is not None:
            subprocess.run(["umount", str(jobs)], timeout=30)
            pytest.fail(f"mounted {jobs} but not {out}: {why}")
        mounted.append(out)
    try:
        if mounted:
            server, seen = start_server(home, index), Path("/")
        else:
            server = _start_in_namespace(home, jobs, out, index)
            seen = Path(f"/proc/{server.proc.pid}/root")
        client = MLClient(endpoint=server.url, home=home)
        try:
            deploy_heart(client, "full-disk", heart_model_dir, instance_count=1, max_concurrency_per_instance=2,
                         mini_batch_size=1, error_threshold=-1)
            client.datastores.create_or_update(Datastore(name="smallstore", type="local", path=str(out)))
            yield SmallDisks(server, client, seen / jobs.relative_to("/"), seen / out.relative_to("/"), out)
        finally:
            client.close()
            stop_server(server)
    finally:
        for target in reversed(mounted):
            subprocess.run(["umount", "--lazy", str(target)], timeout=30)


def _fill(folder: Path, leave: int) -> Path:
    """Fill ``folder``'s file system with one ballast file, then free ``leave`` bytes of it."""
    ballast = folder / "ballast.bin"
    chunk = b"\0" * (64 * 1024)
    with open(ballast, "wb", buffering=0) as out:
        try:
            while True:
                out.write(chunk)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC, exc
    size = ballast.stat().st_size
    os.truncate(ballast, max(0, size - leave))
    return ballast


def _many_files(folder: Path, count: int) -> Path:
    folder.mkdir()
    data = (HEART_UNLABELED / "heart-unlabeled-0.csv").read_bytes()
    for i in range(count):
        (folder / f"heart-{i:02d}.csv").write_bytes(data)
    return folder


def test_a_full_job_folder_fails_the_job_naming_the_path(disks: SmallDisks, tmp_path: Path) -> None:
    ballast = _fill(disks.jobs, FREE_FOR_JOB)
    try:
        folder = _many_files(tmp_path / "data", 40)
        name = disks.client.batch_endpoints.invoke(endpoint_name="full-disk",
                                                   input=Input(type="uri_folder", path=str(folder))).name
        job = wait_job(disks.client, name, timeout=120)
        job_dir = disks.jobs / name
        assert job.status == "Failed", (job.status, job.status_message)  # not "Completed with N failed files"
        message = job.status_message or ""
        assert "No space left on device" in message and f"jobs/{name}/" in message, message
        assert job.error["code"] == "platform_error", job.error
        assert job.failures == [] and job.progress.files_failed == 0  # nothing charged to error_threshold
        left = [p.name for p in job_dir.rglob("*") if p.name.endswith(".tmp") or p.name.startswith(".tmp")]
        assert left == [], left
        kept = finished_parts(JobFolder.local(disks.jobs, name))  # what the done log names, whole
        assert len(kept) == job.progress.mini_batches_completed > 0  # finished mini-batches are kept
        assert all(str(p).startswith(f"{job_dir}/parts/") for p in kept), kept
    finally:
        ballast.unlink()


def test_a_full_output_store_fails_the_job_naming_the_location(disks: SmallDisks, tmp_path: Path) -> None:
    ballast = _fill(disks.out, 0)
    try:
        location = "azureml://datastores/smallstore/paths/scores"
        name = disks.client.batch_endpoints.invoke(endpoint_name="full-disk", output_path=location,
                                                   input=Input(type="uri_folder", path=str(HEART_UNLABELED))).name
        job = wait_job(disks.client, name, timeout=120)
        assert job.status == "Failed", (job.status, job.status_message)
        message = job.status_message or ""
        assert f"{location}/predictions.csv" in message and "No space left on device" in message, message
        assert job.error["code"] == "platform_error", job.error
        assert job.progress.mini_batches_completed == 4  # every mini-batch was scored; only the output failed
    finally:
        ballast.unlink()
