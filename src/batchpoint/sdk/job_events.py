"""Following a job from the SDK: its events (the server-sent stream ``GET /jobs/<name>/events/stream``,
read on a background thread), its worker logs, and what ``job stream`` shows of them.

:func:`follow_job` drives a *view*: :class:`PlainView` writes plain lines (``jobs.stream`` and
``job stream`` when stdout is not a terminal); the CLI's rich view draws a progress bar. The plain
lines, in order::

    [Queued] waiting for a worker                      a status change
    phase: building environment started                a step inside a status (lifecycle.phase)
    phase: building environment finished (2.1 s)
    progress: 3/4 mini-batches, 3 files scored, 0 failed, 228 rows (of 4 files, 45.1 rows/s, ETA 2s)
    [Failed] 1 file(s) failed, more than error_threshold 0 allows. ...
    root cause: ValueError: cannot score: the rows are corrupt     right after a failure
      file heart-unlabeled-0.csv, mini-batch 0, attempt 1, kind user (the scoring code raised)
      File "score.py", line 20, in run                 the user's own frames
    phases: Queued 0.1 s, Preparing 0.4 s, Running 6.2 s (listing 0.1 s), Finalizing 0.0 s
    Job <name> Completed: 4 files scored, 0 failed, 303 rows

A total not known yet (the listing goes on) is ``?``; worker log lines (``worker-0.log: ...``)
only with ``logs=True``.

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
from typing import IO, Any, Protocol
from urllib.parse import quote

import httpx

from batchpoint.entities import TERMINAL_STATUSES, Job, JobEvent
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


KIND_MEANING = {"user": "the scoring code raised", "input": "the file could not be read or was gone",
                "timeout": "retry_settings.timeout passed", "platform": "the platform failed; not charged"}


class Stats:
    """The counters of the latest progress, with rows/s and an ETA measured from the start of
    ``Running`` (by the events' own times, so a stream that joins late still measures right)."""

    def __init__(self) -> None:
        self.data: dict[str, Any] = {}
        self.running_at: Any = None
        self.last_at: Any = None

    def update(self, event: JobEvent) -> None:
        if event.type == "status" and event.status == "Running" and self.running_at is None:
            self.running_at = event.at
        if event.type == "progress" or (event.data and "files_completed" in event.data):
            self.data = {**self.data, **event.data}
        self.last_at = event.at

    def get(self, key: str, default: Any = 0) -> Any:
        value = self.data.get(key)
        return default if value is None else value

    @property
    def done(self) -> int:
        return self.get("mini_batches_completed") + self.get("mini_batches_failed")

    @property
    def total(self) -> int | None:
        """Mini-batches in all; a total while the listing goes on only grows (None: not known)."""
        return self.data.get("mini_batches_total")

    @property
    def files_total(self) -> int | None:
        return self.data.get("files_total")

    def elapsed(self) -> float | None:
        if self.running_at is None or self.last_at is None:
            return None
        return max(0.0, (self.last_at - self.running_at).total_seconds())

    def rows_per_s(self) -> float | None:
        elapsed = self.elapsed()
        return self.get("rows") / elapsed if elapsed else None

    def eta_s(self) -> float | None:
        elapsed, total = self.elapsed(), self.total
        if not elapsed or not self.done or total is None or not self.data.get("listing_complete"):
            return None
        return max(0.0, (total - self.done) * elapsed / self.done)


def of_total(value: Any, complete: bool) -> str:
    return "?" if value is None else (str(value) if complete else f"{value}+")


def progress_line(stats: Stats) -> str:
    complete = bool(stats.data.get("listing_complete"))
    extras = [f"of {of_total(stats.files_total, complete)} files"]
    rate, eta = stats.rows_per_s(), stats.eta_s()
    if rate is not None:
        extras.append(f"{rate:.1f} rows/s")
    if eta is not None:
        extras.append(f"ETA {eta:.0f}s")
    return (f"progress: {stats.done}/{of_total(stats.total, complete)} mini-batches, {stats.get('files_completed')} files "
            f"scored, {stats.get('files_failed')} failed, {stats.get('rows')} rows ({', '.join(extras)})")


def status_line(event: JobEvent) -> str:
    return f"[{event.status}] {event.message or ''}".rstrip()


def phase_line(event: JobEvent) -> str:
    d = event.data
    seconds = f" ({d['seconds']:.1f} s)" if isinstance(d.get("seconds"), (int, float)) else ""
    line = f"phase: {d.get('phase', '?')} {d.get('state', '')}{seconds}".rstrip()
    if d.get("phase") == "init()" and event.message:  # "running init() on 4 workers", and how it ended
        line += f": {event.message}"
    return line


def root_cause_lines(job: Job) -> list[str]:
    """The failure that ended ``job``, user's code first: the first charged failed file (its
    exception, file, mini-batch, attempt, kind and the user's frames), else the job's own error."""
    first = list((job.errors or {}).get("first") or [])
    failure = next((f for f in first if f.get("kind") != "platform"), first[0] if first else None)
    if failure is not None:
        exc = f"{failure['exception_type']}: {failure['message']}" if failure.get("exception_type") \
            else failure.get("message") or "?"
        kind = failure.get("kind") or "user"
        lines = [f"root cause: {exc}",
                 f"  file {failure.get('file')}, mini-batch {failure.get('mini_batch')}, attempt "
                 f"{failure.get('attempt') or '?'}, kind {kind} ({KIND_MEANING.get(kind, kind)})"]
        lines += [line for line in (failure.get("frames") or "").splitlines() if line.strip()]
        more = (job.errors or {}).get("failed_files", 1) - 1
        if more > 0:
            lines.append(f"  and {more} more failed file(s): see the errors file {job.errors.get('errors_file')} "
                         f"(batchpoint job download -n {job.name})")
        return lines
    error = job.error or {}
    message = error.get("message") or job.status_message or "no cause was recorded"
    return [f"root cause: {error.get('code') + ': ' if error.get('code') else ''}{message}"]


def phases_line(job: Job) -> str | None:
    parts: list[str] = []
    for step in job.phases:
        if step.get("kind") == "status":
            if step.get("name") in TERMINAL_STATUSES:
                continue
            parts.append(f"{step['name']} {step.get('seconds') or 0:.1f} s")
        elif parts:
            inner = f"{step['name']} {step.get('seconds') or 0:.1f} s"
            parts[-1] = parts[-1][:-1] + f", {inner})" if parts[-1].endswith(")") else parts[-1] + f" ({inner})"
    return f"phases: {', '.join(parts)}" if parts else None


def final_line(job: Job) -> str:
    p = job.progress
    return f"Job {job.name} {job.status}: {p.files_completed} files scored, {p.files_failed} failed, {p.rows} rows"


class JobView(Protocol):
    """What :func:`follow_job` tells; ``progress`` is called at most once per ``poll`` by the plain view."""

    rate_limited: bool

    def status(self, event: JobEvent, stats: Stats) -> None: ...
    def phase(self, event: JobEvent, stats: Stats) -> None: ...
    def progress(self, stats: Stats) -> None: ...
    def log(self, line: str) -> None: ...
    def end(self, job: Job, stats: Stats) -> None: ...


class PlainView:
    """Plain lines, no control codes (see the module docstring)."""

    rate_limited = True

    def __init__(self, out: IO[str]) -> None:
        self.out = out

    def _write(self, *lines: str) -> None:
        for line in lines:
            self.out.write(line + "\n")
        self.out.flush()

    def status(self, event: JobEvent, stats: Stats) -> None:
        self._write(status_line(event))

    def phase(self, event: JobEvent, stats: Stats) -> None:
        self._write(phase_line(event))

    def progress(self, stats: Stats) -> None:
        self._write(progress_line(stats))

    def log(self, line: str) -> None:
        self._write(line)

    def failure(self, job: Job) -> None:
        self._write(*root_cause_lines(job))

    def end(self, job: Job, stats: Stats) -> None:
        phases = phases_line(job)
        self._write(*([phases] if phases else []), final_line(job))


class _LineSink:
    def __init__(self, view: Any) -> None:
        self.view, self.buffer = view, ""

    def write(self, text: str) -> None:
        self.buffer += text
        while "\n" in self.buffer:
            line, self.buffer = self.buffer.split("\n", 1)
            self.view.log(line)


def follow_job(transport: Any, name: str, view: Any, *, logs: bool = False, poll: float = 0.5) -> Job:
    """Show job ``name`` on ``view`` until it ends; returns the ended job. On ``Failed`` the root
    cause (``view.failure``) comes right after the status line, before anything else."""
    stats, pending = Stats(), False
    log_follower = LogFollower(transport, name) if logs else None
    sink = _LineSink(view)
    printed = looked = 0.0
    failed_job: Job | None = None
    with EventFollower(transport, name) as follower:
        for event in follower.follow(idle=poll):
            now = time.monotonic()
            if event is not None:
                stats.update(event)
                pending = pending or event.type == "progress"
                if event.type == "status" and pending:
                    view.progress(stats)
                    pending, printed = False, now
            if pending and (not view.rate_limited or now - printed >= poll):
                view.progress(stats)
                pending, printed = False, now
            if event is not None and event.type == "status":
                view.status(event, stats)
                if event.status == "Failed":
                    failed_job = Job(**transport.json("GET", f"/jobs/{quote(name)}"))
                    view.failure(failed_job)
            elif event is not None and event.type == "phase":
                view.phase(event, stats)
            if log_follower is not None and now - looked >= poll:
                log_follower.write_new(sink)
                looked = now
    if pending:
        view.progress(stats)
    if log_follower is not None:
        log_follower.write_new(sink)
    job = Job(**transport.json("GET", f"/jobs/{quote(name)}"))
    view.end(job, stats)
    return job
