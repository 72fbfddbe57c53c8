"""The one scheduler both engines run a job with (``engines/scheduler.py``), driven through a fake,
in-process worker transport: what the loop does with deadlines, lost workers, mini-batches sent
ahead, init() deaths and timeouts, renewed credentials, a cancel and the end of a job — with no
process, pipe or Ray actor in the way. The engines' own tests (``test_local_conformance.py``,
``tests/engines/ray_cluster``) check the same rules end to end on real workers."""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from batchpoint.engines.planning import EngineJob, FileRef, MiniBatchOutcome, RetryPolicy, plan_minibatches
from batchpoint.engines.policy import PLATFORM_RETRY_DELAY_S, InitTimeoutError, WorkerInitError
from batchpoint.engines import scheduler
from batchpoint.engines.scheduler import AHEAD_MAX, Event, Scheduler, Worker, WorkerTransport
from batchpoint.exceptions import PlatformError
from batchpoint.storage.base import StorageSpec

pytestmark = pytest.mark.timeout(30)


class FakeWorker:
    """One fake worker: scores the ``batch`` messages it was sent in order, one per poll."""

    def __init__(self, slot: int, number: int, init: str) -> None:
        self.slot, self.number, self.init = slot, number, init
        self.inbox: deque[dict[str, Any]] = deque()
        self.said_ready = False
        self.killed = False


class FakeTransport(WorkerTransport):
    """``init(slot, number)`` says how the ``number``-th worker started in ``slot`` (from 0) starts:
    "ready", "hang" (init() never returns), "die" (lost before ready), "fail" (init() raises) or
    "unavailable" (the job cannot run there).
    ``score(file name, times sent before)`` says how a mini-batch of that (first) file ends: "ok", "hang"
    (never), "lost" (its worker is gone), "error" (run() raised) or "answers another" (a reply that
    names another mini-batch)."""

    def __init__(self, score: Callable[[str, int], str] | None = None,
                 init: Callable[[int, int], str] | None = None, sends_ahead: bool = False) -> None:
        self.score = score or (lambda name, seen: "ok")
        self.init = init or (lambda slot, number: "ready")
        self.sends_ahead = sends_ahead
        self.starts: Counter[int] = Counter()
        self.started: list[tuple[int, dict[str, Any]]] = []  # (slot, sources) per start
        self.sent: list[tuple[int, str, int, bool, Any]] = []  # (slot, key, attempt, busy, sources)
        self.killed: list[FakeWorker] = []
        self.seen: Counter[str] = Counter()
        self.shut_down: list[list[tuple[int, str | None]]] = []  # per call: (slot, its batch key)
        self.prepared = 0
        self.most_waiting = 0  # the most mini-batches one worker had waiting behind the one it scored

    def prepare(self) -> None:
        self.prepared += 1

    def start(self, slot: int, sources: dict[str, Any]) -> FakeWorker:
        number = self.starts[slot]
        self.starts[slot] += 1
        self.started.append((slot, sources))
        return FakeWorker(slot, number, self.init(slot, number))

    def send(self, w: Worker, message: dict[str, Any]) -> None:
        assert message["type"] == "batch"
        self.sent.append((w.slot, message["key"], message["attempt"], bool(w.queued), message["sources"]))
        name = message["files"][0]["path"]
        w.handle.inbox.append({**message, "seen": self.seen[name]})
        self.most_waiting = max(self.most_waiting, len(w.handle.inbox) - 1)  # behind the one it scores
        self.seen[name] += 1

    def poll(self, workers: list[Worker], timeout: float) -> Iterator[tuple[Worker, Event]]:
        events = []
        for w in workers:
            fake: FakeWorker = w.handle
            assert not fake.killed, "a killed worker was polled"
            if not fake.said_ready:
                if fake.init == "ready":
                    fake.said_ready = True
                    events.append((w, {"type": "ready", "log": f"worker {w.slot} ready\n"}))
                elif fake.init == "die":
                    events.append((w, {"type": "lost", "error": {"type": "WorkerLost", "where": None, "kind": "platform",
                                                                 "message": "died in init()"}}))
                elif fake.init == "unavailable":
                    events.append((w, {"type": "job_failed", "log": "no environment here\n",
                                       "exception": PlatformError("job job-1: the environment is not on node n1")}))
                elif fake.init == "fail":
                    events.append((w, {"type": "init_failed", "error": {"type": "RuntimeError", "message": "no model",
                                                                        "where": "score.py:3"}}))
                continue
            if not fake.inbox:
                continue
            message = fake.inbox[0]
            name = message["files"][0]["path"]
            how = self.score(name, message["seen"])
            if how == "hang":
                continue
            fake.inbox.popleft()
            if how == "lost":
                events.append((w, {"type": "lost", "error": {"type": "WorkerLost", "where": None, "kind": "platform",
                                                             "message": f"lost while scoring {message['key']}"}}))
            elif how == "error":
                events.append((w, {"type": "done", "rows": 0, "missing": 0, "error": {
                    "type": "ValueError", "where": None, "kind": "user", "message": f"cannot score {name}"}}))
            elif how == "answers another":  # a reply for a mini-batch it was never sent (one was lost)
                events.append((w, {"type": "done", "key": "99999999-0000", "rows": 1, "missing": 0, "error": None}))
            else:
                events.append((w, {"type": "done", "key": message["key"], "rows": len(message["files"]),
                                   "missing": 0, "error": None}))
        if not events:
            time.sleep(min(timeout, 0.01))
        yield from events

    def kill(self, w: Worker) -> int | None:
        w.handle.killed = True
        self.killed.append(w.handle)
        return -9

    def shutdown(self, workers: list[Worker]) -> None:
        self.shut_down.append([(w.slot, w.batch.key if w.batch else None) for w in workers])


