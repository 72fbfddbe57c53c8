"""A job's folder, ``<home>/jobs/<name>/``: ``parts/`` (one CSV per scored mini-batch), ``logs/``
(one log per worker) and ``done.jsonl`` (the finished mini-batches, read back on resume)."""

from __future__ import annotations

import json
import threading
from pathlib import Path


class DoneLog:
    """Finished mini-batches, appended as they finish; read back when a job resumes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.indexes: set[int] = set()
        self.totals = {"files_completed": 0, "files_failed": 0, "rows": 0, "mini_batches_completed": 0,
                       "mini_batches_failed": 0}
        if path.exists():
            for line in path.read_text().splitlines():
                entry = json.loads(line)
                self.indexes.add(entry["index"])
                for k in self.totals:
                    self.totals[k] += entry.get(k, 0)
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()

    def add(self, index: int, **counts: int) -> None:
        with self._lock, open(self.path, "a") as out:
            out.write(json.dumps({"index": index, **counts}) + "\n")


