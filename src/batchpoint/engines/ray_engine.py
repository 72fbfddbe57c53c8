"""``RayEngine``: a job's workers as Ray actors on a Ray cluster (compute ``type: ray``).

``instance_count × max_concurrency_per_instance`` actors of
:class:`batchpoint.worker.ray_actor.RayWorker`, one per worker slot, spread over the cluster's
nodes. Each calls the scorer's ``init()`` once, then scores mini-batch after mini-batch with the
worker's own code (:func:`batchpoint.worker.loop._score`), reading its files from storage itself
with the job's delegated storage specs (:class:`batchpoint.identity.delegation.WorkerCredentials`:
the same ones, renewed the same way, as the local pool's workers get). The server only plans,
dispatches and records: no input data passes through it. Nodes need no shared filesystem: the
model and code folders go to the actors once per job as one archive in Ray's object store. When
the job's output data store is remote (``EngineJob.parts_store``: Azure Blob, ADLS Gen2, S3) each
actor writes its parts there itself, with the job's delegated, writable credential for that store,
and its reply names only the part's path: no result data passes through the server either. With a
local output store (a folder on the server's disk, which a node cannot reach) each part comes back
with its reply and is written to the job folder here (``docs/ray.md``). What a scoring script
writes to ``AZUREML_BI_OUTPUT_PATH`` (a folder of its actor's own) goes the same two ways: uploaded
by the actor straight into the job's ``score`` output location on a remote output store
(``EngineJob.bi_output_store``), or sent back with the reply and written to the job's folder for
it here (``jobs/bi_output.py`` uploads that at finalize).

The job's run is the shared :class:`batchpoint.engines.scheduler.Scheduler` (slots, deadlines,
lost workers, the failure policy, shutdown), as the local pool's is; this module supplies only its
transport, :class:`_ActorTransport`: how an actor is started (``RayWorker.init``), fed
(``RayWorker.run``, one mini-batch per call), found lost (Ray's errors, below) and killed.

Failures follow :class:`batchpoint.engines.policy.FailurePolicy`, like the local pool:

* what the worker reports (the scoring code raised, a file unreadable, a storage fault) keeps its
  kind;
* past ``retry_settings.timeout`` the actor is killed (``ray.kill``) and replaced: kind timeout;
* Ray's own failures — the actor died (``ActorDiedError``, its process killed or crashed), its
  node was lost (``NodeDiedError``), a result object was lost (``ObjectLostError``,
  ``OwnerDiedError``), the actor's method raised an unexpected error (``RayTaskError``) — are kind
  platform: the mini-batch is retried on another actor (a new one in the lost one's slot) and never
  charged to ``error_threshold``;
* an actor that dies before its ``init()`` returned counts as an init death of its slot; an actor
  Ray cannot place at all (``ActorUnschedulableError``) or an environment Ray cannot build
  (``RuntimeEnvSetupError``) fails the job with the cause.

A deployment's own environment (``EngineJob.python_exe``, docs/environments.md) reaches the actors
as that interpreter's path: each actor runs its scorer in a ``python -m batchpoint.worker`` process
of it, driven over the worker protocol, so the environment needs no Ray; the path must exist on
every node (a shared environment cache), else the job fails naming the node.

**Warm actors across jobs** (``engines/ray_warm.py``): with ``workers.warm_idle_s`` > 0 a finished
job's idle actors are parked (``RayWorker.park``: the job's credentials, folders and log dropped)
and the next job of the same deployment, scorer, environment and settings takes them
(``RayWorker.next_job``, at once: no ``init()``, no archive); a taken actor that does not answer
(killed while parked) is replaced by a cold one in its slot. An actor still in ``init()`` at the
job's end is parked once ``init()`` returns. A canceled job's actors are all killed, none kept.

``stop`` set (a cancel, the server shutting down): every busy actor is killed with
``ray.kill(no_restart=True)`` at once; the actors are not detached, so they also end when the
server process (their owner) dies.

The server connects to the cluster once (``ray.init(address=...)``; one cluster per server
process), bounded by ``BATCHPOINT_RAY__CONNECT_TIMEOUT_S`` (``connect``). The compute's auth token (a secret, kept encrypted) is set as ``RAY_AUTH_TOKEN`` with
``RAY_AUTH_MODE=token`` before connecting.
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ray
import ray.exceptions as rex

from batchpoint.engines import ray_warm
from batchpoint.engines.base import Engine, OutcomeSink, Sources
from batchpoint.engines.planning import EngineJob, MiniBatch
from batchpoint.engines.policy import FailureKind, death_in_run
from batchpoint.engines.sandbox import isolation_of
from batchpoint.engines.scheduler import Event, Scheduler, Worker, WorkerTransport, log_name, log_path
from batchpoint.exceptions import PlatformError, ValidationError
from batchpoint.outputs import temporary_name
from batchpoint.worker import protocol
from batchpoint.worker.ray_actor import BI_OUTPUT_VARIABLE, RayWorker, pack_folders

__all__ = ["RayEngine", "connect"]

log = logging.getLogger(__name__)

NAMESPACE = "batchpoint"
DEFAULT_NUM_CPUS = 1.0
#: Ray's failures that mean "the actor, its node or a result is gone": kind platform
LOST = (rex.RayActorError, rex.ObjectLostError, rex.OwnerDiedError, rex.NodeDiedError, rex.WorkerCrashedError,
        rex.LocalRayletDiedError, rex.ObjectFetchTimedOutError)

DEFAULT_CONNECT_TIMEOUT_S = 30.0  # Settings.ray.connect_timeout_s (BATCHPOINT_RAY__CONNECT_TIMEOUT_S)

_connect_lock = threading.Lock()  # guards the two names below; never held while Ray connects
_connected: str | None = None


@dataclass
class _Attempt:
    """One ``ray.init`` in flight, on its own thread: callers wait for it with their own timeout,
    so a cluster that never answers fails each job in bounded time and blocks no one."""

    address: str
    done: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None


_attempt: _Attempt | None = None


def _cannot_connect(address: str, why: str, timeout_s: float | None = None) -> PlatformError:
    from batchpoint._internal.gcs_probe import GCS_CHECKS

    within = f" (waited {timeout_s:g} s: BATCHPOINT_RAY__CONNECT_TIMEOUT_S)" if timeout_s is not None else ""
    return PlatformError(
        f"cannot connect to the Ray cluster at {address}: {why}{within}. Fix the compute's address with "
        f"`batchpoint compute create --type ray --address host:port` (same name); {GCS_CHECKS}; and its auth "
        "token when the cluster runs with RAY_AUTH_MODE=token", details={"address": address})


def connect(address: str, auth_token: str | None = None, timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S) -> None:
    """Connect this process to the Ray cluster at ``address`` (once; a second cluster is refused:
    Ray allows one cluster per driver process). Bounded: the address is probed first (a closed
    port, a wrong host, something that is not a GCS fail at once), and ``ray.init`` runs on its own
    thread, waited for at most ``timeout_s``; no lock is held meanwhile, so a job on an address that
    never answers does not hold up a job on the cluster this server does reach."""
    global _connected, _attempt
    from batchpoint._internal.gcs_probe import probe_gcs

    with _connect_lock:
        if _connected is not None and ray.is_initialized():
            if _connected != address:
                raise ValidationError(
                    f"this server is connected to the Ray cluster at {_connected}; a server drives one Ray cluster "
                    f"at a time (Ray allows one per driver process), so compute address {address} cannot be used "
                    "until the server restarts")
            return
        attempt = _attempt
    if attempt is None:
        why = probe_gcs(address, timeout_s) or _connects_in_a_child(address, auth_token, timeout_s)
        if why is not None:
            raise _cannot_connect(address, why)
        with _connect_lock:
            if _connected is not None and ray.is_initialized():
                attempt = None
            elif _attempt is None:
                attempt = _attempt = _Attempt(address)
                threading.Thread(target=_init, args=(attempt, auth_token), name="ray-connect", daemon=True).start()
            else:
                attempt = _attempt
        if attempt is None:  # another job connected meanwhile: check it is this cluster
            connect(address, auth_token, timeout_s)
            return
    if attempt.address != address:
        raise PlatformError(
            f"this server is still connecting to the Ray cluster at {attempt.address} (a server drives one Ray "
            f"cluster at a time), so compute address {address} cannot be used now; try again when that attempt "
            "has ended, or restart the server", details={"address": address})
    if not attempt.done.wait(timeout_s):
        raise _cannot_connect(address, "ray.init did not return", timeout_s)
    if attempt.error is not None:
        exc = attempt.error
        raise _cannot_connect(address, f"{type(exc).__name__}: {exc}") from exc


_CHILD = """
import sys
import ray
ray.init(address=sys.argv[1], namespace=sys.argv[2], log_to_driver=False, configure_logging=False)
ray.shutdown()
"""


def _connects_in_a_child(address: str, auth_token: str | None, timeout_s: float) -> str | None:
    """Connect once from a child process (killed past ``timeout_s``) before this process does: a
    ``ray.init`` that would hang (an address that answers but is no Ray head) or a refused token
    ends there, never in the server, whose Ray connection cannot be undone. None when it connected."""
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_AUTH_TOKEN", "RAY_ADDRESS")}
    if auth_token:
        env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=auth_token)
    try:
        done = subprocess.run([sys.executable, "-c", _CHILD, address, NAMESPACE], env=env, capture_output=True,
                              text=True, timeout=timeout_s, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return f"ray.init did not connect within {timeout_s:g} s (BATCHPOINT_RAY__CONNECT_TIMEOUT_S)"
    if done.returncode == 0:
        return None
    lines = [line.strip() for line in (done.stderr or "").splitlines() if line.strip()]
    cause = next((line for line in reversed(lines) if "Error" in line or "error" in line), lines[-1] if lines else "")
    return f"ray.init failed: {cause[:600] or f'exit status {done.returncode}'}"


def _init(attempt: _Attempt, auth_token: str | None) -> None:
    global _connected, _attempt
    try:
        if auth_token:
            _use_token(auth_token)
        ray.init(address=attempt.address, namespace=NAMESPACE, log_to_driver=False, configure_logging=False)
    except BaseException as exc:  # noqa: BLE001 - ConnectionError, auth failures, RuntimeError of Ray
        attempt.error = exc
    finally:
        # Ray holds the token now; out of the environment, so no process this server starts (a
        # deployment environment's worker) inherits it
        os.environ.pop("RAY_AUTH_TOKEN", None)
        with _connect_lock:
            if attempt.error is None:
                _connected = attempt.address
            _attempt = None
        attempt.done.set()


def _use_token(token: str) -> None:
    """Token auth for this process's connection: ``RAY_AUTH_MODE=token`` and ``RAY_AUTH_TOKEN``.
    Ray reads both into a cached config when it is imported, so the cache is reloaded too."""
    os.environ["RAY_AUTH_MODE"] = "token"
    os.environ["RAY_AUTH_TOKEN"] = token
    try:
        from ray._raylet import AuthenticationTokenLoader, Config

        Config.initialize("")
        AuthenticationTokenLoader.instance().reset_cache()
    except (ImportError, AttributeError):  # another Ray release: it reads the environment itself
        log.debug("Ray's auth config cache not reloaded")


class _Actor:
    """A Ray actor as the transport holds it: its handle, its ``init()`` call and the running
    mini-batch's call (Ray object refs)."""

    def __init__(self, actor: Any, init_ref: Any, jobs: int = 1) -> None:
        self.actor, self.init_ref = actor, init_ref
        #: the replies of the mini-batches sent to it, in order: the running one's first, then the one
        #: sent ahead (Ray runs an actor's calls one at a time, in the order they were submitted)
        self.refs: deque[Any] = deque()
        self.jobs = jobs  # the jobs it served, this one included (a warm actor's: more than one)


