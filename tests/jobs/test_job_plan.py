"""A job runs what its plan pinned at invoke (issue 20, JobPlan): never the live deployment,
endpoint or compute — not while it waits in the queue, not when it resumes after its server
stopped, not when those rows are gone.

In process, over a real SQLite store and the real runner (``JobRunner.run``) with the local pool's
unfenced workers: the jobs are claimed by hand, so a job waits exactly as long as the test wants.
"""

from __future__ import annotations

import dataclasses
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from batchpoint.entities import Model
from batchpoint.exceptions import ValidationError
from batchpoint.jobs import lifecycle
from batchpoint.jobs.plan import (
    PLAN_VERSION, ComputePlan, EnginePlan, EnvironmentPlan, IdentityPlan, InputPlan, JobPlan, Limits, OutputPlan,
    RetryPlan, ScorerPlan,
)
from batchpoint.jobs.runner import JobRunner
from batchpoint.jobs.submit import InvokeRequest, submit_job
from batchpoint._internal.clock import utcnow
from batchpoint.server.app import build_context
from batchpoint.server.context import AppContext
from batchpoint.settings import Settings
from batchpoint.store.tables import ComputeRow
from batchpoint.workspace import EndpointService

pytestmark = pytest.mark.timeout(180)

ENDPOINT = "plan-ep"
DEPLOYMENT = "scorer"
STORE = "azureml://datastores/workspaceblobstore/paths"

#: Each file's name, tagged with the code's version: the predictions say which code ran.
SCORE_PY = '''
import os
import time

def init():
    pass

def run(mini_batch):
    time.sleep(float(os.environ.get("SLEEP_S", "0")))
    return ["{tag}:" + os.path.basename(p) for p in mini_batch]
'''

#: An environment no server here can build (its index is a closed port): a job that used it fails.
UNBUILDABLE = {"conda_file": {"name": "new", "dependencies": ["python=3.11", {"pip": ["batchpoint-no-such-package==9.9"]}]}}


# -- the value ---------------------------------------------------------------------------------
def a_plan() -> JobPlan:
    return JobPlan(
        inputs=(InputPlan("input_data", "azureml:heart@latest", "uri_folder",
                          {"type": "uri_folder", "asset": {"name": "heart", "version": "3"}, "datastore": "ws",
                           "url": None, "location": "local(path=/data)", "path": "heart",
                           "credential": {"kind": "none", "source": "datastore"}}),),
        scorer=ScorerPlan("m:2", "/home/models/m/2", "/home/models/m/2/m", "/home/code/ep-d-abc", "src/score.py",
                          "sha256:" + "0" * 64),
        environment=EnvironmentPlan(None, {"conda_file": {"dependencies": ["python=3.11", {"pip": ["pandas"]}]}}),
        engine=EnginePlan("ray", ComputePlan("cluster", {"type": "ray", "address": "10.0.0.1:6379",
                                                          "max_instances": 4}, "gAAAA-ciphertext")),
        identity=IdentityPlan("user:ana", "cluster"),
        output=OutputPlan(f"{STORE}/out", "workspaceblobstore", "out", "preds.csv", "summary_only"),
        mini_batch_size=7, retry=RetryPlan(2, 45.0, 5), limits=Limits(instance_count=2, workers=4, init_timeout_s=90.0),
        logging_level="debug", environment_variables={"A": "1"}, experiment_name="exp")


def test_a_plan_round_trips_through_its_json_and_is_immutable() -> None:
    plan = a_plan()
    stored = json.loads(json.dumps(plan.to_json()))  # as the plan column holds it
    assert stored["version"] == PLAN_VERSION == 2
    again = JobPlan.from_json(stored)
    assert again.to_json() == stored
    assert again.engine == plan.engine and again.scorer == plan.scorer and again.output == plan.output
    assert again.inputs[0].pin["asset"] == {"name": "heart", "version": "3"}
    assert again.engine is not None and again.engine.compute is not None
    assert (again.engine.name, again.engine.compute.spec["address"]) == ("ray", "10.0.0.1:6379")
    assert (again.retry.policy().max_retries, again.retry.policy().error_threshold) == (2, 5)
    assert again.output.action == "summary_only"
    assert again.pinned
    with pytest.raises(dataclasses.FrozenInstanceError):
        again.mini_batch_size = 1  # type: ignore[misc]
    with pytest.raises(TypeError):
        again.environment_variables["B"] = "2"  # type: ignore[index]
    with pytest.raises(TypeError):
        again.engine.compute.spec["address"] = "elsewhere"  # type: ignore[index]


