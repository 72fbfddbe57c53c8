"""The same metadata-store CRUD against SQLite and PostgreSQL (``SqlMetadataStore(url).migrate()``).

The PostgreSQL case uses the server that ``scripts/test.sh`` starts (``postgres_url``); it fails
loudly without it unless ``BATCHPOINT_TEST_ALLOW_MISSING_COMPONENTS=1``. Names are unique per run,
since the PostgreSQL database outlives one test session.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from batchpoint._internal.clock import utcnow
from batchpoint.exceptions import ConflictError, NotFoundError, ValidationError
from batchpoint.jobs import lifecycle
from batchpoint.jobs.lifecycle import transition
from batchpoint.jobs.states import JobStatus
from batchpoint.store.sql import SqlMetadataStore
from batchpoint.store.tables import DatastoreRow


@pytest.fixture(params=[pytest.param("sqlite"), pytest.param("postgresql", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SqlMetadataStore]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'metadata.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
    store = SqlMetadataStore(url)
    store.migrate()
    store.migrate()  # idempotent: a second server start on the same database
    yield store
    store.close()


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def test_data_assets_and_models(store: SqlMetadataStore) -> None:
    name = _name("heart")
    first = store.create_asset("data", name=name, type="uri_folder", path="azureml://datastores/ws/paths/a")
    second = store.create_asset("data", name=name, type="uri_folder", path="azureml://datastores/ws/paths/b",
                                description="second", tags={"k": "v"})
    named = store.create_asset("data", name=name, version="v-named", type="uri_file", path="azureml://x/paths/f.csv")
    assert (first.version, second.version, named.version) == ("1", "2", "v-named")
    assert store.get_asset("data", name, version="2").path.endswith("/b")
    assert store.get_asset("data", name, version="2").tags == {"k": "v"}
    assert store.get_asset("data", name, label="latest").version == "v-named"
    assert store.create_asset("data", name=name, type="uri_folder", path="p").version == "3"  # next number
    with pytest.raises(ConflictError, match="already exists"):
        store.create_asset("data", name=name, version="2", type="uri_folder", path="p")
    with pytest.raises(ValidationError):
        store.create_asset("data", name=name, version="bad version!", type="uri_folder", path="p")
    with pytest.raises(NotFoundError, match="known versions: 1, 2, 3, v-named"):
        store.get_asset("data", name, version="9")
    with pytest.raises(NotFoundError, match="no label 'prod'"):
        store.get_asset("data", name, label="prod")
    with pytest.raises(NotFoundError, match="was not found"):
        store.get_asset("data", _name("missing"))
    assert [r.version for r in store.list_assets("data", name)] == ["1", "2", "v-named", "3"]
    # models are a separate collection with the same verbs
    model = store.create_asset("models", name=name, type="mlflow_model", path="azureml://datastores/ws/paths/m")
    assert model.version == "1"
    assert store.get_asset("models", name).type == "mlflow_model"
    store.delete_asset("models", name, "1")
    with pytest.raises(NotFoundError):
        store.get_asset("models", name)


def test_datastores_endpoints_and_deployments(store: SqlMetadataStore) -> None:
    ds = _name("store")
    now = utcnow()
    store.put_datastore(DatastoreRow(name=ds, kind="local", config={"path": "/tmp/x"}, credential_kind="none",
                                     public_credential={}, is_default=False, created_at=now, updated_at=now))
    row = store.get_datastore(ds)
    assert row.kind == "local" and row.config == {"path": "/tmp/x"}
    assert ds in {d.name for d in store.list_datastores()}
    ep = _name("ep")
    store.put_endpoint(ep, {"name": ep, "auth_mode": "aad_token"})
    store.put_endpoint(ep, {"name": ep, "auth_mode": "key"})
    assert store.get_endpoint(ep).spec["auth_mode"] == "key"
    store.put_deployment(ep, "blue", {"name": "blue", "settings": {"mini_batch_size": 10}})
    assert store.get_deployment(ep, "blue").spec["settings"]["mini_batch_size"] == 10
    assert [d.name for d in store.list_deployments(ep)] == ["blue"]
    store.delete_endpoint(ep)
    with pytest.raises(NotFoundError):
        store.get_deployment(ep, "blue")
    with pytest.raises(NotFoundError, match=ep):
        store.get_endpoint(ep)


def test_jobs_claim_progress_failures_and_recovery(store: SqlMetadataStore) -> None:
    ep = _name("ep")
    name = _name("job")
    store.create_job(name=name, endpoint_name=ep, deployment_name="blue", status="Queued",
                     inputs={"heart": {"path": "azureml:heart@latest"}}, outputs={}, settings={"mini_batch_size": 2},
                     plan={"workers": 1})
    with pytest.raises(ConflictError):
        store.create_job(name=name, endpoint_name=ep, status="Queued")
    job = store.get_job(name)
    assert job.status == "Queued" and job.inputs["heart"]["path"] == "azureml:heart@latest"
    assert [j.name for j in store.list_jobs(endpoint=ep)] == [name]

    owner = _name("server")
    claimed = None
    while claimed is None or claimed.name != name:  # other queued jobs may share a PostgreSQL database
        claimed = lifecycle.claim_next(store, owner)
        assert claimed is not None
    assert claimed.status == "Preparing" and claimed.owner == owner and claimed.heartbeat_at is not None
    assert transition(store, name, JobStatus.RUNNING, "scoring")
    assert not transition(store, name, JobStatus.NOT_STARTED)  # not an allowed move

    store.add_job_counts(name, rows=100, files_completed=1, mini_batches_completed=1)
    store.add_job_counts(name, rows=3, files_completed=1)
    store.add_failure(name, 1, "heart-unlabeled-2.csv", "ValueError: corrupt")
    job = store.get_job(name)
    assert (job.rows, job.files_completed, job.mini_batches_completed) == (103, 2, 1)
    (failure,) = store.list_failures(name)
    assert failure.file == "heart-unlabeled-2.csv" and "ValueError" in failure.error

    # a job whose heartbeat is old is found by crash recovery, a fresh one is not
    assert name not in {j.name for j in lifecycle.stale_jobs(store, utcnow() - timedelta(seconds=60))}
    store.update_job(name, heartbeat_at=utcnow() - timedelta(seconds=120))
    assert name in {j.name for j in lifecycle.stale_jobs(store, utcnow() - timedelta(seconds=60))}
    # the requeue is one compare-and-set: another owner, or a heartbeat that came meanwhile, wins
    assert not lifecycle.requeue_crashed(store, name, "another-server", utcnow() - timedelta(seconds=60))
    store.update_job(name, heartbeat_at=utcnow())
    assert not lifecycle.requeue_crashed(store, name, owner, utcnow() - timedelta(seconds=60))
    store.update_job(name, heartbeat_at=utcnow() - timedelta(seconds=120))
    assert lifecycle.requeue_crashed(store, name, owner, utcnow() - timedelta(seconds=60))
    assert store.get_job(name).status == "Queued"
    assert transition(store, name, JobStatus.PREPARING) and transition(store, name, JobStatus.RUNNING)

    assert transition(store, name, JobStatus.CANCELED, "canceled by the user")
    assert not transition(store, name, JobStatus.COMPLETED)  # terminal: a late completion loses
    job = store.get_job(name)
    assert job.status == "Canceled" and job.end_time is not None
    with pytest.raises(NotFoundError):
        store.get_job(_name("missing"))
