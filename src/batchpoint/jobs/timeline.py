"""A job's phases and their times, from its status and phase events (``job show``, the web page).

Each status the job passed through is a step (``Queued``, ``Preparing``, ``Running``,
``Finalizing``, then the terminal one, which takes no time; a job resumed after its server went
silent shows ``Crashed`` there too, also taking no time, with its message); each ``phase`` event pair inside a
status (``building environment``, ``listing``, ``writing outputs``, …, see
``lifecycle.phase``) is a step ``within`` that status; a phase ``started`` again while it is
still going in the same status (a build waiting for another job's) is the same step. When no ``listing`` phase events were
written, the listing is shown from the start of ``Running`` to the job's ``listing_completed_at``
(the lister starts when the job starts running). A step still going has ``seconds`` up to now and
``ended_at`` None.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from batchpoint._internal.clock import as_utc, utcnow
from batchpoint.store.tables import JobEventRow, JobRow

TERMINAL = ("Completed", "Failed", "Canceled")


def _iso(at: datetime | None) -> str | None:
    return at.isoformat() if at else None


def _secs(start: datetime, end: datetime | None) -> float:
    return round(max(0.0, ((end or utcnow()) - start).total_seconds()), 3)


def timeline(job: JobRow, events: list[JobEventRow]) -> list[dict[str, Any]]:
    """The steps of ``job`` in order (see the module docstring)."""
    steps: list[dict[str, Any]] = []
    current: dict[str, Any] | None = None
    open_phases: dict[str, dict[str, Any]] = {}
    saw_listing = False
    for ev in events:
        at = as_utc(ev.at)
        if ev.type == "status" and ev.status:
            if current is not None:
                current["ended_at"], current["seconds"] = _iso(at), _secs(current["_start"], at)
            current = {"name": ev.status, "kind": "status", "started_at": _iso(at), "ended_at": None,
                       "seconds": None, "_start": at}
            if ev.status == "Crashed":  # its server went silent: a mark (with why), then Queued again
                current["message"] = ev.message
            steps.append(current)
            if ev.status in TERMINAL or ev.status == "Crashed":
                current["ended_at"], current["seconds"] = _iso(at), 0.0
                current = None
        elif ev.type == "phase":
            data = ev.data or {}
            name, state = str(data.get("phase") or "?"), data.get("state")
            saw_listing = saw_listing or name == "listing"
            going = open_phases.get(name)
            if state == "started" and going is not None and going["_in"] is current:
                continue  # the same phase, still going, with news (a build waiting for another job's)
            if state == "started" or going is None:
                step = {"name": name, "kind": "phase", "within": current["name"] if current else None,
                        "state": "started", "started_at": _iso(at), "ended_at": None, "seconds": None, "_start": at,
                        "_in": current}
                open_phases[name] = step
                steps.append(step)
            if state in ("finished", "failed"):
                step = open_phases.pop(name)
                step["state"], step["ended_at"] = state, _iso(at)
                step["seconds"] = data["seconds"] if isinstance(data.get("seconds"), (int, float)) \
                    else _secs(step["_start"], at)
    if not saw_listing:
        _derived_listing(job, steps)
    for step in steps:
        step.pop("_in", None)
        start = step.pop("_start")
        if step["seconds"] is None:  # still going
            step["seconds"] = _secs(start, None)
    return steps


def _derived_listing(job: JobRow, steps: list[dict[str, Any]]) -> None:
    running = next((s for s in steps if s["name"] == "Running" and s["kind"] == "status"), None)
    if running is None:
        return
    done = as_utc(job.listing_completed_at)
    state = "finished" if done else ("started" if running["ended_at"] is None else "stopped")
    end = done or (datetime.fromisoformat(running["ended_at"]) if running["ended_at"] else None)
    step = {"name": "listing", "kind": "phase", "within": "Running", "state": state,
            "started_at": running["started_at"], "ended_at": _iso(end), "seconds": None, "_start": running["_start"]}
    if end is not None:
        step["seconds"] = _secs(running["_start"], end)
    steps.insert(steps.index(running) + 1, step)
