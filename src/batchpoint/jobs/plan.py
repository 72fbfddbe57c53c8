"""A job's plan: everything its run needs, pinned when the job is created.

:class:`JobPlan` is built once, by the invoke (``jobs/submit.py``) — or by a rerun, from the
first job's plan (``jobs/rerun.py``) — and stored with the job in its ``plan`` column as JSON with
a ``version``. The runner (``jobs/runner.py``) executes it, for the first run and for every resume
after a crash, and reads no live workspace row: not the deployment, not its endpoint, not its
compute. A deployment updated (new environment, compute or code) or deleted while the job waits
or before it resumes changes nothing of the job.

=================  =============================================================================
what               pinned as
=================  =============================================================================
inputs             each input as its invoke resolved it (``ResolvedInput.pin()``: asset version,
                   data store, location, path, credential kind — never a secret)
scorer             the model's version and folders, the code snapshot and the SHA-256 of its files
environment        the deployment's ``env_manager`` and environment (a label such as ``@latest``
                   resolved to its version), or its inline environment
engine             the engine's name and the compute's stored spec (its secrets as stored:
                   encrypted with the server's key, decrypted only in the server's memory)
identity           who invoked and whose compute identity reads the inputs (the caller's role
                   assignments are read when the job runs: a revoked role takes effect)
output             data store, folder, file name, and the output action (the name of the
                   output-writer strategy: ``append_row`` or ``summary_only``)
policy and limits  mini-batch size, retry settings, error threshold, workers, ``init()`` timeout,
                   logging level, environment variables
rerun              for a rerun (``jobs/rerun.py``), its place in the rerun chain: the job it reruns,
                   whether only the failed files, how many files, the job whose parts come first
                   in its output (``merge_with``), whether it finishes a job that failed writing
                   its output; None for an invoked job
=================  =============================================================================

**Versions.** ``PLAN_VERSION`` is written with every plan. An older version is upgraded when it is
read, one step per version (:data:`UPGRADES`), so every stored job still loads:

* version 1 had no ``rerun``: a rerun's chain was kept in the job's ``settings`` column
  (``settings.rerun``), whence the upgrade to version 2 reads it (``row`` given) — none without it.
* A row without a version holds the plan of a job created before plans existed (``{"workers",
  "instance_count", "scorer", "experiment_name"}``, with the rest in its ``settings``, ``inputs`` and
  ``outputs`` columns): :meth:`JobPlan.from_row` converts it, leaving the environment and engine
  unpinned (``pinned`` is False); the runner pins those from the deployment once and writes the
  plan back.

A newer version than this server knows is refused, naming both.

Every field is immutable: nested mappings are read-only views and lists are tuples.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from batchpoint._internal.digest import tree_sha256
from batchpoint.engines.planning import RetryPolicy
from batchpoint.entities import BatchDeploymentOutputAction
from batchpoint.exceptions import ValidationError

__all__ = [
    "PLAN_VERSION", "ComputePlan", "EnginePlan", "EnvironmentPlan", "IdentityPlan", "InputPlan", "JobPlan",
    "Limits", "OutputPlan", "RerunPlan", "RetryPlan", "ScorerPlan", "UPGRADES", "code_hash",
]

#: 2: ``rerun`` (the rerun chain, before in the job's ``settings.rerun``)
PLAN_VERSION = 2
LOCAL_ENGINE = "local"

_EMPTY: Mapping[str, Any] = MappingProxyType({})


def frozen(value: Any) -> Any:
    """``value`` with every dict a read-only mapping and every list a tuple (JSON values only)."""
    if isinstance(value, Mapping):
        return MappingProxyType({str(k): frozen(v) for k, v in value.items()})
    if isinstance(value, (list, tuple)):
        return tuple(frozen(v) for v in value)
    return value


def thawed(value: Any) -> Any:
    """The JSON-able form of a :func:`frozen` value (dicts and lists again)."""
    if isinstance(value, Mapping):
        return {k: thawed(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return [thawed(v) for v in value]
    return value


def code_hash(folder: str | Path | None) -> str | None:
    """``sha256:<hex>`` over a code snapshot's files (``_internal/digest.py``); None without one."""
    if not folder or not Path(folder).is_dir():
        return None
    return f"sha256:{tree_sha256(folder)}"


