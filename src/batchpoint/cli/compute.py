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
@click.option("--type", "type_", type=click.Choice(["amlcompute", "local"]))
@click.option("--size")
@click.option("--min-instances", type=int)
@click.option("--max-instances", type=int)
@click.option("--idle-time-before-scale-down", type=int)
@output_options
def compute_create(file, name, type_, size, min_instances, max_instances, idle_time_before_scale_down, output, query) -> None:
    """Create or update a compute. Its identity (YAML only) reads identity-based data: type
    managed_identity (client_id), workload_identity (tenant_id, client_id, token_file),
    service_principal (tenant_id, client_id, client_secret: stored encrypted, never shown) or
    aws_profile (profile, for S3). See docs/security.md."""
    doc = read_yaml(file) if file else {}
    given = {"name": name, "type": type_, "size": size, "min_instances": min_instances, "max_instances": max_instances,
             "idle_time_before_scale_down": idle_time_before_scale_down}
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