def test_a_job_row_stored_before_plans_still_loads() -> None:
    """Today's shape (no ``version``): the plan column had workers, instance_count, scorer and
    experiment_name; the rest is in the row's settings, inputs and outputs."""
    pin = {"type": "uri_folder", "asset": None, "datastore": "workspaceblobstore", "url": None,
           "location": "local(path=/x)", "path": "data", "credential": {"kind": "none", "source": "datastore"}}
    row = SimpleNamespace(
        name="old-job", created_by="user:bo", output_datastore="workspaceblobstore", output_folder="azureml/old-job/score",
        plan={"workers": 3, "instance_count": 3, "experiment_name": "old-exp",
              "scorer": {"azureml_model_dir": "/h/models/m/1", "model_dir": "/h/models/m/1/m",
                         "code_dir": "/h/code/ep-d-1", "scoring_script": "score.py"}},
        settings={"max_concurrency_per_instance": 1, "mini_batch_size": 4, "output_action": "append_row",
                  "output_file_name": "p.csv", "retry_settings": {"max_retries": 1, "timeout": 12},
                  "error_threshold": 2, "logging_level": "warning", "environment_variables": {"X": "y"},
                  "init_timeout": 33, "instance_count": 3},
        inputs={"input_data": {"path": f"{STORE}/data", "type": "uri_folder", "pinned": pin},
                "legacy": {"path": f"{STORE}/other", "type": "uri_folder"}},
        outputs={"score": {"type": "uri_folder", "path": f"{STORE}/azureml/old-job/score", "file_name": "p.csv"}})
    plan = JobPlan.from_row(row)
    assert not plan.pinned and plan.environment is None and plan.engine is None  # the runner pins them
    assert [(i.key, i.path, i.pin is not None) for i in plan.inputs] == [
        ("input_data", f"{STORE}/data", True), ("legacy", f"{STORE}/other", False)]
    assert plan.scorer.worker_config() == row.plan["scorer"]
    assert (plan.limits.workers, plan.limits.instance_count, plan.limits.init_timeout_s) == (3, 3, 33.0)
    assert (plan.mini_batch_size, plan.retry) == (4, RetryPlan(1, 12.0, 2))
    assert plan.output == OutputPlan(f"{STORE}/azureml/old-job/score", "workspaceblobstore", "azureml/old-job/score",
                                     "p.csv", "append_row")
    assert (plan.logging_level, dict(plan.environment_variables), plan.experiment_name) == ("warning", {"X": "y"},
                                                                                            "old-exp")
    assert plan.identity.principal == "user:bo"
    with pytest.raises(ValidationError, match="version 99"):
        JobPlan.from_json({**a_plan().to_json(), "version": 99})


# -- the runner --------------------------------------------------------------------------------
@pytest.fixture()
def ctx(tmp_path: Path) -> Iterator[AppContext]:
    home = tmp_path / "home"
    settings = Settings(home=home, database_url=f"sqlite:///{home / 'metadata.db'}",
                        workers={"isolation": "none"}, ray={"connect_timeout_s": 3.0},
                        environments={"index_url": "http://127.0.0.1:9/simple"})
    context = build_context(settings)
    try:
        yield context
    finally:
        context.store.close()


def put(ctx: AppContext, rel: str, text: str) -> None:
    path = ctx.settings.resolved_default_datastore_path() / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def deploy(ctx: AppContext, **changes: Any) -> None:
    """Endpoint ENDPOINT with deployment DEPLOYMENT of SCORE_PY tagged v1, on compute 'cpu'."""
    for n in range(3):
        put(ctx, f"data/file-{n}.csv", "x\n1\n")
    put(ctx, "setup/model/weights.txt", "none\n")
    put(ctx, "setup/code-v1/score.py", SCORE_PY.replace("{tag}", "v1"))
    ctx.workspace.create_model(Model(name="plan-model", type="custom_model", path=f"{STORE}/setup/model"))
    ctx.store.put_compute("cpu", {"type": "amlcompute", "max_instances": 2}, secret=None)
    EndpointService(ctx.workspace).put_endpoint(ENDPOINT, {})
    body = {"model": "azureml:plan-model:1", "compute": "azureml:cpu",
            "code_configuration": {"code": f"{STORE}/setup/code-v1", "scoring_script": "score.py"},
            "settings": {"mini_batch_size": 1, "retry_settings": {"max_retries": 0, "timeout": 60}}, **changes}
    EndpointService(ctx.workspace).put_deployment(ENDPOINT, DEPLOYMENT, body, set_default=True)


