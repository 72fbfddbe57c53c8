"""Run an Azure ML SDK notebook's code cells in order, with only its ``azure.ai.ml`` imports
mapped to ``batchpoint`` (``azure.ai.ml.entities`` -> ``batchpoint.entities``,
``azure.ai.ml.constants`` -> ``batchpoint.constants``).

Everything else runs as written, in one namespace, in the notebook's folder: ``DefaultAzureCredential()``
stays (point it at Batchpoint with ``IDENTITY_ENDPOINT``/``IDENTITY_HEADER``, as
``batchpoint azure-env`` prints them), ``%%writefile <path>`` cells write their file as Jupyter does.
Any other IPython magic or shell line (``%pip``, ``!cmd``) is not run: it is listed in the result, and
a cell made only of them is skipped.

    python tests/azure_samples/notebook_runner.py path/to/sample.ipynb

No nbformat/nbclient: a notebook is JSON and its code cells are Python.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

#: the one mapping: longest module first
IMPORTS = [("azure.ai.ml.entities", "batchpoint.entities"), ("azure.ai.ml.constants", "batchpoint.constants"),
           ("azure.ai.ml", "batchpoint")]


def map_imports(source: str) -> str:
    out = []
    for line in source.splitlines():
        stripped = line.lstrip()
        if stripped.startswith(("from azure.ai.ml", "import azure.ai.ml")):
            for old, new in IMPORTS:
                if re.search(rf"\b{re.escape(old)}\b", line):
                    line = re.sub(rf"\b{re.escape(old)}\b", new, line, count=1)
                    break
        out.append(line)
    return "\n".join(out)


@dataclass
class NotebookRun:
    cells: int = 0
    skipped_lines: list[str] = field(default_factory=list)
    written: list[str] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    namespace: dict = field(default_factory=dict)


def code_cells(notebook: Path) -> list[str]:
    doc = json.loads(notebook.read_text())
    return ["".join(c["source"]) if isinstance(c["source"], list) else c["source"]
            for c in doc["cells"] if c.get("cell_type") == "code"]


def run_notebook(notebook: Path, skip_cell=None) -> NotebookRun:
    """Run ``notebook``'s code cells in its folder; ``skip_cell(source) -> bool`` leaves a cell out
    (for a cell that needs what the test cannot give, named by the caller). An exception in a cell
    is raised with the cell's number and source."""
    notebook = Path(notebook).resolve()
    result = NotebookRun()
    result.namespace = {"__name__": "__main__"}
    old = Path.cwd()
    os.chdir(notebook.parent)
    try:
        for number, source in enumerate(code_cells(notebook), 1):
            if skip_cell is not None and skip_cell(source):
                continue
            first, _, rest = source.partition("\n")
            if first.startswith("%%writefile"):
                target = Path(first.split(None, 1)[1].strip())
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(rest)
                result.written.append(str(target))
                continue
            lines = []
            for line in source.splitlines():
                if line.lstrip().startswith(("%", "!")):
                    result.skipped_lines.append(line.strip())
                    lines.append("")
                else:
                    lines.append(line)
            code = map_imports("\n".join(lines))
            if not code.strip():
                continue
            started = time.monotonic()
            try:
                exec(compile(code, f"{notebook.name}[cell {number}]", "exec"), result.namespace)  # noqa: S102
            except Exception as exc:
                raise RuntimeError(f"{notebook.name}: code cell {number} failed: {exc!r}\n--- cell ---\n{code}") from exc
            result.seconds.append(time.monotonic() - started)
            result.cells += 1
    finally:
        os.chdir(old)
    return result


if __name__ == "__main__":
    run = run_notebook(Path(sys.argv[1]))
    print(f"{run.cells} cells ran; written: {run.written}; not run: {run.skipped_lines}")
