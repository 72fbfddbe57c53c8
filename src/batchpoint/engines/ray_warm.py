"""Ray actors kept warm across jobs of a deployment (issue 24 §4, the Ray half of ``engines/warm.py``).

A Ray job's actors are fresh Python processes that import pandas / MLflow / scikit-learn, load
the model and run ``init()``: 6–7.5 s each on an idle machine, 20–47 s under load. With
``workers.warm_idle_s`` > 0 (the local pool's knob: 300 s by default; 0 turns this off) the idle
actors of a finished job are not killed but *parked* here, keyed by :func:`actor_key`: everything
:func:`batchpoint.engines.warm.pool_key` names (the deployment, the scorer's folders and a
fingerprint of their files, the interpreter, the environment variables, the isolation options, the
logging level) plus the Ray cluster's address and the CPUs per actor. The next job with the same key
takes as many parked actors as it has slots (``RayWorker.next_job``: its ``init()`` is not run
again; the rest start cold) and anything different starts fresh actors: a parked actor never serves
another key (the actor checks the key too).

Parked actors hold their CPUs on the cluster, so they are bounded and freed:

* at most the job's ``instance_count × max_concurrency_per_instance`` actors are kept per key (a
  second job of the key running at the same time parks none beyond that);
* each is killed after ``warm_idle_s`` without a job — but of each deployment the most recently
  parked ``min_instances × max_concurrency_per_instance`` of its compute (Azure's compute
  ``min_instances``, as the local pool keeps them: :func:`batchpoint.engines.warm.kept_by_compute`;
  a compute stored with a lower ``min_instances`` frees them at once, :meth:`RayWarmPool.rescale`) —,
  when the server stops (:meth:`RayWarmPool.stop_all`) and with the server's process anyway (the
  actors are not detached: their owner is the server);
* a job that must start cold actors while the cluster has fewer free CPUs than they need first
  kills parked actors of *other* keys, the longest idle first (:meth:`RayWarmPool.make_room`), so
  another deployment never waits for an idle timeout;
* a deployment updated or deleted (``warm.release_warm``, through :func:`batchpoint.engines.warm.add_pool`)
  has its parked actors killed at once, and those serving a job then are not kept at its end;
* a parked actor that died (its node lost, a kill) is dropped within seconds (Ray's actor table,
  every :data:`DEAD_CHECK_S`), or found when a job takes it (its ``next_job`` fails): a cold actor
  then starts in its slot and the job goes on.

What a warm actor sees of the job before is ``worker/ray_actor.py``'s docstring: nothing on disk,
no credential (``RayWorker.park``). They show in ``/metrics`` as ``batchpoint_ray_warm_actors`` and
``batchpoint_ray_warm_actor_cpus`` per deployment.

Ray itself is imported only inside the functions that call it: ``/metrics`` reads the registry.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

from batchpoint.engines.planning import EngineJob
from batchpoint.engines.warm import add_pool, idle_seconds, kept_by_compute, note_min_instances, pool_key

__all__ = ["RAY_POOL", "ParkedActor", "RayWarmPool", "actor_key", "enabled", "idle_seconds"]

log = logging.getLogger("batchpoint.engines.ray_warm")

#: how long a parked actor has to answer ``park``, and a taken one ``next_job``
PARK_TIMEOUT_S = 10.0
NEXT_JOB_TIMEOUT_S = 15.0
#: how often parked actors are looked up in Ray's actor table (one dead is dropped, not counted)
DEAD_CHECK_S = 2.0


def _dead(parked: list[ParkedActor]) -> list[ParkedActor]:
    """Those of ``parked`` whose actor Ray's actor table (read from the GCS: no dashboard needed)
    says is DEAD; none when it cannot be read (then a job finds them dead when it takes them)."""
    try:
        from ray._private.state import actors
    except ImportError:
        return []
    dead = []
    for a in parked:
        try:
            info = actors(actor_id=a.actor._actor_id.hex())
        except Exception:  # noqa: BLE001 - another Ray release, the GCS unreachable: not known
            continue
        if (info or {}).get("State") == "DEAD":
            dead.append(a)
    return dead


def enabled(job: EngineJob) -> bool:
    """Whether ``job``'s Ray actors are kept warm after it (``workers.warm_idle_s`` > 0; fenced or not:
    a cold actor costs seconds either way)."""
    return idle_seconds(job) > 0


def actor_key(job: EngineJob, address: str, num_cpus: float) -> str:
    """What a parked actor must have been started with to serve ``job`` (module docstring)."""
    return hashlib.sha256(f"{pool_key(job)}|ray|{address}|{num_cpus:g}".encode()).hexdigest()


@dataclass
class ParkedActor:
    """One actor kept for its key's next job."""

    actor: Any  # the Ray actor handle
    key: str
    deployment: str
    address: str
    num_cpus: float
    idle_s: float
    parked_at: float = 0.0
    jobs: int = 1  # jobs it served
    since: float = 0.0  # when the job it served started (a deployment released since: not kept)
    compute: str | None = None  # its deployment's compute (the last job's), for min_instances
    min_instances: int = 0  # that compute's min_instances (the latest the pool knows)
    per_instance: int = 1  # the deployment's max_concurrency_per_instance

    def kill(self) -> None:
        import ray

        try:
            ray.kill(self.actor, no_restart=True)
        except Exception:  # noqa: BLE001 - already gone, or the connection with it
            pass


