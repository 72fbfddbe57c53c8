"""Acceptance (e): a job's history is a list of job events — every status transition in order with
progress events between, numbered without gaps — read through REST and the SDK, and delivered LIVE
as server-sent events that resume from ``Last-Event-ID`` or ``?after=``; other callers' jobs are
403, bad paging is 400. All against the session's real server (uvicorn)."""

from __future__ import annotations

import io
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from batchpoint import MLClient
from batchpoint.exceptions import PermissionDeniedError
from batchpoint.sdk.client import StaticKeyCredential
from conftest import HEART_ROWS, record_secret, wait_job
from jobs.events_support import (
    HEART_FILES,
    LIFE,
    assert_numbered,
    invoke,
    make_event_endpoint,
    read_stream,
    statuses,
)

pytestmark = pytest.mark.timeout(240)

ENDPOINT = "job-events"
STREAM_TIMEOUT = httpx.Timeout(30.0, read=30.0)  # the server sends something at least every ~15 s
HELD_S = 16.5  # the server's heartbeat comment comes after 15 s without an event


@pytest.fixture(scope="module")
def endpoint(ml_client: Any, heart_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    make_event_endpoint(ml_client, ENDPOINT, heart_model_dir, tmp_path_factory.mktemp("events-code"))
    return ENDPOINT


@pytest.fixture(scope="module")
def quick_job(ml_client: Any, endpoint: str) -> str:
    name = invoke(ml_client, endpoint, "quick")
    final = wait_job(ml_client, name)
    assert final.status == "Completed", (final.status_message, final.error)
    return name


def _get_events(server: Any, name: str, **params: Any) -> list[dict[str, Any]]:
    with server.rest() as rest:
        response = rest.get(f"/jobs/{name}/events", params=params)
    assert response.status_code == 200, response.text
    return response.json()


#: One worker, four mini-batches: 5 status changes, the init() phase's start and end, the listing's end
#: and one progress event per mini-batch (jobs/lifecycle.py, engines/dispatch.py InitPhase).
HEART_HISTORY_LEN = len(LIFE) + 2 + 1 + HEART_FILES


def assert_heart_history(events: list[dict[str, Any]]) -> None:
    """``events`` is the whole history of one job of this module's endpoint over the four heart files,
    told from the test's inputs alone (never from another answer of the server)."""
    assert_numbered(events)
    assert len(events) == HEART_HISTORY_LEN, [(e["type"], e["status"], e["message"]) for e in events]
    assert statuses(events) == LIFE
    phases = [(e["data"]["phase"], e["data"]["state"], e["data"]["workers"]) for e in events if e["type"] == "phase"]
    assert phases == [("init()", "started", 1), ("init()", "finished", 1)], phases
    progress = [e for e in events if e["type"] == "progress"]
    listed = [e for e in progress if (e["message"] or "").startswith("listing complete")]
    assert [e["data"]["files_total"] for e in listed] == [HEART_FILES], progress
    scored = [e for e in events if e["type"] == "status" or e in progress and e not in listed]
    kinds = [e["type"] if e["type"] == "progress" else e["status"] for e in scored]
    assert kinds == LIFE[:3] + ["progress"] * HEART_FILES + LIFE[3:], kinds
    assert [e["data"]["mini_batches_completed"] for e in scored if e["type"] == "progress"] == [1, 2, 3, 4]
    assert (events[-1]["data"]["files_completed"], events[-1]["data"]["rows"]) == (HEART_FILES, HEART_ROWS)


def test_events_list_every_transition_in_order(server: Any, ml_client: Any, quick_job: str) -> None:
    events = _get_events(server, quick_job)
    assert_heart_history(events)
    assert statuses(events) == LIFE
    listed = [e for e in events if (e["message"] or "").startswith("listing complete")]
    assert len(listed) == 1 and listed[0]["type"] == "progress", events  # the end of the listing, once
    assert listed[0]["data"]["listing_complete"] is True and listed[0]["data"]["files_total"] == HEART_FILES
    scored = [e for e in events if e not in listed and e["type"] != "phase"]  # init() while workers start
    kinds = [e["type"] if e["type"] == "progress" else e["status"] for e in scored]
    running, finalizing = kinds.index("Running"), kinds.index("Finalizing")
    assert kinds[running + 1:finalizing] == ["progress"] * HEART_FILES, kinds  # one per mini-batch, between
    done = [e["data"]["mini_batches_completed"] for e in scored if e["type"] == "progress"]
    assert done == [1, 2, 3, 4], done  # each carries the counters after its change
    completed = events[-1]
    assert completed["message"] == "all mini-batches scored"
    assert (completed["data"]["files_completed"], completed["data"]["rows"]) == (HEART_FILES, HEART_ROWS)
    assert completed["data"]["files_failed"] == 0 and completed["data"]["listing_complete"] is True
    times = [datetime.fromisoformat(e["at"]) for e in events]
    assert times == sorted(times) and all(t.tzinfo is not None for t in times)

    # the SDK reads the same history
    sdk = ml_client.jobs.events(quick_job)
    assert [(e.seq, e.type, e.status, e.message, e.data) for e in sdk] == \
        [(e["seq"], e["type"], e["status"], e["message"], e["data"]) for e in events]
    assert [e.seq for e in ml_client.jobs.events(quick_job, after=len(events) - 2)] == [len(events) - 1, len(events)]

    # after= and limit= page through it
    assert [e["seq"] for e in _get_events(server, quick_job, after=3)] == list(range(4, len(events) + 1))
    assert [e["seq"] for e in _get_events(server, quick_job, after=2, limit=2)] == [3, 4]
    assert _get_events(server, quick_job, after=len(events)) == []


def test_stream_delivers_events_live(server: Any, ml_client: Any, endpoint: str, tmp_path: Path) -> None:
    """Opened right after invoke on a job held Running: its events arrive while it runs, and while
    nothing happens a heartbeat comment keeps the stream alive (~15 s); released, the job completes
    and the stream closes right after the terminal event."""
    gate = tmp_path / "release"
    name = invoke(ml_client, endpoint, "held", environment_variables={"HOLD_ON": "heart-unlabeled-3.csv",
                                                                       "HOLD_UNTIL": str(gate)})
    seen_running: list[str] = []

    def on_event(event: dict[str, Any], got: Any) -> None:
        progress = [e for e in got.events if e["type"] == "progress"]
        if event["type"] == "progress" and len(progress) == 1:
            # delivered while the job is held: it has not ended, the stream is live
            seen_running.append(ml_client.jobs.get(name).status)
            threading.Timer(HELD_S, gate.touch).start()  # held past one heartbeat, then let go

    with httpx.Client(base_url=server.url, headers=server.auth_headers(), timeout=STREAM_TIMEOUT) as http, \
            http.stream("GET", f"/jobs/{name}/events/stream") as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        got = read_stream(response, on_event)
    assert seen_running == ["Running"], seen_running
    assert statuses(got.events) == LIFE and got.events[-1]["status"] == "Completed"
    assert_numbered(got.events)
    assert got.ids == [e["seq"] for e in got.events]  # each event's id: is its seq
    first_progress = next(i for i, e in enumerate(got.events) if e["type"] == "progress")
    assert got.arrived[-1] - got.arrived[first_progress] >= HELD_S - 0.5  # it came long before the end
    assert ": heartbeat" in got.comments, got.comments
    assert got.closed_at - got.arrived[-1] < 5.0  # closed after the terminal event, not after a timeout
    # a fixed oracle from the job's inputs (4 files, one mini-batch each, one worker): the whole history
    # came, from seq 1 to the terminal event, each in its place
    assert_heart_history(got.events)


def test_stream_resumes_from_last_event_id_or_after(server: Any, quick_job: str) -> None:
    total = len(_get_events(server, quick_job))
    with httpx.Client(base_url=server.url, headers=server.auth_headers(), timeout=STREAM_TIMEOUT) as http:
        with http.stream("GET", f"/jobs/{quick_job}/events/stream", headers={"Last-Event-ID": "3"}) as response:
            resumed = read_stream(response)
        with http.stream("GET", f"/jobs/{quick_job}/events/stream", params={"after": total - 1}) as response:
            last = read_stream(response)
        # a reconnecting browser sends Last-Event-ID with the URL it first used: the header wins
        with http.stream("GET", f"/jobs/{quick_job}/events/stream", params={"after": 1},
                         headers={"Last-Event-ID": str(total - 2)}) as response:
            both = read_stream(response)
    assert [e["seq"] for e in resumed.events] == list(range(4, total + 1))
    assert [e["status"] for e in last.events] == ["Completed"]
    assert [e["seq"] for e in both.events] == [total - 1, total]


def test_sdk_stream_prints_status_and_progress_lines(ml_client: Any, endpoint: str) -> None:
    name = invoke(ml_client, endpoint, "slow")
    out = io.StringIO()
    started = time.monotonic()
    final = ml_client.jobs.stream(name, out=out, logs=True)
    assert time.monotonic() - started < 120
    lines = out.getvalue().splitlines()
    assert final.status == "Completed", out.getvalue()
    expected = ["[Queued] waiting for a worker", "[Preparing] resolving inputs and starting workers",
                "[Running] scoring mini-batches", "[Finalizing] writing outputs", "[Completed] all mini-batches scored"]
    assert [line for line in lines if line.startswith("[")] == expected, out.getvalue()
    progress = [line for line in lines if line.startswith("progress: ")]
    assert progress and progress[-1].startswith(
        f"progress: 4/4 mini-batches, 4 files scored, 0 failed, {HEART_ROWS} rows (of 4 files"), progress
    assert lines.index(expected[2]) < lines.index(progress[0]) < lines.index(expected[3]), out.getvalue()
    assert any(line.startswith("worker-") for line in lines), out.getvalue()
    assert lines[-1] == f"Job {name} Completed: 4 files scored, 0 failed, {HEART_ROWS} rows"


@pytest.fixture(scope="module")
def invokers(ml_client: Any, endpoint: str) -> dict[str, str]:
    keys = {}
    for who in ("mine", "other"):
        principal = f"user:events-{who}"
        ml_client.principals.create(principal)
        ml_client.role_assignments.create(principal, "Invoker", f"endpoint:{endpoint}")
        keys[who] = record_secret(ml_client.principals.create_key(principal)["key"])
    return keys


def test_another_invoker_gets_403_on_job_events(server: Any, endpoint: str, invokers: dict[str, str]) -> None:
    with MLClient(endpoint=server.url, credential=StaticKeyCredential(invokers["mine"])) as mine, \
            MLClient(endpoint=server.url, credential=StaticKeyCredential(invokers["other"])) as other:
        name = invoke(mine, endpoint, "quick")
        assert wait_job(mine, name).status == "Completed"
        assert statuses([e.model_dump() for e in mine.jobs.events(name)]) == LIFE
        with pytest.raises(PermissionDeniedError, match="jobs/read"):
            other.jobs.events(name)
        with pytest.raises(PermissionDeniedError, match="jobs/read"):
            other.jobs.stream(name, out=io.StringIO())
    headers = {"Authorization": f"Bearer {invokers['other']}"}
    with httpx.Client(base_url=server.url, headers=headers, timeout=STREAM_TIMEOUT) as http:
        listed = http.get(f"/jobs/{name}/events")
        streamed = http.get(f"/jobs/{name}/events/stream")
    for response in (listed, streamed):
        assert response.status_code == 403, response.text
        assert "jobs/read" in response.json()["error"]["message"]


@pytest.mark.parametrize(("route", "params", "headers", "named"), [
    ("events", {"after": "-1"}, {}, "after"),
    ("events", {"after": "three"}, {}, "after"),
    ("events", {"limit": "0"}, {}, "limit"),
    ("events", {"limit": "1001"}, {}, "limit"),
    ("events", {"limit": "ten"}, {}, "limit"),
    ("events/stream", {"after": "-3"}, {}, "after"),
    ("events/stream", {}, {"Last-Event-ID": "not-a-number"}, "Last-Event-ID"),
])
def test_bad_after_or_limit_is_400(server: Any, quick_job: str, route: str, params: dict[str, str],
                                   headers: dict[str, str], named: str) -> None:
    with server.rest() as rest:
        response = rest.get(f"/jobs/{quick_job}/{route}", params=params, headers=headers)
    assert response.status_code == 400, response.text
    message = response.json()["error"]["message"]
    assert named in message and "whole number" in message, message
    value = next(iter(params.values()), None) or headers["Last-Event-ID"]
    assert f"'{value}'" in message, message
