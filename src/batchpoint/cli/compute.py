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
@click.option("-f", "--file", "file")
@click.option("-n", "--name")
@click.option("--type", "type_", type=click.Choice(["amlcompute", "local"]))
@click.option("--size")
@click.option("--min-instances", type=int)
@click.option("--max-instances", type=int)
@click.option("--idle-time-before-scale-down", type=int)
@output_options
def compute_create(file, name, type_, size, min_instances, max_instances, idle_time_before_scale_down, output, query) -> None:
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
