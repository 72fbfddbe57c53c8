"""Invoke: turn a request into a queued job — or into a clear error, with no job left behind.

Everything that can be checked is checked here, before the job exists: the deployment, the
settings overrides, every input (resolved and its storage read once, so a bad credential fails in
seconds), the output location and the job name.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError as PydanticValidationError

from batchpoint._internal.ids import new_job_name
from batchpoint.engines.base import COMPUTE_ENGINES
from batchpoint.entities import BatchDeploymentSettings
from batchpoint.environments.assets import EnvironmentAssets
from batchpoint.identity.delegation import delegated_kind
from batchpoint.identity.rules import IdentityContext
from batchpoint.exceptions import ConflictError, InputError, NotFoundError, ValidationError
from batchpoint.jobs.output import check_no_other_job, check_output_location
from batchpoint.jobs import children, lifecycle
from batchpoint.jobs.plan import (
    ComputePlan, EnginePlan, EnvironmentPlan, IdentityPlan, InputPlan, JobPlan, Limits, OutputPlan, RetryPlan,
    ScorerPlan, code_hash, frozen, thawed,
)
from batchpoint.store.sql import SqlMetadataStore
from batchpoint.store.tables import JobRow
from batchpoint.uri.parse import DatastorePath, parse_input_uri
from batchpoint.workspace import EndpointService, WorkspaceService, model_layout
from batchpoint.workspace.endpoints import check_scoring_script

JOB_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$")
OVERRIDABLE = set(BatchDeploymentSettings.model_fields) | {"instance_count", "max_retries", "timeout"}
_OUTPUTS_LOCK = threading.Lock()


@dataclass
class InvokeRequest:
    inputs: dict[str, dict[str, Any]]
    deployment_name: str | None = None
    output_path: str | None = None
    output_file_name: str | None = None
    job_name: str | None = None
    overrides: dict[str, Any] = field(default_factory=dict)
    experiment_name: str | None = None  # Azure's default: the endpoint's name


#: Environment variables an invoke may not set (any letter case), for every role: they steer the
#: workers' own traffic, what they trust, the credentials and platform settings they run with, or
#: what their interpreter loads. (name test, why) — the first that matches names the reason. The
#: deployment's own ``environment_variables`` (set by whoever may change the deployment) may set them.
_PROXY = "routes the workers' HTTP traffic, and the storage credentials it carries, through a proxy"
_TRUST = "changes which TLS certificates the workers trust (or where TLS keys are written)"
_CLOUD = "sets the cloud credentials or platform settings the workers run with"
RESERVED_VARIABLES: tuple[tuple[Any, str], ...] = (
    (lambda n: n.endswith("_PROXY") or n == "PROXY", _PROXY),
    (lambda n: n in {"REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE", "SSL_CERT_DIR", "SSLKEYLOGFILE",
                     "NODE_EXTRA_CA_CERTS", "GRPC_DEFAULT_SSL_ROOTS_FILE_PATH"}
     or n.endswith("_CA_BUNDLE") or n.startswith("OPENSSL_"), _TRUST),
    (lambda n: n.startswith(("AZURE_", "AZUREML_", "AWS_", "BOTO_", "MSI_", "IDENTITY_", "IMDS_", "GOOGLE_",
                             "GCE_", "CLOUDSDK_")), _CLOUD),
    (lambda n: n.startswith("BATCHPOINT_"), "is a setting of Batchpoint itself"),
    (lambda n: n.startswith(("RAY_", "GRPC_")), "changes which Ray cluster (and how) the workers talk to"),
    (lambda n: n.startswith("PYTHON"), "changes what the workers' Python interpreter loads and runs at start-up"),
    (lambda n: n.startswith(("LD_", "DYLD_")), "changes which shared libraries the workers load"),
    (lambda n: n in {"PATH", "HOME"}, "changes which programs and configuration files the workers use"),
)
_VARIABLE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,255}$")


def check_invoke_variables(variables: Any) -> None:
    """Refuse an invoke's ``settings.environment_variables`` that the workers' own safety depends on
    (``RESERVED_VARIABLES``): a 400 naming the variable and why, whoever invokes."""
    if variables is None:
        return
    if not isinstance(variables, dict):
        raise ValidationError("settings.environment_variables must be an object of names to text values, "
                              'e.g. {"LOG_LEVEL": "debug"}')
    for name, value in variables.items():
        if not isinstance(name, str) or not _VARIABLE_NAME.match(name):
            raise ValidationError(
                f"environment variable name {quoted(name)} is not valid: a letter or '_' first, then letters, "
                "digits, '_', '.' or '-' (up to 256 characters)")
        if not isinstance(value, str) or "\x00" in value:
            raise ValidationError(f"environment variable {name}: the value must be text without NUL characters "
                                  f"(got {type(value).__name__})")
        for matches, why in RESERVED_VARIABLES:
            if matches(name.upper()):
                raise ValidationError(
                    f"environment variable {name} cannot be set at invoke: it {why}. Variables like it (*_PROXY, "
                    "NO_PROXY, REQUESTS_CA_BUNDLE, SSL_CERT_*, AZURE_*, AZUREML_*, AWS_*, BATCHPOINT_*, RAY_*, "
                    "PYTHON*, LD_*, PATH, HOME) may only be set in the deployment's own settings.environment_variables "
                    "(by whoever may change the deployment)", details={"variable": name})


def quoted(value: Any, limit: int = 200) -> str:
    """``value`` as an error message quotes it: at most ``limit`` characters, then how long it was."""
    text = value if isinstance(value, str) else repr(value)
    return repr(text) if len(text) <= limit else repr(text[:limit]) + f"…({len(text)} chars)"


def merged_settings(spec: dict[str, Any], overrides: dict[str, Any]) -> tuple[dict[str, Any], int]:
    """The deployment's settings with the invoke overrides applied; returns (settings, instance_count).
    ``environment_variables`` given at invoke are added to the deployment's own (checked by
    :func:`check_invoke_variables`), never replace them: an invoke cannot drop a deployment's proxy."""
    unknown = sorted(set(overrides) - OVERRIDABLE)
    if unknown:
        raise ValidationError(f"cannot override {', '.join(unknown)} at invoke; valid: {', '.join(sorted(OVERRIDABLE))}")
    settings = dict(spec.get("settings") or {})
    if "environment_variables" in overrides:
        check_invoke_variables(overrides["environment_variables"])
        overrides = {**overrides, "environment_variables": {**(settings.get("environment_variables") or {}),
                                                            **(overrides["environment_variables"] or {})}}
    retry = dict(settings.get("retry_settings") or {})
    for key in ("max_retries", "timeout"):
        if key in overrides:
            retry[key] = overrides[key]
    settings["retry_settings"] = retry
    settings.update({k: v for k, v in overrides.items() if k in BatchDeploymentSettings.model_fields})
    instance_count = overrides.get("instance_count", (spec.get("resources") or {}).get("instance_count", 1))
    try:
        checked = BatchDeploymentSettings(**settings).model_dump(mode="json")
        if isinstance(instance_count, bool) or not isinstance(instance_count, (int, str)):
            raise ValueError(f"instance_count must be a whole number, not {str(instance_count).lower()[:50]}")
        instance_count = int(instance_count)
    except (PydanticValidationError, TypeError, ValueError) as exc:
        raise ValidationError(f"invalid setting at invoke: {_first_error(exc)}") from exc
    if instance_count < 1:
        raise ValidationError(f"instance_count must be at least 1 (got {instance_count})")
    return checked, instance_count


