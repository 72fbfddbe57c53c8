"""The job's lister: input files → mini-batches, on a background thread into a bounded queue."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import Any

from batchpoint._internal.clock import utcnow
from batchpoint.engines.planning import FileRef, MiniBatch, plan_minibatches
from batchpoint.storage.registry import open_backend

_END = object()


class Lister:
    """Lists input files on a background thread into a bounded queue, so scoring starts with the
    first mini-batch while a long listing goes on; counts and timestamps are recorded on the job."""

    def __init__(self, store: Any, name: str, inputs: list[tuple[str, Any]], mini_batch_size: int) -> None:
        self.store, self.name, self.inputs, self.size = store, name, inputs, mini_batch_size
        self.q: queue.Queue[Any] = queue.Queue(maxsize=max(256, mini_batch_size * 64))
        self.error: BaseException | None = None
        self.closed = threading.Event()
        self.thread = threading.Thread(target=self._list, name=f"lister-{name}", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def _files(self) -> Iterator[FileRef]:
        for key, resolved in self.inputs:
            if resolved.type == "uri_file":
                yield FileRef(key, resolved.path)
                continue
            for info in open_backend(resolved.spec).iter_files(resolved.path):
                yield FileRef(key, info.path)

    def _list(self) -> None:
        count = batches = 0
        try:
            for batch in plan_minibatches(self._files(), self.size):
                count += len(batch.files)
                batches += 1
                if not self._put(batch):
                    return
            self.store.update_job(self.name, files_total=count, mini_batches_total=batches, listing_complete=True,
                                  listing_completed_at=utcnow())
        except BaseException as exc:  # noqa: BLE001 - re-raised on the runner's thread
            self.error = exc
        finally:
            self._put(_END)

    def _put(self, item: Any) -> bool:
        while not self.closed.is_set():
            try:
                self.q.put(item, timeout=0.5)
                return True
            except queue.Full:
                continue
        return False

    def close(self) -> None:
        self.closed.set()

    def batches(self) -> Iterator[MiniBatch]:
        while True:
            item = self.q.get()
            if item is _END:
                return
            yield item

    def raise_if_failed(self) -> None:
        if self.error is not None:
            raise self.error