@dataclass(frozen=True)
class InputPlan:
    """One input: its key, the text given at invoke (shown, never resolved again) and its pin
    (``ResolvedInput.pin()``; None only for a job invoked before inputs were pinned)."""

    key: str
    path: str
    type: str | None = None
    pin: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class ScorerPlan:
    """The model version and the folders the workers load, and the code snapshot with its hash."""

    model: str | None
    azureml_model_dir: str
    model_dir: str
    code_dir: str | None = None
    scoring_script: str | None = None
    code_hash: str | None = None

    def worker_config(self) -> dict[str, str]:
        """What a worker's scorer is made from (``worker/loop.make_scorer``)."""
        config = {"azureml_model_dir": self.azureml_model_dir, "model_dir": self.model_dir}
        if self.code_dir:
            config.update(code_dir=self.code_dir, scoring_script=self.scoring_script or "")
        return config


@dataclass(frozen=True)
class EnvironmentPlan:
    """The deployment's environment reference: ``env_manager`` and ``environment`` (an
    ``azureml:<name>:<version>`` reference or an inline environment; None: from the model)."""

    env_manager: str | None = None
    environment: Any = None

    def deployment_view(self) -> dict[str, Any]:
        """The two fields as a deployment's spec holds them (``environments.prepare_environment``)."""
        view: dict[str, Any] = {}
        if self.env_manager is not None:
            view["env_manager"] = self.env_manager
        if self.environment is not None:
            view["environment"] = thawed(self.environment)
        return view


@dataclass(frozen=True)
class ComputePlan:
    """A compute as it was stored at invoke: its name, its spec (no secrets) and its encrypted
    secret fields (a Ray cluster's token, an identity's client secret) as the store holds them."""

    name: str
    spec: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)
    secret: str | None = None


@dataclass(frozen=True)
class EnginePlan:
    """The engine that runs the job (``engines/base.py`` ``COMPUTE_ENGINES``) and its compute."""

    name: str = LOCAL_ENGINE
    compute: ComputePlan | None = None


@dataclass(frozen=True)
class IdentityPlan:
    """Who invoked (their role assignments are read at run time) and the compute whose identity
    reads the inputs (its identity is in the engine's compute snapshot)."""

    principal: str | None = None
    compute: str | None = None


@dataclass(frozen=True)
class OutputPlan:
    """Where the output goes and how it is written (``action``: an output-writer strategy's name)."""

    path: str
    datastore: str | None
    folder: str | None
    file_name: str
    action: str = BatchDeploymentOutputAction.APPEND_ROW


@dataclass(frozen=True)
class RetryPlan:
    max_retries: int = 3
    timeout_s: float = 30.0
    error_threshold: int = -1

    def policy(self) -> RetryPolicy:
        return RetryPolicy(self.max_retries, self.timeout_s, self.error_threshold)


@dataclass(frozen=True)
class Limits:
    instance_count: int = 1
    workers: int = 1
    init_timeout_s: float = 600.0


@dataclass(frozen=True)
class RerunPlan:
    """A rerun's place in its chain (``jobs/rerun.py``): the job it reruns (``of``), whether it scores
    only that job's failed and unscored files, how many files it scores, the job whose finished
    parts come first in its output (``merge_with``: its output is that job's assembled parts, then
    its own, ``jobs/assembly.py`` ``merge_chain``), and whether it finishes a job that failed
    writing its output (``finishes``: it writes to that job's output location)."""

    of: str
    failed_only: bool = False
    files: int = 0
    merge_with: str | None = None
    finishes: bool = False

    def view(self) -> dict[str, Any]:
        """As clients are shown it, in the job's ``settings.rerun`` (``finishes`` only when true)."""
        shown: dict[str, Any] = {"of": self.of, "failed_only": self.failed_only, "files": self.files,
                                 "merge_with": self.merge_with}
        return {**shown, "finishes": True} if self.finishes else shown

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> RerunPlan | None:
        if not data or not data.get("of"):
            return None
        return cls(of=str(data["of"]), failed_only=bool(data.get("failed_only")), files=int(data.get("files") or 0),
                   merge_with=data.get("merge_with") or None, finishes=bool(data.get("finishes")))


