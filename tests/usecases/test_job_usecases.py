"""The use cases of ``batchpoint.usecases`` called as a front door calls them, over the real app's
services (``create_app``, a real SQLite database in a temporary home: ``fixtures/inproc.py``).

The dispatcher is closed first, so every job stays where the use cases put it (Queued, Canceled)
and each answer below is fixed, not a race with a job that runs."""

from __future__ import annotations

import asyncio

import pytest

from batchpoint._internal.clock import utcnow
from batchpoint.engines.planning import FileRef, MiniBatch
from batchpoint.exceptions import ConflictError, NotFoundError, StorageNotFoundError, ValidationError
from batchpoint.jobs.folder import JobFolder
from batchpoint.jobs.submit import InvokeRequest
from batchpoint.usecases import cancel, events, outputs, reads, rerun
from batchpoint.usecases.invoke import invoke
from fixtures.inproc import workspace

ENDPOINT = "uc-ep"
DATA = "azureml://datastores/workspaceblobstore/paths/uc-data"


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    with workspace(tmp_path_factory.mktemp("usecases")) as inproc:
        inproc.deploy(ENDPOINT)
        inproc.put_file("uc-data/a.csv", b"x\n1\n")
        inproc.ctx.dispatcher.close()  # nothing runs: the jobs stay as the use cases leave them
        inproc.principal = inproc.owner.get("/principals").json()[0]["id"]
        yield inproc


def _request(**fields) -> InvokeRequest:
    return InvokeRequest(inputs={"data": {"path": DATA, "type": "uri_folder"}}, **fields)


def test_invoke_queues_a_job_and_describes_it_for_the_audit_log(ws):
    started = invoke(ws.ctx, ENDPOINT, _request(), principal=ws.principal)
    assert started.row.status == "Queued"
    assert started.row.created_by == ws.principal
    assert started.idempotent is False
    assert started.audit == {"action": "invoke", "endpoint": ENDPOINT, "deployment": "echo", "job": started.row.name,
                             "inputs": {"data": {"path": DATA, "type": "uri_folder", "credential_kind": "none"}}}  # a local store
    assert ws.ctx.dispatcher.wake.is_set()  # the dispatcher was woken


def test_invoke_without_a_key_makes_a_new_job_each_time(ws):
    first = invoke(ws.ctx, ENDPOINT, _request(), principal=ws.principal)
    second = invoke(ws.ctx, ENDPOINT, _request(), principal=ws.principal)
    assert first.row.name != second.row.name


def test_a_key_makes_invoke_idempotent_and_names_one_request(ws):
    body = {"b": 1}
    first = invoke(ws.ctx, ENDPOINT, _request(), principal=ws.principal, key="uc-key-1", body=body)
    again = invoke(ws.ctx, ENDPOINT, _request(), principal=ws.principal, key="uc-key-1", body=body)
    assert (first.idempotent, again.idempotent) == (True, True)
    assert again.row.name == first.row.name
    with pytest.raises(ConflictError, match="'uc-key-1' was already used within 24 h for another request \\(another "
                                            "invoke"):
        invoke(ws.ctx, ENDPOINT, _request(), principal=ws.principal, key="uc-key-1", body={"b": 2})


def _listed(ws, job: str) -> None:
    """The job's manifest, as its lister would have written it: one mini-batch of a.csv, complete."""
    manifest = JobFolder.local(ws.ctx.settings.jobs_dir, job).manifest()
    manifest.add(MiniBatch(0, (FileRef("data", "a.csv"),)))
    manifest.finish(1, 1, utcnow())


def test_rerun_starts_a_job_through_the_same_body_as_invoke(ws):
    first = invoke(ws.ctx, ENDPOINT, _request(), principal=ws.principal).row
    _listed(ws, first.name)
    cancel.cancel(ws.ctx, first.name)  # a rerun needs an ended job
    started = rerun.rerun(ws.ctx, first.name, failed_only=False, principal=ws.principal, key="uc-rerun", body={})
    assert started.row.status == "Queued" and started.row.name != first.name
    assert started.audit == {"action": "rerun", "job": started.row.name, "of": first.name, "failed_only": False}
    assert started.idempotent is True
    again = rerun.rerun(ws.ctx, first.name, failed_only=False, principal=ws.principal, key="uc-rerun", body={})
    assert again.row.name == started.row.name
    with pytest.raises(ConflictError, match="another rerun"):  # the same key for another request
        rerun.rerun(ws.ctx, first.name, failed_only=True, principal=ws.principal, key="uc-rerun",
                    body={"failed_only": True})


@pytest.mark.parametrize(("raw", "message"), [
    (b"[1]", "the request body must be a JSON object"),
    (b"{", "the request body is not valid JSON"),
    (b'{"failed_only": "yes"}', 'the rerun body is {"failed_only": true|false} (default false)'),
    (b'{"failed": true}', "unknown: failed"),
])
def test_a_rerun_body_is_checked(raw, message):
    with pytest.raises(ValidationError) as caught:
        rerun.parse_rerun_body("job-1", raw)
    assert message in str(caught.value)


def test_a_rerun_body_may_be_empty_or_say_failed_only():
    assert rerun.parse_rerun_body("job-1", b"  ") == ({}, False)
    assert rerun.parse_rerun_body("job-1", b'{"failed_only": true}') == ({"failed_only": True}, True)


def test_cancel_and_rerun_refuse_a_batchscoring_step_naming_its_job(ws):
    with pytest.raises(ValidationError, match="batchpoint job cancel -n job-1"):
        cancel.cancel(ws.ctx, "job-1-batchscoring")
    with pytest.raises(ValidationError, match="batchpoint job rerun -n job-1"):
        rerun.parse_rerun_body("job-1-batchscoring", b"")


def test_cancel_moves_a_queued_job_to_canceled_and_an_unknown_one_is_a_404(ws):
    row = invoke(ws.ctx, ENDPOINT, _request(), principal=ws.principal).row
    assert cancel.cancel(ws.ctx, row.name).status == "Canceled"
    assert cancel.cancel(ws.ctx, row.name).status == "Canceled"  # again: nothing changes
    with pytest.raises(NotFoundError, match="no-such-job"):
        cancel.cancel(ws.ctx, "no-such-job")


def test_events_list_a_jobs_history_from_after(ws):
    row = invoke(ws.ctx, ENDPOINT, _request(), principal=ws.principal).row
    cancel.cancel(ws.ctx, row.name)
    listed = events.list_events(ws.ctx, row.name, server_paths=True)
    assert [(e["seq"], e["type"], e["status"]) for e in listed] == [(1, "status", "Queued"), (2, "status", "Canceled")]
    assert [e["seq"] for e in events.list_events(ws.ctx, row.name, after="1")] == [2]
    assert [e["seq"] for e in events.list_events(ws.ctx, f"{row.name}-batchscoring", limit="1")] == [1]


@pytest.mark.parametrize(("after", "limit", "message"), [
    ("-1", None, "after (the seq of the last event you have; 0 for all) must be a whole number of at least 0, not '-1'"),
    ("x", None, "not 'x'"),
    (None, "0", "limit (events per page) must be a whole number from 1 to 1000, not '0'"),
    (None, "1001", "from 1 to 1000, not '1001'"),
])
def test_events_refuse_a_bad_after_or_limit(ws, after, limit, message):
    with pytest.raises(ValidationError) as caught:
        events.list_events(ws.ctx, "any-job", after, limit)
    assert message in str(caught.value)


def test_a_stream_starts_after_last_event_id_before_after():
    assert events.stream_start("7", "3") == 7
    assert events.stream_start(None, "3") == 3
    assert events.stream_start(None, None) == 0
    with pytest.raises(ValidationError, match="the Last-Event-ID header"):
        events.stream_start("seven", None)


