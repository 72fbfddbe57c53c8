"""The operation groups of ``MLClient``, named and shaped as in azure-ai-ml."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import IO, Any
from urllib.parse import quote

from batchpoint.entities import TERMINAL_STATUSES as TERMINAL
from batchpoint.entities import (
    AmlCompute,
    BatchDeployment,
    BatchEndpoint,
    Data,
    Datastore,
    Input,
    Job,
    JobEvent,
    Model,
    Output,
    Workspace,
)
from batchpoint.exceptions import InputError, JobError, UnsupportedInputError
from batchpoint.sdk.job_events import PlainView, follow_job
from batchpoint.sdk.overrides import job_overrides
from batchpoint.sdk.unsupported import operation_refused
from batchpoint.sdk.transport import Transport, repeatability_headers
from batchpoint.sdk.inline import inline_environment, inline_model
from batchpoint.sdk.upload import report, upload_local
from batchpoint.uri.parse import MLTABLE_MESSAGE, LocalPath, parse_input_uri

#: each operation group class -> its attribute on MLClient (as azure-ai-ml names it)
GROUPS = {"BatchEndpointOperations": "batch_endpoints", "BatchDeploymentOperations": "batch_deployments",
          "JobOperations": "jobs", "DataOperations": "data", "ModelOperations": "models",
          "ComputeOperations": "compute", "DatastoreOperations": "datastores"}


class Poller:
    """What ``begin_*`` returns: the result is already there (the server works synchronously)."""

    def __init__(self, value: Any) -> None:
        self._value = value

    def result(self, timeout: float | None = None) -> Any:
        return self._value

    def done(self) -> bool:
        return True

    def wait(self, timeout: float | None = None) -> None:
        return None


class _Group:
    def __init__(self, transport: Transport, client: Any) -> None:
        self._t = transport
        self._client = client

    def __getattr__(self, name: str) -> Any:
        """An azure-ai-ml operation this group lacks: a callable that refuses it naming what to use."""
        if not name.startswith("_"):
            refused = operation_refused(GROUPS.get(type(self).__name__, ""), name)
            if refused is not None:
                return refused
        raise AttributeError(f"{type(self).__name__} has no attribute '{name}'")

    def _upload_if_local(self, path: str, expect: str | None = None) -> tuple[str, str | None]:
        if isinstance(parse_input_uri(path), LocalPath):
            return upload_local(self._t, path, expect)
        return path, expect


class WorkspaceOperations(_Group):
    def get(self, name: str | None = None) -> Workspace:
        return Workspace(**self._t.json("GET", "/workspace"))


class DatastoreOperations(_Group):
    def get(self, name: str) -> Datastore:
        return Datastore(**self._t.json("GET", f"/datastores/{quote(name)}"))

    def get_default(self) -> Datastore:
        return Datastore(**self._t.json("GET", "/defaultDatastore"))

    def list(self) -> list[Datastore]:
        return [Datastore(**d) for d in self._t.json("GET", "/datastores")]

    def create_or_update(self, datastore: Datastore) -> Datastore:
        body = datastore.model_dump(mode="json", exclude_none=True, by_alias=False, exclude={"schema_"})
        return Datastore(**self._t.json("PUT", f"/datastores/{quote(datastore.name)}", json=body))


class DataOperations(_Group):
    def create_or_update(self, data: Data) -> Data:
        path, _ = self._upload_if_local(data.path, data.type if data.type != "mltable" else None)
        body = data.spec()
        body["path"] = path
        return Data(**self._t.json("POST", f"/data/{quote(data.name)}/versions", json=body))

    def get(self, name: str, version: str | None = None, label: str | None = None) -> Data:
        if version is not None:
            return Data(**self._t.json("GET", f"/data/{quote(name)}/versions/{quote(str(version))}"))
        return Data(**self._t.json("GET", f"/data/{quote(name)}", params={"label": label or "latest"}))

    def list(self, name: str | None = None) -> list[Data]:
        return [Data(**d) for d in self._t.json("GET", "/data", params={"name": name} if name else None)]


class ModelOperations(_Group):
    def create_or_update(self, model: Model) -> Model:
        if not model.name:
            raise InputError("Model(...) needs a name to be registered (name='heart-classifier'); a model without "
                             "one is only accepted inline in a BatchDeployment")
        path, _ = self._upload_if_local(model.path)
        body = model.spec()
        body["path"] = path
        return Model(**self._t.json("POST", f"/models/{quote(model.name)}/versions", json=body))

    def get(self, name: str, version: str | None = None, label: str | None = None) -> Model:
        if version is not None:
            return Model(**self._t.json("GET", f"/models/{quote(name)}/versions/{quote(str(version))}"))
        return Model(**self._t.json("GET", f"/models/{quote(name)}", params={"label": label or "latest"}))

    def list(self, name: str | None = None) -> list[Model]:
        return [Model(**d) for d in self._t.json("GET", "/models", params={"name": name} if name else None)]


class ComputeOperations(_Group):
    def begin_create_or_update(self, compute: AmlCompute) -> Poller:
        body = compute.spec()
        return Poller(AmlCompute(**self._t.json("PUT", f"/computes/{quote(compute.name)}", json=body)))

    def get(self, name: str) -> AmlCompute:
        return AmlCompute(**self._t.json("GET", f"/computes/{quote(name)}"))

    def list(self) -> list[AmlCompute]:
        return [AmlCompute(**c) for c in self._t.json("GET", "/computes")]


class BatchEndpointOperations(_Group):
    def begin_create_or_update(self, endpoint: BatchEndpoint) -> Poller:
        return Poller(self.create_or_update(endpoint))

    def create_or_update(self, endpoint: BatchEndpoint) -> BatchEndpoint:
        return BatchEndpoint(**self._t.json("PUT", f"/batchEndpoints/{quote(endpoint.name)}", json=endpoint.spec()))

    def update(self, name: str, changes: dict[str, Any]) -> BatchEndpoint:
        return BatchEndpoint(**self._t.json("PATCH", f"/batchEndpoints/{quote(name)}", json=changes))

    def get(self, name: str) -> BatchEndpoint:
        return BatchEndpoint(**self._t.json("GET", f"/batchEndpoints/{quote(name)}"))

    def list(self) -> list[BatchEndpoint]:
        return [BatchEndpoint(**e) for e in self._t.json("GET", "/batchEndpoints")]

    def begin_delete(self, name: str, force: bool = False) -> Poller:
        """Delete the endpoint and its deployments. With jobs of it that have not ended this is a
        ``ConflictError`` naming them, unless ``force`` (cancel them first)."""
        self._t.request("DELETE", f"/batchEndpoints/{quote(name)}", params={"force": "true"} if force else None)
        return Poller(None)

    delete = begin_delete

    def invoke(self, endpoint_name: str, deployment_name: str | None = None, input: Input | None = None,  # noqa: A002
               inputs: dict[str, Input] | None = None, output_path: str | None = None, job_name: str | None = None,
               output_file_name: str | None = None, outputs: dict[str, Output | str] | None = None,
               experiment_name: str | None = None, repeatability_request_id: str | None = None,
               params_override: list[dict[str, Any]] | None = None, **settings: Any) -> Job:
        """Start a job on the endpoint. Local paths are uploaded to the default data store first.
        ``outputs={"score": Output(path="azureml://datastores/<ds>/paths/<folder>")}`` (or ``output_path``)
        says where the output goes; ``settings`` overrides deployment settings for this job
        (mini_batch_size=..., instance_count=...); ``experiment_name`` groups the job (default: the
        endpoint's name). Each call sends a ``repeatability-request-id`` (``repeatability_request_id``,
        else a fresh one), re-sent on transport retries: a retried call never makes a second job.
        ``params_override``: azure-ai-ml's list of one-key dicts (``{"output_dataset.datastore_id":
        "azureml:<datastore id or name>"}``, ``{"output_dataset.path": "/folder/"}``,
        ``{"output_file_name": ...}``, ``{"mini_batch_size": "20"}``, ``{"compute.instance_count": "5"}``
        ...), see ``batchpoint.sdk.overrides``."""
        if params_override:
            over = job_overrides(params_override)
            output_path = _one_of("output_path", output_path, over.output_path)
            output_file_name = _one_of("output_file_name", output_file_name, over.output_file_name)
            job_name = _one_of("job_name", job_name, over.job_name)
            experiment_name = _one_of("experiment_name", experiment_name, over.experiment_name)
            for key, value in over.settings.items():
                settings[key] = _one_of(key, settings.get(key), value)
        output_path, output_file_name = _output_of(outputs, output_path, output_file_name)
        all_inputs = dict(inputs or {})
        if input is not None:
            all_inputs.setdefault("input_data" if not all_inputs else f"input_{len(all_inputs)}", input)
        if not all_inputs:
            raise InputError("invoke needs an input: input=Input(type=AssetTypes.URI_FOLDER, path=...)")
        data = {}
        for key, value in all_inputs.items():
            if isinstance(value, str):
                value = Input(path=value)
            if value.type == "mltable":
                raise UnsupportedInputError(MLTABLE_MESSAGE)
            path, kind = self._upload_if_local(value.path, value.type)
            data[key] = {"JobInputType": {"uri_folder": "UriFolder", "uri_file": "UriFile"}.get(kind or "", None),
                         "Uri": path}
            if data[key]["JobInputType"] is None:
                del data[key]["JobInputType"]
        props: dict[str, Any] = {"InputData": data}
        if deployment_name:
            props["DeploymentName"] = deployment_name
        if output_path:
            props["OutputData"] = {"score": {"JobOutputType": "UriFolder", "Uri": output_path}}
        if output_file_name:
            props["OutputFileName"] = output_file_name
        if job_name:
            props["JobName"] = job_name
        if experiment_name:
            props["ExperimentName"] = experiment_name
        if settings:
            props["Settings"] = settings
        return Job(**self._t.json("POST", f"/batchEndpoints/{quote(endpoint_name)}/invoke", json={"properties": props},
                                  headers=repeatability_headers(repeatability_request_id)))

    def list_jobs(self, endpoint_name: str, max_results: int | None = None) -> list[Job]:
        return _all_pages(self._t, f"/batchEndpoints/{quote(endpoint_name)}/jobs", {}, max_results)


def _one_of(what: str, given: Any, overridden: Any) -> Any:
    """An argument given both as itself and in ``params_override`` must say the same."""
    if given is not None and overridden is not None and given != overridden:
        raise InputError(f"{what} is given twice, as an argument ({given!r}) and in params_override ({overridden!r}): "
                         "give it once")
    return overridden if overridden is not None else given


def _output_of(outputs: dict[str, Output | str] | None, output_path: str | None,
               output_file_name: str | None) -> tuple[str | None, str | None]:
    """``outputs`` as azure-ai-ml takes it → (output folder, file name)."""
    if not outputs:
        return output_path, output_file_name
    if not isinstance(outputs, dict) or set(outputs) != {"score"} or output_path:
        raise InputError("outputs must be {'score': Output(path='azureml://datastores/<ds>/paths/<folder>')}: a batch "
                         "deployment has one output, named 'score' (and give outputs or output_path, not both)")
    out = outputs["score"]
    out = Output(path=out) if isinstance(out, str) else out
    if not isinstance(out, Output):
        raise InputError(f"outputs['score'] must be an Output or a path string, not {type(out).__name__}")
    if out.type == "uri_file":
        folder, _, name = out.path.rstrip("/").rpartition("/")
        return folder, output_file_name or name
    return out.path, output_file_name


class BatchDeploymentOperations(_Group):
    def begin_create_or_update(self, deployment: BatchDeployment, set_default: bool = False) -> Poller:
        return Poller(self.create_or_update(deployment, set_default=set_default))

    def create_or_update(self, deployment: BatchDeployment, set_default: bool = False) -> BatchDeployment:
        body = deployment.spec()
        if isinstance(deployment.model, Model) and deployment.model.name is None:
            body["model"] = inline_model(self, deployment.model)  # registered by the server
        elif isinstance(deployment.model, Model):
            model = deployment.model
            if model.version is None:
                model = self._client.models.create_or_update(model)
            body["model"] = f"azureml:{model.name}:{model.version}"
        if isinstance(deployment.environment, dict):
            body["environment"] = inline_environment(deployment.environment)
        code = deployment.code_configuration
        if code is not None:
            body["code_configuration"]["code"], _ = self._upload_if_local(code.code, "uri_folder")
        url = f"/batchEndpoints/{quote(deployment.endpoint_name)}/deployments/{quote(deployment.name)}"
        return BatchDeployment(**self._t.json("PUT", url, json=body, params={"set_default": set_default}))

    def update(self, endpoint_name: str, name: str, changes: dict[str, Any]) -> BatchDeployment:
        url = f"/batchEndpoints/{quote(endpoint_name)}/deployments/{quote(name)}"
        return BatchDeployment(**self._t.json("PATCH", url, json=changes))

    def get(self, name: str, endpoint_name: str) -> BatchDeployment:
        return BatchDeployment(**self._t.json("GET", f"/batchEndpoints/{quote(endpoint_name)}/deployments/{quote(name)}"))

    def list(self, endpoint_name: str) -> list[BatchDeployment]:
        return [BatchDeployment(**d) for d in self._t.json("GET", f"/batchEndpoints/{quote(endpoint_name)}/deployments")]

    def begin_delete(self, name: str, endpoint_name: str, force: bool = False) -> Poller:
        """Delete the deployment. With jobs of it that have not ended this is a ``ConflictError``
        naming them, unless ``force`` (cancel them first)."""
        self._t.request("DELETE", f"/batchEndpoints/{quote(endpoint_name)}/deployments/{quote(name)}",
                        params={"force": "true"} if force else None)
        return Poller(None)

    delete = begin_delete

    def list_jobs(self, endpoint_name: str, name: str, max_results: int | None = None) -> list[Job]:
        url = f"/batchEndpoints/{quote(endpoint_name)}/deployments/{quote(name)}/jobs"
        return _all_pages(self._t, url, {}, max_results)


def _all_pages(transport: Any, url: str, params: dict[str, Any], max_results: int | None, size: int = 500) -> list[Job]:
    """Walk a list route page by page (``limit``/``skip``); a job that moves between pages while
    new ones arrive is returned once."""
    jobs: dict[str, Job] = {}
    skip = 0
    while max_results is None or len(jobs) < max_results:
        page = transport.json("GET", url, params={**params, "limit": size, "skip": skip}) or []
        for item in page:
            jobs.setdefault(item["name"], Job(**item))
        if len(page) < size:
            break
        skip += size
    found = list(jobs.values())
    return found if max_results is None else found[:max_results]


class JobOperations(_Group):
    def get(self, name: str) -> Job:
        return Job(**self._t.json("GET", f"/jobs/{quote(name)}"))

    def list(self, endpoint_name: str | None = None, max_results: int | None = None,
             parent_job_name: str | None = None) -> list[Job]:
        """Jobs, newest first: every one the caller may see (the pages are walked), or ``max_results``.
        ``parent_job_name``: the child jobs of that job instead (a batch job's ``batchscoring`` step)."""
        if parent_job_name is not None:
            return [Job(**j) for j in self._t.json("GET", "/jobs", params={"parent_job_name": parent_job_name})]
        return _all_pages(self._t, "/jobs", {"endpoint": endpoint_name} if endpoint_name else {}, max_results)

    def begin_cancel(self, name: str) -> Poller:
        return Poller(Job(**self._t.json("POST", f"/jobs/{quote(name)}/cancel")))

    def rerun(self, name: str, failed_only: bool = False, repeatability_request_id: str | None = None) -> Job:
        """A new job over the files of finished job ``name`` (``failed_only``: only those that did not
        succeed; its output then merges the first job's rows with its own). See docs/faults.md."""
        return Job(**self._t.json("POST", f"/jobs/{quote(name)}/rerun", json={"failed_only": failed_only},
                                  headers=repeatability_headers(repeatability_request_id)))

    cancel = begin_cancel

    def wait(self, name: str, timeout: float = 3600.0, poll: float = 0.2) -> Job:
        """Block until the job ends; returns it (whatever its final status)."""
        deadline = time.monotonic() + timeout
        while True:
            job = self.get(name)
            if job.status in TERMINAL:
                return job
            if time.monotonic() > deadline:
                raise JobError(f"job '{name}' is still {job.status} after {timeout:g}s")
            time.sleep(poll)

    def events(self, name: str, after: int = 0) -> list[JobEvent]:
        """The job's history so far, oldest first: its status transitions and progress changes
        (``seq`` above ``after``)."""
        found: list[JobEvent] = []
        while True:
            page = self._t.json("GET", f"/jobs/{quote(name)}/events", params={"after": after, "limit": 1000}) or []
            found.extend(JobEvent(**item) for item in page)
            if len(page) < 1000:
                return found
            after = page[-1]["seq"]

    def stream(self, name: str, out: IO[str] | None = None, poll: float = 0.5, logs: bool = False,
               view: Any = None) -> Job:
        """Print the job as it runs until it ends (``az ml job stream``), in the plain lines of
        ``batchpoint job stream`` piped: each status change and phase, the progress (at most a line
        per ``poll`` seconds), the root cause right after a failure, the phase timings; the worker
        log lines with ``logs=True``; ``view`` draws instead (the CLI's progress bar). Returns the
        ended job (see ``batchpoint.sdk.job_events``)."""
        return follow_job(self._t, name, view or PlainView(out or sys.stdout), logs=logs, poll=poll)

    def download(self, name: str, download_path: str | Path = ".", output_name: str | None = None,
                 all: bool = False) -> list[Path]:  # noqa: A002
        """Save a job output under ``<download_path>/named-outputs/<output_name>/`` (Azure's layout)."""
        names = [output_name or "score"]
        if all:
            names = list(self.get(name).outputs)
        saved = []
        for out_name in names:
            listing = self._t.json("GET", f"/jobs/{quote(name)}/outputs/{quote(out_name)}")
            folder = Path(download_path) / "named-outputs" / out_name
            for done, rel in enumerate(listing["files"]):
                report(f"downloading {out_name} of {name}", done, len(listing["files"]), "files")
                target = folder / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                with open(target, "wb") as handle:
                    self._t.stream_to(f"/jobs/{quote(name)}/outputs/{quote(out_name)}/files/{quote(rel)}", handle)
                saved.append(target)
            report(f"downloading {out_name} of {name}", len(listing["files"]), len(listing["files"]), "files")
        return saved


class PrincipalOperations(_Group):
    """Users and service principals, and their API keys (Owners)."""

    def create(self, principal_id: str, kind: str = "user", display_name: str | None = None) -> dict[str, Any]:
        return self._t.json("POST", "/principals", json={"id": principal_id, "kind": kind, "display_name": display_name})

    def list(self) -> list[dict[str, Any]]:
        return self._t.json("GET", "/principals")

    def create_key(self, principal_id: str, expires_in_days: int = 90) -> dict[str, Any]:
        """A new API key; its plaintext (``["key"]``) is returned this once only."""
        return self._t.json("POST", f"/principals/{quote(principal_id)}/keys", json={"expires_in_days": expires_in_days})

    def list_keys(self, principal_id: str) -> list[dict[str, Any]]:
        return self._t.json("GET", f"/principals/{quote(principal_id)}/keys")

    def revoke_key(self, principal_id: str, key_id: str) -> None:
        self._t.request("DELETE", f"/principals/{quote(principal_id)}/keys/{quote(key_id)}")


class RoleAssignmentOperations(_Group):
    def create(self, principal_id: str, role: str, scope: str = "workspace") -> dict[str, Any]:
        return self._t.json("POST", "/roleAssignments", json={"principal_id": principal_id, "role": role, "scope": scope})

    def list(self, principal_id: str | None = None) -> list[dict[str, Any]]:
        return self._t.json("GET", "/roleAssignments", params={"principal_id": principal_id} if principal_id else None)

    def delete(self, assignment_id: int) -> None:
        self._t.request("DELETE", f"/roleAssignments/{int(assignment_id)}")


class AuditOperations(_Group):
    def list(self, limit: int = 100, principal_id: str | None = None) -> list[dict[str, Any]]:
        params: dict[str, Any] = {"limit": limit}
        if principal_id:
            params["principal_id"] = principal_id
        return self._t.json("GET", "/auditLog", params=params)