def _first_error(exc: Exception) -> str:
    if isinstance(exc, PydanticValidationError):
        err = exc.errors()[0]
        return f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}"
    return str(exc)


def identity_for(ws: WorkspaceService, engine: EnginePlan, principal: str | None, assignments: list[Any]) -> IdentityContext:
    """Who reads a job's inputs: its invoker (with ``assignments``) and its compute's identity, as
    pinned in ``engine``'s compute snapshot (no compute row is read)."""
    compute = engine.compute
    identity = ws.identity_of_compute(thawed(compute.spec), compute.secret) if compute is not None else None
    return IdentityContext(principal_id=principal, assignments=assignments,
                           compute=compute.name if compute is not None else None, compute_identity=identity)


def pin_engine(ws: WorkspaceService, deployment_spec: dict[str, Any]) -> EnginePlan:
    """The deployment's engine and a snapshot of its compute (the local pool without one)."""
    name = (deployment_spec.get("compute") or "").removeprefix("azureml:")
    if not name:
        return EnginePlan()
    row = ws.store.get_compute(name)
    return EnginePlan(COMPUTE_ENGINES.get(str(row.spec.get("type") or ""), "local"),
                      ComputePlan(row.name, frozen(row.spec), row.secret))


def pin_environment(ws: WorkspaceService, deployment_spec: dict[str, Any]) -> EnvironmentPlan:
    """The deployment's environment; a registered one by its version (a label such as ``@latest``
    is resolved now, so a newer version registered while the job waits is not used)."""
    environment = deployment_spec.get("environment")
    match = _ENV_LABEL.match(environment) if isinstance(environment, str) else None
    if match:
        try:
            env = EnvironmentAssets(ws.settings, ws.store).get(match.group("name"), label=match.group("label"))
            environment = f"azureml:{env.name}:{env.version}"
        except NotFoundError:
            pass  # the run names what is missing, as it always did
    return EnvironmentPlan(deployment_spec.get("env_manager"), frozen(environment))


