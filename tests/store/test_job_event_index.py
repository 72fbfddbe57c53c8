"""A job's events of some types (``store/sql.py`` ``list_job_events(types=...)``: ``job show``'s
status and phase events, a rerun's statuses, the web page's progress) are read through the index
(job_name, type, seq), not by walking every event of the job: a job has one progress event per
mini-batch, so a show of a job of 200,000 mini-batches read 200,000 rows for its ~10 status and
phase events (migration 0008). The answer is the same as filtering the whole history; an existing
database upgrades to the index (and back), on SQLite and PostgreSQL."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import create_engine, event, inspect

from batchpoint.jobs import lifecycle
from batchpoint.jobs.states import JobStatus
from batchpoint.store import migrate
from batchpoint.store.sql import SqlMetadataStore
from tests.store.test_claims import fresh_database

pytestmark = pytest.mark.timeout(120)

INDEX = "ix_job_events_job_name_type_seq"
PHASES = "ix_job_events_phases"  # the phase events of every job (/metrics; migration 0009)
PROGRESS = 300  # progress events: many more than the job's status and phase events


def finished_job(store: SqlMetadataStore, progress: int = PROGRESS, finish: bool = True) -> str:
    """A completed job (``finish``; else still running): its statuses, a listing phase, ``progress``
    progress events in groups of 64 (as the engine writes them) between and after the phase's two
    events."""
    name = f"events-{uuid.uuid4().hex[:8]}"
    lifecycle.create(store, name, endpoint_name="ep", inputs={}, outputs={}, settings={}, plan={})
    assert lifecycle.transition(store, name, JobStatus.PREPARING)
    assert lifecycle.transition(store, name, JobStatus.RUNNING, "scoring mini-batches")
    assert lifecycle.phase(store, name, "listing", "started", "listing the input")
    for done in range(0, progress, 64):
        lifecycle.record_progress_each(store, name, [{"files_completed": 1, "rows": 2, "mini_batches_completed": 1}]
                                       * min(64, progress - done))
        if done == 128:
            assert lifecycle.phase(store, name, "listing", "finished", "scoring mini-batches")
    if finish:
        assert lifecycle.transition(store, name, JobStatus.FINALIZING)
        assert lifecycle.transition(store, name, JobStatus.COMPLETED)
    return name


@pytest.mark.parametrize("types", [("status", "phase"), ("phase", "status"), ("status",), ("progress",)])
@pytest.mark.parametrize("after,limit", [(0, 10_000), (0, 3), (5, 10_000), (140, 2)])
def test_events_of_some_types_are_those_of_the_whole_history(store: SqlMetadataStore, types: tuple[str, ...],
                                                             after: int, limit: int) -> None:
    name = finished_job(store)
    history = store.list_job_events(name, 0, 100_000)
    assert len(history) == PROGRESS + 7 and [e.seq for e in history] == list(range(1, PROGRESS + 8))
    expected = [e.seq for e in history if e.type in types and e.seq > after][:limit]
    got = store.list_job_events(name, after, limit, types=types)
    assert [e.seq for e in got] == expected
    assert all(e.type in types for e in got)


def test_status_and_phase_events_are_read_through_the_type_index(tmp_path: Path) -> None:
    store = SqlMetadataStore(f"sqlite:///{tmp_path / 'metadata.db'}")
    store.migrate()
    name = finished_job(store)
    statements: list[tuple[str, object]] = []

    @event.listens_for(store.engine, "before_cursor_execute")
    def seen(conn, cursor, statement, parameters, *args) -> None:  # noqa: ANN001
        if "FROM job_events" in statement:
            statements.append((statement, parameters))

    events = store.list_job_events(name, 0, 10_000, types=("status", "phase"))
    event.remove(store.engine, "before_cursor_execute", seen)
    assert [e.status or e.data["state"] for e in events] == [
        "Queued", "Preparing", "Running", "started", "finished", "Finalizing", "Completed"]
    assert statements
    with store.engine.connect() as conn:
        for statement, parameters in statements:
            plan = [row[-1] for row in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters)]
            # each statement seeks the index by (job_name, type): no step walks the job's other events
            assert any(f"USING INDEX {INDEX} (job_name=? AND type=?" in step for step in plan), plan
            assert not any(step.startswith("SCAN") or "sqlite_autoindex" in step for step in plan), plan
    store.close()


def test_metrics_count_environment_builds_through_the_phase_index(tmp_path: Path) -> None:
    """``/metrics`` counts environment builds from every job's phase events at each scrape: read
    through the partial index of phase events, not by reading every event of every job."""
    from batchpoint.server.metrics import ENVIRONMENT_PHASE, DatabaseCollector

    store = SqlMetadataStore(f"sqlite:///{tmp_path / 'metadata.db'}")
    store.migrate()
    for outcome in ("finished", "finished", "failed"):
        name = finished_job(store, progress=100, finish=False)
        assert lifecycle.phase(store, name, ENVIRONMENT_PHASE, "started", "building the environment")
        assert lifecycle.phase(store, name, ENVIRONMENT_PHASE, outcome, "the environment")
    statements: list[tuple[str, object]] = []

    @event.listens_for(store.engine, "before_cursor_execute")
    def seen(conn, cursor, statement, parameters, *args) -> None:  # noqa: ANN001
        if "FROM job_events" in statement:
            statements.append((statement, parameters))

    metrics = {m.name: m for m in DatabaseCollector(store).collect()}
    event.remove(store.engine, "before_cursor_execute", seen)
    builds = {sample.labels["outcome"]: sample.value for sample in metrics["batchpoint_environment_builds"].samples
              if sample.name.endswith("_total")}
    assert builds == {"finished": 2, "failed": 1}, builds
    assert len(statements) == 1, statements
    with store.engine.connect() as conn:
        plan = [row[-1] for row in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {statements[0][0]}", statements[0][1])]
    assert any(f"USING INDEX {PHASES}" in step for step in plan), plan
    store.close()


def _indexes(url: str) -> dict[str, list[str]]:
    engine = create_engine(url)
    try:
        return {ix["name"]: list(ix["column_names"]) for ix in inspect(engine).get_indexes("job_events")}
    finally:
        engine.dispose()


def _to(url: str, revision: str, down: bool = False) -> None:
    engine = create_engine(url)
    try:
        if not down:
            migrate.upgrade(engine, revision)
            return
        cfg = migrate.alembic_config()
        with engine.begin() as connection:
            cfg.attributes["connection"] = connection
            command.downgrade(cfg, revision)
    finally:
        engine.dispose()


def _upgrade_an_existing_database(url: str) -> None:
    _to(url, "0007")  # a database made before the index: its events indexed by job_name alone
    assert "ix_job_events_job_name" in _indexes(url) and INDEX not in _indexes(url)
    store = SqlMetadataStore(url)
    name = finished_job(store, progress=100, finish=False)  # running while its server upgrades
    before = [(e.seq, e.type, e.status, e.data) for e in store.list_job_events(name, 0, 10_000)]
    store.migrate()  # as a server's start does
    indexes = _indexes(url)
    assert indexes[INDEX] == ["job_name", "type", "seq"], indexes
    assert indexes[PHASES] == ["job_name"], indexes
    assert "ix_job_events_job_name" not in indexes, indexes  # (job_name, seq) and the new one lead with it
    assert [(e.seq, e.type, e.status, e.data) for e in store.list_job_events(name, 0, 10_000)] == before
    assert [e.seq for e in store.list_job_events(name, 0, 10_000, types=("status",))] == [
        seq for seq, kind, _, _ in before if kind == "status"]
    lifecycle.record_progress(store, name, files_completed=1, rows=2, mini_batches_completed=1)
    assert lifecycle.transition(store, name, JobStatus.FINALIZING)
    after = store.list_job_events(name, 0, 10_000)
    assert [e.seq for e in after] == list(range(1, len(before) + 3))  # numbered on from the last
    assert [e.status for e in store.list_job_events(name, 0, 10_000, types=("status",))] == [
        "Queued", "Preparing", "Running", "Finalizing"]
    store.close()
    _to(url, "0007", down=True)  # and back
    assert "ix_job_events_job_name" in _indexes(url) and INDEX not in _indexes(url)
    assert PHASES not in _indexes(url)
    _to(url, "head")
    assert INDEX in _indexes(url) and PHASES in _indexes(url)


def test_an_existing_sqlite_database_upgrades_to_the_index(tmp_path: Path) -> None:
    _upgrade_an_existing_database(f"sqlite:///{tmp_path / 'metadata.db'}")


@pytest.mark.postgres
def test_an_existing_postgresql_database_upgrades_to_the_index(postgres_url: str) -> None:
    with fresh_database(postgres_url) as url:
        _upgrade_an_existing_database(url)
