"""A resumed job scores again every mini-batch its done log does not hold, so the failures those
mini-batches' pieces recorded before the crash must go, or the job lists a file's failure twice
(seen when a split mini-batch's failed piece was recorded and the server died before its other
piece finished). The failures of finished mini-batches stay."""

from __future__ import annotations

import json
import threading
from pathlib import Path

from batchpoint.engines.planning import RetryPolicy
from batchpoint.jobs import lifecycle
from batchpoint.jobs.folder import DoneLog
from batchpoint.jobs.progress import Progress
from batchpoint.store.sql import SqlMetadataStore


def test_resume_drops_the_failures_of_unfinished_mini_batches(tmp_path: Path) -> None:
    store = SqlMetadataStore(f"sqlite:///{tmp_path / 'metadata.db'}")
    store.migrate()
    try:
        lifecycle.create(store, "resumed", endpoint_name="ep", inputs={}, outputs={}, settings={}, plan={})
        store.add_failure("resumed", 0, "in/a.csv", "ValueError: finished before the crash", kind="user", attempt=1)
        store.add_failure("resumed", 3, "in/d.csv", "ValueError: a piece of an unfinished one", kind="user", attempt=2)
        done = tmp_path / "done.jsonl"
        done.write_text(json.dumps({"index": 0, "files_completed": 0, "files_failed": 1, "rows": 0,
                                    "mini_batches_completed": 0, "mini_batches_failed": 1}) + "\n")
        progress = Progress(store, "resumed", RetryPolicy(), threading.Event(), DoneLog(done))
        try:
            kept = [(f.mini_batch, f.file) for f in store.list_failures("resumed")]
            assert kept == [(0, "in/a.csv")], kept
            assert progress.failed_names == ["a.csv"]
        finally:
            progress.close()
    finally:
        store.close()