class RayEngine(Engine):
    name = "ray"
    #: its nodes write a job's parts to a remote output store themselves (jobs/runner.py)
    writes_parts_to_storage = True

    def __init__(self, address: str = "", auth_token: str | None = None, num_cpus: float = DEFAULT_NUM_CPUS,
                 connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S) -> None:
        self.address, self.auth_token, self.num_cpus = address, auth_token, num_cpus
        self.connect_timeout_s = connect_timeout_s

    @classmethod
    def from_compute(cls, compute: dict[str, Any] | None) -> RayEngine:
        compute = compute or {}
        address = str(compute.get("address") or "")
        if not address:
            raise ValidationError(f"compute '{compute.get('name')}' of type ray has no address; set address to the "
                                  "Ray head's host:port (e.g. 127.0.0.1:6379)")
        return cls(address, compute.get("auth_token"), float(compute.get("num_cpus_per_worker") or DEFAULT_NUM_CPUS),
                   float(compute.get("connect_timeout_s") or DEFAULT_CONNECT_TIMEOUT_S))

    def run(self, job: EngineJob, batches: Iterator[MiniBatch], on_outcome: OutcomeSink,
            stop: threading.Event, credentials: Sources | None = None) -> None:
        connect(self.address, self.auth_token, self.connect_timeout_s)
        if isolation_of(job)["mode"] == "none":
            log.warning("job %s: its scoring code runs UNFENCED in the Ray actors' own processes (workers.isolation "
                        "is 'none': BATCHPOINT_WORKERS__ISOLATION; docs/security.md)", job.name)
        Scheduler(_ActorTransport(self, job, stop), job, batches, on_outcome, stop, credentials).run()


