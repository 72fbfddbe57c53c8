"""The errors file (issue 13, acceptance 4) and ``/metrics`` (acceptance 3).

* A job with failing files writes ``errors.jsonl`` next to its predictions: one JSON line per
  failed file with its mini-batch, attempt, kind, exception type, message and the user's own
  frames; ``job download`` brings it (``--output-name score`` and ``--all``); a failed job writes
  the failures it had (partial).
* ``/metrics`` parses with prometheus-client's parser, and its counters are the sums of this
  module's two jobs, told from their inputs (which files fail, how many rows the others have): the
  module runs on a server of its own, so no other test's job moves them; a second server on the same
  database answers the same numbers; an anonymous scrape is 401 unless
  ``BATCHPOINT_SERVER__METRICS_PUBLIC`` opens it.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import HEART_UNLABELED, CliResult, ServerHandle, record_secret, start_server, stop_server
from fixtures.observe import invoke, make_endpoint

pytestmark = pytest.mark.timeout(300)

ENDPOINT = "observe-errors"
BROKEN = ["heart-unlabeled-1.csv", "heart-unlabeled-3.csv"]
#: the all-fail job's input: one file, so exactly one mini-batch fails
ONE_FILE = HEART_UNLABELED / "heart-unlabeled-0.csv"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """This module's own server: its /metrics count only this module's jobs."""
    handle = start_server(tmp_path_factory.mktemp("bp-observe-metrics"))
    yield handle
    stop_server(handle)


@pytest.fixture(scope="module")
def ml_client(server: ServerHandle) -> Any:
    from batchpoint import MLClient

    client = MLClient(endpoint=server.url, home=server.home)
    yield client
    client.close()


@pytest.fixture(scope="module")
def cli(server: ServerHandle) -> Any:
    """The real ``batchpoint`` console script against this module's server."""

    def run(*args: str, check: bool = True) -> CliResult:
        exe = shutil.which("batchpoint", path=str(Path(sys.executable).parent)) or "batchpoint"
        proc = subprocess.run([exe, *args], capture_output=True, text=True, timeout=120,
                              env={**server.env, "BATCHPOINT_SERVER_URL": server.url})
        result = CliResult(proc.returncode, proc.stdout, proc.stderr)
        assert not check or proc.returncode == 0, f"batchpoint {' '.join(args)} failed:\n{proc.stderr}\n{proc.stdout}"
        return result

    return run


