"""A real workspace in process (SQLite, the default data store a local folder) and helpers that
give a job finished parts the way a run does: the job's writer writes them, the done log names them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from batchpoint.identity.secrets import SecretBox
from batchpoint.jobs import lifecycle
from batchpoint.jobs.folder import JobFolder
from batchpoint.outputs import writer_for
from batchpoint.settings import Settings
from batchpoint.store.sql import SqlMetadataStore
from batchpoint.workspace import WorkspaceService


@pytest.fixture
def ws(tmp_path: Path) -> Iterator[WorkspaceService]:
    settings = Settings(home=tmp_path / "home")
    settings.home.mkdir(parents=True)
    store = SqlMetadataStore(f"sqlite:///{tmp_path / 'meta.db'}")
    store.migrate()
    workspace = WorkspaceService(settings, store, SecretBox.load_or_create(settings.home / "server.key"))
    workspace.bootstrap()
    yield workspace
    store.close()


def make_job(ws: WorkspaceService, name: str, action: str, file_name: str | None = "predictions.csv",
             **settings: Any) -> None:
    """A job of output action ``action`` writing to its default output location, Running."""
    folder = f"azureml/{name}/score"
    output = {"path": f"azureml://datastores/workspaceblobstore/paths/{folder}"}
    if file_name:
        output["file_name"] = file_name
    lifecycle.create(ws.store, name, endpoint_name="ep", inputs={}, outputs={"score": output},
                     settings={"output_action": action, **settings}, plan={},
                     output_datastore="workspaceblobstore", output_folder=folder)
    assert lifecycle.transition(ws.store, name, lifecycle.JobStatus.PREPARING)
    assert lifecycle.transition(ws.store, name, lifecycle.JobStatus.RUNNING, "scoring")


def score(ws: WorkspaceService, name: str, action: str, results: dict[int, Any]) -> int:
    """Each mini-batch's ``run()`` result written as its part by the job's writer and recorded as
    done (index order as given); returns the rows written."""
    folder = JobFolder.local(ws.settings.jobs_dir, name)
    writer, done, rows = writer_for(action), folder.done_log(), 0
    for index, result in results.items():
        key = f"{index:08d}-0000"
        count = writer.write_part(Path(folder.parts_dir), key, result)
        done.add(index, parts=[key], rows=count, files_completed=1, mini_batches_completed=1)
        rows += count
    ws.store.update_job(name, rows=rows, mini_batches_completed=len(results))
    return rows


def output_file(ws: WorkspaceService, name: str, rel: str = "predictions.csv") -> Path:
    return ws.settings.resolved_default_datastore_path() / "azureml" / name / "score" / rel