def _job(tmp_path: Path, workers: int = 2, max_retries: int = 2, timeout_s: float = 5.0,
         init_timeout_s: float = 10.0, phases: list[tuple[str, str]] | None = None) -> EngineJob:
    def on_phase(state: str, message: str, **data: Any) -> None:
        if phases is not None:
            phases.append((state, message))

    return EngineJob(name="job-1", workers=workers, scorer={}, sources={"in": {"kind": "local"}},
                     policy=RetryPolicy(max_retries=max_retries, timeout_s=timeout_s),
                     parts_dir=str(tmp_path / "parts"), logs_dir=str(tmp_path / "logs"),
                     init_timeout_s=init_timeout_s, on_phase=on_phase)


def _batches(*names: str, size: int = 1) -> Iterator[Any]:
    return plan_minibatches(iter([FileRef("in", n) for n in names]), size)


def _run(transport: FakeTransport, job: EngineJob, batches: Iterator[Any], stop: threading.Event | None = None,
         credentials: Any = None) -> list[MiniBatchOutcome]:
    outcomes: list[MiniBatchOutcome] = []
    Scheduler(transport, job, batches, outcomes.append, stop or threading.Event(), credentials).run()
    return outcomes


def test_every_mini_batch_is_reported_once_and_the_workers_are_shut_down_at_the_end(tmp_path: Path) -> None:
    phases: list[tuple[str, str]] = []
    transport = FakeTransport()
    outcomes = _run(transport, _job(tmp_path, phases=phases), _batches(*(f"f{i}.csv" for i in range(7))))

    assert sorted(o.batch.key for o in outcomes) == [f"{i:08d}-0000" for i in range(7)]
    assert all(o.ok and o.rows == 1 and o.batch.attempt == 1 for o in outcomes)
    assert transport.prepared == 1 and dict(transport.starts) == {0: 1, 1: 1}
    assert {slot for slot, *_ in transport.sent} == {0, 1}  # both workers got work
    assert not transport.killed  # nobody was lost or late
    assert transport.shut_down == [[(0, None), (1, None)]]  # once, both idle
    assert [state for state, _ in phases] == ["started", "finished"]
    assert (tmp_path / "logs" / "worker-1.log").read_text() == "worker 1 ready\n"  # an event's log, kept


def test_a_mini_batch_past_its_timeout_kills_its_worker_and_is_retried_on_a_new_one(tmp_path: Path) -> None:
    transport = FakeTransport(score=lambda name, seen: "hang" if name == "slow.csv" and not seen else "ok")
    started = time.monotonic()
    outcomes = _run(transport, _job(tmp_path, workers=1, timeout_s=0.4), _batches("slow.csv", "b.csv"))

    by_name = {o.batch.files[0].path: o for o in outcomes}
    assert set(by_name) == {"slow.csv", "b.csv"} and len(outcomes) == 2
    assert by_name["slow.csv"].ok and by_name["slow.csv"].batch.attempt == 2  # a retry (timeout: kind timeout)
    assert time.monotonic() - started >= 0.4
    assert [(k.slot, k.number) for k in transport.killed] == [(0, 0)]  # the stuck worker, killed
    assert transport.starts[0] == 2  # and replaced in its slot
    log = (tmp_path / "logs" / "worker-0.log").read_text()
    assert "worker 0 ready" in log


