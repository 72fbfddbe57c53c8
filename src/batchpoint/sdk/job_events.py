"""Following a job from the SDK: its events (the server-sent stream ``GET /jobs/<name>/events/stream``,
read on a background thread), its worker logs, and the plain lines ``job stream`` prints for them.

The stream is reconnected with ``Last-Event-ID`` when it ends before the job's terminal event (the
server closes long streams; a connection may drop); a server that cannot be reached for
``reconnect_for_s`` ends the follow with ``ServerUnavailableError``.
"""

from __future__ import annotations

import json
import queue
import threading
import time
from collections.abc import Iterator
from typing import IO, Any
from urllib.parse import quote

import httpx

from batchpoint.entities import TERMINAL_STATUSES, JobEvent
from batchpoint.exceptions import ServerUnavailableError, error_from_payload

READ_TIMEOUT_S = 60.0  # the server sends a heartbeat every ~15 s: a silent minute is a dead connection
_END = object()


def parse_sse(lines: Iterator[str]) -> Iterator[JobEvent]:
    """Server-sent event lines → job events (``data:`` lines joined; comments and ``id:`` skipped:
    the event's ``seq`` is its id)."""
    data: list[str] = []
    for line in lines:
        if line == "":
            if data:
                yield JobEvent(**json.loads("\n".join(data)))
                data = []
            continue
        field, _, value = line.partition(":")
        if field == "data":
            data.append(value[1:] if value.startswith(" ") else value)


class EventFollower:
    """A job's events as they happen, from ``after`` on; iterate with :meth:`follow`."""

    def __init__(self, transport: Any, name: str, after: int = 0, reconnect_for_s: float = 30.0) -> None:
        self._t, self.name, self.last_seq, self.reconnect_for_s = transport, name, after, reconnect_for_s
        self._q: queue.Queue[Any] = queue.Queue()
        self._closed = threading.Event()
        self._response: httpx.Response | None = None
        self._thread = threading.Thread(target=self._run, name=f"events-{name}", daemon=True)

    def __enter__(self) -> EventFollower:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        self._closed.set()
        response = self._response
        if response is not None:
            response.close()

    def follow(self, idle: float) -> Iterator[JobEvent | None]:
        """Each event until the terminal one; ``None`` after ``idle`` seconds without one."""
        while True:
            try:
                item = self._q.get(timeout=idle)
            except queue.Empty:
                yield None
                continue
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def _run(self) -> None:
        failing_since: float | None = None
        try:
            while not self._closed.is_set():
                try:
                    if self._read_stream() or self._job_ended():
                        return
                    failing_since = None
                except (httpx.TransportError, ServerUnavailableError) as exc:
                    failing_since = failing_since or time.monotonic()
                    if time.monotonic() - failing_since > self.reconnect_for_s:
                        raise ServerUnavailableError(
                            f"lost the event stream of job '{self.name}' at {self._t.base_url} and could not "
                            f"reconnect for {self.reconnect_for_s:g}s: {exc}; is the server running?") from exc
                    self._closed.wait(1.0)
        except BaseException as exc:  # noqa: BLE001 - handed to the reading thread
            if not self._closed.is_set():
                self._q.put(exc)
        finally:
            self._q.put(_END)

    def _read_stream(self) -> bool:
        """One connection; True once the terminal event was read."""
        headers = {**self._t._headers(), "Accept": "text/event-stream"}
        if self.last_seq:
            headers["Last-Event-ID"] = str(self.last_seq)
        timeout = httpx.Timeout(30.0, read=READ_TIMEOUT_S)
        with httpx.Client(base_url=self._t.base_url, timeout=timeout) as client, \
                client.stream("GET", f"/jobs/{quote(self.name)}/events/stream", headers=headers) as response:
            if response.status_code >= 400:
                response.read()
                raise error_from_payload(response.status_code, _payload(response))
            self._response = response
            for event in parse_sse(response.iter_lines()):
                self.last_seq = event.seq
                self._q.put(event)
                if event.is_terminal:
                    return True
        return False

    def _job_ended(self) -> bool:
        """The stream ended early: a job that ended with no terminal event (from before job events)."""
        return self._t.json("GET", f"/jobs/{quote(self.name)}")["status"] in TERMINAL_STATUSES


def _payload(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return response.text


class LogFollower:
    """Prints the new lines of a job's worker logs, ``<log>: <line>``."""

    def __init__(self, transport: Any, name: str) -> None:
        self._t, self.name = transport, name
        self.offsets: dict[str, int] = {}

    def write_new(self, out: IO[str]) -> None:
        """Print what the logs gained; nothing while the server cannot be reached (the event
        follower decides when it is gone for good)."""
        try:
            self._write_new(out)
        except ServerUnavailableError:
            return

    def _write_new(self, out: IO[str]) -> None:
        base = f"/jobs/{quote(self.name)}/logs"
        for entry in self._t.json("GET", base)["logs"]:
            offset = self.offsets.get(entry["name"], 0)
            if entry["size"] > offset:
                resp = self._t.request("GET", f"{base}/{quote(entry['name'])}", params={"offset": offset})
                for line in resp.text.splitlines():
                    out.write(f"{entry['name']}: {line}\n")
                self.offsets[entry["name"]] = int(resp.headers.get("X-Next-Offset", offset))


def status_line(event: JobEvent) -> str:
    return f"[{event.status}] {event.message or ''}".rstrip()


def progress_line(event: JobEvent) -> str:
    d = event.data
    total = d.get("mini_batches_total")
    done = (d.get("mini_batches_completed") or 0) + (d.get("mini_batches_failed") or 0)
    of = f"{done}/{total}" if total is not None and d.get("listing_complete") else f"{done}"
    return (f"progress: {of} mini-batches, {d.get('files_completed', 0)} files scored, "
            f"{d.get('files_failed', 0)} failed, {d.get('rows', 0)} rows")