class RayWarmPool:
    """This server's parked Ray actors (one per process: :data:`RAY_POOL`)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.parked: list[ParkedActor] = []
        self._reaper: threading.Thread | None = None
        self._wake = threading.Event()
        #: (endpoint, deployment or None for all of it) -> when its actors were last released
        self.released: dict[tuple[str, str | None], float] = {}
        #: compute -> its min_instances as last stored (:meth:`rescale`): newer than a running job's plan
        self.min_instances: dict[str, int] = {}

    def take(self, key: str) -> ParkedActor | None:
        """A parked actor of ``key`` (the longest parked first), out of the pool; None when none."""
        with self.lock:
            found = next((a for a in self.parked if a.key == key), None)
            if found is not None:
                self.parked.remove(found)
        return found

    def park(self, parked: ParkedActor, most: int) -> bool:
        """Keep ``parked`` (it answered ``park``) unless ``most`` of its key are kept already (then
        it is killed); whether it was kept."""
        parked.parked_at = time.monotonic()
        endpoint, _, deployment = parked.deployment.partition("/")
        with self.lock:
            parked.min_instances = self.min_instances.get(parked.compute or "", parked.min_instances)
            released = max(self.released.get((endpoint, deployment), 0.0), self.released.get((endpoint, None), 0.0))
            kept = released < parked.since and sum(1 for a in self.parked if a.key == parked.key) < max(0, most)
            if kept:
                self.parked.append(parked)
        if not kept and released >= parked.since:
            log.info("Ray actor of %s not kept after its job: the deployment was updated or deleted meanwhile",
                     parked.deployment)
            parked.kill()
            return False
        if not kept:
            log.info("Ray actor of %s not kept after its job: %d of its key are kept already (instance_count × "
                     "max_concurrency_per_instance)", parked.deployment, most)
            parked.kill()
            return False
        log.info("Ray actor of %s parked after its job %d; kept %gs for the deployment's next job "
                 "(workers.warm_idle_s)", parked.deployment, parked.jobs, parked.idle_s)
        self._start_reaper()
        return True

    def release(self, endpoint: str, deployment: str | None = None, why: str = "its deployment changed") -> int:
        """Kill the parked actors of ``endpoint``'s ``deployment`` (None: every deployment of it) now,
        and refuse those serving a job now at its end: it was updated or deleted (``warm.release_warm``
        calls this). How many were killed now."""
        with self.lock:
            self.released[(endpoint, deployment)] = time.monotonic()
            if len(self.released) > 10_000:  # older releases no longer matter: no job is that old
                self.released = dict(sorted(self.released.items(), key=lambda kv: kv[1])[-5_000:])
            gone = [a for a in self.parked if a.deployment.partition("/")[0] == endpoint
                    and (deployment is None or a.deployment.partition("/")[2] == deployment)]
            for a in gone:
                self.parked.remove(a)
        for a in gone:
            log.info("Ray actor of %s stopped: %s", a.deployment, why)
            a.kill()
        return len(gone)

    def make_room(self, key: str, address: str, cpus: float) -> int:
        """Kill parked actors of other keys on the cluster at ``address``, the longest idle first,
        until it has ``cpus`` free CPUs for a job's cold actors (or none of them is left); how many."""
        with self.lock:
            others = sorted((a for a in self.parked if a.key != key and a.address == address),
                            key=lambda a: a.parked_at)
        if not others:
            return 0
        import ray

        try:
            free = float(ray.available_resources().get("CPU", 0.0))
        except Exception:  # noqa: BLE001 - the state of the cluster unknown: leave them
            return 0
        killed = 0
        for parked in others:
            if free >= cpus - 1e-9:
                break
            with self.lock:
                if parked not in self.parked:
                    continue
                self.parked.remove(parked)
            log.info("Ray actor of %s stopped: its CPUs are needed by a job of another deployment", parked.deployment)
            parked.kill()
            free += parked.num_cpus
            killed += 1
        return killed

    def rescale(self, compute: str, min_instances: int) -> None:
        """Compute ``compute`` was stored with ``min_instances`` (``warm.compute_changed``): its
        deployments' parked actors keep that many instances' worth past the idle timeout from now
        on; those no longer kept and past it are killed at once (a scale-down frees their CPUs)."""
        note_min_instances(self, compute, min_instances)
        with self.lock:
            parked = bool(self.parked)
        if parked:
            self._start_reaper()

    def _start_reaper(self) -> None:
        with self.lock:
            if self._reaper is not None and self._reaper.is_alive():
                self._wake.set()
                return
            self._reaper = threading.Thread(target=self._reap, name="batchpoint-ray-warm-reaper", daemon=True)
            self._reaper.start()

    def _reap(self) -> None:
        checked = 0.0
        while True:
            with self.lock:
                if not self.parked:
                    self._reaper = None
                    return
                now, kept = time.monotonic(), kept_by_compute(self.parked)
                expired = [a for a in self.parked if id(a) not in kept and now - a.parked_at >= a.idle_s]
                for a in expired:
                    self.parked.remove(a)
                wait = min([a.parked_at + a.idle_s - now for a in self.parked if id(a) not in kept] + [1.0])
                others = list(self.parked) if now - checked >= DEAD_CHECK_S else []
            for a in expired:
                log.info("Ray actor of %s stopped: idle for %gs (workers.warm_idle_s; its compute's min_instances "
                         "keeps %d)", a.deployment, a.idle_s, a.min_instances * a.per_instance)
                a.kill()
            if others:
                checked = now
                for a in _dead(others):
                    with self.lock:
                        if a not in self.parked:
                            continue
                        self.parked.remove(a)
                    log.info("Ray actor of %s dropped: it died while parked", a.deployment)
            self._wake.wait(max(0.05, min(wait, 1.0)))
            self._wake.clear()

    def stop_all(self, why: str = "the server stops") -> None:
        with self.lock:
            parked, self.parked = self.parked, []
        for a in parked:
            log.info("Ray actor of %s stopped: %s", a.deployment, why)
            a.kill()

    def view(self) -> list[dict[str, Any]]:
        """Per deployment (by name): its parked actors, the cluster CPUs they hold and the seconds
        each has left before its idle timeout, the soonest first, None for one its compute's
        ``min_instances`` keeps past it (the web page's servers view; an actor's memory is on its
        node, not measured here)."""
        with self.lock:
            parked, kept = list(self.parked), kept_by_compute(self.parked)
        now = time.monotonic()
        shown: dict[str, dict[str, Any]] = {}
        for a in parked:
            d = shown.setdefault(a.deployment, {"deployment": a.deployment, "actors": 0, "cpus": 0.0,
                                                "idle_left_s": []})
            d["actors"] += 1
            d["cpus"] += a.num_cpus
            d["idle_left_s"].append(None if id(a) in kept else round(max(0.0, a.parked_at + a.idle_s - now), 1))
        for d in shown.values():
            d["idle_left_s"].sort(key=lambda left: -1.0 if left is None else left)
        return [shown[k] for k in sorted(shown)]

    def snapshot(self) -> dict[str, tuple[int, float]]:
        """deployment -> (parked actors, the cluster CPUs they hold)."""
        with self.lock:
            parked = list(self.parked)
        out: dict[str, tuple[int, float]] = {}
        for a in parked:
            count, cpus = out.get(a.deployment, (0, 0.0))
            out[a.deployment] = (count + 1, cpus + a.num_cpus)
        return out


#: this server's parked Ray actors
RAY_POOL = RayWarmPool()
add_pool(RAY_POOL)  # a deployment's update or delete releases them too (warm.release_warm)