class _ActorTransport(WorkerTransport):
    """Workers as Ray actors: started with ``RayWorker.init`` (the job config and the scorer's
    archive), fed with ``RayWorker.run`` (one mini-batch per call), lost when Ray says so."""

    noun = "Ray worker"
    #: a busy actor's next mini-batch may be sent ahead: Ray queues it behind the running call, so it
    #: starts without a round trip through the scheduler (as the local pool's pipe)
    sends_ahead = True

    def __init__(self, engine: RayEngine, job: EngineJob, stop: threading.Event | None = None) -> None:
        self.engine, self.job = engine, job
        self.stop = stop or threading.Event()  # set: a cancel or the server's stop, when no actor is kept
        self.archive: Any = None
        self.remote = ray.remote(RayWorker).options(
            num_cpus=engine.num_cpus, max_restarts=0, max_task_retries=0, scheduling_strategy="SPREAD")
        self.keep_warm = ray_warm.enabled(job)
        self.started = time.monotonic()  # a release of the deployment after this: no actor kept
        self.key = ray_warm.actor_key(job, engine.address, engine.num_cpus) if self.keep_warm else ""

    def _archive(self) -> Any:
        """The scorer's folders in Ray's object store, put when the first cold actor needs them."""
        if self.archive is None:
            self.archive = ray.put(pack_folders(self.job.scorer))
        return self.archive

    def start(self, slot: int, sources: dict[str, Any]) -> _Actor:
        job = self.job
        config = protocol.job_config(
            name=job.name, worker_id=slot, scorer=job.scorer, sources=sources, parts_dir=job.parts_dir,
            logs_dir=job.logs_dir, output_action=job.output_action, logging_level=job.logging_level,
            environment=job.environment)
        if job.parts_store is not None:
            config["parts_store"] = dict(job.parts_store)
        if job.bi_output_store is not None:
            config["bi_output_store"] = dict(job.bi_output_store)
        config["isolation"] = isolation_of(job)  # the actor runs the scoring code fenced (worker/ray_actor.py)
        if self.keep_warm:
            config["warm_key"] = self.key
            warm = self._take_warm(slot, config)
            if warm is not None:
                return warm
            cold = job.workers - slot  # this slot's actor and those still to start
            ray_warm.RAY_POOL.make_room(self.key, self.engine.address, cold * self.engine.num_cpus)
        actor = self.remote.remote()
        return _Actor(actor, actor.init.remote(config, self._archive(), self.job.python_exe))

    def _take_warm(self, slot: int, config: dict[str, Any]) -> _Actor | None:
        """A parked actor of this job's key that took the job (``ready`` at once), or None."""
        while (parked := ray_warm.RAY_POOL.take(self.key)) is not None:
            try:
                reply = ray.get(parked.actor.next_job.remote(config, self.key), timeout=ray_warm.NEXT_JOB_TIMEOUT_S)
            except Exception as exc:  # noqa: BLE001 - it died while parked (or hangs): a cold one instead
                reply = {"type": "lost", "message": f"{type(exc).__name__}: {str(exc).strip()[:200]}"}
            if reply.get("type") == "ready":
                log.info("job %s Ray worker %s: a warm actor of %s (its job %d), init() not run again", self.job.name,
                         slot, parked.deployment, parked.jobs + 1)
                return _Actor(parked.actor, ray.put(reply), jobs=parked.jobs + 1)
            log.warning("job %s Ray worker %s: a parked actor of %s could not take the job (%s): it is stopped and "
                        "a new one started", self.job.name, slot, parked.deployment,
                        reply.get("message") or reply.get("type"))
            parked.kill()
        return None

    def send(self, w: Worker, message: dict[str, Any]) -> None:
        w.handle.refs.append(w.handle.actor.run.remote(message))

    def describe(self, w: Worker) -> str:
        return "the Ray actor"

    def kill(self, w: Worker) -> int | None:
        try:
            ray.kill(w.handle.actor, no_restart=True)
        except Exception:  # noqa: BLE001 - already gone
            pass
        return None

    def shutdown(self, workers: list[Worker]) -> None:
        """Kill the actors of this run now; with ``warm_idle_s``, unless the job was canceled or the
        server stops, the idle ones are parked for the deployment's next job (``engines/ray_warm.py``)
        and one still in ``init()`` once that returns."""
        kept: list[Worker] = []
        if self.keep_warm and not self.stop.is_set():
            kept = [w for w in workers if w.batch is None]
        for w in workers:
            if w not in kept:
                self.kill(w)
        if not kept:
            return
        parking = {w.handle.actor.park.remote(): w for w in kept if w.ready}
        for w in kept:
            if not w.ready:
                threading.Thread(target=self._park_after_init, args=(w,), name="batchpoint-ray-warm-adopt",
                                 daemon=True).start()
        done: list[Any] = []
        if parking:
            done, _ = ray.wait(list(parking), num_returns=len(parking), timeout=ray_warm.PARK_TIMEOUT_S)
        for ref, w in parking.items():
            self._parked(w, ref if ref in done else None)

    def _parked(self, w: Worker, ref: Any) -> bool:
        """Keep ``w``'s actor when its ``park`` (``ref``) answered ``parked``; killed otherwise."""
        reply: dict[str, Any] = {}
        if ref is not None:
            try:
                reply = ray.get(ref, timeout=1)
            except Exception as exc:  # noqa: BLE001 - it died meanwhile: not kept
                reply = {"type": "lost", "message": str(exc)[:200]}
        self._append_log(w.slot, reply.get("log") or "")  # its last lines ("kept warm") in the job's log
        if reply.get("type") != "parked":
            log.info("job %s Ray worker %s not kept warm: %s", self.job.name, w.slot,
                     reply.get("message") or reply.get("type") or "no answer to park")
            self.kill(w)
            return False
        compute = self.job.warm_compute or {}  # min_instances keeps actors past the idle timeout (ray_warm.py)
        return ray_warm.RAY_POOL.park(ray_warm.ParkedActor(
            w.handle.actor, self.key, self.job.deployment or "", self.engine.address, self.engine.num_cpus,
            ray_warm.idle_seconds(self.job), jobs=w.handle.jobs, since=self.started, compute=compute.get("name"),
            min_instances=int(compute.get("min_instances") or 0),
            per_instance=max(1, int(compute.get("per_instance") or 1))), self.job.workers)

    def _append_log(self, slot: int, text: str) -> None:
        if not text:
            return
        try:
            with open(log_path(self.job, slot), "a") as out:
                out.write(text)
        except OSError:
            pass

    def _park_after_init(self, w: Worker) -> None:
        """``w`` was still in ``init()`` when the job ended: parked once that returns ``ready``
        (within ``settings.init_timeout``), killed otherwise."""
        try:
            reply = ray.get(w.handle.init_ref, timeout=self.job.init_timeout_s)
        except Exception:  # noqa: BLE001 - it died or timed out: not kept
            reply = {}
        self._append_log(w.slot, reply.get("log") or "")
        if reply.get("type") != "ready":
            self.kill(w)
            return
        ref = w.handle.actor.park.remote()
        ready, _ = ray.wait([ref], timeout=ray_warm.PARK_TIMEOUT_S)
        self._parked(w, ref if ready else None)

    # -- replies --------------------------------------------------------------------------------
    def poll(self, workers: list[Worker], timeout: float) -> Iterator[tuple[Worker, Event]]:
        waiting = {w.handle.refs[0]: w for w in workers if w.batch is not None and w.handle.refs}
        waiting.update({w.handle.init_ref: w for w in workers if not w.ready})
        refs = list(waiting)
        done: list[Any] = []
        if refs:
            done, _ = ray.wait(refs, num_returns=1, timeout=timeout)
            if done:
                done, _ = ray.wait(refs, num_returns=len(refs), timeout=0)
        else:
            time.sleep(timeout)
        for ref in done:
            w = waiting[ref]
            yield w, self._receive(w, ref)

    def _receive(self, w: Worker, ref: Any) -> Event:
        try:
            reply = ray.get(ref)
        except rex.ActorUnschedulableError as exc:
            raise PlatformError(f"the Ray cluster at {self.engine.address} cannot place a worker of job "
                                f"{self.job.name} ({self.engine.num_cpus:g} CPU each): {exc}",
                                details={"address": self.engine.address}) from exc
        except rex.RuntimeEnvSetupError as exc:
            raise PlatformError(f"Ray could not set up the environment of job {self.job.name}'s workers: {exc}",
                                details={"address": self.engine.address}) from exc
        except (*LOST, rex.RayTaskError) as exc:
            return {"type": "lost", "error": self._lost_error(w, exc)}
        if reply["type"] == "died":  # the actor's worker process ended while it had a mini-batch
            if w.batch is not None and reply.get("in_run"):
                error = death_in_run(w.slot, w.batch.key, reply.get("exit_code"), log_name(self.job, w.slot))
            else:
                error = {"type": "WorkerLost", "where": None, "traceback": "", "kind": FailureKind.PLATFORM.value,
                         "message": f"the worker process of Ray actor slot {w.slot} ended (exit code "
                                    f"{reply.get('exit_code')}) outside run(); see the worker log "
                                    f"{log_name(self.job, w.slot)}"}
            return {"type": "lost", "error": error, "log": reply.get("log") or ""}
        if reply["type"] == "unavailable":  # the deployment's environment (or bubblewrap) is not on that node
            return {"type": "job_failed", "log": reply.get("log") or "", "exception": PlatformError(
                f"job {self.job.name}: {reply['message']}", details={"python": self.job.python_exe})}
        if reply["type"] == "done":
            w.handle.refs.popleft()
        return reply

    def outcome(self, w: Worker, batch: MiniBatch, reply: Event) -> tuple[int, dict[str, Any] | None, int]:
        """A ``done`` reply: what it carries back (a local output store's part, the files the script
        wrote to ``AZUREML_BI_OUTPUT_PATH``) is written to the job folder here first; a failed write
        is the mini-batch's platform failure."""
        if reply.get("bi_files"):  # a local output store: what the script wrote, into the server's folder
            error = self._store_bi_files(batch.key, reply["bi_files"])
            if error is not None:
                return 0, error, 0
        if reply["error"] is None and self.job.writer().writes_parts:
            error = (self._stored_remotely(batch.key, reply.get("stored")) if self.job.parts_store is not None
                     else self._store_part(batch.key, reply.get("part") or b""))
            if error is not None:
                return 0, error, 0
        return reply["rows"], reply["error"], int(reply.get("missing") or 0)

    def _stored_remotely(self, key: str, stored: str | None) -> dict[str, Any] | None:
        """The actor wrote the part to the output store: a part of that key left in the job folder
        (an earlier run of the job on the local pool) goes, since assembly prefers the job folder's."""
        if not stored:
            return {"type": "ProtocolError", "where": None, "traceback": "", "kind": FailureKind.PLATFORM.value,
                    "message": f"the Ray actor's reply for mini-batch {key} names no part on the output store; "
                               "install the same Batchpoint version on the server and every Ray node"}
        try:
            (Path(self.job.parts_dir) / self.job.writer().part_name(key)).unlink(missing_ok=True)
        except OSError:
            pass
        return None

    def _store_part(self, key: str, data: bytes) -> dict[str, Any] | None:
        """Write a returned part to ``parts/<part name>`` (named by the job's writer; temporary name,
        rename), as a local worker does: the job's group commit syncs it to disk before its done record (``jobs/progress.py``);
        a failed write is the platform's (None when written)."""
        parts = Path(self.job.parts_dir)
        tmp, final = parts / temporary_name(key), parts / self.job.writer().part_name(key)
        try:
            parts.mkdir(parents=True, exist_ok=True)
            with open(tmp, "wb") as out:
                out.write(data)
            os.replace(tmp, final)
            return None
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            return {"type": type(exc).__name__, "where": None, "traceback": "", "kind": FailureKind.PLATFORM.value,
                    "message": f"could not write the rows of mini-batch {key} to '{final}': {exc}; free space in "
                               f"(or fix) the job folder {parts.parent}"}

    def _store_bi_files(self, key: str, files: dict[str, bytes]) -> dict[str, Any] | None:
        """Write the files an actor's scoring script wrote to its ``AZUREML_BI_OUTPUT_PATH`` (sent
        back with its reply) into the job's folder for them on the server (temporary name, fsync,
        rename: the last one written wins), whence ``jobs/bi_output.py`` uploads them at finalize;
        a failed write is the platform's (None when written)."""
        folder = Path(self.job.environment.get(BI_OUTPUT_VARIABLE) or Path(self.job.parts_dir).parent / "bi_output")
        root = folder.resolve()
        for rel, data in sorted(files.items()):
            final = (folder / rel).resolve()
            if not final.is_relative_to(root) or final == root:
                return {"type": "ProtocolError", "where": None, "traceback": "", "kind": FailureKind.PLATFORM.value,
                        "message": f"the Ray actor's reply for mini-batch {key} names the file '{rel}' outside "
                                   f"{BI_OUTPUT_VARIABLE}; install the same Batchpoint version on the server and "
                                   "every Ray node"}
            tmp = final.parent / f".{final.name}.{os.getpid()}.tmp"
            try:
                final.parent.mkdir(parents=True, exist_ok=True)
                with open(tmp, "wb") as out:
                    out.write(data)
                    out.flush()
                    os.fsync(out.fileno())  # durable before the mini-batch is reported done
                os.replace(tmp, final)
            except OSError as exc:
                tmp.unlink(missing_ok=True)
                return {"type": type(exc).__name__, "where": None, "traceback": "", "kind": FailureKind.PLATFORM.value,
                        "message": f"could not write '{rel}', which the scoring script wrote to {BI_OUTPUT_VARIABLE} "
                                   f"in mini-batch {key}, to '{final}': {exc}; free space in (or fix) the job folder "
                                   f"{folder.parent.parent}"}
        return None

    def _lost_error(self, w: Worker, exc: BaseException) -> dict[str, Any]:
        where = f"mini-batch {w.batch.key}" if w.batch else "no mini-batch (in init())"
        cause = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        died = _died_in_run(exc) if w.batch is not None and w.ready else None
        if died is not None:  # the actor's process ended inside run(): as policy.death_in_run says
            error = {"type": "WorkerDied", "where": None, "traceback": "", "kind": FailureKind.USER.value,
                     "death": died[0], "message": f"the Ray actor of worker slot {w.slot} {died[1]} while run() was "
                     f"scoring {where}; see the worker log {log_name(self.job, w.slot)}"}
            if died[0] == "killed":  # a signal from outside may be the platform's: retried as such first
                error.update(kind=FailureKind.PLATFORM.value, in_run=True)
            return error
        return {"type": type(exc).__name__, "where": None, "traceback": "", "kind": FailureKind.PLATFORM.value,
                "message": f"the Ray actor of worker slot {w.slot} was lost while scoring {where} "
                           f"({type(exc).__name__}: {cause[:500]}); see the worker log {log_path(self.job, w.slot)}"}