@pytest.fixture(scope="module")
def jobs(ml_client: Any, heart_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    from batchpoint import Input

    make_endpoint(ml_client, ENDPOINT, heart_model_dir, tmp_path_factory.mktemp("errors-code"), {
        "some-fail": {"environment_variables": {"FAIL_ON": ",".join(BROKEN)}},
        "all-fail": {"environment_variables": {"FAIL_ALL": "1"}, "error_threshold": 0}})
    all_fail = ml_client.batch_endpoints.invoke(endpoint_name=ENDPOINT, deployment_name="all-fail",
                                                input=Input(type="uri_file", path=str(ONE_FILE))).name
    names = {"some": invoke(ml_client, ENDPOINT, "some-fail"), "all": all_fail}
    return {case: ml_client.jobs.wait(name, timeout=240, poll=0.2) for case, name in names.items()}


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_the_errors_file_names_each_failed_file_with_its_kind_and_message(cli: Any, jobs: dict[str, Any],
                                                                         tmp_path: Path) -> None:
    job = jobs["some"]
    assert job.status == "Completed" and job.progress.files_failed == 2, (job.status_message, job.error)
    result = cli("job", "download", "-n", job.name, "--output-name", "score", "--download-path", str(tmp_path))
    folder = tmp_path / "named-outputs" / "score"
    assert sorted(p.name for p in folder.iterdir()) == ["errors.jsonl", job.outputs["score"].file_name], result.out
    lines = _lines(folder / "errors.jsonl")
    assert sorted(line["file"] for line in lines) == BROKEN
    for line in lines:
        assert line["kind"] == "user" and line["attempt"] == 1, line
        assert line["exception_type"] == "KeyError" and line["message"] == f"\"no column 'thal' in {line['file']}\"", line
        assert isinstance(line["mini_batch"], int) and line["path"].endswith(line["file"]), line
        assert line["where"].startswith("score.py, line ") and line["where"].endswith(", in check"), line
        frames = line["frames"]
        assert 'File "score.py"' in frames and "in run" in frames and "in check" in frames, frames
        assert "batchpoint" not in frames and "/" not in frames.replace("//", ""), frames  # the user's frames only
    assert job.errors["failed_files"] == 2 and job.errors["by_kind"] == {"user": 2}, job.errors
    assert job.errors["errors_file"] == f"{job.outputs['score'].path.rstrip('/')}/errors.jsonl"

    everything = cli("job", "download", "-n", job.name, "--all", "--download-path", str(tmp_path / "all"))
    assert (tmp_path / "all" / "named-outputs" / "score" / "errors.jsonl").read_text() == \
        (folder / "errors.jsonl").read_text(), everything.out


def test_a_failed_job_writes_its_errors_file_too(cli: Any, jobs: dict[str, Any], tmp_path: Path) -> None:
    job = jobs["all"]
    assert job.status == "Failed", job.status
    result = cli("job", "download", "-n", job.name, "--download-path", str(tmp_path), check=False)
    assert result.code == 1, (result.out, result.err)  # the predictions were never written
    assert "errors file" in result.err and "failed" in result.err, result.err
    lines = _lines(tmp_path / "named-outputs" / "score" / "errors.jsonl")
    assert lines and all(line["message"] == "cannot score: the rows are corrupt" and line["kind"] == "user"
                         and line["exception_type"] == "ValueError" for line in lines), lines
    assert [line["file"] for line in lines] == [ONE_FILE.name], lines  # its one file, failed once
    assert len(lines) == job.progress.files_failed


def _scrape(http: httpx.Client) -> dict[tuple[str, tuple], float]:
    response = http.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def _expected() -> dict[tuple[str, tuple], float]:
    """The counters of this module's server, from the jobs' inputs alone: the some-fail job (Completed)
    scores the heart files not in BROKEN and fails those in it, one mini-batch per file; the all-fail
    job (Failed) fails its one file."""
    import pandas as pd

    scored = [p for p in sorted(HEART_UNLABELED.glob("*.csv")) if p.name not in BROKEN]
    assert len(scored) == 2
    expected: dict[tuple[str, tuple], float] = {}
    for status in ("Queued", "Preparing", "Running", "Finalizing", "Completed", "Failed", "Canceled"):
        expected[("batchpoint_jobs", (("status", status),))] = {"Completed": 1, "Failed": 1}.get(status, 0)
    expected[("batchpoint_mini_batches_total", (("outcome", "completed"),))] = len(scored)
    expected[("batchpoint_mini_batches_total", (("outcome", "failed"),))] = len(BROKEN) + 1
    expected[("batchpoint_files_total", (("outcome", "scored"),))] = len(scored)
    expected[("batchpoint_files_total", (("outcome", "failed"),))] = len(BROKEN) + 1
    expected[("batchpoint_rows_scored_total", ())] = sum(len(pd.read_csv(p)) for p in scored)
    return expected


def _matching(scrape: Any, http: httpx.Client) -> dict[tuple[str, tuple], float]:
    """A scrape whose counters are the fixed ones of ``_expected`` (a failed job's counters may land a
    moment after its status: retried a few seconds)."""
    expected = _expected()
    for _ in range(20):
        after = scrape(http)
        if all(after.get(k) == v for k, v in expected.items()):
            return after
        time.sleep(0.5)
    raise AssertionError(f"/metrics never matched the jobs' inputs: {expected} vs {after}")


def test_metrics_match_the_job_records(server: Any, ml_client: Any, jobs: dict[str, Any]) -> None:
    with server.rest() as http:
        samples = _matching(_scrape, http)
    assert samples[("batchpoint_files_total", (("outcome", "failed"),))] == 2 + jobs["all"].progress.files_failed
    assert samples[("batchpoint_rows_scored_total", ())] == jobs["some"].progress.rows > 0
    mine = sum(j.progress.mini_batches_completed + j.progress.mini_batches_failed for j in jobs.values())
    observed = sum(v for (name, _), v in samples.items() if name == "batchpoint_mini_batch_duration_seconds_count")
    assert observed == mine == len(BROKEN) + 3, samples  # this server's own mini-batches, each timed once
    failed_ones = samples[("batchpoint_mini_batch_duration_seconds_count", (("outcome", "failed"),))]
    assert failed_ones == 2 + jobs["all"].progress.mini_batches_failed == 3
    builds = {k: v for k, v in samples.items() if k[0] == "batchpoint_environment_builds_total"}
    assert set(builds) == {("batchpoint_environment_builds_total", (("outcome", o),)) for o in ("finished", "failed")}


def test_metrics_need_a_reader_key(server: Any, ml_client: Any) -> None:
    for who, role in (("user:metrics-reader", "Reader"), ("user:metrics-invoker", "Invoker")):
        ml_client.principals.create(who)
        ml_client.role_assignments.create(who, role, "workspace")
    reader = record_secret(ml_client.principals.create_key("user:metrics-reader")["key"])
    invoker = record_secret(ml_client.principals.create_key("user:metrics-invoker")["key"])
    assert httpx.get(f"{server.url}/metrics", timeout=30).status_code == 401
    assert httpx.get(f"{server.url}/metrics", headers={"Authorization": f"Bearer {invoker}"}, timeout=30).status_code == 403
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {reader}"}, timeout=30) as http:
        assert ("batchpoint_rows_scored_total", ()) in _scrape(http)


def test_a_second_server_on_the_same_database_answers_the_same_numbers_opened(
        server: Any, ml_client: Any, jobs: dict[str, Any], tmp_path: Path) -> None:
    shared = {"BATCHPOINT_DATABASE_URL": f"sqlite:///{server.home / 'metadata.db'}",
              "BATCHPOINT_SERVER__METRICS_PUBLIC": "true"}
    # servers on one database share its server key (docs/multi-server.md): the session's data store
    # secrets are encrypted with it, and a second server with a key of its own cannot start
    (tmp_path / "second-home").mkdir()
    shutil.copy2(server.home / "server.key", tmp_path / "second-home" / "server.key")
    # and the home's id: a server whose home is not the database's refuses to start (server/instance.py);
    # this one runs no job, so its own job folders do not matter here
    shutil.copy2(server.home / "home.id", tmp_path / "second-home" / "home.id")
    second = start_server(tmp_path / "second-home", extra_env=shared)
    try:
        with httpx.Client(base_url=second.url, timeout=30) as anonymous:  # opened by the setting
            samples = _matching(_scrape, anonymous)
        assert not any(k[0] == "batchpoint_mini_batch_duration_seconds_count" and v for k, v in samples.items()), \
            "the second server ran no mini-batch: its histogram is its own"
        assert httpx.get(f"{second.url}/jobs", timeout=30).status_code == 401  # only /metrics is opened
    finally:
        stop_server(second)


def test_uploads_and_downloads_report_their_progress(ml_client: Any, jobs: dict[str, Any], tmp_path: Path) -> None:
    from batchpoint import Data
    from batchpoint.sdk.upload import TRANSFER_PROGRESS

    calls: list[tuple[str, int, int, str]] = []
    token = TRANSFER_PROGRESS.set(lambda *call: calls.append(call))
    try:
        local = tmp_path / "to-upload"
        local.mkdir()
        for i in range(3):
            (local / f"part-{i}.csv").write_text(f"a,b\n{i},{tmp_path.name}\n" * 2000)
        ml_client.data.create_or_update(Data(name="observe-upload", path=str(local), type="uri_folder"))
        ml_client.jobs.download(jobs["some"].name, download_path=tmp_path / "down")
    finally:
        TRANSFER_PROGRESS.reset(token)
    sent = [c for c in calls if c[0] == "uploading to-upload"]
    size = sum(p.stat().st_size for p in local.iterdir())
    assert sent[0][1:] == (0, size, "bytes") and sent[-1][1:] == (size, size, "bytes"), sent
    assert [c[1] for c in sent] == sorted(c[1] for c in sent)
    saved = [c for c in calls if c[0] == f"downloading score of {jobs['some'].name}"]
    assert [c[1:] for c in saved] == [(0, 2, "files"), (1, 2, "files"), (2, 2, "files")], saved


def test_job_show_has_phases_counts_inputs_and_errors(cli: Any, server: Any, jobs: dict[str, Any], tmp_path: Path) -> None:
    job = json.loads(cli("job", "show", "-n", jobs["some"].name).out)
    steps = [(s["kind"], s["name"]) for s in job["phases"]]
    assert [n for k, n in steps if k == "status"] == ["Queued", "Preparing", "Running", "Finalizing", "Completed"]
    assert ("phase", "listing") in steps, steps
    assert all(isinstance(s["seconds"], (int, float)) and s["seconds"] >= 0 for s in job["phases"])
    assert job["progress"]["files_failed"] == 2 and job["progress"]["files_completed"] == 2
    (spec,) = job["inputs"].values()
    assert spec["credential_kind"] and spec["credential_source"] and "pinned" in spec, spec
    assert job["outputs"]["score"]["path"].startswith("azureml://datastores/")
    assert job["errors"]["by_kind"] == {"user": 2} and {e["file"] for e in job["errors"]["first"]} == set(BROKEN)

    opened = tmp_path / "opened.txt"
    fake = tmp_path / "fake-browser"
    fake.write_text(f"#!/bin/sh\necho \"$1\" >> {opened}\n")
    fake.chmod(0o755)
    exe = shutil.which("batchpoint", path=str(Path(sys.executable).parent)) or "batchpoint"
    result = subprocess.run([exe, "job", "show", "-n", jobs["some"].name, "--web"], capture_output=True, text=True,
                            env={**server.env, "BATCHPOINT_SERVER_URL": server.url, "BROWSER": str(fake)}, timeout=60)
    assert result.returncode == 0, result.stderr
    url = result.stdout.strip()
    assert url.endswith(f"/ui/jobs/{jobs['some'].name}") and url.startswith("http://127.0.0.1:"), result.out
    assert opened.read_text().strip() == url
