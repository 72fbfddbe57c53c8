"""``batch-endpoint`` and ``batch-deployment`` verbs."""

from __future__ import annotations

import json

import click

from batchpoint.cli.main import client
from batchpoint.cli.output import emit, output_options
from batchpoint.cli.specs import build, inline_paths, local_relative, parse_set, read_yaml, set_path
from batchpoint.entities import BatchDeployment, BatchEndpoint, Input
from batchpoint.exceptions import SpecError


@click.group("batch-endpoint")
def batch_endpoint() -> None:
    """Create, invoke and manage batch endpoints."""


@batch_endpoint.command("create")
@click.option("-f", "--file", "file", help="Endpoint YAML (name, description, auth_mode).")
@click.option("-n", "--name")
@click.option("--set", "sets", multiple=True, help="Override a field: key=value.")
@output_options
def endpoint_create(file, name, sets, output, query) -> None:
    doc = read_yaml(file) if file else {}
    if name:
        doc["name"] = name
    for key, value in parse_set(sets):
        set_path(doc, key, value)
    emit(client().batch_endpoints.begin_create_or_update(build(BatchEndpoint, doc, file or "command line")).result(),
         output, query)


@batch_endpoint.command("show")
@click.option("-n", "--name", required=True)
@output_options
def endpoint_show(name, output, query) -> None:
    emit(client().batch_endpoints.get(name), output, query)


@batch_endpoint.command("list")
@output_options
def endpoint_list(output, query) -> None:
    emit(client().batch_endpoints.list(), output, query)


@batch_endpoint.command("update")
@click.option("-n", "--name", required=True)
@click.option("--set", "sets", multiple=True, required=True, help="key=value, e.g. defaults.deployment_name=blue.")
@output_options
def endpoint_update(name, sets, output, query) -> None:
    changes: dict = {}
    for key, value in parse_set(sets):
        set_path(changes, key, value)
    emit(client().batch_endpoints.update(name, changes), output, query)


@batch_endpoint.command("delete")
@click.option("-n", "--name", required=True)
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--force", is_flag=True, help="Cancel the endpoint's jobs that have not ended first (without it, "
              "such jobs make the delete fail, naming them).")
def endpoint_delete(name, yes, force) -> None:
    if not yes:
        click.confirm(f"Delete batch endpoint '{name}' and its deployments?", abort=True)
    client().batch_endpoints.begin_delete(name, force=force).result()


class _InputType(click.Choice):
    """``--input-type``: what works (uri_folder, uri_file) is offered; ``mltable`` is let through so
    the server refuses it with why and what to use instead (an MLTable input is not supported)."""

    def convert(self, value, param, ctx):  # noqa: ANN001, ANN201 - click's signature
        if isinstance(value, str) and value.strip().lower() == "mltable":
            return "mltable"
        return super().convert(value, param, ctx)


@batch_endpoint.command("invoke")
@click.option("-n", "--name", required=True, help="The batch endpoint.")
@click.option("-d", "--deployment-name", help="A deployment other than the endpoint's default.")
@click.option("-i", "--input", "input_", required=True,
              help="azureml://datastores/<ds>/paths/<p>, <asset>@latest, <asset>:<v>, an id, a storage URL, or a local path.")
@click.option("--input-type", type=_InputType(["uri_folder", "uri_file"]), help="Default: from the path.")
@click.option("--output-path", help="Data store folder for the output: azureml://datastores/<ds>/paths/<folder> "
              "(needs data/write on that store; default: azureml/<job>/score in the default store).")
@click.option("--set", "sets", multiple=True, help="Override a setting for this job: key=value (e.g. error_threshold=5).")
@click.option("--mini-batch-size", type=int)
@click.option("--instance-count", type=int)
@click.option("--job-name")
@click.option("--experiment-name", help="The experiment the job is grouped under (default: the endpoint's name).")
@output_options
def endpoint_invoke(name, deployment_name, input_, input_type, output_path, sets, mini_batch_size, instance_count,
                    job_name, experiment_name, output, query) -> None:
    """Start a job; prints it at once (the job keeps running after this command exits)."""
    settings = dict(parse_set(sets))
    if mini_batch_size is not None:
        settings["mini_batch_size"] = mini_batch_size
    if instance_count is not None:
        settings["instance_count"] = instance_count
    output_file = settings.pop("output_file_name", None)
    job = client().batch_endpoints.invoke(
        endpoint_name=name, deployment_name=deployment_name, input=Input(type=input_type, path=unquote_json(input_)),
        output_path=unquote_json(output_path), job_name=job_name, output_file_name=output_file,
        experiment_name=experiment_name, **settings)
    emit(job, output, query)