def _died_in_run(exc: BaseException) -> tuple[str, str] | None:
    """Whether Ray's error says the actor's own process ended (it exited, was killed, ran out of
    memory) rather than its node or the cluster failing: (how, what happened) or None. Ray tells
    only in its message: "killed due to the node running low on memory" (Ray's memory monitor: the
    scoring code's, at once), "Worker unexpectedly exits …" (``os._exit``, a signal, a crash: Ray
    cannot tell which, so it is retried as the platform's first, ``policy.FailurePolicy.classify``);
    a node that died is the platform's."""
    if not isinstance(exc, rex.ActorDiedError):
        return None
    text = str(exc)
    lowered = text.lower()
    if "running low on memory" in lowered:
        return "oom", "was killed by Ray's memory monitor: its node was running low on memory"
    if "node" in lowered and ("has died" in lowered or "node died" in lowered or "is dead" in lowered) \
            and "worker" not in lowered:
        return None  # the node was lost: the platform's
    match = re.search(r"(worker unexpectedly exits[^.]*|exit code \S+)", text, re.IGNORECASE)
    if match:
        return "killed", (f"ended unexpectedly (Ray: {match.group(1).strip()}: os._exit() in the scoring code, a "
                          "crash, or a kill such as the kernel's OOM killer)")
    return None
