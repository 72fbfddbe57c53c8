"""The worker side: what runs in a worker process, in the server's interpreter or another one.

* :mod:`batchpoint.worker.protocol` — the versioned JSON messages between engine and worker.
* :mod:`batchpoint.worker.loop` — ``init()`` once, then score mini-batches (:func:`~.loop.serve`).
* :mod:`batchpoint.worker.files` — fetching a mini-batch's files, writing its part.
* ``python -m batchpoint.worker --fd N`` — a worker in another interpreter, serving the engine
  over the inherited socket ``N``; ``--selfcheck`` reports what the worker side imports.

The worker side imports the standard library, pandas/pyarrow, the scorer (:mod:`batchpoint.scoring`),
:mod:`batchpoint.storage`, :mod:`batchpoint._internal` and :mod:`batchpoint.exceptions` — never the
server side (:data:`SERVER_SIDE`), so it can run in a deployment's own environment.
"""

from __future__ import annotations

#: module prefixes the worker side must never import
SERVER_SIDE = ("fastapi", "starlette", "uvicorn", "sqlalchemy", "alembic", "batchpoint.server", "batchpoint.jobs",
               "batchpoint.store", "batchpoint.workspace", "batchpoint.auth", "batchpoint.engines")


def server_side_modules(modules: list[str]) -> list[str]:
    """The names in ``modules`` that belong to the server side."""
    return sorted(m for m in modules if any(m == p or m.startswith(p + ".") for p in SERVER_SIDE))