def test_a_timeout_on_the_last_attempt_is_a_reported_timeout_failure(tmp_path: Path) -> None:
    transport = FakeTransport(score=lambda name, seen: "hang" if name == "slow.csv" else "ok")
    outcomes = _run(transport, _job(tmp_path, workers=2, max_retries=1, timeout_s=0.3),
                    _batches("slow.csv", "a.csv", "b.csv"))

    failed = [o for o in outcomes if not o.ok]
    assert len(outcomes) == 3 and len(failed) == 1
    assert failed[0].batch.files[0].path == "slow.csv" and failed[0].batch.attempt == 2
    assert failed[0].error is not None and failed[0].error["kind"] == "timeout"
    assert "retry_settings.timeout" in failed[0].error["message"]
    assert len(transport.killed) == 2  # one worker per attempt


def test_a_lost_workers_mini_batch_is_retried_after_the_platform_delay_and_not_charged(tmp_path: Path) -> None:
    transport = FakeTransport(score=lambda name, seen: "lost" if name == "x.csv" and not seen else "ok")
    outcomes = _run(transport, _job(tmp_path, workers=1, max_retries=0), _batches("x.csv", "y.csv"))

    x = next(o for o in outcomes if o.batch.files[0].path == "x.csv")
    assert len(outcomes) == 2 and all(o.ok for o in outcomes)
    assert (x.batch.attempt, x.batch.platform_failures) == (1, 1)  # the same attempt again: not a retry
    assert transport.starts[0] == 2 and [k.number for k in transport.killed] == [0]
    sends = [(slot, key, attempt) for slot, key, attempt, *_ in transport.sent if key == "00000000-0000"]
    assert sends == [(0, "00000000-0000", 1), (0, "00000000-0000", 1)]
    log = (tmp_path / "logs" / "worker-0.log").read_text()
    assert "platform failure, retried (platform retry 1 of 3)" in log and "lost while scoring 00000000-0000" in log


def test_a_lost_mini_batch_waits_for_its_platform_retry_delay(tmp_path: Path) -> None:
    lost_at: list[float] = []

    def score(name: str, seen: int) -> str:
        if name == "x.csv" and not seen:
            lost_at.append(time.monotonic())
            return "lost"
        return "ok"

    transport = FakeTransport(score=score)
    sent_at: list[float] = []
    real_send = transport.send

    def send(w: Worker, message: dict[str, Any]) -> None:
        if message["files"][0]["path"] == "x.csv":
            sent_at.append(time.monotonic())
        real_send(w, message)

    transport.send = send  # type: ignore[method-assign]
    _run(transport, _job(tmp_path, workers=1), _batches("x.csv"))
    assert len(sent_at) == 2 and sent_at[1] - lost_at[0] >= PLATFORM_RETRY_DELAY_S * 0.95


def test_a_mini_batch_sent_ahead_to_a_worker_that_is_lost_is_handed_out_again_as_it_was(tmp_path: Path) -> None:
    transport = FakeTransport(score=lambda name, seen: "hang" if name == "f0.csv" and not seen else "ok",
                              sends_ahead=True)
    outcomes = _run(transport, _job(tmp_path, workers=1, timeout_s=0.4), _batches(*(f"f{i}.csv" for i in range(4))))

    assert sorted(o.batch.key for o in outcomes) == [f"{i:08d}-0000" for i in range(4)]  # each once
    assert all(o.ok for o in outcomes)
    ahead = [key for _, key, _, busy, _ in transport.sent if busy]
    assert ahead and ahead[0] == "00000001-0000"  # sent to the worker stuck on f0
    f1 = next(o for o in outcomes if o.batch.key == "00000001-0000")
    assert (f1.batch.attempt, f1.batch.platform_failures) == (1, 0)  # handed out again: not charged
    f0 = next(o for o in outcomes if o.batch.key == "00000000-0000")
    assert f0.batch.attempt == 2  # the timeout's retry
    assert [k for _, k, *_ in transport.sent].count("00000001-0000") == 2


