"""``job`` verbs."""

from __future__ import annotations

import click

from batchpoint.cli.main import client
from batchpoint.cli.output import emit, output_options


@click.group("job")
def job() -> None:
    """Inspect, follow, cancel and download jobs."""


@job.command("show")
@click.option("-n", "--name", required=True)
@output_options
def job_show(name, output, query) -> None:
    emit(client().jobs.get(name), output, query)


@job.command("list")
@click.option("--endpoint-name")
@output_options
def job_list(endpoint_name, output, query) -> None:
    emit(client().jobs.list(endpoint_name=endpoint_name), output, query)


@job.command("stream")
@click.option("-n", "--name", required=True)
def job_stream(name) -> None:
    """Follow a job's status and worker logs until it ends; exit code 1 if it did not complete."""
    final = client().jobs.stream(name)
    if final.status != "Completed":
        raise SystemExit(1)


@job.command("cancel")
@click.option("-n", "--name", required=True)
@output_options
def job_cancel(name, output, query) -> None:
    emit(client().jobs.begin_cancel(name).result(), output, query)


@job.command("download")
@click.option("-n", "--name", required=True)
@click.option("--output-name", default="score", show_default=True)
@click.option("--download-path", default=".", show_default=True, help="Files go under <path>/named-outputs/<output-name>/.")
@click.option("--all", "all_", is_flag=True, help="Download every output.")
def job_download(name, output_name, download_path, all_) -> None:
    for path in client().jobs.download(name, download_path=download_path, output_name=output_name, all=all_):
        click.echo(str(path))


COMMANDS = [job]
