"""A server's heartbeat on a job is renewed only while the job is still its own
(``store/sql.py`` ``beat_job``); when another server has resumed the job (its heartbeat went stale)
or it was canceled through another server, the heartbeat stops the job on this server
(``jobs/dispatcher.py``), so it is never scored on two servers at once."""

from __future__ import annotations

import threading
import uuid
from datetime import timedelta

import pytest

from batchpoint._internal.clock import utcnow
from batchpoint.jobs import lifecycle
from batchpoint.jobs.dispatcher import Dispatcher
from batchpoint.jobs.states import ON_A_SERVER, JobStatus
from batchpoint.store.sql import SqlMetadataStore

pytestmark = pytest.mark.timeout(120)
RUNNING = [s.value for s in ON_A_SERVER]


def dispatcher_of(store: SqlMetadataStore, owner: str, job: str) -> tuple[Dispatcher, threading.Event]:
    """A dispatcher's heartbeat side only: its store, its owner id and one running job."""
    d = Dispatcher.__new__(Dispatcher)
    stop = threading.Event()
    d.store, d.owner, d._lock, d.running = store, owner, threading.Lock(), {job: (threading.current_thread(), stop)}
    return d, stop


def claimed_job(store: SqlMetadataStore, owner: str) -> str:
    name = f"beat-{uuid.uuid4().hex[:8]}"
    lifecycle.create(store, name, endpoint_name="ep", inputs={}, outputs={}, settings={}, plan={})
    while (row := lifecycle.claim_next(store, owner)) is not None and row.name != name:
        pass
    assert store.get_job(name).owner == owner
    return name


def test_a_job_resumed_by_another_server_is_stopped_here(store: SqlMetadataStore) -> None:
    name = claimed_job(store, "server-a")
    a, stop = dispatcher_of(store, "server-a", name)
    a._beat(name)
    assert not stop.is_set() and store.get_job(name).heartbeat_at is not None

    # server A stalls; server B finds its heartbeat stale, requeues the job and claims it
    assert lifecycle.requeue_crashed(store, name, "server-a", utcnow() + timedelta(seconds=1))
    assert lifecycle.claim_next(store, "server-b").name == name
    beat_b = store.get_job(name).heartbeat_at
    a._beat(name)  # server A wakes up
    assert stop.is_set(), "server A kept scoring a job that server B now runs"
    assert store.get_job(name).heartbeat_at == beat_b  # and did not renew B's heartbeat
    assert not store.beat_job(name, "server-a", RUNNING, utcnow())
    assert store.beat_job(name, "server-b", RUNNING, utcnow())


def test_a_job_canceled_through_another_server_is_stopped_here(store: SqlMetadataStore) -> None:
    name = claimed_job(store, "server-a")
    a, stop = dispatcher_of(store, "server-a", name)
    assert lifecycle.transition(store, name, JobStatus.CANCELED, "canceled by the user")  # via server B
    a._beat(name)
    assert stop.is_set()
