"""Claims queued jobs and runs each on its own thread; sends heartbeats; resumes jobs whose
server died (their heartbeat went stale) by queueing them again (``Crashed`` in their history).
Every status it writes goes through ``jobs/lifecycle``."""

from __future__ import annotations

import logging
import secrets
import threading
from datetime import timedelta

from batchpoint._internal.clock import utcnow
from batchpoint.jobs.lifecycle import claim_next, requeue_crashed, stale_jobs, transition
from batchpoint.jobs.runner import JobRunner
from batchpoint.jobs.states import ON_A_SERVER, JobStatus
from batchpoint.workspace import WorkspaceService

log = logging.getLogger(__name__)


class Dispatcher:
    def __init__(self, workspace: WorkspaceService, max_parallel_jobs: int = 4, owner: str | None = None) -> None:
        self.ws = workspace
        self.store = workspace.store
        self.settings = workspace.settings.jobs
        self.runner = JobRunner(workspace)
        #: this server's id (server/instance.py: stable across restarts), the ``owner`` of its jobs
        self.owner = owner or f"server-{secrets.token_hex(4)}"
        self.max_parallel = max_parallel_jobs
        self.running: dict[str, tuple[threading.Thread, threading.Event]] = {}
        self.wake = threading.Event()
        self.closing = threading.Event()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        self.recover()
        for target, name in ((self._loop, "dispatcher"), (self._heartbeat, "heartbeat")):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def recover(self) -> None:
        """Queue again the jobs whose server stopped sending heartbeats (crash, kill, reboot) — and
        this server's own jobs whose thread ended without recording their end (the metadata
        database refused it: full, read-only; ``jobs/runner.py``): nothing beats for them any more."""
        stale = utcnow() - timedelta(seconds=self.settings.heartbeat_interval_s * 3)
        for row in stale_jobs(self.store, stale):
            if row.owner == self.owner:
                with self._lock:
                    entry = self.running.get(row.name)
                if entry is not None and entry[0].is_alive():
                    continue  # still running here (a beat was missed): its thread records its end
            if requeue_crashed(self.store, row.name, row.owner, stale):
                if row.owner == self.owner:
                    log.warning("job %s resumed (its thread on this server ended without recording its end)",
                                row.name)
                else:
                    log.warning("job %s resumed (its server %s stopped)", row.name, row.owner)

    def notify(self) -> None:
        self.wake.set()

    def _loop(self) -> None:
        while not self.closing.is_set():
            self.wake.wait(self.settings.poll_interval_s)
            self.wake.clear()
            self._reap()
            while len(self.running) < self.max_parallel and not self.closing.is_set():
                row = claim_next(self.store, self.owner)
                if row is None:
                    break
                self._start(row.name)

    def _start(self, name: str) -> None:
        stop = threading.Event()
        thread = threading.Thread(target=self._run_one, args=(name, stop), name=f"job-{name}", daemon=True)
        with self._lock:  # started under the lock: close() never joins a thread not started yet
            self.running[name] = (thread, stop)
            thread.start()

    def _run_one(self, name: str, stop: threading.Event) -> None:
        try:
            self.runner.run(name, stop)
        except BaseException:  # noqa: BLE001 - runner.run never raises; a thread never dies silently
            log.exception("job %s: its thread ended with an error; it is resumed once its heartbeat is stale", name)
        finally:
            with self._lock:
                self.running.pop(name, None)
            self.wake.set()

    def _reap(self) -> None:
        with self._lock:
            for name in [n for n, (t, _) in self.running.items() if not t.is_alive()]:
                self.running.pop(name, None)

    def _heartbeat(self) -> None:
        """Beat for this server's jobs and, on every beat, resume jobs whose server went silent:
        checking only at start-up would miss a server that died less than 3 beats before this
        one started (a quick restart after a crash) and leave its jobs Running for ever."""
        while not self.closing.wait(self.settings.heartbeat_interval_s):
            try:
                with self._lock:
                    names = list(self.running)
                for name in names:
                    self._beat(name)
                self.recover()
            except Exception:  # noqa: BLE001 - a failed beat (database busy) must not stop the next
                log.exception("heartbeat failed; trying again in %ss", self.settings.heartbeat_interval_s)
                continue
            self.wake.set()

    def _beat(self, name: str) -> None:
        """Renew this server's heartbeat on job ``name``. A job that is no longer this server's to
        run — another server resumed it after its heartbeat went stale, or it was canceled through
        another server sharing the database — is stopped here at once, so it is never scored on two
        servers (a job that just ended on this server is unaffected: its thread is done)."""
        if self.store.beat_job(name, self.owner, [s.value for s in ON_A_SERVER], utcnow()):
            return
        with self._lock:
            entry = self.running.get(name)
        if entry is not None and not entry[1].is_set():
            job = self.store.get_job(name)
            log.warning("job %s is %s under server %s now; stopping it on this server (%s)", name, job.status,
                        job.owner, self.owner)
            entry[1].set()

    def cancel(self, name: str) -> bool:
        moved = transition(self.store, name, JobStatus.CANCELED, "canceled by the user")
        with self._lock:
            entry = self.running.get(name)
        if entry:
            entry[1].set()
        return moved

    def close(self, timeout: float = 10.0) -> None:
        """Stop workers; running jobs keep their status and resume when a server starts again."""
        self.closing.set()
        self.wake.set()
        with self._lock:
            entries = list(self.running.values())
        for _, stop in entries:
            stop.set()
        for thread, _ in entries:
            thread.join(timeout)
