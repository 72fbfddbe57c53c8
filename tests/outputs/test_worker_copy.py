"""Workers of a deployment's own environment run a worker-only copy of Batchpoint (no pydantic,
no server side: ``environments/worker_copy.py``): the output writers must be in it and import there."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from batchpoint.entities import BatchDeploymentOutputAction
from batchpoint.environments.worker_copy import worker_copy
from batchpoint.outputs import known_actions


def test_the_worker_only_copy_holds_the_output_writers(tmp_path: Path) -> None:
    copy = worker_copy(tmp_path / "environments")
    code = ("import json, sys\n"
            f"sys.path.insert(0, {str(copy)!r})\n"
            "import batchpoint.worker.loop\n"
            "from pathlib import Path\n"
            "from batchpoint.outputs import worker_writer\n"
            "w = worker_writer({'output_action': 'append_row'})\n"
            f"n = w.write_part(Path({str(tmp_path / 'parts')!r}), '00000000-0000', ['a', 'b'])\n"
            "print(json.dumps([batchpoint.outputs.__file__, 'batchpoint.entities' in sys.modules, n]))\n")
    out = subprocess.run([sys.executable, "-I", "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    where, entities_loaded, rows = json.loads(out.stdout.strip().splitlines()[-1])
    assert where.startswith(str(copy)) and not entities_loaded and rows == 2
    assert (tmp_path / "parts" / "00000000-0000.csv").read_bytes() == b"a\nb\n"


def test_the_writers_actions_are_the_apis_output_actions() -> None:
    api = {BatchDeploymentOutputAction.APPEND_ROW, BatchDeploymentOutputAction.SUMMARY_ONLY}
    assert set(known_actions()) == api == {"append_row", "summary_only"}
