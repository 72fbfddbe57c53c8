"""The output-writer contract: how a job's ``output_action`` turns its scored rows into its output.

Each action (``append_row``, ``summary_only``, a format of a later issue) is one
:class:`OutputWriter`, found by its name with :func:`batchpoint.outputs.writer_for`
(``outputs/registry.py``). A writer owns the three steps of a job's rows, and nothing else:

==========================  ======================  ================================================
step                        where it runs           what the writer does
==========================  ======================  ================================================
rows → part                 a worker (any engine)   :meth:`OutputWriter.write_part`: what ``run()``
                                                    returned for one mini-batch becomes the file
                                                    ``<parts>/<key><part_suffix>``, written to a
                                                    temporary name and renamed (whole or absent);
                                                    returns the row count. A writer with
                                                    ``writes_parts = False`` (``summary_only``) only
                                                    counts: nothing is written.
part durable                the server's group      ``outputs/parts.py`` :func:`sync_parts` (by name:
                            commit                  :meth:`OutputWriter.part_name`) before the done
                                                    log names the part: a mini-batch counts as done
                                                    only once its part is on disk
parts → output              the server, finalize    :meth:`OutputWriter.assemble`: the parts the done
                                                    log names, in mini-batch order, streamed into
                                                    the one output file (``output_file_name``)
==========================  ======================  ================================================

Around them, job-level steps that are the same for every writer stay in ``jobs/``: which jobs'
done logs make the output and where it goes, transient retries, the partial output of a failed
or canceled job (``jobs/assembly.py``), the done log itself (``jobs/folder.py``,
``jobs/progress.py``).

A new format is one module holding its writer and one line in ``outputs/registry.py``.
This package imports only the storage layer, ``_internal`` and ``exceptions`` (an import-linter
contract keeps it so): the server imports it, and so do workers — also those of a deployment's own
environment, which run a worker-only copy of Batchpoint (``environments/worker_copy.py``: no
pydantic, so not even ``entities``; the action names match ``BatchDeploymentOutputAction``'s).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import IO, Any, ClassVar, Protocol, runtime_checkable


@runtime_checkable
class OutputWriter(Protocol):
    """One output action's rows → part → output."""

    #: the ``output_action`` it implements (its registry key)
    action: str
    #: whether each mini-batch leaves a part and the job an assembled output file
    writes_parts: bool
    #: the part file's suffix after its key (``.csv``)
    part_suffix: str

    def part_name(self, key: str) -> str:
        """The file name of mini-batch piece ``key``'s part."""
        ...

    def write_part(self, parts: Path, key: str, result: Any) -> int:
        """Write ``result`` (what ``run()`` returned) as ``parts/<part_name(key)>``, whole or not
        at all; return its row count. An ``OSError`` (full or read-only folder) propagates after
        the temporary file is removed."""
        ...

    def assemble(self, parts: Iterable[IO[bytes]], out: IO[bytes]) -> None:
        """Write the job's output file to ``out`` from its parts' streams, in the order given."""
        ...


def temporary_name(key: str) -> str:
    """The name a part of mini-batch piece ``key`` is written under before it is renamed to its
    writer's :meth:`~OutputWriter.part_name` (every engine's, so the local pool finds a killed
    worker's leftovers by it: ``.<key>.tmp``)."""
    return f".{key}.tmp"


class PartFileWriter:
    """The writers that leave one part file per mini-batch: the atomic write is here, the format
    in :meth:`write_rows` and :meth:`assemble` of each subclass."""

    action: ClassVar[str]
    writes_parts: ClassVar[bool] = True
    part_suffix: ClassVar[str] = ".csv"

    def part_name(self, key: str) -> str:
        return f"{key}{self.part_suffix}"

    def write_part(self, parts: Path, key: str, result: Any) -> int:
        folder = os.fspath(parts)
        tmp, final = os.path.join(folder, temporary_name(key)), os.path.join(folder, self.part_name(key))
        try:
            try:
                out = open(tmp, "wb")
            except FileNotFoundError:  # the first part of the folder (strings, one open: a mini-batch of tiny files
                os.makedirs(folder, exist_ok=True)  # spent more in Path and mkdir than in its rows)
                out = open(tmp, "wb")
            with out:
                rows = self.write_rows(result, out)
            os.replace(tmp, final)  # whole or absent; the server syncs it to disk before recording it done
            return rows
        except BaseException:
            _remove(tmp)
            raise

    def write_rows(self, result: Any, out: IO[bytes]) -> int:
        """Write ``result``'s rows to the part file ``out``; return how many."""
        raise NotImplementedError

    def assemble(self, parts: Iterable[IO[bytes]], out: IO[bytes]) -> None:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(action={self.action!r})"


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass
