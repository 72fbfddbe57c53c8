"""``model``, ``data`` and ``datastore`` verbs."""

from __future__ import annotations

import click

from batchpoint.cli.main import client
from batchpoint.cli.output import emit, output_options
from batchpoint.cli.specs import build, local_relative, parse_set, read_yaml, set_path
from batchpoint.entities import Data, Datastore, Model


def _doc(file: str | None, sets: tuple[str, ...], **given: object) -> dict:
    doc = read_yaml(file) if file else {}
    for key, value in given.items():
        if value is not None:
            doc[key] = value
    for key, value in parse_set(sets):
        set_path(doc, key, value)
    return doc


@click.group("model")
def model() -> None:
    """Register and inspect models (folders copied into the workspace, versioned)."""


@model.command("create")
@click.option("-f", "--file", "file", help="Model YAML (name, version, type, path, description).")
@click.option("-n", "--name")
@click.option("-v", "--version")
@click.option("-p", "--path", help="Local folder or file, or a data store path.")
@click.option("-t", "--type", "type_", type=click.Choice(["mlflow_model", "custom_model"]))
@click.option("--description")
@click.option("--set", "sets", multiple=True, help="Override a field: key=value.")
@output_options
def model_create(file, name, version, path, type_, description, sets, output, query) -> None:
    """Register a model version."""
    doc = _doc(file, sets, name=name, version=version, path=path, type=type_, description=description)
    doc["path"] = local_relative(doc.get("path"), file)
    emit(client().models.create_or_update(build(Model, doc, file or "command line")), output, query)


@model.command("show")
@click.option("-n", "--name", required=True)
@click.option("-v", "--version")
@click.option("-l", "--label")
@output_options
def model_show(name, version, label, output, query) -> None:
    emit(client().models.get(name, version=version, label=label), output, query)


@model.command("list")
@click.option("-n", "--name")
@output_options
def model_list(name, output, query) -> None:
    emit(client().models.list(name=name), output, query)


@click.group("data")
def data() -> None:
    """Register and inspect data assets (uri_folder, uri_file)."""


@data.command("create")
@click.option("-f", "--file", "file", help="Data asset YAML (name, description, type, path, version).")
@click.option("-n", "--name")
@click.option("-v", "--version")
@click.option("-p", "--path")
@click.option("-t", "--type", "type_", type=click.Choice(["uri_folder", "uri_file", "mltable"]))
@click.option("--description")
@click.option("--set", "sets", multiple=True, help="Override a field: key=value.")
@output_options
def data_create(file, name, version, path, type_, description, sets, output, query) -> None:
    """Create a data asset version; local paths are uploaded to the default data store."""
    doc = _doc(file, sets, name=name, version=version, path=path, type=type_, description=description)
    doc["path"] = local_relative(doc.get("path"), file)
    emit(client().data.create_or_update(build(Data, doc, file or "command line")), output, query)


@data.command("show")
@click.option("-n", "--name", required=True)
@click.option("-v", "--version")
@click.option("-l", "--label")
@output_options
def data_show(name, version, label, output, query) -> None:
    emit(client().data.get(name, version=version, label=label), output, query)


@data.command("list")
@click.option("-n", "--name")
@output_options
def data_list(name, output, query) -> None:
    emit(client().data.list(name=name), output, query)


@click.group("datastore")
def datastore() -> None:
    """Register and inspect data stores. Secrets are write-only."""


@datastore.command("create")
@click.option("-f", "--file", "file", required=True, help="Data store YAML.")
@click.option("-n", "--name")
@click.option("--set", "sets", multiple=True, help="Override a field: key=value.")
@output_options
def datastore_create(file, name, sets, output, query) -> None:
    doc = _doc(file, sets, name=name)
    emit(client().datastores.create_or_update(build(Datastore, doc, file)), output, query)


@datastore.command("show")
@click.option("-n", "--name", required=True)
@output_options
def datastore_show(name, output, query) -> None:
    emit(client().datastores.get(name), output, query)


@datastore.command("list")
@output_options
def datastore_list(output, query) -> None:
    emit(client().datastores.list(), output, query)


COMMANDS = [model, data, datastore]