def invoke(ctx: AppContext) -> str:
    request = InvokeRequest(inputs={"input_data": {"path": f"{STORE}/data", "type": "uri_folder"}})
    return submit_job(ctx.workspace, ENDPOINT, request).name


def run_next(ctx: AppContext, stop: threading.Event | None = None) -> str:
    """Claim the oldest queued job and run it here, to its end (or until ``stop`` is set)."""
    row = lifecycle.claim_next(ctx.store, "test-server")
    assert row is not None, "no job was queued"
    JobRunner(ctx.workspace).run(row.name, stop or threading.Event())
    return row.name


def predictions(ctx: AppContext, job: str) -> list[str]:
    path = ctx.settings.resolved_default_datastore_path() / "azureml" / job / "score" / "predictions.csv"
    return sorted(path.read_text().split())


def change_deployment(ctx: AppContext, what: str) -> None:
    """Update the deployment: a new environment, a new compute (a Ray cluster) or new code at the
    same place (its snapshot is taken again from the changed folder)."""
    endpoints = EndpointService(ctx.workspace)
    if what == "environment":
        endpoints.update_deployment(ENDPOINT, DEPLOYMENT, {"environment": UNBUILDABLE})
    elif what == "compute":
        ctx.store.put_compute("cluster", {"type": "ray", "address": "127.0.0.1:9", "max_instances": 2}, secret=None)
        endpoints.update_deployment(ENDPOINT, DEPLOYMENT, {"compute": "azureml:cluster"})
    else:
        put(ctx, "setup/code-v1/score.py", SCORE_PY.replace("{tag}", "v2"))
        endpoints.update_deployment(ENDPOINT, DEPLOYMENT, {"description": "new code"})
    spec = ctx.store.get_deployment(ENDPOINT, DEPLOYMENT).spec
    assert spec.get("environment") or spec["compute"] == "azureml:cluster" or spec["description"] == "new code"


def assert_ran_pinned(ctx: AppContext, job: str) -> None:
    final = ctx.store.get_job(job)
    assert final.status == "Completed", (final.status_message, final.error)
    assert predictions(ctx, job) == [f"v1:file-{n}.csv" for n in range(3)], "the job did not run its pinned code"
    phases = [e.message or "" for e in ctx.store.list_job_events(job, 0, 1000)]
    assert not any("building environment" in m for m in phases), phases  # the pinned environment is the server's


@pytest.mark.parametrize("what", ["environment", "compute", "code"])
def test_a_queued_job_runs_what_its_invoke_pinned(ctx: AppContext, what: str) -> None:
    deploy(ctx)
    job = invoke(ctx)
    change_deployment(ctx, what)  # while the job waits in the queue
    assert ctx.store.get_job(job).status == "Queued"
    assert run_next(ctx) == job
    assert_ran_pinned(ctx, job)
    # a job invoked now runs the deployment as it is now
    if what == "code":
        later = invoke(ctx)
        run_next(ctx)
        assert predictions(ctx, later) == [f"v2:file-{n}.csv" for n in range(3)]


@pytest.mark.parametrize("what", ["environment", "compute", "code"])
def test_a_resumed_job_runs_what_its_invoke_pinned(ctx: AppContext, what: str) -> None:
    """The job is stopped while Running (its server shut down: ``stop``), its deployment changes,
    then it is recovered as after a crash (``Crashed`` → ``Queued``) and resumes."""
    deploy(ctx, settings={"mini_batch_size": 1, "environment_variables": {"SLEEP_S": "1"},
                          "retry_settings": {"max_retries": 0, "timeout": 60}})
    job = invoke(ctx)
    stop = threading.Event()
    runner_thread = threading.Thread(target=run_next, args=(ctx, stop))
    folder = ctx.settings.jobs_dir / job
    done = folder / "done.jsonl"
    runner_thread.start()
    try:
        deadline = threading.Event()
        for _ in range(600):  # the first mini-batch finished: the job is Running with work left
            if done.exists() and done.read_text().strip():
                break
            deadline.wait(0.05)
    finally:
        stop.set()
        runner_thread.join(60)
    assert not runner_thread.is_alive()
    status = ctx.store.get_job(job).status
    assert status in ("Running", "Completed"), status
    if status == "Completed":
        pytest.skip("the job ended before it could be stopped (all three files scored at once)")
    change_deployment(ctx, what)
    assert lifecycle.requeue_crashed(ctx.store, job, "test-server", utcnow())
    assert run_next(ctx) == job
    assert_ran_pinned(ctx, job)