@pytest.mark.parametrize("fast", [True, False])
def test_a_worker_of_short_mini_batches_gets_up_to_ahead_max_waiting_any_other_one(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fast: bool) -> None:
    """Short mini-batches (tiny files): a round trip through the loop took longer than one, so a
    worker gets up to AHEAD_MAX waiting; longer ones one each, so that none waits behind another."""
    if not fast:  # no mini-batch is short enough
        monkeypatch.setattr(scheduler, "AHEAD_FAST_S", 0.0)
    transport = FakeTransport(sends_ahead=True)
    outcomes = _run(transport, _job(tmp_path, workers=2), _batches(*(f"f{i:02d}.csv" for i in range(60))))
    assert sorted(o.batch.key for o in outcomes) == [f"{i:08d}-0000" for i in range(60)]  # each once
    assert all(o.ok for o in outcomes)
    assert transport.most_waiting == (AHEAD_MAX if fast else 1)


def test_a_reply_for_another_mini_batch_replaces_the_worker_and_counts_for_neither(tmp_path: Path) -> None:
    """Replies come in the order mini-batches were sent; one that names another mini-batch means a
    message was lost on the way (a warm worker's link helper that died): it must never be counted as
    the mini-batch the worker had next (that one's rows would be missing)."""
    transport = FakeTransport(score=lambda name, seen: "answers another" if name == "f1.csv" and not seen else "ok",
                              sends_ahead=True)
    outcomes = _run(transport, _job(tmp_path, workers=1), _batches(*(f"f{i}.csv" for i in range(5))))
    assert sorted(o.batch.key for o in outcomes) == [f"{i:08d}-0000" for i in range(5)]  # each once
    assert all(o.ok for o in outcomes)
    f1 = next(o for o in outcomes if o.batch.key == "00000001-0000")
    assert (f1.batch.attempt, f1.batch.platform_failures) == (1, 1)  # scored again on a new worker, not charged
    assert len(transport.killed) == 1 and transport.starts[0] == 2


def test_nothing_is_sent_ahead_by_a_transport_that_cannot_queue(tmp_path: Path) -> None:
    transport = FakeTransport(sends_ahead=False)
    outcomes = _run(transport, _job(tmp_path, workers=1), _batches(*(f"f{i}.csv" for i in range(6))))
    assert len(outcomes) == 6 and not any(busy for _, _, _, busy, _ in transport.sent)


def test_three_deaths_in_init_in_a_row_on_one_slot_fail_the_job(tmp_path: Path) -> None:
    phases: list[tuple[str, str]] = []
    transport = FakeTransport(init=lambda slot, number: "die" if slot == 1 else "ready")
    with pytest.raises(PlatformError, match="slot 1 died before init\\(\\) returned 3 times in a row"):
        _run(transport, _job(tmp_path, workers=2, phases=phases), _batches(*(f"f{i}.csv" for i in range(50))))
    assert transport.starts[1] == 3  # the third death raised before a fourth start
    assert len(transport.shut_down) == 1  # shut down all the same
    assert phases[-1][0] == "failed"


def test_a_death_in_init_then_a_ready_worker_resets_the_count(tmp_path: Path) -> None:
    pattern = ["die", "die", "ready"]
    transport = FakeTransport(init=lambda slot, number: pattern[number] if number < 3 else "ready")
    outcomes = _run(transport, _job(tmp_path, workers=1), _batches("a.csv", "b.csv"))
    assert len(outcomes) == 2 and transport.starts[0] == 3


def test_init_raising_fails_the_job_at_once(tmp_path: Path) -> None:
    transport = FakeTransport(init=lambda slot, number: "fail")
    with pytest.raises(WorkerInitError, match="init\\(\\) failed: RuntimeError: no model"):
        _run(transport, _job(tmp_path), _batches("a.csv"))
    assert len(transport.shut_down) == 1


def test_a_transport_that_finds_the_job_cannot_run_fails_it_with_the_workers_log_kept(tmp_path: Path) -> None:
    transport = FakeTransport(init=lambda slot, number: "unavailable")
    with pytest.raises(PlatformError, match="not on node n1"):
        _run(transport, _job(tmp_path, workers=1), _batches("a.csv"))
    assert (tmp_path / "logs" / "worker-0.log").read_text() == "no environment here\n"
    assert len(transport.shut_down) == 1


