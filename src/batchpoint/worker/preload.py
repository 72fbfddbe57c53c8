"""Imported once by the worker forkserver (``engines/launchers.py``), so every forked worker starts
warm: the heavy libraries and the worker side are imported, and MLflow's package map (which its
model loader builds on first use by scanning every installed distribution, ~0.5 s) is already
filled in. Only the worker side: a forked worker holds none of the server's modules."""

from __future__ import annotations

import gc
import importlib
import logging

log = logging.getLogger(__name__)

MODULES = ["pandas", "pyarrow.parquet", "mlflow.pyfunc", "mlflow.sklearn", "sklearn.ensemble",
           "sklearn.pipeline", "sklearn.compose", "sklearn.preprocessing", "sklearn.linear_model",
           # what a pandas model's first predict() imports (scikit-learn's dataframe checks through
           # narwhals, pyarrow's pandas bridge): ~15 ms of each forked worker's first mini-batch
           "narwhals._pandas_like.namespace", "narwhals._pandas_like.dataframe", "narwhals._interchange.dataframe",
           "narwhals.stable.v2._namespace",
           "pyarrow.pandas_compat",
           "batchpoint.worker.loop", "batchpoint.scoring.scorers", "batchpoint.storage.registry",
           "batchpoint.storage.local"]


def warm() -> None:
    for name in MODULES:
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001 - optional libraries may be missing
            log.debug("preload of %s skipped", name)
    try:  # the storage kinds' declarations, which a worker's first Fetcher would import (~15 ms a worker)
        from batchpoint.storage.registry import storage_kinds

        storage_kinds()
    except Exception:  # noqa: BLE001 - only an optimisation: the worker imports them itself
        log.debug("preload of the storage kinds skipped", exc_info=True)
    try:
        from mlflow.utils import requirements_utils

        requirements_utils._init_packages_to_modules_map()
    except Exception:  # noqa: BLE001 - a private helper of MLflow; only an optimisation
        pass
    # Everything imported so far is the forkserver's for good: out of the collector's view, so that a
    # forked worker's first full collection does not walk (and copy, page by page) the whole preloaded
    # heap. Measured: with the storage kinds preloaded and no freeze, a worker's first mini-batch of
    # the heart bench took 0.36-0.51 s instead of 0.21-0.27 s (the collection fell inside it).
    gc.freeze()


warm()