def unquote_json(value: str | None) -> str | None:
    """A value still in the JSON quotes ``--query id`` without ``-o tsv`` leaves around it
    (``"\"/subscriptions/...\""``) is the string inside them."""
    if value and len(value) >= 2 and value[0] == value[-1] == '"':
        try:
            inner = json.loads(value)
        except ValueError:
            return value
        return inner if isinstance(inner, str) else value
    return value


@batch_endpoint.command("list-jobs")
@click.option("-n", "--name", required=True)
@output_options
def endpoint_list_jobs(name, output, query) -> None:
    emit(client().batch_endpoints.list_jobs(name), output, query)


@click.group("batch-deployment")
def batch_deployment() -> None:
    """Create and manage deployments of batch endpoints."""


@batch_deployment.command("create")
@click.option("-f", "--file", "file", required=True, help="Deployment YAML (Azure ML's model batch deployment shape).")
@click.option("-n", "--name")
@click.option("-e", "--endpoint-name")
@click.option("--set-default", is_flag=True, help="Make it the endpoint's default deployment.")
@click.option("--set", "sets", multiple=True, help="Override a field: key=value.")
@output_options
def deployment_create(file, name, endpoint_name, set_default, sets, output, query) -> None:
    doc = read_yaml(file)
    if name:
        doc["name"] = name
    if endpoint_name:
        doc["endpoint_name"] = endpoint_name
    for key, value in parse_set(sets):
        set_path(doc, key, value)
    code = doc.get("code_configuration")
    if isinstance(code, dict) and code.get("code"):
        code["code"] = local_relative(str(code["code"]), file)
    if isinstance(doc.get("compute"), str):
        doc["compute"] = doc["compute"].removeprefix("azureml:")
    inline_paths(doc, file)
    deployment = build(BatchDeployment, doc, file)
    emit(client().batch_deployments.begin_create_or_update(deployment, set_default=set_default).result(), output, query)


@batch_deployment.command("show")
@click.option("-n", "--name", required=True)
@click.option("-e", "--endpoint-name", required=True)
@output_options
def deployment_show(name, endpoint_name, output, query) -> None:
    emit(client().batch_deployments.get(name, endpoint_name), output, query)


@batch_deployment.command("list")
@click.option("-e", "--endpoint-name", required=True)
@output_options
def deployment_list(endpoint_name, output, query) -> None:
    emit(client().batch_deployments.list(endpoint_name), output, query)


@batch_deployment.command("update")
@click.option("-n", "--name", required=True)
@click.option("-e", "--endpoint-name", required=True)
@click.option("--set", "sets", multiple=True, required=True, help="key=value, e.g. settings.mini_batch_size=20.")
@output_options
def deployment_update(name, endpoint_name, sets, output, query) -> None:
    changes: dict = {}
    for key, value in parse_set(sets):
        set_path(changes, key, value)
    if not changes:
        raise SpecError("nothing to update: pass --set key=value")
    emit(client().batch_deployments.update(endpoint_name, name, changes), output, query)


@batch_deployment.command("delete")
@click.option("-n", "--name", required=True)
@click.option("-e", "--endpoint-name", required=True)
@click.option("-y", "--yes", is_flag=True)
@click.option("--force", is_flag=True, help="Cancel the deployment's jobs that have not ended first (without it, "
              "such jobs make the delete fail, naming them).")
def deployment_delete(name, endpoint_name, yes, force) -> None:
    if not yes:
        click.confirm(f"Delete deployment '{name}' of '{endpoint_name}'?", abort=True)
    client().batch_deployments.begin_delete(name, endpoint_name, force=force).result()


@batch_deployment.command("list-jobs")
@click.option("-n", "--name", required=True)
@click.option("-e", "--endpoint-name", required=True)
@output_options
def deployment_list_jobs(name, endpoint_name, output, query) -> None:
    emit(client().batch_deployments.list_jobs(endpoint_name, name), output, query)


COMMANDS = [batch_endpoint, batch_deployment]
