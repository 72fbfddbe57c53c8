"""What running Azure's samples by hand found in Batchpoint (docs/azure-compatibility.md, "Azure's
samples, one by one"), each held here in its smallest form.

The heart notebook invokes its deployment twice in a row: the second job waits for the first job's
environment build, and its ``building environment`` phase was shown twice, one of them never ending
(``job show``: ``building environment 147.6 s, building environment 110.4 s``, the first still growing)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

from batchpoint.jobs.timeline import timeline

T0 = datetime(2026, 12, 7, 3, 13, 34, tzinfo=timezone.utc)


def _status(seconds: float, status: str):
    return SimpleNamespace(type="status", status=status, at=T0 + timedelta(seconds=seconds), data={}, message=status)


def _phase(at_s: float, state: str, message: str = "", **data):
    return SimpleNamespace(type="phase", status=None, at=T0 + timedelta(seconds=at_s), message=message,
                           data={"phase": "building environment", "state": state, **data})


def test_a_build_waiting_for_another_jobs_build_is_one_phase() -> None:
    job = SimpleNamespace(listing_completed_at=T0 + timedelta(seconds=111))
    events = [_status(0, "Queued"), _status(0.01, "Preparing"),
              _phase(0.1, "started", "building environment (from the model's requirements.txt)"),
              _phase(0.102, "started", "building environment: waiting for another job building 051120a97786"),
              _phase(110.5, "finished", "environment 051120a97786 found in the cache in 110.4 s", seconds=110.4),
              _status(110.6, "Running"), _status(147.6, "Completed")]
    steps = [s for s in timeline(job, events) if s["name"] == "building environment"]
    assert len(steps) == 1, steps
    assert steps[0]["state"] == "finished" and steps[0]["seconds"] == 110.4 and steps[0]["within"] == "Preparing"


def test_a_phase_started_again_after_a_resume_is_a_new_step() -> None:
    # a server crash between the two starts: the resumed job's build is its own step (kept apart)
    job = SimpleNamespace(listing_completed_at=None)
    events = [_status(0, "Queued"), _status(0.01, "Preparing"), _phase(0.1, "started"),
              _status(30, "Crashed"), _status(30, "Queued"), _status(31, "Preparing"), _phase(31.1, "started"),
              _phase(40, "finished", seconds=8.9), _status(40.1, "Running")]
    steps = [s for s in timeline(job, events) if s["name"] == "building environment"]
    assert [s["within"] for s in steps] == ["Preparing", "Preparing"]
    assert steps[1]["state"] == "finished" and steps[1]["seconds"] == 8.9
