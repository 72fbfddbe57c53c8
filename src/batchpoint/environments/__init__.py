"""Per-deployment Python environments, built with uv (docs/environments.md).

* :mod:`~batchpoint.environments.spec` — conda files, requirement lists and MLflow's
  ``python_env.yaml`` → one :class:`~.spec.EnvironmentSpec` (requirements, notes on what cannot
  be honoured, the hash that keys the cache); pure parsing.
* :mod:`~batchpoint.environments.resolve` — which environment a deployment's job uses (the
  deployment's, the MLflow model's, or the server's own).
* :mod:`~batchpoint.environments.index` — the package index's file data: the exclude-newer rule
  and the "no build for this Python" message.
* :mod:`~batchpoint.environments.build` — the uv build, cached by hash, one builder per hash.
* :mod:`~batchpoint.environments.worker_copy` — Batchpoint's worker side in an environment,
  without the server's dependencies.
* :mod:`~batchpoint.environments.assets` — registered environments and what was built for them.
* :mod:`~batchpoint.environments.prepare` — the job runner's call (:func:`prepare_environment`).

For a test or a tool that needs an environment directly: ``build_environment(settings,
requirements)`` returns the environment's Python.
"""

from __future__ import annotations

from pathlib import Path

from batchpoint.environments.build import Builder, EnvironmentBuildError
from batchpoint.environments.prepare import prepare_environment
from batchpoint.environments.spec import EnvironmentSpec, conda_python, parse_conda, with_worker_needs
from batchpoint.settings import Settings

__all__ = ["EnvironmentBuildError", "EnvironmentSpec", "build_environment", "prepare_environment"]


def build_environment(settings: Settings, requirements: list[str] | None = None, conda_file: dict | str | None = None,
                      log: Path | None = None, add_worker_needs: bool = True) -> str:
    """Build (or reuse) the environment of ``requirements`` or a conda file; its Python's path."""
    reqs = list(requirements or [])
    notes: list[str] = []
    python = None
    if conda_file is not None:
        more, notes = parse_conda(conda_file, "conda_file")
        reqs += more
        python = conda_python(conda_file)
    spec = EnvironmentSpec("build_environment()", tuple(reqs), tuple(notes), python=python)
    if add_worker_needs:
        spec = with_worker_needs(spec, needs_mlflow=False)
    sink = open(log, "a") if log else None
    try:
        built = Builder(settings).ensure(spec, (lambda line: sink.write(line + "\n")) if sink else (lambda line: None))
    finally:
        if sink:
            sink.close()
    return built.python
