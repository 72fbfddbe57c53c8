"""``environment`` verbs: registered environments (Azure's shape) and what was built for them."""

from __future__ import annotations

import click

from batchpoint.cli.main import client
from batchpoint.cli.output import emit, output_options
from batchpoint.cli.specs import build, local_relative, parse_set, read_yaml, set_path
from batchpoint.entities import Environment
from batchpoint.sdk.environments import read_conda_file


@click.group("environment")
def environment() -> None:
    """Register environments (a conda file's pip section, built with uv for the deployments that
    use them) and inspect or prune the environments built. See docs/environments.md."""


@environment.command("create")
@click.option("-f", "--file", "file", help="Environment YAML (name, version, conda_file, image, description, tags).")
@click.option("-n", "--name")
@click.option("-v", "--version")
@click.option("--conda-file", help="A conda environment file (its pip section and packages are installed).")
@click.option("-i", "--image", help="A container image: accepted and kept, not used (workers run in a virtualenv).")
@click.option("--description")
@click.option("--set", "sets", multiple=True, help="Override a field: key=value.")
@output_options
def environment_create(file, name, version, conda_file, image, description, sets, output, query) -> None:
    """Register an environment version (built by the first job that needs it)."""
    doc = read_yaml(file) if file else {}
    for key, value in (("name", name), ("version", version), ("conda_file", conda_file), ("image", image),
                       ("description", description)):
        if value is not None:
            doc[key] = value
    for key, value in parse_set(sets):
        set_path(doc, key, value)
    if isinstance(doc.get("conda_file"), str):  # a file: read here, its content is sent
        doc["conda_file"] = read_conda_file(local_relative(doc["conda_file"], file))
    emit(client().environments.create_or_update(build(Environment, doc, file or "command line")), output, query)


@environment.command("show")
@click.option("-n", "--name", required=True)
@click.option("-v", "--version")
@click.option("-l", "--label")
@output_options
def environment_show(name, version, label, output, query) -> None:
    """Show an environment and what was built for it (path, size, packages, last use)."""
    emit(client().environments.get(name, version=version, label=label), output, query)


@environment.command("list")
@click.option("-n", "--name")
@output_options
def environment_list(name, output, query) -> None:
    emit(client().environments.list(name=name), output, query)


@environment.command("delete")
@click.option("-n", "--name", required=True)
@click.option("-v", "--version", required=True)
def environment_delete(name, version) -> None:
    """Delete a registered environment version (refused while a deployment names it)."""
    client().environments.delete(name, version)
    click.echo(f"deleted environment {name}:{version}")


@environment.command("list-builds")
@output_options
def environment_list_builds(output, query) -> None:
    """The environments built on the server (by hash): source, path, size, packages, last use."""
    emit(client().environments.list_builds(), output, query)


@environment.command("prune")
@click.option("--older-than-days", type=float,
              help="Remove builds unused for this many days (default: the server's environments.prune_after_days).")
@output_options
def environment_prune(older_than_days, output, query) -> None:
    """Remove built environments not used for a while (the next job that needs one builds it again)."""
    emit(client().environments.prune(older_than_days), output, query)


COMMANDS = [environment]
