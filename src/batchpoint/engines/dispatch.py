"""What every engine's dispatch loop shares: the queue of mini-batches still to hand out, and the
renewed storage credentials a worker gets along with its next mini-batch.

:class:`WorkQueue` hands out, in this order: retries whose delay has passed (the failure policy's
``RETRY``/``SPLIT`` decisions, ``engines/policy.py``), then mini-batches taken ahead from the
planner (:meth:`WorkQueue.take_ahead`), then the planner's next one. It is drained when the planner
is exhausted and nothing waits; :meth:`WorkQueue.next_wait` is how long the loop may sleep before a
retry is due. Engines differ in how they reach their workers (pipes, Ray actors), never in what
they hand out next.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any, Protocol

from batchpoint.engines.planning import MiniBatch

__all__ = ["WorkQueue", "fresh_sources"]


class WorkQueue:
    def __init__(self, batches: Iterator[MiniBatch]) -> None:
        self.batches = batches
        self.retry: list[tuple[float, MiniBatch]] = []  # (not before, batch), in order
        self.ahead: deque[MiniBatch] = deque()  # taken from ``batches``, not handed out yet
        self.exhausted = False

    def next(self) -> MiniBatch | None:
        """The next mini-batch to hand out now, or None (nothing due yet, or nothing left)."""
        now = time.monotonic()
        for i, (not_before, batch) in enumerate(self.retry):
            if not_before <= now:
                del self.retry[i]
                return batch
        if self.ahead:
            return self.ahead.popleft()
        return self._take()

    def _take(self) -> MiniBatch | None:
        if self.exhausted:
            return None
        batch = next(self.batches, None)
        if batch is None:
            self.exhausted = True
        return batch

    def take_ahead(self, count: int) -> int:
        """Take mini-batches from the planner until ``count`` wait in :attr:`ahead`; how many wait."""
        while len(self.ahead) < count:
            batch = self._take()
            if batch is None:
                break
            self.ahead.append(batch)
        return len(self.ahead)

    def put_back(self, retries: list[tuple[float, MiniBatch]]) -> None:
        """The failure policy's mini-batches to hand out again, each after its time."""
        self.retry.extend(retries)

    def put_first(self, batch: MiniBatch) -> None:
        """A mini-batch handed out but never started (its worker was lost): next, as it was."""
        self.ahead.appendleft(batch)

    def drained(self) -> bool:
        return self.exhausted and not self.retry and not self.ahead

    def next_wait(self, now: float) -> list[float]:
        """Seconds until each waiting retry is due (for the loop's sleep)."""
        return [t - now for t, _ in self.retry]


class _HasSources(Protocol):
    sources_version: int


def fresh_sources(credentials: Callable[[], tuple[int, dict[str, Any]]] | None,
                  holder: _HasSources) -> dict[str, Any] | None:
    """The current storage specs when ``holder`` (a worker, an actor) has an older set (noting the
    version it gets), else None: renewed credentials go along with a worker's next mini-batch."""
    if credentials is None:
        return None
    version, sources = credentials()
    if version == holder.sources_version:
        return None
    holder.sources_version = version
    return sources
