"""The engine contract, and the registry that picks an engine per compute.

An *engine* runs one job's mini-batches on workers. The job runner (``jobs/runner.py``) plans the
mini-batches, hands them to :meth:`Engine.run` as a lazy iterator, and records each outcome; the
engine owns nothing durable. The contract:

* ``run(job, batches, on_outcome, stop, credentials=None)`` scores every mini-batch of ``batches``
  (pulled lazily: the listing may still be going on) on ``job.workers`` workers, each calling the
  scorer's ``init()`` once and ``run(mini_batch)`` per mini-batch.
* ``on_outcome(outcome)`` is called once per *final* outcome of a mini-batch or of one piece of a
  split mini-batch: success, or a failure whose retries are spent. Retries, timeouts, splitting a
  failing mini-batch into single files and the init-death rule are the shared policy in
  ``engines/policy.py`` — every engine applies it, none re-implements it.
* ``stop`` set: stop assigning work, end the workers, return soon (a cancel, or the server
  shutting down; the job resumes from its finished mini-batches).
* ``credentials()`` (optional) returns ``(version, sources)``: the storage specs workers read with,
  renewed before they expire; workers get a newer set with their next mini-batch.
* A failure of the job as a whole (``init()`` raised, workers keep dying in ``init()``, a platform
  failure that persists) is raised from ``run`` as a :class:`~batchpoint.exceptions.BatchpointError`.

Engines are chosen per compute (:func:`engine_for`): a compute's ``type`` names its engine in
:data:`ENGINES` (``"module:Class"`` plus the extra that installs it, imported lazily, as storage
backends are); computes of other types, and deployments without a compute, use the local pool.
"""

from __future__ import annotations

import abc
import threading
from collections.abc import Callable, Iterator
from typing import Any

from batchpoint.engines.planning import EngineJob, MiniBatch, MiniBatchOutcome
from batchpoint._internal.plugins import load
from batchpoint.exceptions import ValidationError

__all__ = ["ENGINES", "Engine", "OutcomeSink", "Sources", "engine_for", "engine_class"]

OutcomeSink = Callable[[MiniBatchOutcome], None]
Sources = Callable[[], tuple[int, dict[str, Any]]]


class Engine(abc.ABC):
    """Runs a job's mini-batches on workers (see the module docstring for the contract)."""

    name: str = ""

    @abc.abstractmethod
    def run(self, job: EngineJob, batches: Iterator[MiniBatch], on_outcome: OutcomeSink, stop: threading.Event,
            credentials: Sources | None = None) -> None:
        """Score ``batches``; report each final outcome; return when done or when ``stop`` is set."""


# engine name: ("module:Class", "pip extra that installs its dependencies" or None)
ENGINES: dict[str, tuple[str, str | None]] = {
    "local": ("batchpoint.engines.local_pool:LocalPoolEngine", None),
}
#: compute type → engine name; anything not listed runs on the local pool
COMPUTE_ENGINES: dict[str, str] = {}

_instances: dict[str, Engine] = {}
_lock = threading.Lock()


def engine_class(name: str) -> type[Engine]:
    if name not in ENGINES:
        raise ValidationError(f"unknown engine '{name}'; known engines: {', '.join(sorted(ENGINES))}")
    target, extra = ENGINES[name]
    return load(target, extra, f"engine '{name}'")


def engine_for(compute: dict[str, Any] | None) -> Engine:
    """The engine for a compute's spec (None: a deployment without a compute → the local pool).
    One instance per engine name per process."""
    name = COMPUTE_ENGINES.get(str((compute or {}).get("type") or ""), "local")
    with _lock:
        if name not in _instances:
            _instances[name] = engine_class(name)()
        return _instances[name]
