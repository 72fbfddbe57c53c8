"""``GET /metrics``: Prometheus text (``prometheus-client``).

Counted from the database at each scrape, so several servers on one database all answer the
database's numbers (not one process's):

=========================================  ======================================================
``batchpoint_jobs{status}``                jobs by status (gauge)
``batchpoint_mini_batches_total{outcome}``  mini-batches ``completed`` / ``failed``, all jobs
``batchpoint_files_total{outcome}``         files ``scored`` / ``failed``
``batchpoint_rows_scored_total``            rows scored
``batchpoint_environment_builds_total{outcome}``  ``building environment`` phase events that
                                           ``finished`` / ``failed`` (``jobs.lifecycle.phase``)
=========================================  ======================================================

``batchpoint_server_info{server_id,host,version}`` (always 1) names the server that answered the
scrape (its id, as ``job show`` gives each job's ``server``). One metric is this process's own: ``batchpoint_mini_batch_duration_seconds`` (histogram, label
``outcome`` ok | failed), the mini-batches this server ran since it started (from
``jobs.observers``); sum it over the servers. Also this process's own: ``batchpoint_warm_workers{deployment}``
and ``batchpoint_warm_worker_memory_bytes{deployment}`` (gauges: the fenced workers kept warm for a
deployment's next job and their resident memory, ``engines/warm.py``; ``batchpoint_ray_warm_actors{deployment}`` and
``batchpoint_ray_warm_actor_cpus{deployment}``: the Ray actors kept so, and the cluster CPUs they hold,
``engines/ray_warm.py``). A scrape needs ``jobs/read`` on the workspace (a
Reader key) unless ``BATCHPOINT_SERVER__METRICS_PUBLIC=true``.

Hook for other steps: anything that writes ``lifecycle.phase(store, job, "building environment",
"finished" | "failed", ...)`` is counted as an environment build; no other call is needed.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from sqlalchemy import func, select
from starlette.concurrency import run_in_threadpool

from batchpoint._version import __version__
from batchpoint.auth import permissions as P
from batchpoint.engines.planning import MiniBatchOutcome
from batchpoint.jobs.observers import add_mini_batch_listener, remove_mini_batch_listener
from batchpoint.jobs.states import JobStatus
from batchpoint.server.security import check_metrics_access
from batchpoint.store.sql import SqlMetadataStore
from batchpoint.store.tables import JobEventRow, JobRow

ENVIRONMENT_PHASE = "building environment"
DURATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0)

router = APIRouter(tags=["metrics"])


class DatabaseCollector:
    """The database's numbers, read at each scrape."""

    def __init__(self, store: SqlMetadataStore) -> None:
        self.store = store

    def describe(self) -> list[Metric]:
        return []  # collected at scrape time only

    def collect(self) -> Iterator[Metric]:
        with self.store.session() as s:
            by_status = dict(s.execute(select(JobRow.status, func.count()).group_by(JobRow.status)).all())
            sums = s.execute(select(
                func.coalesce(func.sum(JobRow.mini_batches_completed), 0), func.coalesce(func.sum(JobRow.mini_batches_failed), 0),
                func.coalesce(func.sum(JobRow.files_completed), 0), func.coalesce(func.sum(JobRow.files_failed), 0),
                func.coalesce(func.sum(JobRow.rows), 0))).one()
            phases = list(s.scalars(select(JobEventRow.data).where(JobEventRow.type == "phase")))
        jobs = GaugeMetricFamily("batchpoint_jobs", "Jobs by status (the database's)", labels=["status"])
        for status in JobStatus:
            if status not in (JobStatus.NOT_STARTED, JobStatus.CRASHED):
                jobs.add_metric([status.value], by_status.get(status.value, 0))
        yield jobs
        batches = CounterMetricFamily("batchpoint_mini_batches", "Mini-batches finished, all jobs", labels=["outcome"])
        batches.add_metric(["completed"], sums[0])
        batches.add_metric(["failed"], sums[1])
        yield batches
        files = CounterMetricFamily("batchpoint_files", "Files scored and failed, all jobs", labels=["outcome"])
        files.add_metric(["scored"], sums[2])
        files.add_metric(["failed"], sums[3])
        yield files
        yield CounterMetricFamily("batchpoint_rows_scored", "Rows scored, all jobs", value=sums[4])
        builds = CounterMetricFamily("batchpoint_environment_builds", "Environment builds (the 'building "
                                     "environment' phase), by outcome", labels=["outcome"])
        for outcome in ("finished", "failed"):
            builds.add_metric([outcome], sum(1 for d in phases if (d or {}).get("phase") == ENVIRONMENT_PHASE
                                              and d.get("state") == outcome))
        yield builds