def test_a_run_reads_no_deployment_endpoint_or_compute(ctx: AppContext, monkeypatch: pytest.MonkeyPatch) -> None:
    """The endpoint, its deployment and the compute are deleted while the job waits (straight from
    the store: the guarded delete would refuse), and any read of one during the run fails the test."""
    deploy(ctx)
    job = invoke(ctx)
    ctx.store.delete_endpoint(ENDPOINT)  # with its deployments
    with ctx.store.session() as s:
        s.delete(s.get(ComputeRow, "cpu"))
    reads: list[str] = []

    def refused(what: str) -> Any:
        def read(*args: Any, **kwargs: Any) -> Any:
            reads.append(f"{what}{args}")
            raise AssertionError(f"the runner read {what}{args}")
        return read

    for method in ("get_deployment", "get_endpoint", "get_compute", "list_deployments", "list_computes"):
        monkeypatch.setattr(ctx.store, method, refused(method))
    assert run_next(ctx) == job
    final = ctx.store.get_job(job)
    assert reads == [], reads
    assert final.status == "Completed", (final.status_message, final.error)
    assert predictions(ctx, job) == [f"v1:file-{n}.csv" for n in range(3)]


def test_a_job_stored_before_plans_still_runs_and_gets_its_plan(ctx: AppContext) -> None:
    """A queued job whose ``plan`` column has today's old shape (no version) runs; its environment
    and compute are pinned from its deployment once, and its plan is written back, versioned."""
    deploy(ctx)
    job = invoke(ctx)
    row = ctx.store.get_job(job)
    new = JobPlan.from_row(row)
    legacy = {"workers": 1, "instance_count": 1, "experiment_name": ENDPOINT, "scorer": new.scorer.worker_config()}
    ctx.store.update_job(job, plan=legacy)
    assert JobPlan.from_row(ctx.store.get_job(job)).pinned is False
    assert run_next(ctx) == job
    final = ctx.store.get_job(job)
    assert final.status == "Completed", (final.status_message, final.error)
    assert predictions(ctx, job) == [f"v1:file-{n}.csv" for n in range(3)]
    assert final.plan["version"] == PLAN_VERSION
    upgraded = JobPlan.from_row(final)
    assert upgraded.pinned and upgraded.engine is not None and upgraded.engine.compute is not None
    assert upgraded.engine.compute.name == "cpu" and upgraded.identity.compute == "cpu"
    assert (upgraded.inputs, upgraded.output, upgraded.mini_batch_size) == (new.inputs, new.output, 1)


def test_an_environment_label_is_pinned_to_its_version_at_invoke(ctx: AppContext) -> None:
    """``azureml:<env>@latest`` names the version that is latest at invoke, in the job's plan: a
    version registered while the job waits is not the one it builds."""
    from batchpoint.entities import Environment
    from batchpoint.environments.assets import EnvironmentAssets

    assets = EnvironmentAssets(ctx.settings, ctx.store)
    conda = {"name": "e", "dependencies": ["python=3.11", {"pip": ["pandas"]}]}
    assert assets.create(Environment(name="plan-env", conda_file=conda)).version == "1"
    deploy(ctx, environment="azureml:plan-env@latest")
    job = invoke(ctx)
    assert assets.create(Environment(name="plan-env", conda_file=conda)).version == "2"
    plan = JobPlan.from_row(ctx.store.get_job(job))
    assert plan.environment is not None
    assert plan.environment.deployment_view() == {"environment": "azureml:plan-env:1"}


def test_the_invoke_limit_and_the_plan_come_from_one_read_of_the_compute(ctx: AppContext,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    deploy(ctx)
    reads: list[str] = []
    get_compute = ctx.store.get_compute
    monkeypatch.setattr(ctx.store, "get_compute", lambda name: reads.append(name) or get_compute(name))
    request = InvokeRequest(inputs={"input_data": {"path": f"{STORE}/data", "type": "uri_folder"}},
                            overrides={"instance_count": 3})
    with pytest.raises(ValidationError, match=r"instance_count 3 exceeds max_instances of compute 'cpu' \(2\)"):
        submit_job(ctx.workspace, ENDPOINT, request)
    reads.clear()
    job = submit_job(ctx.workspace, ENDPOINT, dataclasses.replace(request, overrides={"instance_count": 2}))
    assert reads == ["cpu"]
    plan = JobPlan.from_row(job)
    assert plan.engine == EnginePlan("local", ComputePlan("cpu", {"type": "amlcompute", "max_instances": 2}))
    assert (plan.limits.instance_count, plan.limits.workers, plan.identity.compute) == (2, 2, "cpu")
