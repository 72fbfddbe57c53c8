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
  shutting down; the job resumes from its finished mini-batches). A cancel must leave no worker
  running within 5 s, even one stuck in user code: kill busy workers (the local pool SIGKILLs
  them by PID; an actor engine kills its actors, e.g. ``ray.kill``), never wait for them.
* Orphans: a worker never outlives the server that owns it, so a restarted server never has the
  same scoring code running twice at once. The local pool passes ``server_pid`` in the worker's
  start config and the worker's watchdog (``worker/watchdog.py``) exits within milliseconds when
  that process exits or the connection closes; an engine whose workers are remote meets the same
  rule with a lease its workers watch (e.g. Ray actors owned by the server's driver, which die
  with it, or a heartbeat they check).
* Results: a worker writes a mini-batch's part (``parts/<key>.csv``) to a temporary name, flushes
  it to disk (fsync) and publishes it with an atomic rename *before* it reports success; the
  runner then records the mini-batch in the done log, naming its part keys. Only parts the done
  log names are assembled (``jobs/assembly.py``), so a part from a superseded attempt (a piece of
  a split, a rescore after a crash) is never assembled twice.
* ``credentials()`` (optional) returns ``(version, sources)``: the storage specs workers read with,
  renewed before they expire; workers get a newer set with their next mini-batch.
* A failure of the job as a whole (``init()`` raised, workers keep dying in ``init()``, a platform
  failure that persists) is raised from ``run`` as a :class:`~batchpoint.exceptions.BatchpointError`.

Engines are chosen per compute (:func:`engine_for`): each engine declares itself
(:class:`~batchpoint.engines.kinds.EngineKind`: ``"module:Class"`` plus the extra that installs it,
imported lazily as storage backends are, the compute types it runs, its settings and capabilities)
and is listed once in :mod:`batchpoint.engines.registry`; computes of other types, and deployments
without a compute, use the default engine, the local pool.
"""

from __future__ import annotations

import abc
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from batchpoint.engines import registry
from batchpoint.engines.planning import EngineJob, MiniBatch, MiniBatchOutcome

__all__ = ["COMPUTE_ENGINES", "Engine", "OutcomeSink", "Sources", "engine_for", "engine_class"]

OutcomeSink = Callable[[MiniBatchOutcome], None]
Sources = Callable[[], tuple[int, dict[str, Any]]]


class Engine(abc.ABC):
    """Runs a job's mini-batches on workers (see the module docstring for the contract)."""

    name: str = ""

    @classmethod
    def from_compute(cls, compute: dict[str, Any] | None) -> Engine:
        """The engine for a compute's spec (with its secrets); engines that need settings of the
        compute (an address, a token) override this."""
        return cls()

    @abc.abstractmethod
    def run(self, job: EngineJob, batches: Iterator[MiniBatch], on_outcome: OutcomeSink, stop: threading.Event,
            credentials: Sources | None = None) -> None:
        """Score ``batches``; report each final outcome; return when done or when ``stop`` is set."""


class _ComputeEngines(Mapping[str, str]):
    """compute type → engine name, read from the engines' declarations (``compute_types``); a type no
    engine declares is not in it (``COMPUTE_ENGINES.get(type, "local")``). Prefer
    :func:`batchpoint.engines.registry.kind_for_compute_type`."""

    def _table(self) -> dict[str, str]:
        return {t: kind.name for kind in registry.engine_kinds() for t in kind.compute_types}

    def __getitem__(self, compute_type: str) -> str:
        return self._table()[compute_type]

    def __iter__(self) -> Iterator[str]:
        return iter(self._table())

    def __len__(self) -> int:
        return len(self._table())


#: compute type → engine name, as the engines declare it; anything not listed runs on the local pool
COMPUTE_ENGINES: Mapping[str, str] = _ComputeEngines()

_instances: dict[tuple[str, str], Engine] = {}
_lock = threading.Lock()


def engine_class(name: str) -> type[Engine]:
    """The class of engine ``name`` (imported on first use; an unknown name lists the known ones)."""
    return registry.engine_class(name)


def engine_for(compute: dict[str, Any] | None) -> Engine:
    """The engine for a compute's spec (None: a deployment without a compute → the local pool).
    One instance per engine name (and, for engines bound to a compute, per compute spec) per process."""
    kind = registry.kind_for_compute_type(str((compute or {}).get("type") or ""))
    name = kind.name
    key = (name, repr(sorted((compute or {}).items())) if kind.per_compute else "")
    with _lock:
        if key not in _instances:
            _instances[key] = engine_class(name).from_compute(compute)
        return _instances[key]
