"""A job's output, by its ``output_action``: rows → parts → the output file.

Start at ``base.py`` (the :class:`OutputWriter` contract and what each step means), then one
writer per action (``append_row.py``, ``summary_only.py``), ``registry.py`` (action → writer),
``rows.py`` (how a scorer's result becomes rows) and ``parts.py`` (where parts are, syncing them,
streaming them back). The job-level steps (which parts, retries, partial outputs) are in
``jobs/assembly.py``.
"""

from __future__ import annotations

from batchpoint.outputs.base import OutputWriter, PartFileWriter, temporary_name
from batchpoint.outputs.registry import known_actions, register, worker_writer, writer_for

__all__ = ["OutputWriter", "PartFileWriter", "known_actions", "register", "temporary_name", "worker_writer",
           "writer_for"]
