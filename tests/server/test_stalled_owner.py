"""Two servers on one PostgreSQL database; the server running a job stalls (SIGSTOP) for 15 s and
then goes on (issue 19 §7). The other server finds the job's heartbeat stale and takes it over;
when the stalled one wakes, its workers have finished the mini-batches they held. Before: it
added them to the job's counters too (130 of 125 mini-batches, rows counted twice). Now: each
mini-batch counts once per job, whoever reports it — the counters only take a server's outcomes
while the job is still that server's, and the done log counts an index recorded twice once — and
the stalled server stops scoring the job as soon as it notices."""

from __future__ import annotations

import signal
import time
from collections import Counter
from pathlib import Path

import pytest

from batchpoint import Input, MLClient
from batchpoint.jobs.folder import DoneLog
from conftest import start_server, stop_server
from store.test_claims import fresh_database
from server.test_two_servers import ENDPOINT, deploy, owners, runs_workers, start_second

pytestmark = [pytest.mark.postgres, pytest.mark.timeout(240)]

FILES = 24  # 1 s each on one worker: the job outlasts the stall, so the stalled server's late outcomes meet it Running
STALL_S = 15


def test_a_stalled_owner_that_resumes_never_counts_a_mini_batch_twice(tmp_path: Path, postgres_url: str) -> None:
    home, data, scored = tmp_path / "home", tmp_path / "data", tmp_path / "scored.txt"
    (data / "many").mkdir(parents=True)
    for i in range(FILES):
        (data / "many" / f"f-{i:02d}.csv").write_text(f"x\n{i}\n")
    with fresh_database(postgres_url) as url:
        env = {"BATCHPOINT_DATABASE_URL": url, "BATCHPOINT_JOBS__HEARTBEAT_INTERVAL_S": "1"}
        a = start_server(home, env)
        b = start_second(home, env)
        servers = [a, b]
        stalled = None
        try:
            with MLClient(endpoint=a.url, home=home) as ca, MLClient(endpoint=b.url, home=home) as cb:
                deploy(ca, tmp_path, scored, data)
                name = cb.batch_endpoints.invoke(endpoint_name=ENDPOINT, deployment_name="slow", input=Input(
                    type="uri_folder", path="azureml://datastores/shareddata/paths/many")).name
                deadline = time.monotonic() + 90
                while cb.jobs.get(name).progress.mini_batches_completed < 2:
                    assert time.monotonic() < deadline, cb.jobs.get(name).status_message
                    time.sleep(0.1)
                first_owner = owners(cb, name)[-1]
                stalled = next(s for s in (a, b) if runs_workers(s.proc.pid))  # the one scoring the job
                survivor, client = (b, cb) if stalled is a else (a, ca)
                stalled.proc.send_signal(signal.SIGSTOP)
                time.sleep(STALL_S)  # its worker finishes the mini-batch it holds meanwhile
                taken = client.jobs.get(name)
                assert owners(client, name)[-1] != first_owner, "the other server did not take the job over"
                assert taken.status == "Running", taken.status
                stalled.proc.send_signal(signal.SIGCONT)

                done = client.jobs.wait(name, timeout=120, poll=0.2)
                assert done.status == "Completed", (done.status_message, survivor.log()[-3000:])
                p = done.progress
                assert (p.mini_batches_total, p.mini_batches_completed, p.files_completed, p.rows) == (
                    FILES, FILES, FILES, FILES), p
                time.sleep(3)  # the stalled server's last outcomes, had they been counted late
                p = client.jobs.get(name).progress
                assert (p.mini_batches_completed, p.files_completed, p.rows) == (FILES, FILES, FILES), p
                assert "stopping it on this server" in stalled.log(), stalled.log()[-3000:]
                assert set(Counter(scored.read_text().split())) == {f"f-{i:02d}.csv" for i in range(FILES)}
                # the done log (both servers append to it in the shared home) counts each mini-batch once
                totals = DoneLog(home / "jobs" / name / "done.jsonl").totals
                assert totals["mini_batches_completed"] == FILES and totals["rows"] == FILES, totals
        finally:
            if stalled is not None and stalled.proc.poll() is None:
                stalled.proc.send_signal(signal.SIGCONT)
            for server in servers:
                if server.proc.poll() is None:
                    stop_server(server)
