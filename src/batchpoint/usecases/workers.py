"""This server's workers kept warm for the deployments' next jobs (``engines/warm.py``), as the web
page's servers view shows them: per deployment, how many, their resident memory and the idle time
each has left. Each server keeps its own: the page shows the warm workers of the server that answers it."""

from __future__ import annotations

from typing import Any

from batchpoint.engines.warm import POOL


def warm_workers() -> list[dict[str, Any]]:
    """Per deployment (``<endpoint>/<deployment>``, by name): ``workers``, ``memory_bytes``,
    ``idle_left_s`` (each parked worker's seconds before its idle timeout, the soonest first)."""
    return POOL.view()
