"""This server's workers kept warm for the deployments' next jobs, as the web page's servers view
shows them: the local pool's fenced workers (``engines/warm.py``: per deployment, how many, their
resident memory and the idle time each has left) and the Ray actors parked on a cluster
(``engines/ray_warm.py``: how many, the cluster CPUs they hold, the idle time left). Each server
keeps its own: the page shows those of the server that answers it."""

from __future__ import annotations

from typing import Any

from batchpoint.engines.ray_warm import RAY_POOL
from batchpoint.engines.warm import POOL


def warm_workers() -> list[dict[str, Any]]:
    """Per deployment (``<endpoint>/<deployment>``, by name): ``workers``, ``memory_bytes``,
    ``idle_left_s`` (each parked worker's seconds before its idle timeout, the soonest first)."""
    return POOL.view()


def warm_actors() -> list[dict[str, Any]]:
    """Per deployment (by name) with Ray actors parked: ``actors``, ``cpus`` (the cluster CPUs they
    hold), ``idle_left_s`` (the soonest first)."""
    return RAY_POOL.view()
