"""Hooks for whoever watches jobs in this process (the server's ``/metrics``): each finished
mini-batch outcome. Listeners are called on the job's thread and must be quick; one that raises is
logged and skipped, never failing the job."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from batchpoint.engines.planning import MiniBatchOutcome

log = logging.getLogger(__name__)

MiniBatchListener = Callable[[str, MiniBatchOutcome], None]
_listeners: list[MiniBatchListener] = []


def add_mini_batch_listener(listener: MiniBatchListener) -> None:
    if listener not in _listeners:
        _listeners.append(listener)


def remove_mini_batch_listener(listener: MiniBatchListener) -> None:
    if listener in _listeners:
        _listeners.remove(listener)


def observed(job_name: str, on_outcome: Callable[[MiniBatchOutcome], Any]) -> Callable[[MiniBatchOutcome], None]:
    """``on_outcome`` (the job's progress), then each listener."""

    def call(outcome: MiniBatchOutcome) -> None:
        on_outcome(outcome)
        for listener in list(_listeners):
            try:
                listener(job_name, outcome)
            except Exception:  # noqa: BLE001 - a watcher's bug never fails a job
                log.warning("mini-batch listener %r failed", listener, exc_info=True)

    return call
