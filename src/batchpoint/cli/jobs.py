"""``job`` verbs."""

from __future__ import annotations

import click

from batchpoint.cli.main import client
from batchpoint.cli.output import emit, output_options
from batchpoint.entities import JobStatus


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
    """Follow a job until it ends: a line per status change ("[Running] scoring mini-batches"), its
    progress, and its worker logs. Exit code 0 when it completed, 1 when it failed or was canceled."""
    final = client().jobs.stream(name)
    if final.status != JobStatus.COMPLETED:
        raise SystemExit(1)


@job.command("cancel")
@click.option("-n", "--name", required=True)
@output_options
def job_cancel(name, output, query) -> None:
    """Cancel a job; exit code 1, saying so, when it had already ended."""
    job = client().jobs.begin_cancel(name).result()
    emit(job, output, query)
    if job.status != JobStatus.CANCELED:
        click.echo(f"job '{name}' had already ended ({job.status}): nothing was canceled", err=True)
        raise SystemExit(1)


@job.command("download")
@click.option("-n", "--name", required=True)
@click.option("--output-name", default="score", show_default=True)
@click.option("--download-path", default=".", show_default=True, help="Files go under <path>/named-outputs/<output-name>/.")
@click.option("--all", "all_", is_flag=True, help="Download every output.")
def job_download(name, output_name, download_path, all_) -> None:
    """Download a job's output files; says why when there is nothing to download (exit code 1)."""
    c = client()
    paths = c.jobs.download(name, download_path=download_path, output_name=output_name, all=all_)
    for path in paths:
        click.echo(str(path))
    if paths:
        click.echo(f"downloaded {len(paths)} file(s) of job '{name}' under {download_path}/named-outputs/", err=True)
        return
    click.echo(f"nothing downloaded: {nothing_to_download(c.jobs.get(name))}", err=True)
    raise SystemExit(1)


def nothing_to_download(job) -> str:
    """Why a job has no output files to download."""
    status = JobStatus(job.status)
    if status == JobStatus.FAILED:
        return f"job '{job.name}' failed ({job.status_message}); see batchpoint job show -n {job.name}"
    if status == JobStatus.CANCELED:
        return f"job '{job.name}' was canceled before it wrote its output"
    if status != JobStatus.COMPLETED:
        return f"job '{job.name}' is {job.status}: its output is written when it completes (batchpoint job stream -n {job.name})"
    if (job.settings or {}).get("output_action") == "summary_only":
        return (f"job '{job.name}' ran with output_action summary_only, which writes no rows: its counts are in "
                f"batchpoint job show -n {job.name} (the scoring script's own files are where it wrote them)")
    return f"job '{job.name}' completed but its output folder has no files"


COMMANDS = [job]
