"""The local pool sends a busy worker its next mini-batch before the current one is done
(``engines/scheduler.py _send_ahead``, on the local pool's transport), so the worker does not wait a round trip between
mini-batches — but never one that another worker coming free would have had, and a mini-batch
sent ahead to a worker that is then lost (timed out here) is handed out again as it was: not
charged, not counted as an attempt, scored exactly once."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from batchpoint.engines import scheduler
from batchpoint.engines.local_pool import LocalPoolEngine
from batchpoint.engines.planning import plan_minibatches
from engines.conformance import ROWS_PER_FILE, Recorder, make_setup

pytestmark = pytest.mark.timeout(120)


def _spy(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, bool]]:
    """(key, whether its worker was busy with another mini-batch) for every mini-batch sent."""
    sent: list[tuple[str, bool]] = []
    real = scheduler.Scheduler._send_batch

    def send_batch(self: Any, w: Any, batch: Any) -> None:
        sent.append((batch.key, w.batch is not None and w.batch is not batch))
        real(self, w, batch)

    monkeypatch.setattr(scheduler.Scheduler, "_send_batch", send_batch)
    return sent


def test_busy_workers_get_their_next_mini_batch_ahead_and_a_lost_workers_is_handed_out_again(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    setup = make_setup(tmp_path)
    names = [f"f{i:02d}.csv" for i in range(16)]
    names[6] = "slow-06.csv"  # sleeps past the timeout on its first attempt: its worker is killed
    files = setup.files(*names)
    sent = _spy(monkeypatch)
    stop = threading.Event()
    recorder = Recorder(stop)
    job = setup.job(workers=2, max_retries=1, timeout_s=3)
    LocalPoolEngine().run(job, plan_minibatches(iter(files), 1), recorder, stop)

    assert any(ahead for _, ahead in sent), sent  # some went to a busy worker
    assert sorted(recorder.keys()) == [f"{i:08d}-0000" for i in range(16)]  # each reported once
    assert all(o.ok for o in recorder.outcomes), recorder.failed()
    by_name = {o.batch.files[0].name: o.batch for o in recorder.outcomes}
    assert by_name["slow-06.csv"].attempt == 2  # the timeout: a retry
    others = [b for n, b in by_name.items() if n != "slow-06.csv"]
    assert {(b.attempt, b.platform_failures) for b in others} == {(1, 0)}  # nothing else charged or retried
    counts = setup.part_rows()
    assert set(counts) == {(n, r) for n in names for r in range(ROWS_PER_FILE)} and set(counts.values()) == {1}
    keys_sent = [k for k, _ in sent]
    behind = [k for k in set(keys_sent) if keys_sent.count(k) == 2 and k != "00000006-0000"]
    # the mini-batches sent ahead to the worker that was stuck went out a second time (those queued
    # behind it at the timeout: at most AHEAD_MAX), and only those and the retried slow one did
    assert len(behind) <= scheduler.AHEAD_MAX and len(keys_sent) == 16 + 1 + len(behind), sent


def test_no_mini_batch_is_sent_ahead_when_the_other_workers_would_run_out(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    setup = make_setup(tmp_path)
    files = setup.files(*(f"f{i}.csv" for i in range(4)))  # 4 mini-batches, 2 workers: never more than 1 each
    sent = _spy(monkeypatch)
    stop = threading.Event()
    recorder = Recorder(stop)
    LocalPoolEngine().run(setup.job(workers=2), plan_minibatches(iter(files), 1), recorder, stop)
    assert len(recorder.outcomes) == 4 and all(o.ok for o in recorder.outcomes)
    assert not any(ahead for _, ahead in sent), sent
