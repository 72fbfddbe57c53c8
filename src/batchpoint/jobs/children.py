"""The child job Azure ML shows under each batch job: its ``batchscoring`` step.

On Azure a batch endpoint job is a pipeline job (``type: pipeline``) with one child, the parallel
scoring step (``display_name: batchscoring``, ``type: parallel``), listed by
``az ml job list --parent-job-name <job>`` / ``ml_client.jobs.list(parent_job_name=<job>)``.

Here a job has one scoring step, so the child is a **view of the same job record**, not a second
row: its status, times, progress, inputs and outputs are the parent's (they cannot disagree, and
nothing has to keep two rows in step). It is named ``<job>-batchscoring``; ``job show`` of that
name answers the child, ``job list --parent-job-name <job>`` lists it. Invoking a job whose own name
ends in ``-batchscoring`` is refused, so a child's name never means two things.
"""

from __future__ import annotations

from batchpoint.entities import Job
from batchpoint.exceptions import NotFoundError, ValidationError
from batchpoint.store.sql import SqlMetadataStore
from batchpoint.store.tables import JobRow

SUFFIX = "-batchscoring"
DISPLAY_NAME = "batchscoring"
TYPE = "parallel"


def is_child_name(name: str) -> bool:
    return name.endswith(SUFFIX) and len(name) > len(SUFFIX)


def child_name(parent: str) -> str:
    return f"{parent}{SUFFIX}"


def parent_name(name: str) -> str:
    """The batch job a name belongs to (itself, for a batch job's own name)."""
    return name[: -len(SUFFIX)] if is_child_name(name) else name


def job_row(store: SqlMetadataStore, name: str) -> JobRow:
    """The record of a job or of a child (its parent's); a missing one is a NotFoundError that names it."""
    if not is_child_name(name):
        return store.get_job(name)
    try:
        return store.get_job(parent_name(name))
    except NotFoundError:
        raise NotFoundError(f"job '{name}' not found: it would be the batchscoring step of job "
                            f"'{parent_name(name)}', which does not exist") from None


def child_entity(parent: Job) -> Job:
    """The ``batchscoring`` step of batch job ``parent``, as azure-ai-ml shows a child job."""
    return parent.model_copy(update={
        "name": child_name(parent.name), "display_name": DISPLAY_NAME, "type": TYPE,
        "parent_job_name": parent.name, "id": f"{parent.id}{SUFFIX}" if parent.id else None,
    })


def refuse_step(name: str, command: str) -> None:
    """A verb that acts on a batch job as a whole (``cancel``, ``rerun``), given a child's name:
    refused, naming the batch job to give instead (the child is a view of it, not a job of its own)."""
    if is_child_name(name):
        parent = parent_name(name)
        raise ValidationError(f"job '{name}' is the batchscoring step of job '{parent}': {command} that job instead "
                              f"(batchpoint job {command} -n {parent})")