@dataclass(frozen=True)
class JobPlan:
    """Everything a job's run needs (see the module docstring). ``environment`` and ``engine`` are
    None only in the plan of a job created before plans existed (:attr:`pinned`)."""

    inputs: tuple[InputPlan, ...]
    scorer: ScorerPlan
    output: OutputPlan
    environment: EnvironmentPlan | None = None
    engine: EnginePlan | None = None
    identity: IdentityPlan = IdentityPlan()
    mini_batch_size: int = 10
    retry: RetryPlan = RetryPlan()
    limits: Limits = Limits()
    logging_level: str = "info"
    environment_variables: Mapping[str, str] = field(default_factory=lambda: _EMPTY)
    experiment_name: str | None = None
    #: a rerun's place in its rerun chain; None for an invoked job
    rerun: RerunPlan | None = None
    version: int = field(default=PLAN_VERSION)

    @property
    def pinned(self) -> bool:
        """Whether the environment and the engine are pinned (False: a job stored before plans)."""
        return self.environment is not None and self.engine is not None

    # -- JSON --------------------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        """The plan as stored in the job's ``plan`` column."""
        engine = None
        if self.engine is not None:
            compute = self.engine.compute
            engine = {"name": self.engine.name, "compute": None if compute is None else
                      {"name": compute.name, "spec": thawed(compute.spec), "secret": compute.secret}}
        return {
            "version": self.version,
            "inputs": [{"key": i.key, "path": i.path, "type": i.type, "pin": thawed(i.pin)} for i in self.inputs],
            "scorer": _fields(self.scorer),
            "environment": None if self.environment is None else {
                "env_manager": self.environment.env_manager, "environment": thawed(self.environment.environment)},
            "engine": engine,
            "identity": _fields(self.identity),
            "output": _fields(self.output),
            "mini_batch_size": self.mini_batch_size,
            "retry": _fields(self.retry),
            "limits": _fields(self.limits),
            "logging_level": self.logging_level,
            "environment_variables": thawed(self.environment_variables),
            "experiment_name": self.experiment_name,
            "rerun": None if self.rerun is None else _fields(self.rerun),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any], row: Any = None) -> JobPlan:
        """A plan from its JSON, an older version upgraded (:data:`UPGRADES`). Without ``version`` it
        is the plan of a job created before plans existed; ``row`` (the job's row) then gives its
        settings, inputs and output, as it gives a version 1 plan's rerun chain."""
        version = data.get("version")
        if version is None:
            return _from_legacy(data, row)
        if not isinstance(version, int) or isinstance(version, bool) or version > PLAN_VERSION or version < 1:
            raise ValidationError(f"the job's plan has version {version!r}; this server reads plan versions 1 to "
                                  f"{PLAN_VERSION} (a newer Batchpoint wrote it: run the job on a server of that version)")
        while version < PLAN_VERSION:
            data = UPGRADES[version](data, row)
            version += 1
        engine = data.get("engine")
        compute = (engine or {}).get("compute")
        environment = data.get("environment")
        return cls(
            version=version,
            inputs=tuple(InputPlan(i["key"], i["path"], i.get("type"), frozen(i.get("pin"))) for i in data["inputs"]),
            scorer=ScorerPlan(**data["scorer"]),
            environment=None if environment is None else EnvironmentPlan(
                environment.get("env_manager"), frozen(environment.get("environment"))),
            engine=None if engine is None else EnginePlan(engine["name"], None if compute is None else ComputePlan(
                compute["name"], frozen(compute.get("spec") or {}), compute.get("secret"))),
            identity=IdentityPlan(**data.get("identity") or {}),
            output=OutputPlan(**data["output"]),
            mini_batch_size=int(data["mini_batch_size"]),
            retry=RetryPlan(**data["retry"]),
            limits=Limits(**data["limits"]),
            logging_level=data.get("logging_level") or "info",
            environment_variables=frozen(data.get("environment_variables") or {}),
            experiment_name=data.get("experiment_name"),
            rerun=RerunPlan.from_json(data.get("rerun")),
        )

    @classmethod
    def from_row(cls, row: Any) -> JobPlan:
        """The plan of a stored job (``store.tables.JobRow``), whatever version wrote it."""
        return cls.from_json(row.plan or {}, row)