def test_the_event_stream_sends_each_event_and_ends_after_the_terminal_one(ws):
    row = invoke(ws.ctx, ENDPOINT, _request(), principal=ws.principal).row
    cancel.cancel(ws.ctx, row.name)

    async def read_all() -> list[str]:
        return [chunk async for chunk in events.stream_events(ws.ctx, row.name, 0)]

    chunks = asyncio.run(asyncio.wait_for(read_all(), 30))
    assert chunks[0] == "retry: 1000\n\n"
    assert [c.split("\n")[0] for c in chunks[1:]] == ["id: 1", "id: 2"]
    assert '"status":"Canceled"' in chunks[-1]
    resumed = asyncio.run(asyncio.wait_for(_collect(events.stream_events(ws.ctx, row.name, 1)), 30))
    assert [c.split("\n")[0] for c in resumed[1:]] == ["id: 2"]


async def _collect(stream) -> list[str]:
    return [chunk async for chunk in stream]


def test_outputs_list_and_read_a_jobs_files(ws):
    row = invoke(ws.ctx, ENDPOINT, _request(), principal=ws.principal).row
    listed = outputs.list_output(ws.ctx, row.name, "score")
    assert listed == {"name": "score", "path": f"azureml://datastores/workspaceblobstore/paths/azureml/{row.name}/score",
                      "files": []}
    ws.put_file(f"azureml/{row.name}/score/predictions.csv", b"a.csv\n")
    assert outputs.list_output(ws.ctx, row.name, "score")["files"] == ["predictions.csv"]
    assert outputs.list_output(ws.ctx, f"{row.name}-batchscoring", "score")["files"] == ["predictions.csv"]
    assert b"".join(outputs.read_output_file(ws.ctx, row.name, "score", "predictions.csv")) == b"a.csv\n"
    assert outputs.output_files(ws.ctx, reads.get_job(ws.ctx, row.name)) == [
        {"output": "score", "path": "predictions.csv"}]
    with pytest.raises(StorageNotFoundError, match="does not exist"):
        outputs.read_output_file(ws.ctx, row.name, "score", "other.csv")
    with pytest.raises(NotFoundError, match=f"job '{row.name}' has no output 'scores'; outputs: score"):
        outputs.list_output(ws.ctx, row.name, "scores")


def test_an_errors_file_is_read_line_by_line_and_none_when_absent(ws):
    row = invoke(ws.ctx, ENDPOINT, _request(), principal=ws.principal).row
    assert outputs.errors_file_lines(ws.ctx, row) is None
    ws.put_file(f"azureml/{row.name}/score/errors.jsonl", b'{"file": "a.csv"}\n{"file": "b.csv"}\n')
    assert list(outputs.errors_file_lines(ws.ctx, row)) == [{"file": "a.csv"}, {"file": "b.csv"}]


def test_reads_answer_entities_and_404s_naming_what_is_missing(ws):
    assert [e.name for e in reads.list_endpoints(ws.ctx)] == [ENDPOINT]
    assert reads.list_endpoints(ws.ctx, lambda name: False) == []
    assert [d.name for d in reads.list_deployments(ws.ctx, ENDPOINT)] == ["echo"]
    assert reads.get_asset(ws.ctx, "models", f"{ENDPOINT}-model", label="latest").version == "1"
    assert reads.default_datastore(ws.ctx).name == "workspaceblobstore"
    with pytest.raises(NotFoundError, match="no-ep"):
        reads.list_deployments(ws.ctx, "no-ep")
    with pytest.raises(NotFoundError, match="no-ep"):
        reads.endpoint_jobs(ws.ctx, "no-ep", None, 10)
    with pytest.raises(NotFoundError, match="batchscoring step of job 'no-job'"):
        reads.show_job(ws.ctx, "no-job-batchscoring")
    jobs = reads.deployment_jobs(ws.ctx, ENDPOINT, "echo", None, 1000)
    assert jobs and all(j.deployment_name == "echo" for j in jobs)
    step = reads.child_jobs(ws.ctx, jobs[0].name, None, 0, server_paths=False)
    assert [(j.name, j.display_name) for j in step] == [(f"{jobs[0].name}-batchscoring", "batchscoring")]
    assert reads.child_jobs(ws.ctx, jobs[0].name, None, 10, server_paths=False) == []
