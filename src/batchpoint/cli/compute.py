"""``compute`` verbs: accepted in Azure's shape, run as local processes here."""

from __future__ import annotations

import click

from batchpoint.cli.main import client
from batchpoint.cli.output import emit, output_options
from batchpoint.cli.specs import build, read_yaml
from batchpoint.entities import AmlCompute


@click.group("compute")
def compute() -> None:
    """Create and inspect computes."""


@compute.command("create")
@click.option("-f", "--file", "file", help="YAML spec (name, size, min/max_instances, identity: {...}); options override it")
@click.option("-n", "--name")
@click.option("--type", "type_",
              help="a compute type an engine declares: amlcompute (the default) and local run on the local "
                   "process pool; ray: deployments on this compute run on the Ray cluster at --address "
                   "(docs/ray.md); any other is refused naming the valid types")
@click.option("--size")
@click.option("--min-instances", type=int,
              help="of each deployment on it, min_instances × max_concurrency_per_instance warm workers (Ray: "
                   "actors) are kept past workers.warm_idle_s; storing a lower value frees them "
                   "(docs/performance.md, docs/ray.md)")
@click.option("--max-instances", type=int)
@click.option("--idle-time-before-scale-down", type=int, help="kept, not used (workers.warm_idle_s is the idle "
              "timeout of warm workers)")
@click.option("--address", help="type ray: the Ray head's GCS address, host:port (e.g. 127.0.0.1:6379)")
@click.option("--auth-token-file", type=click.Path(exists=True, dir_okay=False),
              help="type ray: a file holding the cluster's auth token (RAY_AUTH_MODE=token); stored encrypted, "
                   "never shown")
@click.option("--num-cpus-per-worker", type=float, help="type ray: CPUs each worker actor asks Ray for (default 1)")
@output_options
def compute_create(file, name, type_, size, min_instances, max_instances, idle_time_before_scale_down, address,
                   auth_token_file, num_cpus_per_worker, output, query) -> None:
    """Create or update a compute. Its identity (YAML only) reads identity-based data: type
    managed_identity (client_id), workload_identity (tenant_id, client_id, token_file),
    service_principal (tenant_id, client_id, client_secret: stored encrypted, never shown) or
    aws_profile (profile, for S3). See docs/security.md. A compute of type ray names a Ray
    cluster (address, auth token): its deployments' workers are Ray actors (docs/ray.md)."""
    doc = read_yaml(file) if file else {}
    token = None
    if auth_token_file:
        with open(auth_token_file, encoding="utf-8") as handle:
            token = handle.read().strip() or None
    given = {"name": name, "type": type_, "size": size, "min_instances": min_instances, "max_instances": max_instances,
             "idle_time_before_scale_down": idle_time_before_scale_down, "address": address, "auth_token": token,
             "num_cpus_per_worker": num_cpus_per_worker}
    doc.update({k: v for k, v in given.items() if v is not None})
    emit(client().compute.begin_create_or_update(build(AmlCompute, doc, file or "command line")).result(), output, query)


@compute.command("show")
@click.option("-n", "--name", required=True)
@output_options
def compute_show(name, output, query) -> None:
    emit(client().compute.get(name), output, query)


@compute.command("list")
@output_options
def compute_list(output, query) -> None:
    emit(client().compute.list(), output, query)


COMMANDS = [compute]