#: an environment reference by label (or by name only: its latest version)
_ENV_LABEL = re.compile(r"^(?:azureml:)?(?P<name>[A-Za-z0-9][A-Za-z0-9_.-]*)(?:@(?P<label>[A-Za-z0-9_.-]+))?$")


def plan_job(ws: WorkspaceService, deployment_spec: dict[str, Any], *, inputs: dict[str, dict[str, Any]],
             settings: dict[str, Any], output: OutputPlan, workers: int, instance_count: int,
             principal: str | None, experiment_name: str | None, engine: EnginePlan | None = None) -> JobPlan:
    """The job's :class:`JobPlan`: the deployment's scorer, environment and engine pinned now, with
    the resolved ``inputs`` and the checked ``settings``."""
    engine = engine or pin_engine(ws, deployment_spec)
    retry = settings["retry_settings"]
    return JobPlan(
        inputs=tuple(InputPlan(key, spec["path"], spec.get("type"), frozen(spec.get("pinned")))
                     for key, spec in inputs.items()),
        scorer=pin_scorer(ws, deployment_spec), environment=pin_environment(ws, deployment_spec), engine=engine,
        identity=IdentityPlan(principal, engine.compute.name if engine.compute is not None else None),
        output=output, mini_batch_size=int(settings["mini_batch_size"]),
        retry=RetryPlan(int(retry["max_retries"]), float(retry["timeout"]), int(settings["error_threshold"])),
        limits=Limits(instance_count=instance_count, workers=workers,
                      init_timeout_s=float(settings.get("init_timeout") or 600)),
        logging_level=settings["logging_level"], environment_variables=frozen(settings.get("environment_variables") or {}),
        experiment_name=experiment_name)


def submit_job(ws: WorkspaceService, endpoint_name: str, request: InvokeRequest, created_by: str | None = None,
               assignments: list[Any] | None = None) -> JobRow:
    store = ws.store
    deployment_name = EndpointService(ws).deployment_for_invoke(endpoint_name, request.deployment_name)
    deployment = store.get_deployment(endpoint_name, deployment_name)
    settings, instance_count = merged_settings(deployment.spec, request.overrides)
    if request.output_file_name:
        settings = merged_settings({"settings": settings}, {"output_file_name": request.output_file_name})[0]
    if not request.inputs:
        raise InputError("invoke needs an input: --input <path or uri> (or InputData in the REST body)")
    name = request.job_name or new_job_name()
    if not JOB_NAME.match(name):
        raise ValidationError(f"job name '{name}' is not valid: letters, digits, '-' and '_' (up to 128)")
    if children.is_child_name(name):
        raise ValidationError(f"job name '{name}' ends in '{children.SUFFIX}', which names the batchscoring step of "
                              "another job; choose another name")
    if request.job_name and _exists(store, name):
        raise ConflictError(f"a job named '{name}' already exists; job names are unique")
    engine = pin_engine(ws, deployment.spec)  # the compute is read once, here
    workers = check_worker_limit(ws, deployment.spec, settings, instance_count, engine)
    output_path = request.output_path or f"azureml://datastores/{ws.default_datastore_name()}/paths/azureml/{name}/score"
    output = {"type": "uri_folder", "path": output_path, "file_name": settings["output_file_name"]}
    is_default = request.output_path is None
    datastore, folder = check_output_location(ws, output, created_by, assignments or [],
                                              is_default=is_default)  # before reading inputs
    inputs = {}
    identity = identity_for(ws, engine, created_by, assignments or [])
    for key, spec in request.inputs.items():
        parsed = parse_input_uri(spec["path"])
        if isinstance(parsed, DatastorePath):  # before anything is read: no "does not exist" oracle
            check_system_area(ws, parsed.datastore, parsed.path, created_by, assignments or [])
        resolved = ws.resolver.resolve(spec["path"], spec.get("type"), identity)
        if resolved.asset is None:  # a registered data asset is shared by whoever registered it
            check_system_area(ws, resolved.datastore, resolved.path, created_by, assignments or [])
        ws.uploads.check_input(resolved.datastore, resolved.path)
        inputs[key] = {**resolved.public(), "path": spec["path"], "type": resolved.type,
                       "worker_credential_kind": delegated_kind(resolved.spec),
                       "pinned": resolved.pin()}  # what the runner reads: the text is never resolved again
    plan = plan_job(ws, deployment.spec, inputs=inputs, settings=settings, workers=workers,
                    instance_count=instance_count, principal=created_by, engine=engine,
                    experiment_name=request.experiment_name or endpoint_name,
                    output=OutputPlan(output_path, datastore, folder, settings["output_file_name"],
                                      settings["output_action"]))
    settings["instance_count"] = instance_count
    with _OUTPUTS_LOCK:  # other jobs checked again with the insert: two invokes cannot both take one folder
        if not is_default:
            check_no_other_job(ws, output, datastore, folder)
        return lifecycle.create(
            store, name, endpoint_name=endpoint_name, deployment_name=deployment_name, inputs=inputs,
            outputs={"score": output}, settings=settings, plan=plan.to_json(), created_by=created_by,
            output_datastore=datastore, output_folder=folder,
        )


