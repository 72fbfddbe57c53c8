"""The forkserver's target. The worker loop (and pandas, MLflow, the scorer with it) is imported
in the worker — already loaded there by the forkserver's preload — never in the server process,
which only names this function."""

from __future__ import annotations

from multiprocessing.connection import Connection


def forked_worker(conn: Connection) -> None:
    from batchpoint.worker.loop import serve  # in the child: keeps the server process free of pandas/MLflow

    serve(conn)