def _fields(value: Any) -> dict[str, Any]:
    return {name: getattr(value, name) for name in value.__dataclass_fields__}


def _settings_rerun(row: Any) -> Mapping[str, Any] | None:
    """The rerun chain a job stored before plan version 2 kept in its ``settings`` column."""
    settings = getattr(row, "settings", None) or {}
    found = settings.get("rerun") if isinstance(settings, Mapping) else None
    return found if isinstance(found, Mapping) else None


def _v1_to_v2(data: Mapping[str, Any], row: Any) -> dict[str, Any]:
    """Version 1 → 2: the rerun chain, from the job's ``settings.rerun`` (where version 1 kept it)."""
    rerun = _settings_rerun(row)
    return {**data, "version": 2, "rerun": None if rerun is None else dict(rerun)}


#: version → the step that upgrades a plan of that version (its JSON, the job's row) to the next
UPGRADES = {1: _v1_to_v2}


def _from_legacy(plan: Mapping[str, Any], row: Any) -> JobPlan:
    """A plan from what a job created before plans stored: ``plan`` {workers, instance_count,
    scorer, experiment_name} and the row's ``settings``, ``inputs`` and ``outputs`` columns."""
    settings: Mapping[str, Any] = getattr(row, "settings", None) or {}
    inputs: Mapping[str, Any] = getattr(row, "inputs", None) or {}
    score: Mapping[str, Any] = (getattr(row, "outputs", None) or {}).get("score") or {}
    scorer: Mapping[str, Any] = plan.get("scorer") or {}
    retry: Mapping[str, Any] = settings.get("retry_settings") or {}
    instance_count = int(plan.get("instance_count") or settings.get("instance_count") or 1)
    compute = None  # not known: the runner pins it (and the environment) from the deployment
    return JobPlan(
        version=PLAN_VERSION,
        inputs=tuple(InputPlan(key, spec.get("path", ""), spec.get("type"), frozen(spec.get("pinned")))
                     for key, spec in inputs.items()),
        scorer=ScorerPlan(model=None, azureml_model_dir=scorer.get("azureml_model_dir") or scorer.get("model_dir", ""),
                          model_dir=scorer.get("model_dir", ""), code_dir=scorer.get("code_dir"),
                          scoring_script=scorer.get("scoring_script")),
        output=OutputPlan(path=score.get("path", ""), datastore=getattr(row, "output_datastore", None),
                          folder=getattr(row, "output_folder", None),
                          file_name=settings.get("output_file_name") or score.get("file_name") or "predictions.csv",
                          action=settings.get("output_action") or BatchDeploymentOutputAction.APPEND_ROW),
        environment=None, engine=None,
        identity=IdentityPlan(principal=getattr(row, "created_by", None), compute=compute),
        mini_batch_size=int(settings.get("mini_batch_size") or 10),
        retry=RetryPlan(int(retry.get("max_retries", 3)), float(retry.get("timeout", 30)),
                        int(settings.get("error_threshold", -1))),
        limits=Limits(instance_count=instance_count, workers=int(plan.get("workers") or instance_count),
                      init_timeout_s=float(settings.get("init_timeout") or 600)),
        logging_level=settings.get("logging_level") or "info",
        environment_variables=frozen(settings.get("environment_variables") or {}),
        experiment_name=plan.get("experiment_name"),
        rerun=RerunPlan.from_json(_settings_rerun(row)),
    )