def test_an_init_past_its_timeout_is_killed_and_the_third_in_a_row_fails_the_job(tmp_path: Path) -> None:
    transport = FakeTransport(init=lambda slot, number: "hang")
    started = time.monotonic()
    with pytest.raises(InitTimeoutError, match="settings.init_timeout \\(0.2 s\\) on worker slot 0, 3 times"):
        _run(transport, _job(tmp_path, workers=1, init_timeout_s=0.2), _batches("a.csv"))
    assert time.monotonic() - started >= 0.6
    assert [k.number for k in transport.killed] == [0, 1, 2]
    log = (tmp_path / "logs" / "worker-0.log").read_text()
    assert log.count("init() did not return within settings.init_timeout (0.2 s): the worker is killed") == 3


def test_a_cancel_returns_at_once_and_shuts_down_the_busy_workers(tmp_path: Path) -> None:
    phases: list[tuple[str, str]] = []
    transport = FakeTransport(score=lambda name, seen: "hang")
    stop = threading.Event()
    timer = threading.Timer(0.3, stop.set)
    timer.start()
    started = time.monotonic()
    outcomes = _run(transport, _job(tmp_path, workers=2, phases=phases), _batches("a.csv", "b.csv", "c.csv"), stop)
    assert time.monotonic() - started < 1.5
    assert outcomes == []  # nothing finished, nothing reported
    assert transport.shut_down == [[(0, "00000000-0000"), (1, "00000001-0000")]]  # the busy ones, to be killed
    assert [state for state, _ in phases] == ["started", "finished"]


def test_a_cancel_before_every_worker_ran_init_ends_the_phase_as_stopped(tmp_path: Path) -> None:
    phases: list[tuple[str, str]] = []
    transport = FakeTransport(init=lambda slot, number: "hang" if slot == 1 else "ready",
                              score=lambda name, seen: "hang")
    stop = threading.Event()
    threading.Timer(0.3, stop.set).start()
    _run(transport, _job(tmp_path, workers=2, phases=phases), _batches("a.csv"), stop)
    assert phases[-1] == ("failed", "init() finished on 1 of 2 workers before the job stopped")


def test_work_running_out_before_every_worker_ran_init_ends_the_phase_as_finished(tmp_path: Path) -> None:
    phases: list[tuple[str, str]] = []
    transport = FakeTransport(init=lambda slot, number: "hang" if slot == 1 else "ready")
    outcomes = _run(transport, _job(tmp_path, workers=2, phases=phases), _batches("a.csv"))
    assert len(outcomes) == 1
    assert phases[-1] == ("finished", "init() finished on 1 of 2 workers before the job ran out of work")


def test_a_user_failure_is_retried_then_split_then_reported(tmp_path: Path) -> None:
    transport = FakeTransport(score=lambda name, seen: "error" if name == "bad.csv" else "ok")
    outcomes = _run(transport, _job(tmp_path, workers=1, max_retries=1), _batches("bad.csv", "ok.csv", size=2))
    pieces = {o.batch.files[0].path: o for o in outcomes}
    assert len(outcomes) == 2 and set(pieces) == {"bad.csv", "ok.csv"}
    assert not pieces["bad.csv"].ok and pieces["bad.csv"].batch.sub == 1  # split, then its own failure
    assert pieces["ok.csv"].ok and pieces["ok.csv"].batch.sub == 2


def test_renewed_credentials_go_with_each_workers_next_mini_batch_once(tmp_path: Path) -> None:
    version = [1]
    specs = {v: {"in": StorageSpec("local", {"path": f"/data/v{v}"}, {"kind": "sas", "token": f"token-{v}"})}
             for v in (1, 2)}

    def credentials() -> tuple[int, dict[str, Any]]:
        return version[0], specs[version[0]]

    def score(name: str, seen: int) -> str:
        if name == "f1.csv":
            version[0] = 2  # renewed while the first mini-batches are scored
        return "ok"

    transport = FakeTransport(score=score)
    _run(transport, _job(tmp_path, workers=1), _batches(*(f"f{i}.csv" for i in range(4))), credentials=credentials)
    assert transport.started == [(0, specs[1])]  # the worker started with the set of its time
    sources = [s for *_, s in transport.sent]
    assert sources[0] is None and sources.count(None) == 3  # nothing new: nothing sent
    renewed = [s for s in sources if s is not None]
    assert len(renewed) == 1 and renewed[0]["in"]["config"] == {"path": "/data/v2"}
    assert renewed[0]["in"]["credential"] == {"kind": "sas", "token": "token-2"}
