"""The job runner's one call: the interpreter a job's workers run in, prepared in ``Preparing``.

:func:`prepare_environment` resolves the deployment's environment (``resolve.py``), writes what it
decided to the job's ``logs/environment.log`` (source, requirements, what cannot be honoured and
what was used instead, the resolution rule, uv's whole output), builds or reuses it
(``build.py``) and returns its Python — or None for the server's own environment. ``on_phase``
reports the ``building environment`` phase (started / finished with its time / failed); a build
that fails raises :class:`EnvironmentBuildError` with the installer's error, before any mini-batch.

With ``env_manager: local``, an MLflow model's requirements are checked against the server's own
packages (``importlib.metadata`` + ``packaging`` specifiers) and the job is refused naming each
requirement the server does not meet.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from batchpoint._internal.clock import utcnow
from batchpoint.environments.assets import EnvironmentAssets
from batchpoint.environments.build import Builder, EnvironmentBuildError
from batchpoint.environments.resolve import model_requirements, resolve
from batchpoint.environments.spec import EnvironmentSpec, with_worker_needs
from batchpoint.settings import Settings
from batchpoint.store.sql import SqlMetadataStore

logger = logging.getLogger(__name__)

LOG_NAME = "environment.log"
PHASE = "building environment"

#: ``on_phase(state, message, **data)``; state: started | finished | failed
PhaseSink = Callable[..., Any]


class _Log:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.file = open(path, "a", encoding="utf-8")

    def __call__(self, line: str) -> None:
        self.file.write(f"{utcnow().strftime('%H:%M:%S')} {line}\n")
        self.file.flush()

    def close(self) -> None:
        self.file.close()


def unmet_requirements(requirements: list[str]) -> list[str]:
    """Each requirement the server's own environment does not meet, with what it has instead."""
    unmet = []
    for line in requirements:
        req = Requirement(line)
        if req.marker is not None and not req.marker.evaluate():
            continue
        names = [req.name] + (["mlflow-skinny"] if canonicalize_name(req.name) == "mlflow" else [])
        found = None
        for name in names:
            try:
                found = (name, metadata.version(name))
                break
            except metadata.PackageNotFoundError:
                continue
        if found is None:
            unmet.append(f"{line} (not installed)")
        elif req.specifier and not req.specifier.contains(found[1], prereleases=True):
            unmet.append(f"{line} (the server has {found[0]} {found[1]})")
    return unmet


def check_local(scorer: dict[str, Any]) -> None:
    reqs = model_requirements(scorer.get("model_dir"))
    unmet = unmet_requirements(reqs)
    if unmet:
        raise EnvironmentBuildError(
            "env_manager: local runs the model in the server's own environment, which does not meet the model's "
            f"requirements: {'; '.join(unmet)}. Remove env_manager: local to build the model's own environment, "
            "or install those versions on the server", details={"unmet_requirements": unmet})


def prepare_environment(settings: Settings, store: SqlMetadataStore, deployment: dict[str, Any],
                        scorer: dict[str, Any], logs_dir: Path, on_phase: PhaseSink) -> str | None:
    """The Python for the job's workers (None: the server's own, the forkserver)."""
    spec = resolve(deployment, scorer, EnvironmentAssets(settings, store))
    if spec.from_model and not unmet_requirements(model_requirements(scorer.get("model_dir"))):
        # the server's own packages are exactly what the model asks for: no build, the fast path
        logger.info("the server's environment meets every requirement of %s; no environment is built", spec.source)
        return None
    needs_mlflow = not scorer.get("scoring_script")
    spec = with_worker_needs(spec, needs_mlflow=needs_mlflow)
    if spec.use_server:
        if deployment.get("env_manager") == "local":
            check_local(scorer)
        if spec.notes or deployment.get("env_manager") == "local":
            log = _Log(logs_dir / LOG_NAME)
            try:
                log(f"environment: {spec.source}")
                for note in spec.notes:
                    log(f"note: {note}")
            finally:
                log.close()
        return None
    return _build(settings, spec, logs_dir, on_phase)


def _build(settings: Settings, spec: EnvironmentSpec, logs_dir: Path, on_phase: PhaseSink) -> str:
    started = time.monotonic()
    log = _Log(logs_dir / LOG_NAME)
    on_phase("started", f"building environment (from {spec.source})")
    try:
        log(f"environment from {spec.source}")
        for req in spec.requirements:
            log(f"requirement: {req}")
        for note in spec.notes:
            log(f"note: {note}")
        builder = Builder(settings)
        built = builder.ensure(spec, log, on_wait=lambda: on_phase(
            "started", f"building environment: waiting for another job building {builder.path_for(spec).name}"))
    except EnvironmentBuildError as exc:
        log(f"FAILED: {exc}")
        message = f"building the environment from {spec.source} failed: {exc}"
        on_phase("failed", message, seconds=round(time.monotonic() - started, 2))
        raise EnvironmentBuildError(message, details={**exc.details, "log": f"logs/{LOG_NAME}"}) from exc
    except Exception as exc:
        log(f"FAILED: {type(exc).__name__}: {exc}")
        on_phase("failed", f"building the environment from {spec.source} failed: {exc}")
        raise
    finally:
        log.close()
    seconds = round(time.monotonic() - started, 2)
    what = "built" if built.built_now else "found in the cache"
    on_phase("finished", f"environment {built.path.name} {what} in {seconds} s", seconds=seconds,
             environment=built.path.name, built=built.built_now)
    return built.python
