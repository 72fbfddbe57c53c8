"""A worker's file steps: fetching a mini-batch's input files, writing its part.

Fetching: local stores hand over their path (checked to exist); remote ones are downloaded to a
per-worker temporary folder that is emptied after each mini-batch. A file that is gone is an
``input`` failure; any other fault (storage unreachable, throttled past its retries, credential
refused, the temporary folder's disk full) is ``platform``.

Writing: a part is written to ``parts/.<key>.tmp``, flushed to disk (fsync) and renamed to
``parts/<key>.csv`` (the folder fsynced too) before the worker reports the mini-batch done; on
any failure the temporary file is removed. A write that fails with an ``OSError`` (ENOSPC, EROFS, …)
is ``platform``; a result that cannot be written as rows is the user's.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from batchpoint.exceptions import InputError, StorageNotFoundError
from batchpoint.scoring.output import write_rows
from batchpoint.storage.registry import open_backend
from batchpoint.worker.errors import StepFailure
from batchpoint.worker.protocol import spec_from_dict


class Fetcher:
    def __init__(self, sources: dict[str, Any]) -> None:
        self.use(sources)
        self.tmp = tempfile.mkdtemp(prefix="batchpoint-worker-")

    def use(self, sources: dict[str, Any]) -> None:
        """Read with ``sources`` (storage spec dicts) from now on (renewed credentials)."""
        self.specs = {key: spec_from_dict(spec) for key, spec in sources.items()}
        self.backends = {key: open_backend(spec) for key, spec in self.specs.items()}

    def fetch(self, files: list[dict[str, str]], key: str) -> list[str]:
        return [self._fetch_one(i, ref["source"], ref["path"], key) for i, ref in enumerate(files)]

    def _fetch_one(self, i: int, source: str, path: str, key: str) -> str:
        where = f"file '{path}' of input '{source}' ({self.specs[source].describe()})"
        try:
            backend = self.backends[source]
            local = backend.local_path(path)
            if local is not None:
                if not os.path.isfile(local):
                    raise StorageNotFoundError(f"{where} does not exist")
                return local
            folder = Path(self.tmp) / str(i)
            folder.mkdir(parents=True, exist_ok=True)
            local = str(folder / path.rsplit("/", 1)[-1])
            backend.get_file(path, local)
            return local
        except StorageNotFoundError as exc:
            raise StepFailure("input", f"{where} was not found when mini-batch {key} fetched it (it was listed, "
                                       "then removed or renamed): it is not scored", exc) from exc
        except InputError as exc:  # e.g. a link out of the data store
            raise StepFailure("input", f"{where} cannot be read: {exc}", exc) from exc
        except Exception as exc:  # noqa: BLE001 - any other fault is the platform's
            raise StepFailure("platform", f"could not fetch {where} for mini-batch {key}: "
                                          f"{type(exc).__name__}: {exc}", exc) from exc

    def clear(self) -> None:
        for child in Path(self.tmp).iterdir():
            shutil.rmtree(child, ignore_errors=True)

    def close(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)


def write_part(parts: Path, key: str, result: Any) -> int:
    """Write ``result`` as ``parts/<key>.csv``; return the row count. Leaves no temporary file."""
    tmp, final = parts / f".{key}.tmp", parts / f"{key}.csv"
    try:
        parts.mkdir(parents=True, exist_ok=True)
        with open(tmp, "w", newline="") as out:
            rows = write_rows(result, out)
            out.flush()
            os.fsync(out.fileno())  # on disk before it is published and reported: a done part is durable
        os.replace(tmp, final)
        _sync_dir(parts)
        return rows
    except OSError as exc:
        _remove(tmp)
        cause = f"[Errno {exc.errno}] {exc.strerror}" if exc.strerror else str(exc)
        raise StepFailure("platform", f"could not write the rows of mini-batch {key} to '{final}': {cause}; "
                                      f"free space in (or fix) the job folder {parts.parent}", exc) from exc
    except BaseException:
        _remove(tmp)
        raise


def _sync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable (the directory entry itself)."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _remove(path: Path) -> None:
    try:
        path.unlink(missing_ok=True)
    except OSError:
        pass
