"""The server process does not import the scoring stack (pandas, pyarrow, MLflow, scikit-learn):
only workers need it, and importing it costs the server ~75 MiB of memory for its whole life
(docs/performance.md: server peak RSS). A helper shared by the engine and the workers once pulled
pandas into the server through ``worker/files.py``."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("pandas", "pyarrow", "mlflow", "sklearn", "ray")
SERVER_MODULES = ("batchpoint.server.app", "batchpoint.jobs.runner", "batchpoint.jobs.assembly",
                  "batchpoint.engines.local_pool", "batchpoint.engines.launchers", "batchpoint.jobs.dispatcher")


def test_the_server_side_imports_no_scoring_stack() -> None:
    code = (f"import importlib, json, sys\nfor m in {SERVER_MODULES!r}: importlib.import_module(m)\n"
            f"print(json.dumps(sorted(h for h in {HEAVY!r} if h in sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []
