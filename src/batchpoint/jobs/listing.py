"""The job's lister: input files → mini-batches, on a background thread into a bounded queue.

Every mini-batch is recorded in the job's manifest (``jobs/folder.py`` :class:`Manifest`) before
it is handed to the engine, so a resumed job scores exactly the files its first run listed:

- listing complete before the server stopped: the manifest's mini-batches are replayed and nothing
  is listed again (files added to the input folder since are not scored; files removed since fail
  as files that cannot be read);
- listing still running when it stopped: the recorded mini-batches are replayed, then the listing
  goes on from the start of the inputs, skipping every file already in the manifest, with indexes
  numbered on from the last recorded one.

The runner skips the replayed mini-batches that ``done.jsonl`` lists as finished. A job that
started before manifests were written has none: resumed, it lists its inputs again, as it did then.
"""

from __future__ import annotations

import json
import os
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from batchpoint._internal.apart import start_script
from batchpoint._internal.clock import utcnow
from batchpoint.engines.planning import FileRef, MiniBatch
from batchpoint.jobs import changed_inputs
from batchpoint.jobs.folder import Manifest
from batchpoint.jobs.lifecycle import record_listed_so_far, record_listing
from batchpoint.storage.registry import open_backend
from batchpoint.store.sql import SqlMetadataStore
from batchpoint.uri.resolve import ResolvedInput

_END = object()

#: How many listed files may wait in the queue for the engine, whatever the mini-batch size: the
#: lister runs at most this far ahead of the scoring, so the server's memory stays flat however
#: many files a folder holds (100,000 files of 100 per mini-batch: 100 mini-batches waiting, not
#: the whole listing). The server's setting ``jobs.listing_queue_files``
#: (``BATCHPOINT_JOBS__LISTING_QUEUE_FILES``) overrides it.
QUEUE_FILES = 10_000


#: how often a listing still going on shows how far it got (files_total, a progress event)
LISTED_SO_FAR_EVERY_S = 1.0


def queue_slots(mini_batch_size: int, files: int = QUEUE_FILES) -> int:
    """The queue's size in mini-batches: ``files`` files' worth, and at least 2 (one being handed
    to the engine while the next is listed)."""
    return max(2, files // max(1, mini_batch_size))


class Lister:
    """Lists input files on a background thread into a queue bounded in files (``queue_files``),
    so scoring starts with the first mini-batch while a long listing goes on, and the listing never
    runs more than ``queue_files`` files ahead of the workers; counts and timestamps are recorded
    on the job."""

    def __init__(self, store: SqlMetadataStore, name: str, inputs: list[tuple[str, ResolvedInput]],
                 mini_batch_size: int, manifest: Manifest, queue_files: int = QUEUE_FILES) -> None:
        self.store, self.name, self.inputs, self.size = store, name, inputs, mini_batch_size
        self.manifest = manifest
        self.q: queue.Queue[Any] = queue.Queue(maxsize=queue_slots(mini_batch_size, queue_files))
        self.error: BaseException | None = None
        self.closed = threading.Event()
        self.thread = threading.Thread(target=self._list, name=f"lister-{name}", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def _listed(self, known: set[tuple[str, str]]) -> Iterator[tuple[FileRef, list[int | None]]]:
        """Each input file not in ``known`` (the manifest's, when a cut listing goes on), with
        ``[size, modified]`` as the listing saw it (``[None, None]`` for a ``uri_file``, not looked at)."""
        for key, resolved in self.inputs:
            if resolved.type == "uri_file":
                if (key, resolved.path) not in known:
                    yield FileRef(key, resolved.path), [None, None]
                continue
            for info in open_backend(resolved.spec).iter_files_for_job(resolved.path):
                if known and (key, info.path) in known:
                    continue  # recorded before
                yield FileRef(key, info.path), [info.size, info.modified]

    def _list(self) -> None:
        try:
            resumed = self.manifest.complete is not None
            known = self._replay()
            if known is None:
                return  # closed while replaying
            if not resumed:
                self._list_on(known)
            elif not self.closed.is_set():
                # the listing ended before the server stopped: its record may not have reached the job
                record_listing(self.store, self.name, self.manifest.complete["files_total"],
                               self.manifest.complete["mini_batches_total"], self.manifest.completed_at())
        except BaseException as exc:  # noqa: BLE001 - re-raised on the runner's thread
            self.error = exc
        finally:
            self._put(_END)

    def _replay(self) -> set[tuple[str, str]] | None:
        """Hand out the manifest's mini-batches again; the files they hold (only while the listing
        is incomplete: they are skipped when it goes on), or None when the lister was closed."""
        track = self.manifest.complete is None
        known: set[tuple[str, str]] = set()
        for batch in self.manifest.replay():
            if track:
                known.update((f.source, f.path) for f in batch.files)
            if not self._put(batch):
                return None
        return known

    def _list_on(self, known: set[tuple[str, str]]) -> None:
        # one loop per file, no layers of generators: on a local store of tiny files the listing
        # paces the whole job (its Python shares the server's one GIL with the engine and the commit)
        shown, size, index = time.monotonic(), self.size, self.manifest.next_index
        chunk: list[FileRef] = []
        seen: list[list[int | None]] = []
        for ref, listed in self._listed(known):
            chunk.append(ref)
            seen.append(listed)
            if len(chunk) < size:
                continue
            if not self._record(MiniBatch(index, tuple(chunk)), seen):
                return
            index, chunk, seen = index + 1, [], []
            if time.monotonic() - shown >= LISTED_SO_FAR_EVERY_S:  # the total grows while the listing goes on
                record_listed_so_far(self.store, self.name, self.manifest.files_recorded, self.manifest.next_index)
                shown = time.monotonic()
        if chunk and not self._record(MiniBatch(index, tuple(chunk)), seen):
            return
        known.clear()
        at, files, batches = utcnow(), self.manifest.files_recorded, self.manifest.next_index
        self.manifest.finish(files, batches, at)
        record_listing(self.store, self.name, files, batches, at)

    def _record(self, batch: MiniBatch, seen: list[list[int | None]]) -> bool:
        """Record ``batch`` in the manifest, then hand it to the engine: recorded before the engine can
        score it; on disk before its resume record is (the job's Progress syncs the manifest, then
        the done log, then shows the mini-batch as finished). False when the lister was closed."""
        self.manifest.add(batch, durable=False, seen=seen)
        return self._put(batch)

    def changed_files(self, limit: int = 5) -> tuple[int, list[str]]:
        """The input files on a local store that changed after they were listed — size or
        modification time not as the listing saw them, or gone — counted, and the first ``limit``
        described. Read from the manifest (never all in memory): one ``stat`` per file. Files on
        remote stores are not checked (their size is recorded; a check would cost a request each)."""
        backends, roots = self._local_inputs()
        if not roots:
            return 0, []
        return self._described(changed_inputs.suspects(self.manifest.lines.entries(), roots), backends, limit)

    def check_changed_files(self, limit: int = 5) -> Callable[[], tuple[int, list[str]]]:
        """:meth:`changed_files`, its stats started now in a process of its own
        (``jobs/changed_inputs.py``: beside the output's assembly, off the server's GIL); the
        returned callable waits for the answer. In process for a small listing
        (``changed_inputs.IN_PROCESS_UP_TO`` files), when no process can be started, or when it
        does not end well."""
        backends, roots = self._local_inputs()
        manifest = self.manifest.lines.backend.local_path(self.manifest.lines.name)
        if not roots or manifest is None or self.manifest.files_recorded <= changed_inputs.IN_PROCESS_UP_TO:
            return lambda: self.changed_files(limit)
        try:
            proc = start_script(changed_inputs.__file__, manifest, json.dumps(roots))
        except OSError:
            return lambda: self.changed_files(limit)

        def answer() -> tuple[int, list[str]]:
            out, _ = proc.communicate()
            lines = out.split(b"\n")
            if proc.returncode != 0 or lines[-2:] != [changed_inputs.DONE, b""]:
                return self.changed_files(limit)
            return self._described((tuple(json.loads(line)) for line in lines[:-2]), backends, limit)

        return answer

    def _local_inputs(self) -> tuple[dict[str, Any], dict[str, str]]:
        """The inputs on local stores: their backends, and their folders (ending in the separator)."""
        backends = {key: open_backend(resolved.spec) for key, resolved in self.inputs
                    if resolved.spec.kind == "local"}
        roots = {key: (backend.local_path("") or "").rstrip(os.sep) + os.sep for key, backend in backends.items()}
        return backends, roots

    @staticmethod
    def _described(suspects: Iterable[tuple[str, str, Any, Any]], backends: dict[str, Any],
                   limit: int) -> tuple[int, list[str]]:
        """Of the files whose first stat differed (``jobs/changed_inputs.py suspects``): how many
        changed, and the first ``limit`` described."""
        count, shown = 0, []
        for source, path, size, modified in suspects:
            try:  # changed: looked at as the store sees it (a link out of the store is no file of it)
                st = os.stat(backends[source].local_path(path) or "")
                now: tuple[int | None, int | None] = (st.st_size, st.st_mtime_ns)
            except Exception:  # noqa: BLE001 - gone, or no longer a file of the store: changed
                now = (None, None)
            if now[0] is None:
                what = "removed"
            elif size is not None and now[0] != size:
                what = f"size {size} -> {now[0]} bytes"
            elif modified is not None and now[1] != modified:
                what = "modified (same size)"
            else:
                continue
            count += 1
            if len(shown) < limit:
                shown.append(f"{path} ({what})")
        return count, shown

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
