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
@click.option("--web", is_flag=True, help="Open the job's page (/ui/jobs/<name>) in a web browser and print its URL.")
@output_options
def job_show(name, web, output, query) -> None:
    """A job: status, counts, phase timings, inputs as resolved (with the credential kind), outputs,
    an errors summary and its log files."""
    c = client()
    found = c.jobs.get(name)
    if web:
        import webbrowser
        from urllib.parse import quote

        url = f"{c.base_url.rstrip('/')}/ui/jobs/{quote(found.name)}"
        click.echo(url)
        if not webbrowser.open(url):
            click.echo("no web browser could be opened here: open the URL above (sign in with an API key)", err=True)
        return
    emit(found, output, query)


@job.command("list")
@click.option("--endpoint-name")
@click.option("-p", "--parent-job-name", help="List the child jobs of this job (a batch job's batchscoring step).")
@output_options
def job_list(endpoint_name, parent_job_name, output, query) -> None:
    emit(client().jobs.list(endpoint_name=endpoint_name, parent_job_name=parent_job_name), output, query)


@job.command("stream")
@click.option("-n", "--name", required=True)
@click.option("--logs", is_flag=True, help="Also print the worker log lines as they are written.")
def job_stream(name, logs) -> None:
    """Follow a job until it ends: each status and phase with its time, a progress bar (mini-batches
    and files done / failed / total, rows/s, ETA), the root cause first when it fails. Piped: plain
    lines, no control codes. Exit code 1 when it failed; 0 when it completed or was canceled (as
    ``az ml job stream``, which raises only for a failed job; ``job show`` tells the two apart)."""
    from batchpoint.cli.output import job_view

    view = job_view()
    try:
        final = client().jobs.stream(name, logs=logs, view=view)
    finally:
        getattr(view, "close", lambda: None)()
    if final.status == JobStatus.FAILED:
        raise SystemExit(1)


@job.command("cancel")
@click.option("-n", "--name", required=True)
@output_options
def job_cancel(name, output, query) -> None:
    """Cancel a job. Exit code 0 when it is Canceled (now, or already before); 1, saying so, when it had
    already ended otherwise (Completed or Failed): nothing was canceled."""
    job = client().jobs.begin_cancel(name).result()
    emit(job, output, query)
    if job.status != JobStatus.CANCELED:
        click.echo(f"job '{name}' had already ended ({job.status}): nothing was canceled", err=True)
        raise SystemExit(1)


#: the errors file beside a job's predictions (``jobs/errors_file.py``; the second name when the
#: predictions file is itself called errors.jsonl)
ERRORS_FILES = ("errors.jsonl", "batchpoint-errors.jsonl")


@job.command("download")
@click.option("-n", "--name", required=True)
@click.option("--output-name", default="score", show_default=True)
@click.option("--download-path", default=".", show_default=True, help="Files go under <path>/named-outputs/<output-name>/.")
@click.option("--all", "all_", is_flag=True, help="Download every output.")
def job_download(name, output_name, download_path, all_) -> None:
    """Download a job's output files and its errors file (errors.jsonl, when files failed); says why when there
    is nothing to download, or only the errors file of a failed or canceled job (exit code 1)."""
    c = client()
    paths = c.jobs.download(name, download_path=download_path, output_name=output_name, all=all_)
    for path in paths:
        click.echo(str(path))
    if paths and all(p.name in ERRORS_FILES for p in paths) and c.jobs.get(name).status != JobStatus.COMPLETED:
        click.echo(f"only the job's errors file came (it names each failed file): {nothing_to_download(c.jobs.get(name))}",
                   err=True)
        raise SystemExit(1)
    if paths:
        click.echo(f"downloaded {len(paths)} file(s) of job '{name}' under {download_path}/named-outputs/", err=True)
        say_if_partial(c.jobs.get(name))
        return
    click.echo(f"nothing downloaded: {nothing_to_download(c.jobs.get(name))}", err=True)
    raise SystemExit(1)


def say_if_partial(job) -> None:
    """A canceled job's output holds only its finished mini-batches: say so."""
    for out_name, out in (job.outputs or {}).items():
        if getattr(out, "partial", None):
            p = job.progress
            click.echo(f"note: output '{out_name}' of job '{job.name}' is PARTIAL: the job was {job.status} and its "
                       f"output holds only the mini-batches finished before that ({p.files_completed} of "
                       f"{p.files_total if p.files_total is not None else '?'} files, {p.rows} rows; see _PARTIAL.json "
                       f"beside it). Score the rest with: batchpoint job rerun --name {job.name} --failed-only",
                       err=True)


@job.command("rerun")
@click.option("-n", "--name", required=True, help="The finished job (Completed, Failed or Canceled) to rerun.")
@click.option("--failed-only", is_flag=True,
              help="Score only the files that did not succeed in that job (failed, or never scored because it "
                   "failed or was canceled); the new job's output merges the first job's rows with its own into "
                   "one complete file. Without it, every file of the first job is scored again.")
@output_options
def job_rerun(name, failed_only, output, query) -> None:
    """Start a new job over the files of a finished job, with its settings, on the deployment as it is now
    (its current model and code). The first job and its output are never changed."""
    emit(client().jobs.rerun(name, failed_only=failed_only), output, query)


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