def check_system_area(ws: WorkspaceService, datastore: str | None, path: str, principal: str | None,
                      assignments: list[Any]) -> None:
    """An input in a data store's upload area or jobs' area needs ``data/read`` on the store, except
    one's own uploads (``UploadArea.check_reader``)."""
    row = ws.store.find_datastore(datastore) if datastore else None
    account = (row.config.get("account_name") or row.config.get("store_name") or row.config.get("bucket")) if row else None
    ws.uploads.check_reader(datastore, path, principal, assignments, account)


def instance_limit(deployment_spec: dict[str, Any], engine: EnginePlan) -> tuple[int, str]:
    """The most instances a job of this deployment may ask for, and where that limit comes from
    (``engine``: its compute as :func:`pin_engine` read it)."""
    if engine.compute is not None:
        return int(engine.compute.spec.get("max_instances") or 1), f"max_instances of compute '{engine.compute.name}'"
    own = int((deployment_spec.get("resources") or {}).get("instance_count") or 1)
    return own, "the deployment's own instance_count (it has no compute)"


def check_worker_limit(ws: WorkspaceService, deployment_spec: dict[str, Any], settings: dict[str, Any], instance_count: int,
                       engine: EnginePlan) -> int:
    """Workers of a job: ``instance_count × max_concurrency_per_instance``, refused above the limits
    an invoke cannot raise — the compute's ``max_instances`` (× the deployment's concurrency) and
    the server's ``jobs.max_workers``."""
    limit, source = instance_limit(deployment_spec, engine)
    if instance_count > limit:
        how = (f"batchpoint compute create -n {compute} --max-instances N with the compute's other settings (the "
               "same name replaces it)" if (compute := (deployment_spec.get("compute") or "").removeprefix("azureml:"))
               else "batchpoint batch-deployment update -n <deployment> -e <endpoint> --set resources.instance_count=N")
        raise ValidationError(f"instance_count {instance_count} exceeds {source} ({limit}); ask for at most {limit}, "
                              f"or raise the limit ({how})")
    concurrency = settings["max_concurrency_per_instance"]
    own = int(((deployment_spec.get("settings") or {}).get("max_concurrency_per_instance")) or 1)
    workers = instance_count * concurrency
    cap = min(limit * own, ws.settings.jobs.max_workers)
    if workers > cap:
        raise ValidationError(
            f"instance_count × max_concurrency_per_instance = {instance_count} × {concurrency} = {workers} workers, "
            f"more than this deployment may run ({cap}: {source} × the deployment's max_concurrency_per_instance "
            f"{own}, at most the server's jobs.max_workers {ws.settings.jobs.max_workers}); ask for fewer")
    return workers


def _exists(store: SqlMetadataStore, name: str) -> bool:
    try:
        store.get_job(name)
    except NotFoundError:
        return False
    return True


def _mlflow_or_root(root: Any) -> Any:
    try:
        return model_layout.mlflow_dir(root)
    except ValidationError:
        return root  # a custom model: its scoring script finds its files from AZUREML_MODEL_DIR


def pin_scorer(ws: WorkspaceService, spec: dict[str, Any]) -> ScorerPlan:
    """The deployment's model version and its folders, and its code snapshot with the hash of its files."""
    model = str(spec["model"]).removeprefix("azureml:")
    name, version = model.split(":", 1)
    root = ws.model_dir(name, version)
    code = spec.get("code_configuration")
    # azureml_model_dir: AZUREML_MODEL_DIR (the model inside it under its own name); model_dir: the
    # MLflow model's folder (what a no-code deployment loads), else the same folder
    if not code:
        return ScorerPlan(model, str(root), str(_mlflow_or_root(root)))
    check_scoring_script(code["scoring_script"])  # a deployment stored before the rule: refused, not run
    return ScorerPlan(model, str(root), str(_mlflow_or_root(root)), code_dir=spec["_code_dir"],
                      scoring_script=code["scoring_script"], code_hash=code_hash(spec["_code_dir"]))