class WarmCollector:
    """This process's warm workers (``engines/warm.py``), per deployment: how many, their memory."""

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        from batchpoint.engines.warm import POOL

        shown = POOL.snapshot()
        count = GaugeMetricFamily("batchpoint_warm_workers", "Fenced workers kept warm for the next job of a "
                                  "deployment (this server's)", labels=["deployment"])
        memory = GaugeMetricFamily("batchpoint_warm_worker_memory_bytes", "Resident memory of the warm workers "
                                   "(this server's)", labels=["deployment"])
        for deployment, (n, rss) in sorted(shown.items()):
            count.add_metric([deployment], n)
            memory.add_metric([deployment], rss)
        yield count
        yield memory


class RayWarmCollector:
    """This process's parked Ray actors (``engines/ray_warm.py``), per deployment: how many, their CPUs."""

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        from batchpoint.engines.ray_warm import RAY_POOL

        shown = RAY_POOL.snapshot()
        count = GaugeMetricFamily("batchpoint_ray_warm_actors", "Ray actors kept warm for the next job of a "
                                  "deployment (this server's)", labels=["deployment"])
        cpus = GaugeMetricFamily("batchpoint_ray_warm_actor_cpus", "Ray cluster CPUs the warm actors hold "
                                 "(this server's)", labels=["deployment"])
        for deployment, (n, held) in sorted(shown.items()):
            count.add_metric([deployment], n)
            cpus.add_metric([deployment], held)
        yield count
        yield cpus


class Metrics:
    """One server's registry: the database collector and this process's mini-batch durations."""

    def __init__(self, store: SqlMetadataStore, server_id: str | None = None, host: str = "") -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(DatabaseCollector(store))  # type: ignore[arg-type]
        self.registry.register(WarmCollector())  # type: ignore[arg-type]
        self.registry.register(RayWarmCollector())  # type: ignore[arg-type]
        if server_id:  # which server answered the scrape (server/instance.py): 1, its id as a label
            Gauge("batchpoint_server_info", "This server: its id (the jobs' server), host and version",
                  ["server_id", "host", "version"], registry=self.registry).labels(server_id, host, __version__).set(1)
        self.durations = Histogram("batchpoint_mini_batch_duration_seconds",
                                   "Seconds a mini-batch took to score (this server's, since it started)",
                                   ["outcome"], buckets=DURATION_BUCKETS, registry=self.registry)
        self._children: dict[str, Any] = {}  # the histogram's child per outcome label, made when first seen
        add_mini_batch_listener(self.on_mini_batch)

    def on_mini_batch(self, job_name: str, outcome: MiniBatchOutcome) -> None:
        label = "ok" if outcome.error is None else "failed"
        child = self._children.get(label)
        if child is None:  # labels() takes a lock and hashes its labels: once per label, not per mini-batch
            child = self._children[label] = self.durations.labels(label)
        child.observe(max(0.0, outcome.seconds))

    def close(self) -> None:
        remove_mini_batch_listener(self.on_mini_batch)

    def render(self) -> bytes:
        return generate_latest(self.registry)


def metrics_for(app: Any) -> Metrics:
    state = app.state
    if getattr(state, "metrics", None) is None:
        state.metrics = Metrics(state.ctx.store, state.ctx.dispatcher.owner)
    return state.metrics


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request) -> Response:
    """Prometheus text; ``jobs/read`` on the workspace (Reader) unless the setting opens it."""
    await run_in_threadpool(check_metrics_access, request, P.JOBS_READ)
    body = await run_in_threadpool(metrics_for(request.app).render)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
