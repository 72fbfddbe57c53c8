"""``GET /jobs/<name>`` (``job show``, the SDK's wait, the web page's poll) reads what it shows once
and no more as the job grows: the job's record once (the read permission's check reads it; the
show uses that record), the caller's role assignments once (the same check and whether the caller
sees server paths), the failures once when there are none (their kinds counted in the database
when there are), and of the events only the status and phase ones (``store/sql.py``; the index of
migration 0008). In-process: FastAPI's TestClient over the real app and a real SQLite database."""

from __future__ import annotations

import re
import uuid
import warnings
from collections.abc import Iterator

import pytest
from sqlalchemy import event

with warnings.catch_warnings():  # starlette asks for httpx2, which it works without
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

from batchpoint.jobs import children, lifecycle
from batchpoint.jobs.states import JobStatus
from batchpoint.server.app import create_app
from batchpoint.settings import Settings
from batchpoint.store.sql import SqlMetadataStore

pytestmark = pytest.mark.timeout(120)

PROGRESS = 500


def finished_job(store: SqlMetadataStore, failures: int) -> str:
    name = f"shown-{uuid.uuid4().hex[:8]}"
    lifecycle.create(store, name, endpoint_name="ep", inputs={}, outputs={}, settings={}, plan={}, created_by="user:reader")
    assert lifecycle.transition(store, name, JobStatus.PREPARING)
    assert lifecycle.transition(store, name, JobStatus.RUNNING, "scoring mini-batches")
    for _ in range(0, PROGRESS, 50):
        lifecycle.record_progress_each(store, name, [{"files_completed": 1, "rows": 1, "mini_batches_completed": 1}] * 50)
    for i in range(failures):
        store.add_failure(name, i, f"in/f-{i}.csv", "ValueError: no", kind="user" if i % 3 else "input", attempt=1)
    assert lifecycle.transition(store, name, JobStatus.FINALIZING)
    assert lifecycle.transition(store, name, JobStatus.COMPLETED)
    return name


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, dict[str, str]]]:
    settings = Settings(home=tmp_path_factory.mktemp("show-home") / "home")
    settings.home.mkdir(parents=True)
    store = SqlMetadataStore(settings.resolved_database_url())
    store.migrate()
    names = {"clean": finished_job(store, 0), "failed": finished_job(store, 120)}  # ended: no server takes them
    store.close()
    with TestClient(create_app(settings)) as client:
        client.headers["Authorization"] = f"Bearer {(settings.home / 'owner.key').read_text().strip()}"
        assert client.post("/principals", json={"id": "user:reader", "kind": "user"}).status_code == 201
        assert client.post("/roleAssignments", json={"principal_id": "user:reader", "role": "Reader",
                                                      "scope": "workspace"}).status_code == 201
        names["reader_key"] = client.post("/principals/user:reader/keys", json={}).json()["key"]
        yield client, names


def _reads(client: TestClient, path: str, key: str | None = None) -> tuple[dict, list[str]]:
    statements: list[str] = []
    engine = client.app.state.ctx.store.engine

    def seen(conn, cursor, statement, *args) -> None:  # noqa: ANN001
        statements.append(" ".join(statement.split()))

    event.listen(engine, "before_cursor_execute", seen)
    try:
        response = client.get(path, headers={"Authorization": f"Bearer {key}"} if key else None)
    finally:
        event.remove(engine, "before_cursor_execute", seen)
    assert response.status_code == 200, response.text
    return response.json(), statements


def _from(statements: list[str], table: str) -> list[str]:
    return [s for s in statements if re.search(rf"\bFROM {table}\b", s)]


@pytest.mark.parametrize("as_reader", [False, True], ids=["owner", "reader"])
def test_a_show_reads_the_record_and_the_grants_once_and_no_progress_event(app, as_reader: bool) -> None:
    client, names = app
    job, statements = _reads(client, f"/jobs/{names['clean']}", names["reader_key"] if as_reader else None)
    assert [p["name"] for p in job["phases"]] == ["Queued", "Preparing", "Running", "listing", "Finalizing", "Completed"]
    assert job["progress"]["mini_batches_completed"] == PROGRESS and job.get("errors") is None
    assert len(_from(statements, "jobs")) == 1, statements
    assert len(_from(statements, "role_assignments")) == 1, statements
    assert len(_from(statements, "job_failures")) == 1, statements  # none: nothing more to count
    events = _from(statements, "job_events")
    assert events and all("job_events.type = " in s for s in events), events  # by type: through the index


def test_a_show_of_a_failed_job_counts_its_failures_without_reading_them_all(app) -> None:
    client, names = app
    job, statements = _reads(client, f"/jobs/{names['failed']}")
    assert job["errors"]["failed_files"] == 120 and job["errors"]["more"] is False
    assert job["errors"]["by_kind"] == {"input": 40, "user": 80}
    assert [f["file"] for f in job["errors"]["first"]] == [f"f-{i}.csv" for i in range(5)]
    assert len(job["failures"]) == 50
    texts = [s for s in _from(statements, "job_failures") if "job_failures.error" in s]
    assert len(texts) == 1, statements  # the show's 50; the summary counts kinds in the database


def test_the_batchscoring_step_is_shown_from_the_same_single_read(app) -> None:
    client, names = app
    child = children.child_name(names["clean"])
    job, statements = _reads(client, f"/jobs/{child}")
    assert job["name"] == child and job["parent_job_name"] == names["clean"]
    assert [p["name"] for p in job["phases"]][-1] == "Completed"
    assert len(_from(statements, "jobs")) == 1, statements
