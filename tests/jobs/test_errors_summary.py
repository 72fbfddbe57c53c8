"""``job show``'s errors summary (``jobs/errors_file.py`` ``errors_summary``): the failures are
counted by kind in the database (``store.failure_kinds``) instead of reading up to 10,000 failure
rows with their texts at each show; the summary is the same: the count (of the first
``SUMMARY_ROWS``), ``more`` at that cut, the kinds in the order they first occur, the first few
failures as recorded. SQLite and PostgreSQL."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import event

from batchpoint.jobs import errors_file, lifecycle
from batchpoint.store.sql import SqlMetadataStore

pytestmark = pytest.mark.timeout(120)

KINDS = ["input", "user", "user", "platform", "timeout", "user", "input", "platform"]


def failed_job(store: SqlMetadataStore, kinds: list[str]) -> str:
    name = f"failing-{uuid.uuid4().hex[:8]}"
    lifecycle.create(store, name, endpoint_name="ep", inputs={}, outputs={}, settings={}, plan={})
    other = f"other-{uuid.uuid4().hex[:8]}"  # another job's failures are not this one's
    lifecycle.create(store, other, endpoint_name="ep", inputs={}, outputs={}, settings={}, plan={})
    for i, kind in enumerate(kinds):
        store.add_failure(name, i, f"in/file-{i}.csv", f"ValueError: bad row {i} (score.py, line 3, in run)",
                          kind=kind, attempt=1)
        store.add_failure(other, i, f"in/other-{i}.csv", "KeyError: x", kind="timeout")
    return name


def test_the_summary_counts_kinds_in_order_of_first_occurrence(store: SqlMetadataStore) -> None:
    name = failed_job(store, KINDS)
    summary = errors_file.errors_summary(store, store.get_job(name))
    assert summary is not None
    assert summary["failed_files"] == 8 and summary["more"] is False
    assert list(summary["by_kind"].items()) == [("input", 2), ("user", 3), ("platform", 2), ("timeout", 1)]
    assert [f["file"] for f in summary["first"]] == [f"file-{i}.csv" for i in range(5)]
    assert [f["kind"] for f in summary["first"]] == KINDS[:5]
    assert summary["first"][1]["exception_type"] == "ValueError" and summary["first"][1]["message"] == "bad row 1"
    # the first rows the show read already give the same summary (no second read of them)
    assert errors_file.errors_summary(store, store.get_job(name), first_rows=store.list_failures(name, limit=50)) \
        == summary


def test_more_is_said_at_the_cut_and_only_the_first_failures_are_counted(store: SqlMetadataStore,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    name = failed_job(store, KINDS)
    monkeypatch.setattr(errors_file, "SUMMARY_ROWS", 4)
    summary = errors_file.errors_summary(store, store.get_job(name))
    assert summary is not None and summary["failed_files"] == 4 and summary["more"] is True
    assert summary["by_kind"] == {"input": 1, "user": 2, "platform": 1}
    monkeypatch.setattr(errors_file, "SUMMARY_ROWS", 9)
    summary = errors_file.errors_summary(store, store.get_job(name))
    assert summary is not None and summary["failed_files"] == 8 and summary["more"] is False


def test_the_summary_reads_no_failure_text_beyond_the_first_few(store: SqlMetadataStore) -> None:
    name = failed_job(store, KINDS * 20)
    statements: list[str] = []

    @event.listens_for(store.engine, "before_cursor_execute")
    def seen(conn, cursor, statement, *args) -> None:  # noqa: ANN001
        statements.append(" ".join(statement.split()))

    summary = errors_file.errors_summary(store, store.get_job(name), first_rows=store.list_failures(name, limit=50))
    event.remove(store.engine, "before_cursor_execute", seen)
    assert summary is not None and summary["failed_files"] == 160
    # the only statement that reads the failures' texts is the show's own first 50
    texts = [s for s in statements if "job_failures.error" in s]
    assert len(texts) == 1 and "LIMIT" in texts[0], statements


def test_a_job_without_failures_has_no_summary(store: SqlMetadataStore) -> None:
    name = failed_job(store, [])
    assert errors_file.errors_summary(store, store.get_job(name)) is None
    assert errors_file.errors_summary(store, store.get_job(name), first_rows=[]) is None
