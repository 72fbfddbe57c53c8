"""Claims from several servers on one PostgreSQL database (``store/sql.py`` ``claim_next_job``): a
claim in progress holds its job's row (``FOR UPDATE SKIP LOCKED``), so a second server claiming at
the same moment takes the next queued job instead of losing a compare-and-set on the same one and
coming back empty while jobs wait; and many concurrent claimers take every job exactly once."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import make_url

from batchpoint.jobs import lifecycle
from batchpoint.store.sql import SqlMetadataStore

pytestmark = [pytest.mark.postgres, pytest.mark.timeout(120)]


@pytest.fixture
def pg_store(postgres_url: str) -> Iterator[SqlMetadataStore]:
    """A store on a fresh database of the test PostgreSQL (dropped afterwards)."""
    with fresh_database(postgres_url) as url:
        store = SqlMetadataStore(url)
        store.migrate()
        yield store
        store.close()


class fresh_database:  # noqa: N801 - a context manager, used like a function
    def __init__(self, server_url: str) -> None:
        self.admin = create_engine(make_url(server_url).set(database="postgres"), isolation_level="AUTOCOMMIT")
        self.name = f"bp_{uuid.uuid4().hex[:12]}"
        self.url = make_url(server_url).set(database=self.name).render_as_string(hide_password=False)

    def __enter__(self) -> str:
        with self.admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{self.name}"'))
        return self.url

    def __exit__(self, *exc: object) -> None:
        with self.admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)'))
        self.admin.dispose()


def queue(store: SqlMetadataStore, count: int) -> list[str]:
    names = []
    for i in range(count):
        name = f"claim-{i:03d}-{uuid.uuid4().hex[:6]}"
        lifecycle.create(store, name, endpoint_name="ep", inputs={}, outputs={}, settings={}, plan={})
        names.append(name)
    return names


def test_a_claim_in_progress_does_not_make_another_come_back_empty(pg_store: SqlMetadataStore) -> None:
    first, second = queue(pg_store, 2)
    other = SqlMetadataStore(pg_store.url)  # the second server: its own connections
    second_done = threading.Event()
    holder = threading.current_thread()
    fired: list[bool] = []

    @event.listens_for(pg_store.engine, "after_cursor_execute")
    def pause_after_select(conn, cursor, statement, *args) -> None:  # noqa: ANN001
        # the first server has read which job is oldest; the second claims before it moves on
        sql = " ".join(statement.split()).upper()
        if threading.current_thread() is holder and not fired and sql.startswith("SELECT JOBS.NAME FROM JOBS WHERE") \
                and "ORDER BY JOBS.CREATED_AT" in sql:
            fired.append(True)
            threading.Thread(target=lambda: (got.append(lifecycle.claim_next(other, "server-b")),
                                             second_done.set()), daemon=True).start()
            second_done.wait(5)

    got: list = []
    mine = lifecycle.claim_next(pg_store, "server-a")
    second_done.wait(10)
    other.close()
    assert mine is not None and mine.name == first, "the first claim lost its job"
    assert got and got[0] is not None and got[0].name == second, got
    assert {pg_store.get_job(n).status for n in (first, second)} == {"Preparing"}


def test_concurrent_claimers_take_every_job_exactly_once(pg_store: SqlMetadataStore) -> None:
    names = queue(pg_store, 40)
    stores = [SqlMetadataStore(pg_store.url) for _ in range(6)]
    claimed: list[list[str]] = [[] for _ in stores]
    start = threading.Barrier(len(stores))

    def claimer(i: int) -> None:
        start.wait()
        while (row := lifecycle.claim_next(stores[i], f"server-{i}")) is not None:
            claimed[i].append(row.name)

    threads = [threading.Thread(target=claimer, args=(i,)) for i in range(len(stores))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for s in stores:
        s.close()
    everything = [n for c in claimed for n in c]
    assert sorted(everything) == sorted(names)  # each job once, none left behind
    assert pg_store.count_jobs("Queued") == 0
    owners = {pg_store.list_job_events(n)[-1].data["owner"] for n in names}
    assert len(owners) > 1
