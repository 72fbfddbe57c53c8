"""Loading an MLflow model in a cold worker without the work ``mlflow.pyfunc.load_model`` does not need.

A fenced worker (``engines/sandbox.py``) and a Ray actor are fresh interpreters: they import MLflow
and load the model themselves, once per job. Measured on the heart model (scikit-learn flavour,
docs/performance.md, "Fenced workers"): ``load_model`` spends ~0.3 s (0.8 s under a profiler) on
its check of the model's ``requirements.txt`` against the environment (the warning "Detected one
or more mismatches …"), which first maps every module of every installed distribution to its package
(``importlib_metadata.packages_distributions()``: every file of every installed distribution
stat'ed). That map is used only to find a package's import name when its distribution is *not*
installed (``importlib_metadata.version`` failed), where the full scan finds nothing either. So
during the load the map starts from MLflow's own entries alone: the same mismatches are warned
about, with the same versions; afterwards it is put back as it was (unset), so that anything later
that needs the whole map (a script inferring a model's requirements) builds it as before.

The load also runs with the cyclic garbage collector off (:func:`without_gc`, on again afterwards;
as ``python -m batchpoint.worker`` imports the worker side): the imports make almost no garbage, and
the collections they trigger cost ~15 % of the start-up.

The package map is only changed in an interpreter that has not built it yet (the unfenced
forkserver builds it in its preload, ``worker/preload.py``, and is left as it is), and MLflow's own
path is taken when its internals are not as expected (another MLflow version).

Not cut, because MLflow needs it: ``import mlflow`` imports ``mlflow.genai`` (~0.2 s), which looks
unused by a pyfunc load, but ``mlflow.data`` imports from it while ``mlflow`` initialises; deferring
it (a lazy module) ends in a circular-import error there.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator
from typing import Any


@contextlib.contextmanager
def _known_packages() -> Iterator[None]:
    """MLflow's module → package map, from its own entries alone, for the duration (see the module
    docstring); nothing when the map is built already or MLflow's internals differ."""
    try:
        from mlflow.utils import requirements_utils as ru

        fill = (getattr(ru, "_MODULES_TO_PACKAGES", False) is None and getattr(ru, "_PACKAGES_TO_MODULES", False) is None
                and isinstance(getattr(ru, "MLFLOW_MODULES_TO_PACKAGES", None), dict))
    except Exception:  # noqa: BLE001
        fill = False
    if not fill:
        yield
        return
    known: dict[str, list[str]] = {k: list(v) for k, v in ru.MLFLOW_MODULES_TO_PACKAGES.items()}
    known.update({k: list(v) for k, v in (getattr(ru, "DATABRICKS_MODULES_TO_PACKAGES", None) or {}).items()})
    ru._MODULES_TO_PACKAGES = known
    try:
        yield
    finally:
        ru._MODULES_TO_PACKAGES = None
        ru._PACKAGES_TO_MODULES = None


@contextlib.contextmanager
def without_gc() -> Iterator[None]:
    """The cyclic garbage collector off for the duration, then as it was. Importing MLflow and
    scikit-learn allocates hundreds of thousands of objects and almost no garbage; the collections
    they trigger are ~15 % of a cold worker's start-up CPU (measured in a fenced worker: 2.1 s →
    1.8 s, 3 runs each). Reference counting still frees everything that is not in a cycle."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def load_pyfunc(model_dir: str) -> Any:
    """``mlflow.pyfunc.load_model(model_dir)``, without the start-up work it does not need: MLflow's
    scan of every installed distribution (see the module docstring), and the garbage collector's
    passes over the imports (:func:`without_gc`)."""
    with without_gc():
        import mlflow.pyfunc

        with _known_packages():
            return mlflow.pyfunc.load_model(model_dir)
