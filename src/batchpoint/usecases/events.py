"""A job's events (``jobs/lifecycle.py`` writes them): a page of them, or a server-sent-event stream
that follows the job until its terminal event. A child job's events are its parent's."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from anyio.to_thread import run_sync

from batchpoint.exceptions import ValidationError
from batchpoint.jobs import children
from batchpoint.jobs.lifecycle import event_json, is_terminal_event
from batchpoint.jobs.states import TERMINAL
from batchpoint.jobs.views import hide_server_paths, server_path_hider
from batchpoint.usecases.services import Services

EVENTS_MAX_PAGE = 1000
EVENTS_PAGE = 100
STREAM_POLL_S = 0.2  # how often an open stream looks for new events
STREAM_HEARTBEAT_S = 15.0  # a comment line when nothing else was sent, so proxies keep the stream open
STREAM_MAX_S = 300.0  # then the stream ends without a terminal event; a client reconnects with Last-Event-ID
STREAM_RECHECK_S = 2.0  # how often an idle stream checks whether the job ended with no terminal event


def whole_number(value: str | None, what: str, default: int, low: int, high: int | None = None) -> int:
    """``value`` as a whole number from ``low`` to ``high``; empty or absent: ``default``."""
    if value is None or value.strip() == "":
        return default
    try:
        number = int(value)
    except ValueError:
        number = None
    if number is None or number < low or (high is not None and number > high):
        bounds = f"from {low} to {high}" if high is not None else f"of at least {low}"
        raise ValidationError(f"{what} must be a whole number {bounds}, not '{value}'")
    return number


def parse_after(value: str | None, what: str = "after") -> int:
    """The seq of the last event the caller has (``?after=``, or a ``Last-Event-ID`` header)."""
    return whole_number(value, f"{what} (the seq of the last event you have; 0 for all)", 0, 0)


def stream_start(last_event_id: str | None, after: str | None) -> int:
    """Where a stream starts: after ``Last-Event-ID`` (a reconnect) if sent, else after ``?after=``."""
    return parse_after(last_event_id, "the Last-Event-ID header") if last_event_id else parse_after(after)


def list_events(sv: Services, name: str, after: str | None = None, limit: str | None = None,
                server_paths: bool = False) -> list[dict[str, Any]]:
    """The job's events after seq ``after``, oldest first, at most ``limit`` (1 to EVENTS_MAX_PAGE,
    default EVENTS_PAGE); without ``server_paths`` (Owners only) paths on the server's disk hidden."""
    start = parse_after(after)
    size = whole_number(limit, "limit (events per page)", EVENTS_PAGE, 1, EVENTS_MAX_PAGE)
    events = [event_json(row) for row in sv.store.list_job_events(children.parent_name(name), start, size)]
    return events if server_paths else hide_server_paths(sv.workspace, events)  # Owners only (issue 18 §5)


def stream_events(sv: Services, name: str, after: int, server_paths: bool = True) -> AsyncIterator[str]:
    """The job's events as server-sent-event text (``id: <seq>``, ``data: <event JSON>``) from seq
    ``after``; ends after the terminal event (or STREAM_MAX_S: the client reconnects)."""
    hide = None if server_paths else server_path_hider(sv.workspace)  # Owners only (issue 18 §5)
    return _event_stream(sv, children.parent_name(name), after, hide)


async def _event_stream(sv: Services, name: str, after: int,
                        hide: Callable[[Any], Any] | None = None) -> AsyncIterator[str]:
    """Poll the store off the event loop every STREAM_POLL_S; a job that ended without a terminal
    event (one from before job events existed) ends the stream after its last event."""
    store = sv.store
    opened = sent = checked = time.monotonic()
    ended = False
    yield "retry: 1000\n\n"
    while True:
        rows = await run_sync(store.list_job_events, name, after, EVENTS_MAX_PAGE)
        for row in rows:
            after = row.seq
            shown = event_json(row) if hide is None else hide(event_json(row))
            yield f"id: {row.seq}\ndata: {json.dumps(shown, separators=(',', ':'))}\n\n"
            if is_terminal_event(row):
                return
        now = time.monotonic()
        if rows:
            sent = now
            if len(rows) == EVENTS_MAX_PAGE:
                continue  # more are waiting
        elif ended or now - opened >= STREAM_MAX_S:
            return
        elif now - sent >= STREAM_HEARTBEAT_S:
            yield ": heartbeat\n\n"
            sent = now
        if not rows and now - checked >= STREAM_RECHECK_S:
            checked = now
            ended = (await run_sync(store.get_job, name)).status in TERMINAL  # one more look, then end
            continue
        await asyncio.sleep(STREAM_POLL_S)
